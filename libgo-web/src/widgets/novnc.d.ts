// noVNC ships no types; the part of its RFB class the console uses.
declare module "@novnc/novnc" {
  export default class RFB extends EventTarget {
    constructor(target: HTMLElement, url: string, options?: { wsProtocols?: string[]; credentials?: Record<string, string> });
    scaleViewport: boolean;
    background: string;
    disconnect(): void;
    sendCtrlAltDel(): void;
  }
}
