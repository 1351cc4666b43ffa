// Writes an error made by arcproxy itself as a Kubernetes Status, on a response or on a raw socket.
import type { ServerResponse } from "node:http";
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { statusResponse } from "../kube/index.ts";

/** Answers `res` with the Status for `error`, or cuts it if a response has already begun. */
export function writeStatusResponse(res: ServerResponse, error: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const { code, body, headers } = statusResponse(error);
  res.writeHead(code, { ...headers, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/** The same, for a socket taken over by an upgrade request; closes the socket afterwards. */
export function writeStatusToSocket(socket: Duplex, error: unknown): void {
  if (socket.destroyed || socket.writableEnded) return;
  const { code, body, headers } = statusResponse(error);
  const head =
    `HTTP/1.1 ${code} ${STATUS_CODES[code] ?? "Error"}\r\n` +
    Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("") +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`;
  socket.end(head + body);
}
