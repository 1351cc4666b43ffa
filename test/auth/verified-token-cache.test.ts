import { expect, test } from "bun:test";
import { createVerifiedTokenCache } from "../../lib/auth/verified-token-cache.ts";

test("an entry lives until the token's expiry or one minute, whichever comes first", () => {
  let now = 1_000_000;
  const cache = createVerifiedTokenCache<string>(() => now);
  cache.set("short", "alice", now + 5_000);
  cache.set("long", "bob", now + 3_600_000);
  now += 4_999;
  expect(cache.get("short")).toBe("alice");
  now += 1;
  expect(cache.get("short")).toBeUndefined();
  now += 54_999;
  expect(cache.get("long")).toBe("bob");
  now += 1;
  expect(cache.get("long")).toBeUndefined();
});

test("an already expired token is never cached", () => {
  const cache = createVerifiedTokenCache<string>(() => 1000);
  cache.set("old", "alice", 999);
  expect(cache.get("old")).toBeUndefined();
});

test("the cache is bounded: the oldest entry makes room", () => {
  const cache = createVerifiedTokenCache<number>(() => 0);
  for (let i = 0; i <= 10_000; i++) cache.set(`t${i}`, i, 60_000);
  expect(cache.get("t0")).toBeUndefined();
  expect(cache.get("t1")).toBe(1);
  expect(cache.get("t10000")).toBe(10_000);
});
