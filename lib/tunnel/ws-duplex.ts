// Turns a WebSocket into a byte stream for HTTP/2, and keeps it alive with pings.
import type { Duplex } from "node:stream";
import { createWebSocketStream, type WebSocket } from "ws";
import { WS_DEAD_AFTER_MS, WS_PING_INTERVAL_MS } from "./timeouts.ts";

export interface WebSocketDuplexOptions {
  /** How often to ping the peer (ms); default WS_PING_INTERVAL_MS. */
  pingIntervalMs?: number;
  /** Silence from the peer for this long (ms) terminates the socket; default WS_DEAD_AFTER_MS. */
  deadAfterMs?: number;
  /** Called once when the peer stops answering; the socket is already being terminated. */
  onDead?: () => void;
}

/**
 * After the socket closes, HTTP/2 gets this long to read what the peer sent last (a response's
 * final frames) before the stream is destroyed anyway. Bounded because a session that is not
 * reading (every stream backpressured) would otherwise never take those bytes, and a dead
 * tunnel's streams would never end.
 */
const CLOSE_READ_GRACE_MS = 1_000;

/**
 * Wraps an open WebSocket as a Duplex (binary frames in, binary frames out, backpressure from ws)
 * and pings the peer: any inbound frame or pong counts as life; silence past `deadAfterMs`
 * terminates the socket, so both HTTP/2 ends see the tunnel close even when TCP reports nothing
 * (a black-holed link, a NAT that forgot the flow, a frozen peer).
 */
export function createWebSocketDuplex(ws: WebSocket, options: WebSocketDuplexOptions = {}): Duplex {
  const duplex = createWebSocketStream(ws);
  const watched: Watched = {
    ws,
    lastHeard: Date.now(),
    lastPing: 0,
    pingEvery: options.pingIntervalMs ?? WS_PING_INTERVAL_MS,
    deadAfter: options.deadAfterMs ?? WS_DEAD_AFTER_MS,
    onDead: options.onDead,
  };
  watchedOf.set(ws, watched);
  ws.on("pong", heard);
  ws.on("ping", heard);
  ws.on("message", heard);
  liveness.add(watched);
  ws.once("close", () => {
    liveness.delete(watched);
    // ws's stream only ends its readable side when the socket closes and never emits 'close';
    // HTTP/2 (Bun's node:http2) waits for 'close', so without this a dead tunnel never ends.
    if (duplex.readableLength === 0) {
      duplex.destroy();
      return;
    }
    const grace = setTimeout(() => duplex.destroy(), CLOSE_READ_GRACE_MS);
    grace.unref?.();
    duplex.once("end", () => {
      clearTimeout(grace);
      duplex.destroy();
    });
  });
  return duplex;
}

/** Each socket's liveness record, for the one `heard` listener every socket shares. */
const watchedOf = new WeakMap<WebSocket, Watched>();

/** Any frame or pong from the peer counts as life; one function for every tunnel, not a closure each. */
function heard(this: WebSocket): void {
  const watched = watchedOf.get(this);
  if (watched) watched.lastHeard = Date.now();
}

interface Watched {
  ws: WebSocket;
  lastHeard: number;
  lastPing: number;
  pingEvery: number;
  deadAfter: number;
  onDead?: () => void;
}

/**
 * One timer for every tunnel of the process, not one each: a relay with 10,000 agents wakes a few
 * times a second and walks one set, instead of keeping 10,000 intervals. It ticks at most every
 * 500 ms, and twice per the shortest ping interval among the tunnels (tests use short ones).
 */
const LIVENESS_TICK_MS = 500;
const liveness = createLivenessSweep();

function createLivenessSweep(): { add(w: Watched): void; delete(w: Watched): void } {
  const all = new Set<Watched>();
  let timer: ReturnType<typeof setInterval> | undefined;
  let tickMs = LIVENESS_TICK_MS;
  const sweep = () => {
    const now = Date.now();
    for (const w of all) {
      if (now - w.lastHeard > w.deadAfter) {
        all.delete(w);
        w.onDead?.();
        w.ws.terminate();
      } else if (now - w.lastPing >= w.pingEvery && w.ws.readyState === w.ws.OPEN) {
        w.lastPing = now;
        w.ws.ping();
      }
    }
    if (all.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
      tickMs = LIVENESS_TICK_MS;
    }
  };
  return {
    add(w) {
      all.add(w);
      const wanted = Math.max(10, Math.min(LIVENESS_TICK_MS, Math.floor(w.pingEvery / 2)));
      if (timer && wanted >= tickMs) return;
      tickMs = timer ? Math.min(tickMs, wanted) : wanted;
      if (timer) clearInterval(timer);
      timer = setInterval(sweep, tickMs);
      timer.unref?.();
    },
    delete(w) {
      all.delete(w);
    },
  };
}
