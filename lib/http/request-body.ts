// Whether a request carries a body, and the framing header a hop drops when it does not.
import type { IncomingHttpHeaders } from "node:http";
import type { HeaderMap } from "./header-map.ts";

/**
 * Whether an HTTP/1.1 request carries a body: a Transfer-Encoding, or a Content-Length above 0
 * (RFC 9112 6.3; a request with neither has none). Every hop decides a request's framing here.
 */
export function hasRequestBody(headers: IncomingHttpHeaders): boolean {
  return headers["transfer-encoding"] !== undefined || Number(headers["content-length"] ?? 0) > 0;
}

/**
 * `headers` without Content-Length, for a tunnel stream whose framing says it all: END_STREAM on
 * the request's HEADERS (no body), or an upgrade (the stream then carries the protocol's bytes).
 * HTTP/2 makes the field optional (RFC 9113 8.1.1), and Bun 1.4.5's `node:http2` server resets a
 * GET, HEAD or DELETE stream that carries `content-length: 0` with PROTOCOL_ERROR, which the user
 * saw as a 502: Bun's `fetch` and other clients send that header on every body-less DELETE.
 */
export function withoutContentLength(headers: HeaderMap): HeaderMap {
  const { "content-length": _bodyLength, ...rest } = headers;
  return rest;
}
