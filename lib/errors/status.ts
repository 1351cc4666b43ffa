// Renders any error as the Kubernetes Status object kubectl knows how to print, on a response or a raw socket.
import { STATUS_CODES, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { ArcError } from "./errors.ts";

export interface KubeStatus {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure";
  message: string;
  reason: string;
  code: number;
  /** metav1.StatusDetails; only `retryAfterSeconds` is used. */
  details?: { retryAfterSeconds: number };
}

/**
 * Unknown errors become a generic 500 that names the request id; their detail belongs in the
 * log, never in the response.
 */
export function toStatus(error: unknown, requestId?: string): KubeStatus {
  if (error instanceof ArcError) {
    const status = statusOf(error.status, error.reason, error.message);
    if (error.retryAfterSeconds !== undefined) status.details = { retryAfterSeconds: error.retryAfterSeconds };
    return status;
  }
  const ref = requestId ? ` (request id ${requestId})` : "";
  return statusOf(500, "InternalError", `internal error in cluster-connect${ref}; see the relay or agent log`);
}

/**
 * The `message` of a Kubernetes Status (or any JSON object with a string `message`), from a parsed
 * body or its text; undefined for anything else. The one reader of a peer's refusal text.
 */
export function statusMessageOf(body: unknown): string | undefined {
  let value = body;
  if (typeof body === "string") {
    try {
      value = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  const message = (value as { message?: unknown } | null | undefined)?.message;
  return typeof message === "string" && message.length > 0 ? message : undefined;
}

export function statusOf(code: number, reason: string, message: string): KubeStatus {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code };
}

/**
 * Body and headers ready to write to an HTTP response. A `Retry-After` header goes with an error
 * that says when to retry (RFC 9110 10.2.3; client-go waits for it before retrying 429 and 5xx).
 */
export function statusResponse(error: unknown, requestId?: string): { code: number; body: string; headers: Record<string, string> } {
  const status = toStatus(error, requestId);
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (status.details) headers["retry-after"] = String(status.details.retryAfterSeconds);
  return { code: status.code, body: JSON.stringify(status), headers };
}

/**
 * The whole HTTP/1.1 answer (head and Status body, `Connection: close`) for `error`, for a socket
 * that no HTTP server object owns: an upgrade request not yet upgraded, or a request the parser
 * refused. The one renderer of a raw Status answer.
 */
export function renderStatusHttp(error: unknown, requestId?: string): string {
  const { code, body, headers } = statusResponse(error, requestId);
  return (
    `HTTP/1.1 ${code} ${STATUS_CODES[code] ?? "Error"}\r\n` +
    Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("") +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
  );
}

/**
 * Answers a raw socket with the Status for `error` (renderStatusHttp) and closes it. Does nothing
 * if the socket is already answered or gone.
 */
export function writeStatusToSocket(socket: Duplex, error: unknown, requestId?: string): void {
  if (socket.destroyed || socket.writableEnded) return;
  socket.end(renderStatusHttp(error, requestId));
}

/**
 * Answers an HTTP response with the Status for `error` (and its `Retry-After`), or cuts the
 * response if its head is already sent: a half-written body must never look complete.
 */
export function writeStatusResponse(res: ServerResponse, error: unknown, requestId?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const { code, body, headers } = statusResponse(error, requestId);
  res.writeHead(code, { ...headers, "content-length": String(Buffer.byteLength(body)) });
  res.end(body);
}
