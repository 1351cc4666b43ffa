// The SQLite store: the shared contract, plus what only a file on disk can show.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteStore } from "../../../lib/relay/store/index.ts";
import type { RelayStore } from "../../../lib/relay/store/index.ts";
import { SQLITE_MIGRATIONS } from "../../../lib/relay/store/schema-sqlite.ts";
import { within } from "../../support/wait-for.ts";
import { describeStoreContract } from "./store-contract.ts";

const WORKER = join(import.meta.dir, "store-worker.ts");
const HOUR = 3_600_000;

async function makeTempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), "arc-sqlite-store-"));
}

describeStoreContract("sqlite", async () => {
  const dir = await makeTempDir();
  const store = await openSqliteStore(join(dir, "data"));
  const others: RelayStore[] = [];
  return {
    store,
    async openAnother() {
      const other = await openSqliteStore(join(dir, "data"));
      others.push(other);
      return other;
    },
    async cleanup() {
      await Promise.all(others.map((o) => o.close()));
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe("sqlite store on disk", () => {
  let root: string;
  let dataDir: string;
  const open: RelayStore[] = [];
  const openStore = async () => {
    const store = await openSqliteStore(dataDir);
    open.push(store);
    return store;
  };

  beforeEach(async () => {
    root = await makeTempDir();
    dataDir = join(root, "nested", "data");
  });
  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
    await rm(root, { recursive: true, force: true });
  });

  test("creates the data dir 0700 and relay.db (and its WAL) 0600", async () => {
    const store = await openStore();
    await store.addCluster("prod");
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(dataDir, "relay.db"))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dataDir, "relay.db-wal"))).mode & 0o777).toBe(0o600);
  });

  test("data survives close and reopen", async () => {
    const first = await openSqliteStore(dataDir);
    await first.addCluster("prod");
    await first.setAgentKey("prod", { kty: "OKP", crv: "Ed25519", x: "abc" });
    const grant = await first.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-admin" });
    await first.setSetting("issuer.url", "https://relay.example");
    await first.close();

    const second = await openStore();
    expect((await second.getCluster("prod"))?.agentKey).toEqual({ kty: "OKP", crv: "Ed25519", x: "abc" });
    expect(await second.listGrants()).toEqual([grant]);
    expect(await second.getSetting("issuer.url")).toBe("https://relay.example");
  });

  test("records schema_version 4 and reopens without migrating again", async () => {
    const first = await openSqliteStore(dataDir);
    expect(await first.getSetting("schema_version")).toBe("4");
    await first.close();
    expect(await (await openStore()).getSetting("schema_version")).toBe("4");
  });

  test("a database written by the previous relay (schema 1) is brought to the latest schema on open, its data kept", async () => {
    const { Database } = await import("bun:sqlite");
    const { mkdir } = await import("node:fs/promises");
    const { migrateSqliteSchema, SQLITE_MIGRATIONS } = await import("../../../lib/relay/store/schema-sqlite.ts");
    await mkdir(dataDir, { recursive: true });
    const old = new Database(join(dataDir, "relay.db"), { create: true });
    migrateSqliteSchema(old, SQLITE_MIGRATIONS.slice(0, 1));
    old.run("INSERT INTO grants (id, principal, cluster, role, created_at) VALUES ('g1', 'user:alice', 'prod', 'cluster-user', 1)");
    old.close();
    const store = await openSqliteStore(dataDir);
    expect(await store.getSetting("schema_version")).toBe("4");
    expect((await store.listGrantsFor({ user: "alice", groups: [] }, "prod")).map((g) => g.id)).toEqual(["g1"]);
    await store.close();
  });

  test("refuses a database written by a newer relay that this one cannot run on", async () => {
    const first = await openSqliteStore(dataDir);
    await first.setSetting("schema_version", "99");
    await first.setSetting("schema_readable_from", "98");
    await first.close();
    await expect(openSqliteStore(dataDir)).rejects.toThrow(
      `database schema version 99 is newer than this relay supports (${SQLITE_MIGRATIONS.length}): upgrade arcrelay (relays of schema 98 or later run on it); ` +
      "to roll a relay back across this change, restore the database from a backup taken before it",
    );
  });

  test("runs on a newer relay's database whose newer migrations it may ignore (a rollback), and leaves its version alone", async () => {
    const first = await openSqliteStore(dataDir);
    await first.addCluster("kept");
    await first.setSetting("schema_version", String(SQLITE_MIGRATIONS.length + 1));
    await first.setSetting("schema_readable_from", String(SQLITE_MIGRATIONS.length));
    await first.close();
    const rolledBack = await openSqliteStore(dataDir);
    expect((await rolledBack.getCluster("kept"))?.name).toBe("kept");
    expect(await rolledBack.getSetting("schema_version")).toBe(String(SQLITE_MIGRATIONS.length + 1));
    await rolledBack.close();
  });

  test("two stores on one data dir (CLI beside a running relay) see each other's writes", async () => {
    const serve = await openStore();
    const cli = await openStore();
    await cli.addCluster("prod");
    await cli.addEnrollmentToken({ cluster: "prod", secretHash: "h1", expiresAt: new Date(Date.now() + HOUR) });
    expect((await serve.getCluster("prod"))?.name).toBe("prod");
    expect((await serve.consumeEnrollmentToken("h1", new Date()))?.cluster).toBe("prod");
    await serve.recordAgentSeen("prod", { agentVersion: "0.1.0", at: new Date(), connected: true });
    expect((await cli.getCluster("prod"))?.agentVersion).toBe("0.1.0");
    expect(await cli.consumeEnrollmentToken("h1", new Date())).toBeUndefined();
    await expect(cli.addCluster("prod")).rejects.toThrow('cluster "prod" already exists');
  });

  test("a token consumed at once by two stores in one process succeeds once", async () => {
    const a = await openStore();
    const b = await openStore();
    await a.addCluster("prod");
    await a.addEnrollmentToken({ cluster: "prod", secretHash: "h2", expiresAt: new Date(Date.now() + HOUR) });
    const results = await Promise.all([a.consumeEnrollmentToken("h2", new Date()), b.consumeEnrollmentToken("h2", new Date())]);
    expect(results.filter((r) => r !== undefined)).toHaveLength(1);
  });

  test("a token raced for by several processes is consumed exactly once", async () => {
    const store = await openStore();
    await store.addCluster("prod");
    await store.addEnrollmentToken({ cluster: "prod", secretHash: "h3", expiresAt: new Date(Date.now() + HOUR) });
    const results = await runWorkers(6, [dataDir, "h3"]);
    expect(results.every((r) => r.opened)).toBe(true);
    expect(results.filter((r) => r.consumed)).toHaveLength(1);
    expect(await store.consumeEnrollmentToken("h3", new Date())).toBeUndefined();
  }, 20_000);

  test("several processes creating the same fresh database at once all succeed", async () => {
    const results = await runWorkers(6, [dataDir]);
    expect(results.every((r) => r.opened)).toBe(true);
    expect(await (await openStore()).getSetting("schema_version")).toBe("4");
  }, 20_000);

  test("consuming a token also deletes other expired tokens", async () => {
    const store = await openStore();
    await store.addCluster("prod");
    const now = new Date("2030-01-01T00:00:00Z");
    await store.addEnrollmentToken({ cluster: "prod", secretHash: "old", expiresAt: new Date(now.getTime() - 1) });
    await store.addEnrollmentToken({ cluster: "prod", secretHash: "new", expiresAt: new Date(now.getTime() + HOUR) });
    await store.consumeEnrollmentToken("unrelated", now);
    expect(await store.consumeEnrollmentToken("old", new Date(now.getTime() - HOUR))).toBeUndefined();
    expect((await store.consumeEnrollmentToken("new", now))?.secretHash).toBe("new");
  });
});

/** Starts `count` workers that all act at the same moment; returns each one's report. */
async function runWorkers(count: number, args: [dataDir: string, secretHash?: string]) {
  const [dir, hash] = args;
  let ready = 0;
  let allReady!: () => void;
  const started = new Promise<void>((resolve) => { allReady = resolve; });
  const children = Array.from({ length: count }, () =>
    Bun.spawn([process.execPath, WORKER, dir, ...(hash ? [hash] : [])], {
      stdout: "pipe", stderr: "pipe", ipc: () => { if (++ready === count) allReady(); },
    }),
  );
  const reports = children.map(async (child) => {
    const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    if (code !== 0) throw new Error(`store worker exited ${code}: ${err.trim()}`);
    return JSON.parse(out) as { opened: boolean; consumed?: boolean };
  });
  // A worker that dies before it is ready fails the wait with its own error.
  await Promise.race([within("every store worker to start", started, 15_000), Promise.all(reports)]);
  for (const child of children) child.send("go");
  return Promise.all(reports);
}
