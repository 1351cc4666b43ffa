// The failed-authentication limiter: budget per address, refill, bounded memory, and how UserAccess uses it.
import { describe, expect, test } from "bun:test";
import type { Identity } from "../../lib/auth/index.ts";
import { TooManyRequests, Unauthorized } from "../../lib/errors/index.ts";
import { createLogger, silentLogger } from "../../lib/observe/index.ts";
import { AuthRateLimited, createAuthRateLimiter, sourceKey } from "../../lib/relay/auth-rate-limit.ts";
import type { RelayStore } from "../../lib/relay/store/index.ts";
import { createUserAccess } from "../../lib/relay/user-access.ts";

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => { t += ms; } };
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe("createAuthRateLimiter", () => {
  test("20 failures a minute pass; the 21st attempt is refused with a retry time, before any verification", () => {
    const c = clock();
    const limiter = createAuthRateLimiter({ logger: silentLogger, now: c.now });
    for (let i = 0; i < 20; i++) {
      limiter.check("203.0.113.7");
      limiter.recordFailure("203.0.113.7");
    }
    const error = thrown(() => limiter.check("203.0.113.7"));
    expect(error).toBeInstanceOf(AuthRateLimited);
    expect(error).toBeInstanceOf(TooManyRequests);
    const limited = error as AuthRateLimited;
    expect(limited.status).toBe(429);
    expect(limited.reason).toBe("TooManyRequests");
    expect(limited.retryAfterSeconds).toBe(3); // one failure refills every 60 s / 20
    expect(limited.message).toBe("too many failed authentications from this address; retry in 3 s");
  });

  test("other addresses are not affected", () => {
    const limiter = createAuthRateLimiter({ logger: silentLogger, maxFailures: 2 });
    limiter.recordFailure("198.51.100.1");
    limiter.recordFailure("198.51.100.1");
    expect(() => limiter.check("198.51.100.1")).toThrow(AuthRateLimited);
    expect(() => limiter.check("198.51.100.2")).not.toThrow();
  });

  test("the budget refills over the window, and a refilled address is forgotten", () => {
    const c = clock();
    const limiter = createAuthRateLimiter({ logger: silentLogger, maxFailures: 4, windowSeconds: 60, now: c.now });
    for (let i = 0; i < 4; i++) limiter.recordFailure("192.0.2.1");
    expect(() => limiter.check("192.0.2.1")).toThrow(AuthRateLimited);
    c.advance(14_000);
    expect((thrown(() => limiter.check("192.0.2.1")) as AuthRateLimited).retryAfterSeconds).toBe(1);
    c.advance(1_000);
    expect(() => limiter.check("192.0.2.1")).not.toThrow();
    c.advance(60_000);
    limiter.check("192.0.2.1");
    expect(limiter.size()).toBe(0);
  });

  test("memory stays bounded: at most maxTrackedSources addresses, least recently seen dropped first", () => {
    const limiter = createAuthRateLimiter({ logger: silentLogger, maxFailures: 1, maxTrackedSources: 100 });
    limiter.recordFailure("10.0.0.0");
    for (let i = 1; i < 5000; i++) limiter.recordFailure(`10.0.${i >> 8}.${i & 255}`);
    expect(limiter.size()).toBe(100);
    expect(() => limiter.check("10.0.0.0")).not.toThrow(); // evicted
    expect(() => limiter.check(`10.0.${4999 >> 8}.${4999 & 255}`)).toThrow(AuthRateLimited);
  });

  test("at most maxConcurrent verifications per address run at once; the others wait their turn", async () => {
    const limiter = createAuthRateLimiter({ logger: silentLogger, maxFailures: 5, maxConcurrent: 2 });
    const first = await limiter.acquire("192.0.2.9");
    const second = await limiter.acquire("::ffff:192.0.2.9");
    let third = false;
    const waiting = limiter.acquire("192.0.2.9").then((release) => { third = true; return release; });
    await Bun.sleep(5);
    expect(third).toBe(false);
    (await limiter.acquire("192.0.2.10"))(); // another address has its own slots
    first();
    first(); // releasing twice frees one slot only
    (await waiting)();
    expect(third).toBe(true);
    second();
  });

  test("the block is logged at info with the address", () => {
    const lines: string[] = [];
    const limiter = createAuthRateLimiter({ logger: createLogger({ component: "test", write: (l) => lines.push(l) }), maxFailures: 1 });
    limiter.recordFailure("203.0.113.9");
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: "info", address: "203.0.113.9" });
  });

  test.each([
    ["::ffff:203.0.113.5", "203.0.113.5"],
    ["203.0.113.5", "203.0.113.5"],
    ["2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"],
    ["2001:db8:1:2:bbbb:cccc:dddd:eeee", "2001:db8:1:2::/64"],
    ["2001:0DB8:0001:0002::", "2001:db8:1:2::/64"],
    ["::1", "0:0:0:0::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
  ])("source of %s is %s (an IPv6 host cannot rotate through its /64)", (address, key) => {
    expect(sourceKey(address)).toBe(key);
  });
});

describe("UserAccess with a limiter", () => {
  const store = {} as RelayStore;
  const alice: Identity = { user: "alice", groups: [], subject: "alice", issuer: "https://relay.test", audiences: ["cluster-connect"] };
  const good = "a-token-the-stub-verifier-accepts";
  let verified = 0;
  const verifyUserToken = async (token: string) => {
    verified++;
    if (token === good) return alice;
    throw new Unauthorized("token signature is invalid");
  };
  const bearer = (t: string) => new Headers({ authorization: `Bearer ${t}` });

  test("failures are counted per address; further tokens from it are not even verified; other addresses pass", async () => {
    const access = createUserAccess({ store, verifyUserToken, rateLimiter: createAuthRateLimiter({ logger: silentLogger, maxFailures: 3 }) });
    for (let i = 0; i < 3; i++) await expect(access.authenticate(bearer("bad"), "192.0.2.50")).rejects.toBeInstanceOf(Unauthorized);
    verified = 0;
    await expect(access.authenticate(bearer(good), "192.0.2.50")).rejects.toBeInstanceOf(AuthRateLimited);
    expect(verified).toBe(0);
    expect(await access.authenticate(bearer(good), "192.0.2.51")).toMatchObject({ user: "alice", audiences: ["cluster-connect"] });
  });

  test("successful authentications are never limited, and no address means no limiting", async () => {
    const access = createUserAccess({ store, verifyUserToken, rateLimiter: createAuthRateLimiter({ logger: silentLogger, maxFailures: 1 }) });
    for (let i = 0; i < 50; i++) await access.authenticate(bearer(good), "192.0.2.60");
    for (let i = 0; i < 5; i++) await expect(access.authenticate(bearer("bad"))).rejects.toBeInstanceOf(Unauthorized);
  });

  test("a burst of concurrent bad tokens is cut off: far fewer than the burst are verified", async () => {
    const access = createUserAccess({ store, verifyUserToken: async (token) => {
      await Bun.sleep(2); // a verification that yields, like a JWKS lookup
      return verifyUserToken(token);
    }, rateLimiter: createAuthRateLimiter({ logger: silentLogger, maxFailures: 5 }) });
    verified = 0;
    const outcomes = await Promise.all(Array.from({ length: 200 }, () =>
      access.authenticate(bearer("bad"), "192.0.2.80").then(() => "ok", (e: unknown) => (e instanceof AuthRateLimited ? 429 : 401))));
    expect(outcomes.filter((o) => o === 401).length).toBeLessThanOrEqual(10);
    expect(outcomes.filter((o) => o === 429).length).toBeGreaterThanOrEqual(190);
    expect(verified).toBeLessThanOrEqual(10);
  });

  test("a missing Authorization header is refused but not counted", async () => {
    const access = createUserAccess({ store, verifyUserToken, rateLimiter: createAuthRateLimiter({ logger: silentLogger, maxFailures: 1 }) });
    for (let i = 0; i < 5; i++) await expect(access.authenticate(new Headers(), "192.0.2.70")).rejects.toBeInstanceOf(Unauthorized);
    expect(await access.authenticate(bearer(good), "192.0.2.70")).toMatchObject({ user: "alice" });
  });
});
