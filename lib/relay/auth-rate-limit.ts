// Slows down token guessing: too many failed authentications from one address get 429 before any verification.
import { TooManyRequests, Unauthorized } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";

/** Failed authentications one address may spend at once; the budget refills over `windowSeconds`. */
export const DEFAULT_MAX_AUTH_FAILURES = 20;
export const DEFAULT_AUTH_FAILURE_WINDOW_SECONDS = 60;
/** Addresses tracked at once; the least recently seen is forgotten first, so memory stays bounded. */
export const DEFAULT_MAX_TRACKED_SOURCES = 10_000;

export interface AuthRateLimitOptions {
  maxFailures?: number;
  windowSeconds?: number;
  maxTrackedSources?: number;
  /** Verifications one address may have in flight at once (default: maxFailures); the rest wait their turn. */
  maxConcurrent?: number;
}

/** Refused because of earlier failures; `retryAfterSeconds` goes into the `Retry-After` header. */
export class AuthRateLimited extends TooManyRequests {
  override readonly code = "ERR_ARC_AUTH_RATE_LIMITED";
  constructor(retryAfterSeconds: number) {
    super(`too many failed authentications from this address; retry in ${retryAfterSeconds} s`, { retryAfterSeconds });
  }
}

export interface AuthRateLimiter {
  /** Throws AuthRateLimited while `address` has no failures left to spend. */
  check(address: string): void;
  /** Spends one failure of `address`'s budget. */
  recordFailure(address: string): void;
  /**
   * Waits for one of `address`'s verification slots; call the returned function when done. Without
   * it, a burst of concurrent guesses would all be verified before the first failure is counted.
   */
  acquire(address: string): Promise<() => void>;
  /** Number of addresses currently tracked (tests, metrics). */
  size(): number;
}

/** A failure budget per source: a token bucket of `maxFailures` that refills over the window. */
interface Bucket {
  tokens: number;
  updatedAt: number;
}

/**
 * A token bucket per source address. A bucket that has refilled completely is the same as no
 * bucket, so it is dropped; beyond `maxTrackedSources` the least recently used one is dropped.
 */
export function createAuthRateLimiter(opts: AuthRateLimitOptions & { logger: Logger; now?: () => number }): AuthRateLimiter {
  const capacity = opts.maxFailures ?? DEFAULT_MAX_AUTH_FAILURES;
  const windowMs = (opts.windowSeconds ?? DEFAULT_AUTH_FAILURE_WINDOW_SECONDS) * 1000;
  const maxSources = opts.maxTrackedSources ?? DEFAULT_MAX_TRACKED_SOURCES;
  if (!(Number.isInteger(capacity) && capacity >= 1)) throw new TypeError(`auth rate limit: maxFailures must be a positive integer, got ${capacity}`);
  if (!(windowMs > 0)) throw new TypeError(`auth rate limit: windowSeconds must be positive, got ${opts.windowSeconds}`);
  if (!(Number.isInteger(maxSources) && maxSources >= 1)) throw new TypeError(`auth rate limit: maxTrackedSources must be a positive integer`);
  const maxConcurrent = opts.maxConcurrent ?? capacity;
  if (!(Number.isInteger(maxConcurrent) && maxConcurrent >= 1)) throw new TypeError(`auth rate limit: maxConcurrent must be a positive integer`);
  const refillPerMs = capacity / windowMs;
  const now = opts.now ?? Date.now;
  // A Map iterates in insertion order: re-inserting on every touch makes the first key the least recently used.
  const buckets = new Map<string, Bucket>();
  // Only addresses with a verification in flight have an entry, so this is bounded by open requests.
  const slots = new Map<string, { active: number; waiting: (() => void)[] }>();

  function current(source: string): Bucket | undefined {
    const bucket = buckets.get(source);
    if (!bucket) return undefined;
    const t = now();
    bucket.tokens = Math.min(capacity, bucket.tokens + (t - bucket.updatedAt) * refillPerMs);
    bucket.updatedAt = t;
    if (bucket.tokens >= capacity) {
      buckets.delete(source);
      return undefined;
    }
    return bucket;
  }

  return {
    check(address) {
      const source = sourceKey(address);
      const bucket = current(source);
      if (!bucket || bucket.tokens >= 1) return;
      throw new AuthRateLimited(Math.max(1, Math.ceil((1 - bucket.tokens) / refillPerMs / 1000)));
    },
    recordFailure(address) {
      const source = sourceKey(address);
      const bucket = current(source) ?? { tokens: capacity, updatedAt: now() };
      bucket.tokens = Math.max(0, bucket.tokens - 1);
      buckets.delete(source);
      buckets.set(source, bucket);
      if (bucket.tokens < 1) opts.logger.info("refusing authentication from address for a while", { address: source, failures: capacity, windowSeconds: windowMs / 1000 });
      while (buckets.size > maxSources) buckets.delete(buckets.keys().next().value as string);
    },
    async acquire(address) {
      const source = sourceKey(address);
      let entry = slots.get(source);
      if (!entry) slots.set(source, (entry = { active: 0, waiting: [] }));
      if (entry.active >= maxConcurrent) await new Promise<void>((resolve) => entry.waiting.push(resolve));
      else entry.active++;
      let released = false;
      return function releaseSlot() {
        if (released) return;
        released = true;
        const next = entry.waiting.shift();
        if (next) return next(); // the slot passes on; `active` stays
        if (--entry.active === 0) slots.delete(source);
      };
    },
    size: () => buckets.size,
  };
}

/**
 * The unit one client controls: an IPv4 address, or an IPv6 /64 (one host usually holds a whole
 * /64, so counting single IPv6 addresses would let it rotate through them).
 */
export function sourceKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(":")) return address;
  const groups = expandIpv6(address.replace(/%.*$/, ""));
  return groups ? `${groups.slice(0, 4).join(":")}::/64` : address;
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
 * Runs one authentication attempt (a user or agent token, an enrollment secret) under the limiter:
 * a blocked address is refused before `attempt` runs, at most `maxConcurrent` attempts per address
 * run at once, and an Unauthorized result spends the address's budget.
 */
export async function limitAuthentication<T>(
  limiter: AuthRateLimiter | undefined,
  address: string | undefined,
  attempt: () => Promise<T>,
): Promise<T> {
  if (!limiter || !address) return attempt();
  limiter.check(address);
  const release = await limiter.acquire(address);
  try {
    // Again: failures of the attempts this one waited behind may have used up the budget.
    limiter.check(address);
    return await attempt();
  } catch (error) {
    if (error instanceof Unauthorized) limiter.recordFailure(address);
    throw error;
  } finally {
    release();
  }
}
