// One sweep pings every tunnel of the process and closes the ones whose peer went silent.
import { WS_DEAD_AFTER_MS, WS_PING_INTERVAL_MS } from "./timeouts.ts";

export interface LivenessOptions {
  /** How often to ping the peer (ms); default WS_PING_INTERVAL_MS. */
  pingIntervalMs?: number;
  /** Silence from the peer for this long (ms) terminates the socket; default WS_DEAD_AFTER_MS. */
  deadAfterMs?: number;
  /** Called once when the peer stops answering; the socket is already being terminated. */
  onDead?: () => void;
}

/**
 * What the sweep needs of a tunnel's WebSocket. The socket's owner sets `lastHeard`
 * (performance.now(), ms: a monotonic clock, so a wall clock stepped by NTP neither kills every
 * tunnel at once nor keeps a dead one) whenever anything arrives from the peer, a pong included;
 * the sweep pings it every
 * `pingEvery` ms and terminates it once silent for longer than `deadAfter` ms.
 */
export interface LivenessTarget {
  lastHeard: number;
  /** performance.now() of the last ping sent (ms). */
  lastPing: number;
  readonly pingEvery: number;
  readonly deadAfter: number;
  readonly onDead?: () => void;
  /** False once the socket is closing: no more pings. */
  readonly isOpen: boolean;
  ping(): void;
  terminate(): void;
}

/** The ping interval and dead-after of `options`, with the tunnel's defaults (ms). */
export function livenessTimes(options: LivenessOptions): { pingEvery: number; deadAfter: number } {
  return { pingEvery: options.pingIntervalMs ?? WS_PING_INTERVAL_MS, deadAfter: options.deadAfterMs ?? WS_DEAD_AFTER_MS };
}

/**
 * One timer for every tunnel of the process, not one each: a relay with 10,000 agents wakes a few
 * times a second and walks one set, instead of keeping 10,000 intervals. It ticks at most every
 * 500 ms, and twice per the shortest ping interval among the tunnels (tests use short ones).
 */
const LIVENESS_TICK_MS = 500;
const all = new Set<LivenessTarget>();
let timer: ReturnType<typeof setInterval> | undefined;
let tickMs = LIVENESS_TICK_MS;

function sweep(): void {
  const now = performance.now();
  for (const target of all) {
    if (now - target.lastHeard > target.deadAfter) {
      all.delete(target);
      target.onDead?.();
      target.terminate();
    } else if (now - target.lastPing >= target.pingEvery && target.isOpen) {
      target.lastPing = now;
      target.ping();
    }
  }
  if (all.size === 0 && timer) {
    clearInterval(timer);
    timer = undefined;
    tickMs = LIVENESS_TICK_MS;
  }
}

/** Starts pinging `target` and watching for its silence, until `unwatchLiveness` or its death. */
export function watchLiveness(target: LivenessTarget): void {
  all.add(target);
  const wanted = Math.max(10, Math.min(LIVENESS_TICK_MS, Math.floor(target.pingEvery / 2)));
  if (timer && wanted >= tickMs) return;
  tickMs = timer ? Math.min(tickMs, wanted) : wanted;
  if (timer) clearInterval(timer);
  timer = setInterval(sweep, tickMs);
  timer.unref?.();
}

/** Stops watching `target` (its socket closed). */
export function unwatchLiveness(target: LivenessTarget): void {
  all.delete(target);
}
