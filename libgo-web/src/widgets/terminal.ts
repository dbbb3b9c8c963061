// A console in xterm.js wired to a LibGo console WebSocket: binary frames out of the
// instance are written to the terminal, keys typed are sent as text frames.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import "@xterm/xterm/css/xterm.css";

export function attachTerminal(
  el: HTMLElement,
  url: string,
  onStatus: (s: string) => void,
): () => void {
  const term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, scrollback: 5000 });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    onStatus("connected");
    term.focus();
  };
  ws.onmessage = (m) =>
    term.write(typeof m.data === "string" ? m.data : new Uint8Array(m.data as ArrayBuffer));
  ws.onclose = (e) => onStatus(`closed${e.reason ? `: ${e.reason}` : ""}`);
  ws.onerror = () => onStatus("error");
  const typed = term.onData((d) => ws.readyState === WebSocket.OPEN && ws.send(d));
  const resize = () => fit.fit();
  window.addEventListener("resize", resize);
  return () => {
    window.removeEventListener("resize", resize);
    typed.dispose();
    ws.close();
    term.dispose();
  };
}
