// One WebSocket to /api/v1/events for the whole page, shared by every view that follows
// instances or tasks; reopened with backoff when it drops.
import { type ServerEvent, token, wsUrl } from "./client";

type Listener = (e: ServerEvent) => void;
const listeners = new Set<Listener>();
const statusListeners = new Set<(up: boolean) => void>();
let socket: WebSocket | null = null;
let retry = 1000;
let timer: number | undefined;
export let eventsUp = false;

function setUp(up: boolean) {
  eventsUp = up;
  for (const f of statusListeners) f(up);
}

function open() {
  if (socket || listeners.size === 0 || !token()) return;
  const ws = new WebSocket(wsUrl("/api/v1/events"));
  socket = ws;
  ws.onopen = () => {
    retry = 1000;
    setUp(true);
  };
  ws.onmessage = (m) => {
    let e: ServerEvent;
    try {
      e = JSON.parse(m.data as string) as ServerEvent;
    } catch {
      return;
    }
    for (const f of listeners) f(e);
  };
  ws.onclose = () => {
    socket = null;
    setUp(false);
    if (listeners.size > 0 && token()) {
      timer = window.setTimeout(open, retry);
      retry = Math.min(retry * 2, 10_000);
    }
  };
}

/** Calls `f` with every event until the returned function is called. */
export function subscribe(f: Listener): () => void {
  listeners.add(f);
  open();
  return () => {
    listeners.delete(f);
    if (listeners.size === 0) {
      window.clearTimeout(timer);
      socket?.close();
      socket = null;
    }
  };
}

export function onEventsStatus(f: (up: boolean) => void): () => void {
  statusListeners.add(f);
  return () => statusListeners.delete(f);
}

/** Closes the stream (log out). */
export function closeEvents() {
  window.clearTimeout(timer);
  socket?.close();
  socket = null;
}
