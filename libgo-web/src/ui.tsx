// Shared pieces: the signed-in user, messages, loading, role-gated controls, tables,
// progress bars and task following.
import { createContext, type ComponentChildren, type JSX } from "preact";
import { useCallback, useContext, useEffect, useState } from "preact/hooks";
import { allows, api, ApiFailure, ok, type Role, type Task, type User } from "./api/client";
import { subscribe } from "./api/events";

export const MeContext = createContext<User | null>(null);
export function useMe(): User | null {
  return useContext(MeContext);
}
export function useCan(needed: Role): boolean {
  return allows(useMe()?.role, needed);
}

/** Renders its children only for users whose role includes `role`. */
export function Can(props: { role: Role; children: ComponentChildren }) {
  return useCan(props.role) ? <>{props.children}</> : null;
}

// ---- messages ----
export type Message = { id: number; kind: "error" | "info"; text: string };
let messages: Message[] = [];
let nextId = 1;
const messageListeners = new Set<(m: Message[]) => void>();
function setMessages(m: Message[]) {
  messages = m;
  for (const f of messageListeners) f(m);
}
export function notify(kind: Message["kind"], text: string) {
  const m = { id: nextId++, kind, text };
  setMessages([...messages.slice(-4), m]);
  if (kind === "info") window.setTimeout(() => dismiss(m.id), 6000);
}
export function dismiss(id: number) {
  setMessages(messages.filter((m) => m.id !== id));
}
export function describe(e: unknown): string {
  if (e instanceof ApiFailure) return `${e.message} (${e.code})`;
  return e instanceof Error ? e.message : String(e);
}
export function notifyError(e: unknown) {
  notify("error", describe(e));
}

export function MessageArea() {
  const [list, setList] = useState(messages);
  useEffect(() => {
    messageListeners.add(setList);
    return () => void messageListeners.delete(setList);
  }, []);
  return (
    <div class="messages" aria-live="polite">
      {list.map((m) => (
        <div key={m.id} class={`message ${m.kind}`} role={m.kind === "error" ? "alert" : "status"}>
          <span>{m.text}</span>
          <button type="button" class="link" aria-label="Dismiss" onClick={() => dismiss(m.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}

// ---- loading ----
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (d) => live && (setData(d), setError(null)),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, n]);
  const reload = useCallback(() => setN((x) => x + 1), []);
  return { data, error, reload, setData };
}

/** What a page shows while its data loads or when loading failed. */
export function Loading(props: { error: unknown; what: string }) {
  if (props.error) {
    return (
      <p class="error-text" role="alert">
        Cannot load {props.what}: {describe(props.error)}
      </p>
    );
  }
  return <p class="muted">Loading {props.what}…</p>;
}

/** A button that runs an async action, shows it is busy and reports a failure. */
export function Action(
  props: {
    run: () => Promise<unknown>;
    children: ComponentChildren;
    confirm?: string;
    done?: string;
  } & Omit<JSX.ButtonHTMLAttributes<HTMLButtonElement>, "onClick">,
) {
  const { run, confirm: question, done, children, ...rest } = props;
  const [busy, setBusy] = useState(false);
  return (
    <button
      type="button"
      {...rest}
      disabled={busy || Boolean(rest.disabled)}
      aria-busy={busy}
      onClick={async () => {
        if (question && !window.confirm(question)) return;
        setBusy(true);
        try {
          await run();
          if (done) notify("info", done);
        } catch (e) {
          notifyError(e);
        } finally {
          setBusy(false);
        }
      }}
    >
      {children}
    </button>
  );
}

export function Field(props: {
  label: string;
  error?: string | null;
  hint?: string;
  children: ComponentChildren;
}) {
  return (
    <label class={props.error ? "field invalid" : "field"}>
      <span class="label">{props.label}</span>
      {props.children}
      {props.hint && !props.error && <span class="hint">{props.hint}</span>}
      {props.error && (
        <span class="field-error" role="alert">
          {props.error}
        </span>
      )}
    </label>
  );
}

export function Progress(props: { value: number; label: string }) {
  const pct = Math.round(Math.max(0, Math.min(1, props.value)) * 100);
  return (
    <div
      class="progress"
      role="progressbar"
      aria-label={props.label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={pct}
    >
      <div class="bar" style={{ width: `${pct}%` }} />
      <span>{pct} %</span>
    </div>
  );
}

/** A task followed live through the event stream (no polling), with its progress bar. */
export function useTask(id: string | null): Task | null {
  const [task, setTask] = useState<Task | null>(null);
  useEffect(() => {
    if (!id) return setTask(null);
    let live = true;
    const off = subscribe((e) => {
      if (e.type === "task" && e.task.id === id) setTask(e.task);
    });
    // The state before the stream's first message (the task may have ended already).
    ok(api.GET("/api/v1/tasks/{id}", { params: { path: { id } } })).then(
      (t) => live && setTask((cur) => (cur && cur.updatedAt >= t.updatedAt ? cur : t)),
      notifyError,
    );
    return () => {
      live = false;
      off();
    };
  }, [id]);
  return task;
}

export function TaskView(props: { id: string | null; label: string }) {
  const task = useTask(props.id);
  if (!props.id) return null;
  if (!task) return <p class="muted">Starting {props.label}…</p>;
  return (
    <div class="task" data-status={task.status}>
      <Progress value={task.status === "finished" ? 1 : task.progress} label={props.label} />
      <span class="muted">
        {task.status}
        {task.message ? ` — ${task.message}` : ""}
      </span>
      {task.error && (
        <p class="error-text" role="alert">
          {task.error.message} ({task.error.code})
        </p>
      )}
    </div>
  );
}

export function Table(props: {
  label: string;
  head: string[];
  rows: ComponentChildren[][];
  empty?: string;
}) {
  return (
    // Focusable, so a table wider than the window scrolls from the keyboard too.
    <div class="table-wrap" tabIndex={0} role="region" aria-label={props.label}>
      <table aria-label={props.label}>
        <thead>
          <tr>
            {props.head.map((h) => (
              <th key={h} scope="col">
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {props.rows.length === 0 ? (
            <tr>
              <td colSpan={props.head.length} class="muted">
                {props.empty ?? "Nothing here yet."}
              </td>
            </tr>
          ) : (
            props.rows.map((r, i) => (
              <tr key={i}>
                {r.map((c, j) => (
                  <td key={j}>{c}</td>
                ))}
              </tr>
            ))
          )}
        </tbody>
      </table>
    </div>
  );
}

export function bytes(n: number | null | undefined): string {
  if (n == null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 && u > 0 ? 1 : 0)} ${units[u]}`;
}

/** Parses "512MiB", "2 GiB", "100M", or a plain number of bytes. */
export function parseBytes(s: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$/i.exec(s);
  if (!m) return null;
  const pow = { "": 0, k: 1, m: 2, g: 3, t: 4 }[m[2].toLowerCase() as "" | "k" | "m" | "g" | "t"];
  return Math.round(Number(m[1]) * 1024 ** pow);
}

export function when(s: string | null | undefined): string {
  if (!s) return "—";
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? s : d.toLocaleString();
}

export function StateBadge(props: { state: string }) {
  return <span class={`badge state-${props.state}`}>{props.state}</span>;
}

export function Page(props: { title: string; actions?: ComponentChildren; children: ComponentChildren }) {
  useEffect(() => {
    document.title = `${props.title} · LibGo`;
  }, [props.title]);
  return (
    <section class="page" aria-labelledby="page-title">
      <header class="page-head">
        <h1 id="page-title">{props.title}</h1>
        <div class="actions">{props.actions}</div>
      </header>
      {props.children}
    </section>
  );
}
