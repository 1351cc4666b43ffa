// The address a client connected from, kept from the moment it connected: Bun forgets
// `socket.remoteAddress` once the peer resets the connection, and an authentication attempt must
// never go uncounted because its client reset right after sending it.
import type { Socket } from "node:net";

const addresses = new WeakMap<object, string>();

/** Call on the server's 'connection' event (and 'secureConnection' for TLS): records the address. */
export function rememberClientAddress(socket: Socket): void {
  if (socket.remoteAddress) addresses.set(socket, socket.remoteAddress);
}

/**
 * The client's address: the one recorded at connect time, else the socket's current one, else
 * "unknown" (all such clients then share one rate-limit budget rather than having none).
 */
export function clientAddress(socket: object | undefined): string {
  if (!socket) return "unknown";
  return addresses.get(socket) ?? (socket as { remoteAddress?: string }).remoteAddress ?? "unknown";
}
