// The one authentication path: budget per address, 401 then 429 for failures only, valid credentials always verified, bounded queues.
import { describe, expect, test } from "bun:test";
import type { Identity } from "../../lib/auth/index.ts";
import { TooManyRequests, Unauthorized } from "../../lib/errors/index.ts";
import { createLogger, silentLogger } from "../../lib/observe/index.ts";
import {
  AuthenticationsInFlight, AuthRateLimited, createAuthRateLimiter, limitAuthentication, sourceKey, type AuthRateLimitOptions,
} from "../../lib/relay/auth-rate-limit.ts";
import type { RelayStore } from "../../lib/relay/store/index.ts";
import { createUserAccess } from "../../lib/relay/user-access.ts";

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => { t += ms; } };
}

/** Lets every pending promise callback run (one turn of the event loop); not a timed wait. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

const good = () => Promise.resolve("ok");
const bad = () => Promise.reject(new Unauthorized("token signature is invalid"));

/** What the caller would see: 200, 401, or 429. */
function answer(p: Promise<unknown>): Promise<number> {
  return p.then(() => 200, (e: unknown) => (e instanceof TooManyRequests ? 429 : e instanceof Unauthorized ? 401 : 500));
}

function limiterWith(opts: AuthRateLimitOptions & { now?: () => number; replicas?: () => number } = {}) {
  return createAuthRateLimiter({ logger: silentLogger, ...opts });
}

/** An attempt the test finishes by hand, to hold a slot for as long as it likes. */
function held() {
  let finish!: (ok: boolean) => void;
  let started = false;
  const attempt = () => {
    started = true;
    return new Promise<string>((resolve, reject) => {
      finish = (ok) => (ok ? resolve("ok") : reject(new Unauthorized("token signature is invalid")));
    });
  };
  return { attempt, started: () => started, finish: (ok = true) => finish(ok) };
}

describe("limitAuthentication: who gets 401, who gets 429, who passes", () => {
  const ADDRESS = "203.0.113.7";
  test.each<[string, ("good" | "bad")[], number[]]>([
    ["failures within the budget are 401", ["bad", "bad", "bad"], [401, 401, 401]],
    ["the failure after the budget is 429", ["bad", "bad", "bad", "bad", "bad"], [401, 401, 401, 429, 429]],
    ["valid credentials from a blocked address still pass", ["bad", "bad", "bad", "good", "bad", "good"], [401, 401, 401, 200, 429, 200]],
    ["a success gives no budget back", ["bad", "good", "bad", "bad", "bad"], [401, 200, 401, 401, 429]],
    ["valid credentials never spend budget", ["good", "good", "good", "good", "bad"], [200, 200, 200, 200, 401]],
  ])("%s (budget 3)", async (_what, attempts, expected) => {
    const limiter = limiterWith({ maxFailures: 3, now: clock().now });
    const got: number[] = [];
    for (const a of attempts) got.push(await answer(limitAuthentication(limiter, ADDRESS, a === "good" ? good : bad)));
    expect(got).toEqual(expected);
  });

  test("the 429 of a failure carries Retry-After (one failure refills every window/budget) and keeps the 401 as cause", async () => {
    const limiter = limiterWith({ now: clock().now }); // 20 per 60 s
    for (let i = 0; i < 20; i++) await expect(limitAuthentication(limiter, ADDRESS, bad)).rejects.toBeInstanceOf(Unauthorized);
    const error = (await limitAuthentication(limiter, ADDRESS, bad).catch((e: unknown) => e)) as AuthRateLimited;
    expect(error).toBeInstanceOf(AuthRateLimited);
    expect(error).toMatchObject({ status: 429, reason: "TooManyRequests", retryAfterSeconds: 3 });
    expect(error.message).toBe("too many failed authentications from this address; retry in 3 s");
    expect(error.cause).toBeInstanceOf(Unauthorized);
  });

  test("the budget refills over the window, and a refilled address is forgotten", async () => {
    const c = clock();
    const limiter = limiterWith({ maxFailures: 4, windowSeconds: 60, now: c.now });
    for (let i = 0; i < 4; i++) await limitAuthentication(limiter, ADDRESS, bad).catch(() => {});
    c.advance(14_000); // 0.93 of a failure refilled: still blocked, Retry-After rounds up
    const limited = (await limitAuthentication(limiter, ADDRESS, bad).catch((e: unknown) => e)) as AuthRateLimited;
    expect(limited.retryAfterSeconds).toBe(15); // the failure just spent the refill again
    c.advance(15_000);
    expect(await answer(limitAuthentication(limiter, ADDRESS, bad))).toBe(401);
    c.advance(120_000);
    await limitAuthentication(limiter, ADDRESS, good);
    expect(limiter.size()).toBe(0);
  });

  test("other addresses keep their own budget; an IPv6 /64 and IPv4-mapped forms count as one", async () => {
    const limiter = limiterWith({ maxFailures: 1 });
    await limitAuthentication(limiter, "2001:db8:1:2::1", bad).catch(() => {});
    expect(await answer(limitAuthentication(limiter, "2001:db8:1:2:ffff::9", bad))).toBe(429);
    await limitAuthentication(limiter, "198.51.100.1", bad).catch(() => {});
    expect(await answer(limitAuthentication(limiter, "::ffff:198.51.100.1", bad))).toBe(429);
    expect(await answer(limitAuthentication(limiter, "198.51.100.2", bad))).toBe(401);
  });

  test("no limiter: the attempt just runs", async () => {
    for (let i = 0; i < 5; i++) expect(await answer(limitAuthentication(undefined, ADDRESS, bad))).toBe(401);
  });

  test("no address (a client that reset its connection): one shared budget, never none", async () => {
    const limiter = limiterWith({ maxFailures: 2 });
    expect(await answer(limitAuthentication(limiter, undefined, bad))).toBe(401);
    expect(await answer(limitAuthentication(limiter, undefined, bad))).toBe(401);
    expect(await answer(limitAuthentication(limiter, undefined, bad))).toBe(429);
    expect(await answer(limitAuthentication(limiter, "", bad))).toBe(429);
  });

  test("memory stays bounded: at most maxTrackedSources addresses, least recently seen dropped first", async () => {
    const limiter = limiterWith({ maxFailures: 1, maxTrackedSources: 100 });
    await limitAuthentication(limiter, "10.0.0.0", bad).catch(() => {});
    for (let i = 1; i < 500; i++) await limitAuthentication(limiter, `10.0.${i >> 8}.${i & 255}`, bad).catch(() => {});
    expect(limiter.size()).toBe(100);
    expect(await answer(limitAuthentication(limiter, "10.0.0.0", bad))).toBe(401); // evicted
    expect(await answer(limitAuthentication(limiter, `10.0.${499 >> 8}.${499 & 255}`, bad))).toBe(429);
  });

  test("the block is logged once at info with the address", async () => {
    const lines: string[] = [];
    const limiter = createAuthRateLimiter({ logger: createLogger({ component: "test", write: (l) => lines.push(l) }), maxFailures: 1 });
    for (let i = 0; i < 3; i++) await limitAuthentication(limiter, "203.0.113.9", bad).catch(() => {});
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: "info", address: "203.0.113.9" });
  });

  test.each([
    [0], [1.5], [-1],
  ])("options must be positive integers: maxQueued %p is a TypeError", (maxQueued) => {
    expect(() => limiterWith({ maxQueued })).toThrow(TypeError);
  });
});

describe("limitAuthentication: concurrency and queue bounds", () => {
  const ADDRESS = "192.0.2.9";

  test("at most maxConcurrent run at once, then maxQueued wait in order; beyond that 429 about attempts in flight", async () => {
    const limiter = limiterWith({ maxFailures: 5, maxConcurrent: 2, maxQueued: 3 });
    const attempts = Array.from({ length: 5 }, () => held());
    const results = attempts.map((a) => answer(limitAuthentication(limiter, ADDRESS, a.attempt)));
    await settle();
    expect(attempts.map((a) => a.started())).toEqual([true, true, false, false, false]);

    const overflow = (await limitAuthentication(limiter, "::ffff:192.0.2.9", good).catch((e: unknown) => e)) as AuthenticationsInFlight;
    expect(overflow).toBeInstanceOf(AuthenticationsInFlight);
    expect(overflow).toMatchObject({ status: 429, retryAfterSeconds: 1 });
    expect(overflow.message).toBe("too many authentications in flight from this address (2 being verified, 3 waiting); retry in 1 s");
    expect(overflow.message).not.toContain("failed");
    expect(await answer(limitAuthentication(limiter, "192.0.2.10", good))).toBe(200); // another address has its own slots

    attempts[0]!.finish();
    await settle();
    expect(attempts.map((a) => a.started())).toEqual([true, true, true, false, false]);
    for (const a of attempts.slice(1)) {
      a.finish();
      await settle();
    }
    expect(await Promise.all(results)).toEqual([200, 200, 200, 200, 200]);
  });

  test("once the budget is spent, one attempt at a time; valid ones among them pass, failures get 429", async () => {
    const limiter = limiterWith({ maxFailures: 2, maxConcurrent: 4 });
    for (let i = 0; i < 2; i++) await limitAuthentication(limiter, ADDRESS, bad).catch(() => {});
    const attempts = Array.from({ length: 3 }, () => held());
    const results = attempts.map((a) => answer(limitAuthentication(limiter, ADDRESS, a.attempt)));
    await settle();
    expect(attempts.map((a) => a.started())).toEqual([true, false, false]);
    attempts[0]!.finish(false);
    await settle();
    expect(attempts.map((a) => a.started())).toEqual([true, true, false]);
    attempts[1]!.finish(true);
    await settle();
    attempts[2]!.finish(false);
    expect(await Promise.all(results)).toEqual([429, 200, 429]);
  });

  test("a full queue of a blocked address is 429 with Retry-After, as a failure would be", async () => {
    const limiter = limiterWith({ maxFailures: 1, maxQueued: 2, now: clock().now });
    await limitAuthentication(limiter, ADDRESS, bad).catch(() => {});
    const attempts = Array.from({ length: 3 }, () => held());
    const results = attempts.map((a) => answer(limitAuthentication(limiter, ADDRESS, a.attempt)));
    const refused = (await limitAuthentication(limiter, ADDRESS, good).catch((e: unknown) => e)) as AuthRateLimited;
    expect(refused).toBeInstanceOf(AuthRateLimited);
    expect(refused.retryAfterSeconds).toBe(60);
    for (const a of attempts) {
      await settle();
      a.finish();
    }
    expect(await Promise.all(results)).toEqual([200, 200, 200]);
  });

  test("when the budget refills, waiting attempts run at full concurrency again", async () => {
    const c = clock();
    const limiter = limiterWith({ maxFailures: 1, maxConcurrent: 3, windowSeconds: 60, now: c.now });
    await limitAuthentication(limiter, ADDRESS, bad).catch(() => {});
    const attempts = Array.from({ length: 4 }, () => held());
    const results = attempts.map((a) => answer(limitAuthentication(limiter, ADDRESS, a.attempt)));
    await settle();
    expect(attempts.map((a) => a.started())).toEqual([true, false, false, false]);
    c.advance(60_000);
    attempts[0]!.finish();
    await settle();
    expect(attempts.map((a) => a.started())).toEqual([true, true, true, true]);
    for (const a of attempts.slice(1)) a.finish();
    expect(await Promise.all(results)).toEqual([200, 200, 200, 200]);
  });

  test("a waiting client that hangs up gives its place up, and its attempt never runs", async () => {
    const limiter = limiterWith({ maxConcurrent: 1, maxQueued: 1 });
    const first = held();
    const running = limitAuthentication(limiter, ADDRESS, first.attempt);
    const hangUp = new AbortController();
    const gone = held();
    const waiting = limitAuthentication(limiter, ADDRESS, gone.attempt, hangUp.signal).catch((e: unknown) => e);
    await settle();
    expect(await answer(limitAuthentication(limiter, ADDRESS, good))).toBe(429); // the queue of one is full
    hangUp.abort();
    expect(await waiting).toMatchObject({ code: "ERR_STREAM_PREMATURE_CLOSE" });
    const next = held();
    const after = answer(limitAuthentication(limiter, ADDRESS, next.attempt));
    first.finish();
    await running;
    await settle();
    expect(gone.started()).toBe(false);
    next.finish();
    expect(await after).toBe(200);
    const already = new AbortController();
    already.abort();
    expect(await limitAuthentication(limiter, ADDRESS, good, already.signal).catch((e: unknown) => e)).toMatchObject({ code: "ERR_STREAM_PREMATURE_CLOSE" });
  });

  test("errors other than Unauthorized pass through and spend nothing", async () => {
    const limiter = limiterWith({ maxFailures: 1 });
    for (let i = 0; i < 3; i++) {
      await expect(limitAuthentication(limiter, ADDRESS, () => Promise.reject(new Error("store down")))).rejects.toThrow("store down");
    }
    expect(await answer(limitAuthentication(limiter, ADDRESS, bad))).toBe(401);
  });
});

describe("UserAccess goes through limitAuthentication", () => {
  const store = {} as RelayStore;
  const alice: Identity = { user: "alice", groups: [], subject: "alice", issuer: "https://relay.test", audiences: ["cluster-connect"] };
  const goodToken = "a-token-the-stub-verifier-accepts";
  let verified = 0;
  const verifyUserToken = async (token: string) => {
    verified++;
    if (token === goodToken) return alice;
    throw new Unauthorized("token signature is invalid");
  };
  const bearer = (t: string) => new Headers({ authorization: `Bearer ${t}` });

  test("a valid token from an address that others' bad tokens blocked is verified and passes; the bad ones get 429", async () => {
    const access = createUserAccess({ store, verifyUserToken, rateLimiter: limiterWith({ maxFailures: 3 }) });
    for (let i = 0; i < 3; i++) await expect(access.authenticate(bearer("bad"), "192.0.2.50")).rejects.toBeInstanceOf(Unauthorized);
    await expect(access.authenticate(bearer("bad"), "192.0.2.50")).rejects.toBeInstanceOf(AuthRateLimited);
    verified = 0;
    expect(await access.authenticate(bearer(goodToken), "192.0.2.50")).toMatchObject({ user: "alice" });
    expect(verified).toBe(1);
    expect(await access.authenticate(bearer(goodToken), "192.0.2.51")).toMatchObject({ user: "alice", audiences: ["cluster-connect"] });
  });

  test("a token that verified recently passes without waiting behind others' bad tokens", async () => {
    const rateLimiter = limiterWith({ maxFailures: 1, maxQueued: 1 });
    const access = createUserAccess({ store, verifyUserToken, rateLimiter, cachedIdentity: (t) => (t === goodToken ? alice : undefined) });
    await expect(access.authenticate(bearer("bad"), "192.0.2.60")).rejects.toBeInstanceOf(Unauthorized);
    // The blocked address's one slot and its queue are taken by attempts that never finish.
    const stuck = [held(), held()];
    const blocked = stuck.map((h) => answer(limitAuthentication(rateLimiter, "192.0.2.60", h.attempt)));
    await settle();
    verified = 0;
    expect(await access.authenticate(bearer(goodToken), "192.0.2.60")).toMatchObject({ user: "alice" });
    expect(verified).toBe(0);
    stuck[0]!.finish(false);
    await settle();
    expect(stuck[1]!.started()).toBe(true);
    stuck[1]!.finish(false);
    expect(await Promise.all(blocked)).toEqual([429, 429]);
  });

  test("a burst of 200 concurrent bad tokens: 401 within the budget, the rest 429, one verification at a time once blocked", async () => {
    let running = 0;
    let mostAfterBlock = 0;
    let failures = 0;
    const access = createUserAccess({
      store,
      verifyUserToken: async (token) => {
        running++;
        if (failures >= 5) mostAfterBlock = Math.max(mostAfterBlock, running);
        await settle(); // a verification that yields, like a JWKS lookup
        running--;
        failures++;
        return verifyUserToken(token);
      },
      rateLimiter: limiterWith({ maxFailures: 5 }),
    });
    verified = 0;
    const outcomes = await Promise.all(Array.from({ length: 200 }, () => answer(access.authenticate(bearer("bad"), "192.0.2.80"))));
    expect(outcomes.filter((o) => o === 401)).toHaveLength(5);
    expect(outcomes.filter((o) => o === 429)).toHaveLength(195);
    expect(verified).toBeLessThanOrEqual(5 + 64); // the running ones and a full queue: the cost is bounded
    expect(mostAfterBlock).toBe(1);
  });

  test("a missing Authorization header is refused but not counted", async () => {
    const access = createUserAccess({ store, verifyUserToken, rateLimiter: limiterWith({ maxFailures: 1 }) });
    for (let i = 0; i < 5; i++) await expect(access.authenticate(new Headers(), "192.0.2.70")).rejects.toBeInstanceOf(Unauthorized);
    expect(await answer(access.authenticate(bearer("bad"), "192.0.2.70"))).toBe(401);
  });
});

describe("sourceKey", () => {
  test.each([
    ["::ffff:203.0.113.5", "203.0.113.5"],
    ["::FFFF:CB00:7105", "203.0.113.5"],
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

describe("the budget shared out among relay replicas", () => {
  const ADDRESS = "198.51.100.9";

  test("an attacker spreading failures over three replicas gets no more 401s in all than one relay gives (budget 20)", async () => {
    const time = clock();
    const replicas = [0, 1, 2].map(() => limiterWith({ maxFailures: 20, now: time.now, replicas: () => 3 }));
    const answers: number[] = [];
    for (let i = 0; i < 60; i++) answers.push(await answer(limitAuthentication(replicas[i % 3], ADDRESS, bad)));
    const unauthorized = answers.filter((a) => a === 401).length;
    expect(unauthorized).toBe(18); // floor(20 / 3) on each
    expect(unauthorized).toBeLessThanOrEqual(20);
    expect(answers.slice(18)).toEqual(Array(42).fill(429));
  });

  test("valid credentials still pass on every replica once the address is blocked", async () => {
    const time = clock();
    const replicas = [0, 1, 2].map(() => limiterWith({ maxFailures: 20, now: time.now, replicas: () => 3 }));
    for (let i = 0; i < 30; i++) await answer(limitAuthentication(replicas[i % 3], ADDRESS, bad));
    for (const limiter of replicas) expect(await answer(limitAuthentication(limiter, ADDRESS, good))).toBe(200);
  });

  test("the share follows the number of live replicas, and never falls below one failure", async () => {
    let live = 1;
    const limiter = limiterWith({ maxFailures: 4, now: clock().now, replicas: () => live });
    live = 2;
    const two = [];
    for (let i = 0; i < 3; i++) two.push(await answer(limitAuthentication(limiter, "192.0.2.1", bad)));
    expect(two).toEqual([401, 401, 429]);
    live = 10;
    const many = [];
    for (let i = 0; i < 2; i++) many.push(await answer(limitAuthentication(limiter, "192.0.2.2", bad)));
    expect(many).toEqual([401, 429]);
  });
});
