// Turns a WebSocket into a byte stream for HTTP/2, and keeps it alive with pings.
import type { Duplex } from "node:stream";
import { createWebSocketStream, type WebSocket } from "ws";
import { WS_DEAD_AFTER_MS, WS_PING_INTERVAL_MS } from "./timeouts.ts";

export interface WebSocketDuplexOptions {
  pingIntervalMs?: number;
  deadAfterMs?: number;
  /** Called once when the peer stops answering; the socket is already being terminated. */
  onDead?: () => void;
}

/**
 * Wraps an open WebSocket as a Duplex (binary frames in, binary frames out, backpressure from
 * ws) and pings the peer: any inbound frame or pong counts as life, silence past `deadAfterMs`
 * terminates the socket so both HTTP/2 ends see the tunnel close.
 */
export function createWebSocketDuplex(ws: WebSocket, options: WebSocketDuplexOptions = {}): Duplex {
  const duplex = createWebSocketStream(ws);
  const pingEvery = options.pingIntervalMs ?? WS_PING_INTERVAL_MS;
  const deadAfter = options.deadAfterMs ?? WS_DEAD_AFTER_MS;
  let lastHeard = Date.now();
  const heard = () => { lastHeard = Date.now(); };
  ws.on("pong", heard);
  ws.on("ping", heard);
  ws.on("message", heard);

  const timer = setInterval(function checkPeerAlive() {
    if (Date.now() - lastHeard > deadAfter) {
      clearInterval(timer);
      options.onDead?.();
      ws.terminate();
      return;
    }
    if (ws.readyState === ws.OPEN) ws.ping();
  }, pingEvery);
  timer.unref?.();
  ws.once("close", () => {
    clearInterval(timer);
    // ws's stream only ends its readable side when the socket closes and never emits 'close';
    // HTTP/2 (Bun's node:http2) waits for 'close', so without this a dead tunnel never ends.
    if (duplex.readableLength === 0) duplex.destroy();
    else duplex.once("end", () => duplex.destroy());
  });
  return duplex;
}
