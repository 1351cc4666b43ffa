// Converts headers between HTTP/1.1 and the HTTP/2 streams of the tunnel, dropping hop-by-hop ones.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";

// Connection-specific headers (RFC 9110 7.6.1, RFC 9113 8.2.2): meaningless past one hop and
// forbidden in HTTP/2. Transfer-Encoding and Content-Length framing is redone by each hop.
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
  "te", "trailer", "transfer-encoding", "upgrade", "host", "http2-settings",
]);

export type HeaderMap = Record<string, string | string[]>;

/**
 * Copies end-to-end headers only: hop-by-hop names, names listed in `Connection`, and HTTP/2
 * pseudo-headers are dropped; names come out lower-case.
 */
export function endToEndHeaders(headers: IncomingHttpHeaders | OutgoingHttpHeaders): HeaderMap {
  const named = connectionTokens(headers["connection"]);
  const out: HeaderMap = {};
  for (const [rawName, value] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    if (value === undefined || name.startsWith(":") || HOP_BY_HOP_HEADERS.has(name) || named.has(name)) continue;
    out[name] = Array.isArray(value) ? value.map(String) : String(value);
  }
  return out;
}

function connectionTokens(value: unknown): Set<string> {
  const text = Array.isArray(value) ? value.join(",") : typeof value === "string" ? value : "";
  return new Set(text.split(",").map((t) => t.trim().toLowerCase()).filter(Boolean));
}

/** The first value of a header that may have been sent more than once. */
export function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Renders an HTTP/1.1 response head (status line and headers) for a raw socket. */
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
