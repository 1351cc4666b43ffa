// One shape for headers on every hop: lower-case names, repeated fields kept apart as arrays.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";

/** Header name (lower-case) to its value; a field sent more than once is an array, in order. */
export type HeaderMap = Record<string, string | string[]>;

/**
 * What the hops receive: node's flat `rawHeaders` ([name, value, name, value, ...], the only form
 * that keeps repeated fields such as `Impersonate-Group` apart: node joins them with ", " in
 * `req.headers`), or a header object (node:http, node:http2, or a HeaderMap).
 */
export type HeaderSource = readonly string[] | IncomingHttpHeaders | OutgoingHttpHeaders | HeaderMap;

/**
 * Fields that may appear once (RFC 9110 5.3). node:http keeps the first and discards repeats in
 * `req.headers` (its documented list), and node:http2 refuses to send a repeat at all; the
 * HeaderMap keeps the first too, so every hop sees the value the relay authenticated.
 */
const SINGLETON_FIELDS: ReadonlySet<string> = new Set([
  "age", "authorization", "content-length", "content-type", "etag", "expires", "from", "host", "if-modified-since",
  "if-unmodified-since", "last-modified", "location", "max-forwards", "proxy-authorization", "referer", "retry-after",
  "server", "user-agent", "content-encoding", "content-language", "content-location", "content-md5", "content-range",
  "date", "dnt", "if-match", "if-none-match", "if-range", "range", "tk", "upgrade-insecure-requests",
  "x-content-type-options", "access-control-allow-credentials", "access-control-max-age", "access-control-request-method",
]);

/**
 * Normalises `source` to a HeaderMap: names lower-cased, numbers as strings, undefined values
 * dropped, repeated raw fields collected into an array (the first kept for a singleton field, as
 * node:http does). HTTP/2 pseudo-headers (`:path`) are kept; the header policy decides about them.
 */
export function toHeaderMap(source: HeaderSource): HeaderMap {
  const out: HeaderMap = {};
  if (Array.isArray(source)) {
    const raw = source as readonly string[];
    for (let i = 0; i + 1 < raw.length; i += 2) append(out, raw[i]!.toLowerCase(), raw[i + 1]!);
    return out;
  }
  for (const [rawName, value] of Object.entries(source)) {
    if (value === undefined || value === null) continue;
    const name = rawName.toLowerCase();
    for (const v of Array.isArray(value) ? value : [value]) append(out, name, String(v));
  }
  return out;
}

function append(map: HeaderMap, name: string, value: string): void {
  const existing = map[name];
  if (existing === undefined) map[name] = value;
  else if (SINGLETON_FIELDS.has(name) || name.startsWith(":")) return;
  else if (Array.isArray(existing)) existing.push(value);
  else map[name] = [existing, value];
}

/** Every value of a header as a list (empty when absent). */
export function allValues(value: string | string[] | number | undefined): string[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value.map(String) : [String(value)];
}

/** The first value of a header that may have been sent more than once. */
export function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * node:http reads and writes header values as Latin-1, one character per byte; clients such as
 * client-go send UTF-8 bytes. These two keep a name like "josé" or "開発" intact across a hop.
 */
export function fromWireValue(value: string): string {
  return Buffer.from(value, "latin1").toString("utf8");
}

/** The inverse of fromWireValue: a string whose Latin-1 characters are the value's UTF-8 bytes. */
export function toWireValue(value: string): string {
  return Buffer.from(value, "utf8").toString("latin1");
}

/**
 * The token of an `Authorization: Bearer <token>` value (RFC 6750 2.1; the scheme in any casing,
 * RFC 9110 11.1), or undefined for a missing value, another scheme or a malformed one.
 */
export function bearerTokenOf(authorization: string | string[] | undefined): string | undefined {
  const match = /^Bearer[ ]+([^ ]+)[ ]*$/i.exec(firstHeader(authorization) ?? "");
  return match?.[1];
}
