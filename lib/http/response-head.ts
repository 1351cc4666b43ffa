// Writes an HTTP/1.1 response head by hand, for a socket taken over by an Upgrade.
import type { HeaderMap } from "./header-map.ts";

/**
 * Renders a status line and headers ending in the blank line. A name or value holding CR or LF is
 * left out rather than written, so nothing that came from a peer can inject a header line.
 */
export function renderResponseHead(status: number, statusText: string, headers: HeaderMap): string {
  let head = `HTTP/1.1 ${status} ${statusText}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (/[\r\n]/.test(name) || /[\r\n]/.test(v)) continue;
      head += `${name}: ${v}\r\n`;
    }
  }
  return head + "\r\n";
}
