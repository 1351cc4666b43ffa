// The PostgreSQL store against a real PostgreSQL: the same contract as SQLite, and what only replicas sharing a database can show.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { SQL } from "bun";
import net from "node:net";
import { openPostgresStore } from "../../../lib/relay/store/postgres-store.ts";
import { startPostgres, type RunningPostgres } from "../../support/postgres.ts";
import { describeStoreContract } from "./store-contract.ts";
import type { StoreChange } from "../../../lib/relay/store/index.ts";
import { waitFor } from "../../support/wait-for.ts";

setDefaultTimeout(30_000);
let pg: RunningPostgres;

beforeAll(async () => {
  pg = await startPostgres();
}, 60_000);
afterAll(() => pg?.stop());

describeStoreContract("postgres", async () => {
  const db = await pg.createDatabase();
  const store = await openPostgresStore(db.url);
  const others: Awaited<ReturnType<typeof openPostgresStore>>[] = [];
  return {
    store,
    async openAnother() {
      const other = await openPostgresStore(db.url);
      others.push(other);
      return other;
    },
    async cleanup() {
      await Promise.all(others.map((o) => o.close()));
      await store.close();
      await db.drop();
    },
  };
});

describe("postgres store shared by replicas", () => {
  test("several replicas starting at once on a fresh database migrate it once and all open", async () => {
    const db = await pg.createDatabase();
    const stores = await Promise.all(Array.from({ length: 6 }, () => openPostgresStore(db.url)));
    try {
      expect(await stores[0]!.getSetting("schema_version")).toBe("5");
      await stores[1]!.addCluster("shared");
      expect((await stores[5]!.getCluster("shared"))?.name).toBe("shared");
    } finally {
      await Promise.all(stores.map((s) => s.close()));
      await db.drop();
    }
  });

  test("an enrollment token raced for by replicas is consumed exactly once", async () => {
    const db = await pg.createDatabase();
    const stores = await Promise.all(Array.from({ length: 4 }, () => openPostgresStore(db.url)));
    try {
      await stores[0]!.addCluster("edge");
      await stores[0]!.addEnrollmentToken({ cluster: "edge", secretHash: "h".repeat(64), expiresAt: new Date(Date.now() + 60_000) });
      const results = await Promise.all(stores.flatMap((s) => [s, s]).map((s) => s.consumeEnrollmentToken("h".repeat(64), new Date())));
      expect(results.filter((r) => r !== undefined)).toHaveLength(1);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
      await db.drop();
    }
  });

  test("TRUNCATE, which fires no row trigger, still reaches every replica's change feed", async () => {
    const db = await pg.createDatabase();
    const [writer, watcher] = await Promise.all([openPostgresStore(db.url), openPostgresStore(db.url)]);
    const seen: StoreChange[] = [];
    const stop = await watcher.watchChanges((change) => seen.push(change));
    try {
      const sql = new SQL(db.url, { max: 1 });
      await sql`TRUNCATE grants`;
      await sql`TRUNCATE clusters CASCADE`;
      await sql.close();
      await waitFor("both truncations told", () => seen.some((c) => c.table === "grants") && seen.some((c) => c.table === "*"));
    } finally {
      await stop();
      await Promise.all([writer.close(), watcher.close()]);
      await db.drop();
    }
  });

  test("a LISTEN connection that is lost is replaced, and listeners are told to resync what was committed meanwhile", async () => {
    const db = await pg.createDatabase();
    const [writer, watcher] = await Promise.all([openPostgresStore(db.url), openPostgresStore(db.url)]);
    const seen: StoreChange[] = [];
    const stop = await watcher.watchChanges((change) => seen.push(change));
    const sql = new SQL(db.url, { max: 1 });
    try {
      const killed = await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()`;
      expect(killed.length).toBe(1);
      // Committed while nobody listens: only the resync can carry it.
      await writer.addGrant({ principal: "user:gap", cluster: "*", role: "cluster-user" });
      await waitFor("the resync after the new LISTEN", () => seen.some((c) => c.table === "*"), 15_000);
      seen.length = 0;
      await writer.addGrant({ principal: "user:after", cluster: "*", role: "cluster-user" });
      await waitFor("a change after it, told as before", () => seen.some((c) => c.table === "grants"));
    } finally {
      await sql.close();
      await stop();
      await Promise.all([writer.close(), watcher.close()]);
      await db.drop();
    }
  });

  test("a new database records that relays of schema 4 may run on it (migration 5 only adds triggers), and such a database is run on untouched", async () => {
    const db = await pg.createDatabase();
    const store = await openPostgresStore(db.url);
    expect(await store.getSetting("schema_readable_from")).toBe("4");
    // As a relay of the next schema would leave it: version 6, readable by this one.
    await store.setSetting("schema_version", "6");
    await store.setSetting("schema_readable_from", "5");
    await store.addCluster("kept");
    await store.close();
    const rolledBack = await openPostgresStore(db.url);
    expect((await rolledBack.getCluster("kept"))?.name).toBe("kept");
    expect(await rolledBack.getSetting("schema_version")).toBe("6");
    await rolledBack.close();
    await db.drop();
  });

  test("a LISTEN connection that goes silent (a NAT dropping it without a word) is found by the feed's own ping and replaced", async () => {
    const db = await pg.createDatabase();
    const target = new URL(db.url);
    // A TCP hop that can freeze every connection open through it: nothing passes, nothing closes.
    const open: { client: net.Socket; frozen: boolean }[] = [];
    const hop = net.createServer((client) => {
      const entry = { client, frozen: false };
      open.push(entry);
      const server = net.connect(Number(target.port), target.hostname);
      client.on("data", (chunk: Buffer) => { if (!entry.frozen) server.write(chunk); });
      server.on("data", (chunk: Buffer) => { if (!entry.frozen) client.write(chunk); });
      for (const [a, b] of [[client, server], [server, client]] as const) {
        a.on("error", () => b.destroy());
        a.on("close", () => b.destroy());
      }
    });
    await new Promise<void>((resolve) => hop.listen(0, "127.0.0.1", resolve));
    const viaHop = new URL(db.url);
    viaHop.port = String((hop.address() as net.AddressInfo).port);
    const [writer, watcher] = await Promise.all([openPostgresStore(db.url), openPostgresStore(viaHop.href, { feedPingEveryMs: 300 })]);
    const seen: StoreChange[] = [];
    const stop = await watcher.watchChanges((change) => seen.push(change));
    try {
      await writer.addGrant({ principal: "user:before", cluster: "*", role: "cluster-user" });
      await waitFor("a change told while the connection is alive", () => seen.some((c) => c.table === "grants"));
      for (const entry of open) entry.frozen = true;
      seen.length = 0;
      // Told to a connection that hears nothing: only the resync can carry it.
      await writer.addGrant({ principal: "user:unheard", cluster: "*", role: "cluster-user" });
      await waitFor("the resync once a ping went unanswered", () => seen.some((c) => c.table === "*"), 10_000);
      seen.length = 0;
      await writer.addGrant({ principal: "user:after", cluster: "*", role: "cluster-user" });
      await waitFor("a change told again, on a new connection", () => seen.some((c) => c.table === "grants"), 10_000);
    } finally {
      await stop();
      for (const entry of open) entry.client.destroy();
      hop.close();
      await Promise.all([writer.close(), watcher.close()]);
      await db.drop();
    }
  });

  test("a password given as a URL parameter never appears in an error either", async () => {
    const error = await openPostgresStore("postgres://arc@127.0.0.1:1/none?password=hunter2-secret&sslmode=disable").catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain("opening relay store");
    expect((error as Error).message).not.toContain("hunter2-secret");
  });

  test("a database written by a newer relay is refused with what to do; the password never appears", async () => {
    const db = await pg.createDatabase();
    const store = await openPostgresStore(db.url);
    await store.setSetting("schema_version", "99");
    await store.setSetting("schema_readable_from", "98");
    await store.close();
    await expect(openPostgresStore(db.url)).rejects.toThrow("database schema version 99 is newer than this relay supports (5): upgrade arcrelay (relays of schema 98 or later run on it)");
    const wrong = db.url.replace("postgres@", "postgres:s3cret-pw@").replace(/:(\d+)\//, ":1/");
    const error = (await openPostgresStore(wrong).then(() => new Error("opened"), (e: unknown) => e)) as Error;
    expect(error.message).toContain("opening relay store postgres://postgres@127.0.0.1:1/");
    expect(error.message).not.toContain("s3cret-pw");
    await db.drop();
  });
});

describe("relay replicas on one PostgreSQL", () => {
  test("replicas started at once share the built-in issuer's key: a token from one is accepted by the other, and so is a cluster", async () => {
    const { startRelay } = await import("../../../lib/relay/index.ts");
    const { silentLogger } = await import("../../../lib/observe/index.ts");
    const { mkdtemp, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = await mkdtemp(join(tmpdir(), "arc-replicas-"));
    const db = await pg.createDatabase();
    const start = (n: number) => startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, `r${n}`), databaseUrl: db.url, publicUrl: "https://relay.example.com", replicaId: `r${n}`, internalListen: { host: "127.0.0.1", port: 0 }, logger: silentLogger });
    const [a, b] = await Promise.all([start(1), start(2)]);
    try {
      await a.store.addCluster("edge");
      await a.store.addGrant({ principal: "user:alice", cluster: "edge", role: "cluster-user" });
      // A token made by replica a's issuer (what `arcrelay token create` does on a's store) ...
      const { loadStoredIssuer } = await import("../../../lib/relay/index.ts");
      const token = await (await loadStoredIssuer(a.store, "https://relay.example.com")).signUserToken({ user: "alice" });
      // ... is accepted by replica b, which sees the cluster a registered.
      const res = await fetch(`http://127.0.0.1:${b.port}/v1/clusters/edge`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { name: string }).name).toBe("edge");
      // The status page of replica b names the replica that holds a tunnel, whichever it is.
      await a.store.addGrant({ principal: "user:root", cluster: "*", role: "relay-admin" });
      await a.store.recordPresence({ cluster: "edge", replicaId: "r1", expiresAt: new Date(Date.now() + 60_000) });
      const rootToken = await (await loadStoredIssuer(b.store, "https://relay.example.com")).signUserToken({ user: "root" });
      const signIn = await fetch(`http://127.0.0.1:${b.port}/ui/sign-in`, {
        method: "POST", redirect: "manual",
        headers: { origin: "https://relay.example.com", "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token: rootToken }).toString(),
      });
      expect(signIn.status).toBe(303);
      const cookie = signIn.headers.get("set-cookie")!.split(";")[0]!;
      const status = (await (await fetch(`http://127.0.0.1:${b.port}/ui/status.json`, { headers: { cookie } })).json()) as { clusters: { name: string; connected: boolean; replica: string }[] };
      expect(status.clusters).toEqual([expect.objectContaining({ name: "edge", connected: true, replica: "r1" })]);
    } finally {
      await Promise.all([a.close(), b.close()]);
      await db.drop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

test("replicas serving downloads sign with one key, kept in the database, so a pinned key holds on every replica", async () => {
  const { startRelay } = await import("../../../lib/relay/index.ts");
  const { silentLogger } = await import("../../../lib/observe/index.ts");
  const { mkdtemp, mkdir, rm, writeFile } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const dir = await mkdtemp(join(tmpdir(), "arc-replica-downloads-"));
  await mkdir(join(dir, "dist", "linux-amd64"), { recursive: true });
  await writeFile(join(dir, "dist", "linux-amd64", "arcproxy"), "#!/bin/sh\necho arcproxy\n");
  const db = await pg.createDatabase();
  const start = (n: number) => startRelay({
    host: "127.0.0.1", port: 0, dataDir: join(dir, `r${n}`), databaseUrl: db.url, publicUrl: "https://relay.example.com", replicaId: `r${n}`,
    internalListen: { host: "127.0.0.1", port: 0 }, downloadsDir: join(dir, "dist"), logger: silentLogger,
  });
  const [a, b] = await Promise.all([start(1), start(2)]);
  try {
    expect(a.downloads?.publicKeySha256).toMatch(/^[0-9a-f]{64}$/);
    expect(b.downloads?.publicKeySha256).toBe(a.downloads!.publicKeySha256);
  } finally {
    await Promise.all([a.close(), b.close()]);
    await db.drop();
    await rm(dir, { recursive: true, force: true });
  }
});

test("arcrelay's admin commands work on the replicas' PostgreSQL (--database-url, or ARC_DATABASE_URL)", async () => {
  const db = await pg.createDatabase();
  const { join } = await import("node:path");
  const cli = (args: string[], env: Record<string, string> = {}) => {
    const proc = Bun.spawnSync([process.execPath, join(import.meta.dir, "..", "..", "..", "cmd", "arcrelay.ts"), ...args], { env: { PATH: process.env.PATH ?? "", ...env } });
    return { code: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
  };
  try {
    const added = cli(["cluster", "add", "edge", "--database-url", db.url]);
    expect(added.stderr).toBe("");
    expect(added.stdout.trim().split("\n").at(-1)).toMatch(/^arcenroll_/);
    const granted = cli(["grant", "add", "--principal", "user:root", "--cluster", "*", "--role", "relay-admin"], { ARC_DATABASE_URL: db.url });
    expect(granted.code).toBe(0);
    const store = await openPostgresStore(db.url);
    expect((await store.listGrants()).map((g) => g.principal)).toEqual(["user:root"]);
    await store.close();
  } finally {
    await db.drop();
  }
});

test("the test server is real PostgreSQL", async () => {
  const sql = new SQL(pg.adminUrl, { max: 1 });
  const [row] = await sql`SELECT version()`;
  await sql.close();
  expect(String((row as { version: string }).version)).toStartWith("PostgreSQL 15");
});
