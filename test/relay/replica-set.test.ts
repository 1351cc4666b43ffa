// Where a cluster's tunnel is held, as one replica sees it: cached, and a replica that could not be reached is tried again.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../lib/observe/index.ts";
import { startChangeFeed, type ChangeFeed } from "../../lib/relay/change-feed.ts";
import { UNREACHABLE_BACKOFF_MS, createReplicaSet } from "../../lib/relay/replica-set.ts";
import { openSqliteStore, type RelayStore } from "../../lib/relay/store/index.ts";

let dir: string;
let store: RelayStore;
let feed: ChangeFeed;
let t = Date.now();
const now = () => t;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-replica-set-"));
  store = await openSqliteStore(dir);
  feed = await startChangeFeed(store, silentLogger);
  await store.recordReplica({ replicaId: "r1", internalUrl: "https://10.0.0.1:8444", certificatePem: "pem-r1", expiresAt: new Date(t + 60_000) });
  await store.recordPresence({ cluster: "prod", replicaId: "r1", expiresAt: new Date(t + 60_000) });
});
afterEach(async () => {
  await feed.stop();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

test("a holder found unreachable is left alone for a while, then tried again (a busy replica is not shunned for good)", async () => {
  const replicas = await createReplicaSet({ store, feed, replicaId: "r2", logger: silentLogger, now });
  const holder = (await replicas.holderOf("prod"))!;
  expect(holder.replicaId).toBe("r1");
  replicas.unreachable(holder);
  expect(await replicas.holderOf("prod")).toBeUndefined();
  t += UNREACHABLE_BACKOFF_MS + 1;
  expect((await replicas.holderOf("prod"))?.replicaId).toBe("r1");
});

test("this replica is never its own remote holder, and a holder past its expiry is not named", async () => {
  const self = await createReplicaSet({ store, feed, replicaId: "r1", logger: silentLogger, now });
  expect(await self.holderOf("prod")).toBeUndefined();
  const other = await createReplicaSet({ store, feed, replicaId: "r2", logger: silentLogger, now });
  t += 61_000;
  expect(await other.holderOf("prod")).toBeUndefined();
  t -= 61_000;
});

test("the shared secret is made once and the same for every replica", async () => {
  const [a, b] = await Promise.all([
    createReplicaSet({ store, feed, replicaId: "r2", logger: silentLogger, now }),
    createReplicaSet({ store, feed, replicaId: "r3", logger: silentLogger, now }),
  ]);
  expect(a.secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(b.secret).toBe(a.secret);
});
