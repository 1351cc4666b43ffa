// Cluster registration and the one-time enrollment tokens its agent trades for a registered key.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, setSystemTime, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JWK } from "jose";
import { generateSigningKeyPair, hashSecret } from "../../lib/auth/index.ts";
import { ArcError, BadRequest, Conflict, Unauthorized } from "../../lib/errors/index.ts";
import {
  addCluster, createEnrollmentToken, DEFAULT_ENROLLMENT_TTL_SECONDS, enrollAgent,
} from "../../lib/relay/enrollment.ts";
import { openSqliteStore, type RelayStore } from "../../lib/relay/store/index.ts";

let dir: string;
let store: RelayStore;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-enrollment-"));
  store = await openSqliteStore(join(dir, "data"));
});

afterAll(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  for (const c of await store.listClusters()) await store.removeCluster(c.name);
});

afterEach(() => {
  setSystemTime();
});

async function thrown(fn: () => Promise<unknown>): Promise<ArcError> {
  try {
    await fn();
  } catch (error) {
    return error as ArcError;
  }
  throw new Error("expected a throw, got none");
}

async function publicKey(): Promise<JWK> {
  return (await generateSigningKeyPair("EdDSA")).publicJwk;
}

describe("addCluster", () => {
  test("registers the cluster and returns a one-time arcenroll_ token for it", async () => {
    const before = Date.now();
    const result = await addCluster(store, "prod");
    expect(result.cluster).toBe("prod");
    expect(result.token).toMatch(/^arcenroll_[A-Za-z0-9_-]{43}$/);
    const ttlMs = DEFAULT_ENROLLMENT_TTL_SECONDS * 1000;
    expect(result.expiresAt.getTime()).toBeGreaterThanOrEqual(before + ttlMs);
    expect(result.expiresAt.getTime()).toBeLessThanOrEqual(Date.now() + ttlMs);
    const record = await store.getCluster("prod");
    expect(record?.name).toBe("prod");
    expect(record?.agentKey).toBeUndefined();
  });

  test("two clusters get different tokens; the secret itself is never stored", async () => {
    const a = await addCluster(store, "a");
    const b = await addCluster(store, "b");
    expect(a.token).not.toBe(b.token);
    // Only the hash is a key into the store: consuming by the raw secret finds nothing.
    expect(await store.consumeEnrollmentToken(a.token, new Date())).toBeUndefined();
    expect((await store.consumeEnrollmentToken(hashSecret(a.token), new Date()))?.cluster).toBe("a");
  });

  test("a custom ttl sets the expiry", async () => {
    const before = Date.now();
    const { expiresAt } = await addCluster(store, "prod", 600);
    expect(expiresAt.getTime() - before).toBeGreaterThanOrEqual(600_000);
    expect(expiresAt.getTime() - before).toBeLessThan(600_000 + 5_000);
  });

  test("the token works until its expiry and not after", async () => {
    const start = new Date("2031-05-01T10:00:00.000Z");
    setSystemTime(start);
    const early = await addCluster(store, "early", 120);
    const late = await addCluster(store, "late", 120);
    setSystemTime(new Date(start.getTime() + 119_000));
    await enrollAgent(store, { cluster: "early", token: early.token, publicKey: await publicKey() });
    expect((await store.getCluster("early"))?.agentKey).toBeDefined();
    setSystemTime(new Date(start.getTime() + 121_000));
    const error = await thrown(async () => enrollAgent(store, { cluster: "late", token: late.token, publicKey: await publicKey() }));
    expect(error).toBeInstanceOf(Unauthorized);
    expect(error.message).toContain("expired");
  });

  test("an existing name is a Conflict", async () => {
    await addCluster(store, "prod");
    expect(await thrown(() => addCluster(store, "prod"))).toBeInstanceOf(Conflict);
  });

  test.each(["PROD", "", "a/b", "..", "\u0440rod", "x".repeat(64)])("invalid name %p: BadRequest, nothing registered", async (name) => {
    expect(await thrown(() => addCluster(store, name))).toBeInstanceOf(BadRequest);
    expect(await store.listClusters()).toEqual([]);
  });

  test.each([0, 59, -60, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 7 * 24 * 3600 + 1])(
    "invalid ttl %p: BadRequest naming the allowed range",
    async (ttl) => {
      const error = await thrown(() => createEnrollmentTokenFor("prod", ttl));
      expect(error).toBeInstanceOf(BadRequest);
      expect(error.status).toBe(400);
      expect(error.message).toContain("60s to 7 days");
    },
  );

  test.each([60, 7 * 24 * 3600])("ttl %p (a bound) is accepted: the token expires that long from now and enrolls", async (ttl) => {
    const start = new Date("2031-05-01T10:00:00.000Z");
    setSystemTime(start);
    await store.addCluster("prod");
    const { token, expiresAt } = await createEnrollmentToken(store, "prod", ttl);
    expect(expiresAt).toEqual(new Date(start.getTime() + ttl * 1000));
    expect(await enrollAgent(store, { cluster: "prod", token, publicKey: await publicKey() })).toBe("prod");
  });

  // BUG (lib/relay/enrollment.ts addCluster): the cluster is inserted before the ttl is checked,
  // so `arcrelay cluster add prod --ttl 10s` fails with BadRequest but leaves "prod" registered
  // with no token; re-running with a valid ttl then fails with Conflict "already exists".
  test("an invalid ttl registers nothing, so the same command can be retried with a valid ttl", async () => {
    expect(await thrown(() => addCluster(store, "prod", 10))).toBeInstanceOf(BadRequest);
    expect(await store.getCluster("prod")).toBeUndefined();
    await addCluster(store, "prod", 600);
  });

  async function createEnrollmentTokenFor(name: string, ttl: number) {
    if (!(await store.getCluster(name))) await store.addCluster(name);
    return createEnrollmentToken(store, name, ttl);
  }
});

describe("createEnrollmentToken", () => {
  test("for a cluster that is not registered: NotFound naming arcrelay cluster add", async () => {
    const error = await thrown(() => createEnrollmentToken(store, "ghost"));
    expect(error.status).toBe(404);
    expect(error.message).toContain("arcrelay cluster add ghost");
  });

  test("a new token for a registered cluster replaces a lost one; both old and new are usable once", async () => {
    const first = await addCluster(store, "prod");
    const second = await createEnrollmentToken(store, "prod");
    expect(second.token).not.toBe(first.token);
    await enrollAgent(store, { cluster: "prod", token: second.token, publicKey: await publicKey() });
    await enrollAgent(store, { cluster: "prod", token: first.token, publicKey: await publicKey() });
    expect(await thrown(async () => enrollAgent(store, { cluster: "prod", token: second.token, publicKey: await publicKey() })))
      .toBeInstanceOf(Unauthorized);
  });
});

describe("enrollAgent", () => {
  test("stores the public key, with private members and key_ops stripped", async () => {
    const { token } = await addCluster(store, "prod");
    const key = { ...(await publicKey()), key_ops: ["verify"] };
    await enrollAgent(store, { cluster: "prod", token, publicKey: key });
    const stored = (await store.getCluster("prod"))?.agentKey;
    expect(stored).toMatchObject({ kty: "OKP", crv: "Ed25519", x: key.x });
    expect(stored).not.toHaveProperty("key_ops");
  });

  test("re-enrolling with a fresh token replaces the key", async () => {
    const { token } = await addCluster(store, "prod");
    await enrollAgent(store, { cluster: "prod", token, publicKey: await publicKey() });
    const next = await createEnrollmentToken(store, "prod");
    const replacement = await publicKey();
    await enrollAgent(store, { cluster: "prod", token: next.token, publicKey: replacement });
    expect((await store.getCluster("prod"))?.agentKey?.x).toBe(replacement.x);
  });

  test("a token of cluster A for cluster B (a mistyped --cluster, registered or not) is a BadRequest, names A, and stays valid for A", async () => {
    const a = await addCluster(store, "cluster-a");
    await addCluster(store, "cluster-b");
    for (const wrong of ["cluster-b", "cluster-c"]) {
      const error = await thrown(async () => enrollAgent(store, { cluster: wrong, token: a.token, publicKey: await publicKey() }));
      expect(error).toBeInstanceOf(BadRequest);
      expect(error.message).toBe(`this enrollment token is for cluster "cluster-a", not "${wrong}": run the agent with --cluster cluster-a; the token was not used and is still valid`);
    }
    expect(await enrollAgent(store, { cluster: "cluster-a", token: a.token, publicKey: await publicKey() })).toBe("cluster-a");
  });

  test("concurrent use of one token: exactly one enrollment wins", async () => {
    const { token } = await addCluster(store, "prod");
    const keys = await Promise.all([publicKey(), publicKey(), publicKey(), publicKey()]);
    const results = await Promise.allSettled(keys.map((k) => enrollAgent(store, { cluster: "prod", token, publicKey: k })));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const r of results) if (r.status === "rejected") expect(r.reason).toBeInstanceOf(Unauthorized);
  });

  test("a token over 512 characters is BadRequest before the store is asked", async () => {
    await addCluster(store, "prod");
    const error = await thrown(async () => enrollAgent(store, { cluster: "prod", token: "x".repeat(513), publicKey: await publicKey() }));
    expect(error).toBeInstanceOf(BadRequest);
  });

  test("a bad key does not consume the token", async () => {
    const { token } = await addCluster(store, "prod");
    const privateJwk = (await generateSigningKeyPair("EdDSA")).privateJwk;
    expect(await thrown(() => enrollAgent(store, { cluster: "prod", token, publicKey: privateJwk }))).toBeInstanceOf(BadRequest);
    await enrollAgent(store, { cluster: "prod", token, publicKey: await publicKey() });
  });
});
