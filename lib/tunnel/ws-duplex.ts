// Turns a `ws` WebSocket (the agent's end) into a byte stream for HTTP/2, and keeps it alive with pings.
import type { Duplex } from "node:stream";
import { createWebSocketStream, type WebSocket } from "ws";
import { livenessTimes, unwatchLiveness, watchLiveness, type LivenessOptions, type LivenessTarget } from "./liveness.ts";
import { destroyOnceRead } from "./read-grace.ts";

export type WebSocketDuplexOptions = LivenessOptions;

/**
 * Wraps an open WebSocket as a Duplex (binary frames in, binary frames out, backpressure from ws)
 * and pings the peer: any inbound frame or pong counts as life; silence past `deadAfterMs`
 * terminates the socket, so both HTTP/2 ends see the tunnel close even when TCP reports nothing
 * (a black-holed link, a NAT that forgot the flow, a frozen peer).
 */
export function createWebSocketDuplex(ws: WebSocket, options: WebSocketDuplexOptions = {}): Duplex {
  const duplex = createWebSocketStream(ws);
  const watched = new WatchedWebSocket(ws, options);
  watchedOf.set(ws, watched);
  ws.on("pong", heard);
  ws.on("ping", heard);
  ws.on("message", heard);
  watchLiveness(watched);
  ws.once("close", () => {
    unwatchLiveness(watched);
    // ws's stream ends its readable side when the socket closes but never emits 'close'.
    destroyOnceRead(duplex);
  });
  return duplex;
}

/** Each socket's liveness record, for the one `heard` listener every socket shares. */
const watchedOf = new WeakMap<WebSocket, WatchedWebSocket>();

/** Any frame or pong from the peer counts as life; one function for every tunnel, not a closure each. */
function heard(this: WebSocket): void {
  const watched = watchedOf.get(this);
  if (watched) watched.lastHeard = performance.now();
}

class WatchedWebSocket implements LivenessTarget {
  lastHeard = performance.now();
  lastPing = 0;
  readonly pingEvery: number;
  readonly deadAfter: number;
  readonly onDead?: () => void;

  constructor(private readonly ws: WebSocket, options: LivenessOptions) {
    ({ pingEvery: this.pingEvery, deadAfter: this.deadAfter } = livenessTimes(options));
    this.onDead = options.onDead;
  }

  get isOpen(): boolean { return this.ws.readyState === this.ws.OPEN; }
  ping(): void { this.ws.ping(); }
  terminate(): void { this.ws.terminate(); }
}
