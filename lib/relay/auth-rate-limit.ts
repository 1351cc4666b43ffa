// The one path every authentication at the relay takes: bounds what failures from one address cost, never refuses valid credentials.
import { TooManyRequests, Unauthorized } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";
import { canonicalAddress } from "./client-address.ts";

/** Failed authentications one address may spend at once; the budget refills over `windowSeconds`. */
export const DEFAULT_MAX_AUTH_FAILURES = 20;
export const DEFAULT_AUTH_FAILURE_WINDOW_SECONDS = 60;
/** Addresses tracked at once; the least recently seen is forgotten first, so memory stays bounded. */
export const DEFAULT_MAX_TRACKED_SOURCES = 10_000;
/** Attempts one address may have waiting for their turn; beyond it, 429 at once. */
export const DEFAULT_MAX_QUEUED_AUTHENTICATIONS = 64;
/** A queue overflow says nothing about the caller's credentials: retrying soon is right (seconds). */
const IN_FLIGHT_RETRY_AFTER_SECONDS = 1;

export interface AuthRateLimitOptions {
  /** Failures an address may have answered 401 per window (default 20); later failures get 429. */
  maxFailures?: number;
  /** Seconds in which a spent budget refills completely (default 60). */
  windowSeconds?: number;
  maxTrackedSources?: number;
  /**
   * Attempts of one address verified at once while its budget lasts (default: maxFailures). Once
   * the budget is spent, one at a time.
   */
  maxConcurrent?: number;
  /** Attempts of one address waiting for their turn (default 64); beyond it, 429. */
  maxQueued?: number;
}

/** A failure from an address whose budget is spent, or no room in its queue while it is spent. Carries `Retry-After`. */
export class AuthRateLimited extends TooManyRequests {
  override readonly code = "ERR_ARC_AUTH_RATE_LIMITED";
  /** `cause`: the Unauthorized this failure would otherwise have been answered with. */
  constructor(retryAfterSeconds: number, options?: { cause?: unknown }) {
    super(`too many failed authentications from this address; retry in ${retryAfterSeconds} s`, { ...options, retryAfterSeconds });
  }
}

/** No room in the queue of an address whose budget is not spent: about the address's load, not anyone's credentials. */
export class AuthenticationsInFlight extends TooManyRequests {
  override readonly code = "ERR_ARC_AUTH_IN_FLIGHT";
  constructor(running: number, queued: number) {
    super(
      `too many authentications in flight from this address (${running} being verified, ${queued} waiting); ` +
        `retry in ${IN_FLIGHT_RETRY_AFTER_SECONDS} s`,
      { retryAfterSeconds: IN_FLIGHT_RETRY_AFTER_SECONDS },
    );
  }
}

export interface AuthRateLimiter {
  /** Runs `attempt` under `address`'s limits; see limitAuthentication, the only caller. */
  run<T>(address: string, attempt: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Addresses with part of their budget spent (tests, metrics). */
  size(): number;
  /** Told of every refused credential (arcrelay_authentication_failures_total). */
  onRefused?: (reason: "unauthorized" | "rate_limited") => void;
}

/** A failure budget per source: a token bucket of `maxFailures` that refills over the window. */
interface Bucket {
  tokens: number;
  updatedAt: number;
}

/** The attempts of one source that are running or waiting; exists only while there are any. */
interface Gate {
  running: number;
  queue: (() => void)[];
}

/**
 * A token bucket and a bounded queue per source address. A bucket that has refilled completely is
 * the same as no bucket, so it is dropped; beyond `maxTrackedSources` the least recently used one
 * is dropped. Throws TypeError for options that are not positive integers.
 */
export function createAuthRateLimiter(opts: AuthRateLimitOptions & {
  logger: Logger;
  now?: () => number;
  onRefused?: AuthRateLimiter["onRefused"];
  /**
   * Live relay replicas sharing the budget (default 1). Each replica allows its part of it,
   * floor(maxFailures / replicas) and at least 1, so an attacker spreading over every replica
   * spends at most maxFailures per window in all (while there are no more replicas than
   * maxFailures), with no database write per failure. A client an L4 load balancer keeps on one
   * replica gets that part only: the cost of the approximation.
   */
  replicas?: () => number;
}): AuthRateLimiter {
  const budget = opts.maxFailures ?? DEFAULT_MAX_AUTH_FAILURES;
  const windowMs = (opts.windowSeconds ?? DEFAULT_AUTH_FAILURE_WINDOW_SECONDS) * 1000;
  const maxSources = opts.maxTrackedSources ?? DEFAULT_MAX_TRACKED_SOURCES;
  const maxConcurrent = opts.maxConcurrent ?? budget;
  const maxQueued = opts.maxQueued ?? DEFAULT_MAX_QUEUED_AUTHENTICATIONS;
  if (!(windowMs > 0)) throw new TypeError(`auth rate limit: windowSeconds must be positive, got ${opts.windowSeconds}`);
  for (const [name, value] of Object.entries({ maxFailures: budget, maxTrackedSources: maxSources, maxConcurrent, maxQueued })) {
    if (!(Number.isInteger(value) && value >= 1)) throw new TypeError(`auth rate limit: ${name} must be a positive integer, got ${value}`);
  }
  // This replica's part of the budget; read at every use, so a replica joining or leaving counts at once.
  const share = () => Math.max(1, Math.floor(budget / Math.max(1, opts.replicas?.() ?? 1)));
  const now = opts.now ?? Date.now;
  // A Map iterates in insertion order: re-inserting on every touch makes the first key the least recently used.
  const buckets = new Map<string, Bucket>();
  // Bounded by the requests open at once: an entry only lives while one of its attempts does.
  const gates = new Map<string, Gate>();

  function current(source: string): Bucket | undefined {
    const bucket = buckets.get(source);
    if (!bucket) return undefined;
    const capacity = share();
    const refillPerMs = capacity / windowMs;
    const t = now();
    bucket.tokens = Math.min(capacity, bucket.tokens + (t - bucket.updatedAt) * refillPerMs);
    bucket.updatedAt = t;
    if (bucket.tokens >= capacity) {
      buckets.delete(source);
      return undefined;
    }
    return bucket;
  }

  /** Seconds until `source` has one failure to spend again; undefined while it has one. */
  function blockedFor(source: string): number | undefined {
    const bucket = current(source);
    if (!bucket || bucket.tokens >= 1) return undefined;
    return Math.max(1, Math.ceil((1 - bucket.tokens) / (share() / windowMs) / 1000));
  }

  /** Spends one failure; returns the Retry-After (seconds) if there was none left to spend. */
  function spend(source: string): number | undefined {
    const wasBlocked = blockedFor(source) !== undefined;
    const capacity = share();
    const bucket = current(source) ?? { tokens: capacity, updatedAt: now() };
    bucket.tokens = Math.max(0, bucket.tokens - 1);
    buckets.delete(source);
    buckets.set(source, bucket);
    while (buckets.size > maxSources) buckets.delete(buckets.keys().next().value as string);
    if (wasBlocked) return blockedFor(source) ?? 1;
    if (bucket.tokens < 1) {
      opts.logger.info("refusing authentication failures from address with 429 for a while; valid credentials still pass", {
        address: source, failures: capacity, windowSeconds: windowMs / 1000,
      });
    }
    return undefined;
  }

  // A spent budget narrows the address to one verification at a time: its failures then cost the
  // relay one verification's worth of work at most, and its valid credentials still get verified.
  const limitOf = (source: string) => (blockedFor(source) === undefined ? maxConcurrent : 1);

  /** Starts waiting attempts while the limit allows; with `forget`, drops the gate once idle. */
  function dispatch(source: string, gate: Gate, forget: boolean): void {
    while (gate.queue.length > 0 && gate.running < limitOf(source)) {
      gate.running++;
      gate.queue.shift()!();
    }
    if (forget && gate.running === 0 && gate.queue.length === 0) gates.delete(source);
  }

  /** Waits for a turn; returns the function that ends it. Throws 429 when the queue is full. */
  async function takeTurn(source: string, signal: AbortSignal | undefined): Promise<() => void> {
    if (signal?.aborted) throw clientGone();
    const gate = gates.get(source) ?? { running: 0, queue: [] };
    gates.set(source, gate);
    const endTurn = () => {
      gate.running--;
      dispatch(source, gate, true);
    };
    dispatch(source, gate, false); // the limit may have risen since the last turn ended (the budget refilled)
    if (gate.queue.length === 0 && gate.running < limitOf(source)) {
      gate.running++;
      return endTurn;
    }
    if (gate.queue.length >= maxQueued) {
      const retryAfter = blockedFor(source);
      throw retryAfter === undefined ? new AuthenticationsInFlight(gate.running, gate.queue.length) : new AuthRateLimited(retryAfter);
    }
    await new Promise<void>((resolve, reject) => {
      const start = () => {
        signal?.removeEventListener("abort", leave);
        resolve();
      };
      // A client that hung up must not keep its place: the queue is short, and others wait behind it.
      const leave = () => {
        const index = gate.queue.indexOf(start);
        if (index < 0) return;
        gate.queue.splice(index, 1);
        dispatch(source, gate, true);
        reject(clientGone());
      };
      gate.queue.push(start);
      signal?.addEventListener("abort", leave, { once: true });
    });
    return endTurn;
  }

  return {
    async run(address, attempt, signal) {
      const source = sourceKey(address);
      const endTurn = await takeTurn(source, signal);
      try {
        return await attempt();
      } catch (error) {
        if (!(error instanceof Unauthorized)) throw error;
        const retryAfter = spend(source);
        if (retryAfter === undefined) throw error;
        throw new AuthRateLimited(retryAfter, { cause: error });
      } finally {
        endTurn();
      }
    },
    size: () => buckets.size,
    ...(opts.onRefused ? { onRefused: opts.onRefused } : {}),
  };
}

/** Node's code for a peer that went away, so callers log it as normal traffic (isPeerHangup). */
function clientGone(): Error {
  return Object.assign(new Error("the client hung up while its authentication waited its turn"), { code: "ERR_STREAM_PREMATURE_CLOSE" });
}

/**
 * The unit one client controls: an IPv4 address, or an IPv6 /64 (one host usually holds a whole
 * /64, so counting single IPv6 addresses would let it rotate through them).
 */
export function sourceKey(address: string): string {
  // One spelling first (an IPv4-mapped address, dotted or hex, is its IPv4 address): clientAddress's.
  const canonical = canonicalAddress(address);
  if (!canonical.includes(":")) return canonical;
  const groups = expandIpv6(canonical.replace(/%.*$/, ""));
  return groups ? `${groups.slice(0, 4).join(":")}::/64` : canonical;
}

function expandIpv6(address: string): string[] | undefined {
  const halves = address.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return undefined;
  const groups = [...head, ...Array<string>(missing).fill("0"), ...tail];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return undefined;
  return groups.map((g) => g.toLowerCase().replace(/^0+(?=.)/, ""));
}

/**
 * Runs one authentication attempt (a user or agent token, an enrollment secret) from `address`;
 * every route that authenticates calls this, so users, agents and enrollment share one budget.
 *
 * - Every attempt is verified: valid credentials are never refused because of others' failures.
 * - An Unauthorized from `attempt` spends one of the address's `maxFailures` (per window); while
 *   some were left it is rethrown as is (401), once none were left it becomes AuthRateLimited
 *   (429, Retry-After, the Unauthorized as `cause`).
 * - At most `maxConcurrent` attempts per address run at once, one once its budget is spent; up to
 *   `maxQueued` more wait in order. A full queue is refused at once: AuthRateLimited if the budget
 *   is spent, else AuthenticationsInFlight (429, Retry-After 1 s).
 * - `signal` aborting while the attempt waits gives its place up and rejects with an error whose
 *   `code` is ERR_STREAM_PREMATURE_CLOSE; a running attempt is not interrupted.
 *
 * Without a limiter (tests, `authRateLimit: false`), `attempt` just runs. Without an address, the
 * attempt counts against one shared "unknown" budget: never against none.
 */
export async function limitAuthentication<T>(
  limiter: AuthRateLimiter | undefined,
  address: string | undefined,
  attempt: () => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  try {
    return await (limiter ? limiter.run(address || "unknown", attempt, signal) : attempt());
  } catch (error) {
    // Every credential passes here, so every refusal is counted here, once.
    if (error instanceof AuthRateLimited) limiter?.onRefused?.("rate_limited");
    else if (error instanceof Unauthorized) limiter?.onRefused?.("unauthorized");
    throw error;
  }
}
