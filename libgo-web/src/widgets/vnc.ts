// A VM's graphics in noVNC: LibGo's /vnc WebSocket carries the raw RFB stream.
import RFB from "@novnc/novnc";

export function attachVnc(el: HTMLElement, url: string, onStatus: (s: string) => void): () => void {
  const rfb = new RFB(el, url, { wsProtocols: [] });
  rfb.scaleViewport = true;
  rfb.background = "#000";
  rfb.addEventListener("connect", () => onStatus("connected"));
  rfb.addEventListener("disconnect", (e) =>
    onStatus((e as CustomEvent<{ clean: boolean }>).detail?.clean ? "disconnected" : "connection lost"),
  );
  rfb.addEventListener("securityfailure", (e) =>
    onStatus(`security failure: ${(e as CustomEvent<{ reason?: string }>).detail?.reason ?? ""}`),
  );
  return () => rfb.disconnect();
}
