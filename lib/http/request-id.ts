// One request id end to end: arcproxy makes it, the relay keeps it (or makes one), the agent hands it to the API server.
import { randomUUID } from "node:crypto";
import { protocol } from "../tunnel/index.ts";

/** What a request id may look like when a client sends one: a UUID, a ULID, a trace id; nothing that could forge a log line. */
const ACCEPTED = /^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$/;

/** A new request id (a random UUID, RFC 9562 version 4). */
export function newRequestId(): string {
  return randomUUID();
}

/**
 * The client's `x-arc-request-id` when it is a plausible id (8-128 characters of letters, digits,
 * `.`, `_`, `:`, `-`, starting with a letter or digit), else a new one. A client-chosen id only
 * correlates: it is never trusted for anything else, and the audit record names the user anyway.
 */
export function requestIdFrom(value: string | string[] | undefined): string {
  const candidate = Array.isArray(value) ? value[0] : value;
  return candidate !== undefined && ACCEPTED.test(candidate) ? candidate : newRequestId();
}

/**
 * The request id of an incoming request's headers: `x-arc-request-id` as requestIdFrom takes it,
 * unless `Connection` names it (then it is hop-by-hop, RFC 9110 7.6.1, and was meant for no one
 * beyond this hop), in which case a new one.
 */
export function requestIdOf(headers: Readonly<Record<string, string | string[] | undefined>>): string {
  const connection = [headers["connection"] ?? []].flat().join(",").toLowerCase().split(",").map((t) => t.trim());
  return connection.includes(protocol.REQUEST_ID_HEADER) ? newRequestId() : requestIdFrom(headers[protocol.REQUEST_ID_HEADER]);
}
