// Three relay replicas (each its own process, as in a Deployment) on one real PostgreSQL, agents
// spread across them through a front that plays the load balancer, and a user who always lands on a
// replica that does not hold the tunnel: requests, streams, bodies and upgrades cross the extra
// hop; a revocation reaches the holder; a replica killed with SIGKILL loses its agents to the others.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { createFileKeyStore, loadUpstream, runAgent } from "../../lib/agent/index.ts";
import { createRelayConnection } from "../../lib/client/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { loadStoredIssuer } from "../../lib/relay/index.ts";
import { openPostgresStore } from "../../lib/relay/store/postgres-store.ts";
import type { RelayStore } from "../../lib/relay/store/index.ts";
import { writeKubeconfig } from "../cluster/kubeconfig-file.ts";
import { startPostgres, type RunningPostgres } from "../support/postgres.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(60_000);
const ROOT = join(import.meta.dir, "..", "..");

interface Replica {
  id: string;
  port: number;
  proc: Subprocess;
  log: string[];
  url: string;
}

let pg: RunningPostgres;
let db: { url: string; drop(): Promise<void> };
let store: RelayStore;
let dir: string;
let upstream: http.Server;
let front: net.Server;
let publicUrl: string;
let replicas: Replica[] = [];
/** Where the front sends the next connection: a replica id, or any live one when undefined. */
let steer: string | undefined;
const agentStop = new AbortController();
let alice: string;
/** Watches the upstream has open: the test writes events into them. */
const watches = new Set<http.ServerResponse>();

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function startReplica(id: string): Promise<Replica> {
  const port = await freePort();
  const internal = await freePort();
  const log: string[] = [];
  const proc = Bun.spawn([process.execPath, "cmd/arcrelay.ts", "serve", "--listen", `127.0.0.1:${port}`, "--insecure-http", "--public-url", publicUrl,
    "--data-dir", join(dir, id), "--replica-id", id, "--internal-listen", `127.0.0.1:${internal}`, "--shutdown-delay", "0", "--log-level", "debug"], {
    cwd: ROOT, env: { ...process.env, ARC_DATABASE_URL: db.url }, stdout: "pipe", stderr: "pipe",
  });
  for (const stream of [proc.stdout, proc.stderr] as ReadableStream<Uint8Array>[]) {
    void (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) log.push(decoder.decode(chunk));
    })();
  }
  const replica = { id, port, proc, log, url: `http://127.0.0.1:${port}` };
  await waitFor(`replica ${id} to answer /readyz`, async () => {
    if (proc.exitCode !== null) throw new Error(`replica ${id} exited (${proc.exitCode}):\n${log.join("")}`);
    return (await fetch(`${replica.url}/readyz`).catch(() => undefined))?.ok === true;
  }, 30_000);
  return replica;
}

/** The load balancer: a TCP front that sends each connection to `steer`, or to the first live replica. */
async function startFront(): Promise<net.Server> {
  const server = net.createServer((client) => {
    const live = replicas.filter((r) => r.proc.exitCode === null && !r.proc.killed);
    const chosen = live.find((r) => r.id === steer) ?? live[0];
    if (!chosen) return client.destroy();
    const backend = net.connect(chosen.port, "127.0.0.1");
    client.pipe(backend).pipe(client);
    client.on("error", () => backend.destroy());
    backend.on("error", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

/** The cluster's API server as the agent sees it: echoes who asked, streams a watch, hashes a body, echoes an upgrade. */
async function startUpstream(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://upstream");
    if (url.pathname === "/api/who") {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ user: req.headers["impersonate-user"] ?? null, groups: req.headers["impersonate-group"] ?? null }));
    } else if (url.searchParams.get("watch") === "true") {
      res.writeHead(200, { "content-type": "application/json" });
      res.flushHeaders();
      watches.add(res);
      res.on("close", () => watches.delete(res));
    } else if (url.pathname === "/api/sha" && req.method === "POST") {
      const hash = createHash("sha256");
      req.on("data", (chunk: Buffer) => hash.update(chunk));
      req.on("end", () => res.end(hash.digest("hex")));
    } else if (url.pathname === "/api/big") {
      const size = Number(url.searchParams.get("bytes"));
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(size) });
      const block = Buffer.alloc(1 << 16, 7);
      let sent = 0;
      const pump = () => {
        while (sent < size) {
          const piece = block.subarray(0, Math.min(block.length, size - sent));
          sent += piece.length;
          if (!res.write(piece)) return void res.once("drain", pump);
        }
        res.end();
      };
      pump();
    } else {
      res.writeHead(404).end();
    }
  });
  server.on("upgrade", (req, socket) => {
    socket.write("HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: echo\r\n\r\n");
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

/** Replica ids that hold `cluster`'s tunnel, per the shared database. */
async function holderOf(cluster: string): Promise<string | undefined> {
  return (await store.listPresence(new Date())).find((p) => p.cluster === cluster)?.replicaId;
}

async function startAgent(cluster: string, enrollToken: string, via: string): Promise<void> {
  const kubeconfig = join(dir, "agent.kubeconfig");
  steer = via;
  void runAgent({
    relay: createRelayConnection(publicUrl), cluster, keyStore: createFileKeyStore(join(dir, "agents", cluster)), enrollToken,
    upstream: loadUpstream({ kubeconfig }), agentVersion: "test", logger: silentLogger, signal: agentStop.signal, drainTimeoutMs: 1_000,
  });
  await waitFor(`cluster ${cluster}'s tunnel on ${via}`, async () => (await holderOf(cluster)) === via, 20_000);
  steer = undefined;
}

function arcrelay(args: string[]) {
  const proc = Bun.spawnSync([process.execPath, "cmd/arcrelay.ts", ...args, "--database-url", db.url], { cwd: ROOT });
  return { code: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

beforeAll(async () => {
  pg = await startPostgres();
  db = await pg.createDatabase();
  dir = await mkdtemp(join(tmpdir(), "arc-replicas-"));
  upstream = await startUpstream();
  await writeKubeconfig(join(dir, "agent.kubeconfig"), { server: `http://127.0.0.1:${(upstream.address() as net.AddressInfo).port}`, userName: "agent", user: { token: "sa" } });
  front = await startFront();
  publicUrl = `http://127.0.0.1:${(front.address() as net.AddressInfo).port}`;
  // Three replicas started at once on an empty database: they migrate it once and all come up.
  replicas = await Promise.all(["r1", "r2", "r3"].map(startReplica));
  store = await openPostgresStore(db.url);
  const tokens: Record<string, string> = {};
  for (const cluster of ["c1", "c2"]) {
    const added = arcrelay(["cluster", "add", cluster]);
    if (added.code !== 0) throw new Error(added.stderr);
    tokens[cluster] = added.stdout.trim().split("\n").at(-1)!;
    await store.addGrant({ principal: "user:alice", cluster, role: "cluster-user" });
  }
  alice = await (await loadStoredIssuer(store, publicUrl)).signUserToken({ user: "alice", groups: ["dev"] });
  await startAgent("c1", tokens.c1!, "r1");
  await startAgent("c2", tokens.c2!, "r2");
}, 120_000);

afterAll(async () => {
  agentStop.abort();
  for (const r of replicas) r.proc.kill("SIGKILL");
  await Promise.all(replicas.map((r) => r.proc.exited));
  front?.close();
  upstream?.close();
  await store?.close();
  await db?.drop();
  await pg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const replica = (id: string) => replicas.find((r) => r.id === id)!;
const api = (via: string, cluster: string, path: string, init: RequestInit = {}) =>
  fetch(`${replica(via).url}/v1/clusters/${cluster}/k8s${path}`, { ...init, headers: { authorization: `Bearer ${alice}`, ...(init.headers as Record<string, string> | undefined) } });

describe("a user on a replica that does not hold the tunnel", () => {
  test("a GET crosses to the holder: the API server sees the verified user, the answer carries the request id", async () => {
    for (const via of ["r2", "r3"]) {
      const res = await api(via, "c1", "/api/who", { headers: { "x-arc-request-id": `who-via-${via}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-arc-request-id")).toBe(`who-via-${via}`);
      expect(await res.json()).toEqual({ user: "alice", groups: "dev" });
    }
    expect(replica("r2").log.join("")).toContain('"replica":"r1"');
  });

  test("a watch streams each event as the API server writes it, across the extra hop", async () => {
    const res = await api("r3", "c1", "/api/v1/configmaps?watch=true");
    expect(res.status).toBe(200);
    await waitFor("the watch to reach the API server", () => watches.size === 1);
    const reader = res.body!.getReader();
    for (const name of ["a", "b"]) {
      for (const w of watches) w.write(`${JSON.stringify({ type: "ADDED", object: { metadata: { name } } })}\n`);
      const { value } = await reader.read();
      expect(JSON.parse(new TextDecoder().decode(value)).object.metadata.name).toBe(name);
    }
    await reader.cancel();
    await waitFor("the API server to see the watch end", () => watches.size === 0);
  });

  test("an 8 MiB body goes up and a 64 MiB response comes down whole (backpressure over both hops)", async () => {
    const body = Buffer.alloc(8 << 20, 3);
    const up = await api("r2", "c1", "/api/sha", { method: "POST", body, headers: { "content-type": "application/octet-stream" } });
    expect(await up.text()).toBe(createHash("sha256").update(body).digest("hex"));
    const down = await api("r2", "c1", `/api/big?bytes=${64 << 20}`);
    expect(down.headers.get("content-length")).toBe(String(64 << 20));
    const hash = createHash("sha256");
    let size = 0;
    for await (const chunk of down.body!) {
      size += chunk.length;
      hash.update(chunk);
    }
    expect(size).toBe(64 << 20);
    expect(hash.digest("hex")).toBe(createHash("sha256").update(Buffer.alloc(64 << 20, 7)).digest("hex"));
  });

  test("an upgrade (as exec and port-forward make) is spliced through both replicas", async () => {
    const socket = net.connect(replica("r3").port, "127.0.0.1");
    socket.write(`GET /v1/clusters/c2/k8s/api/exec HTTP/1.1\r\nhost: relay\r\nauthorization: Bearer ${alice}\r\nconnection: Upgrade\r\nupgrade: echo\r\n\r\n`);
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
    await waitFor("101 from the API server, through r3 and r2", () => received.includes("\r\n\r\n"));
    expect(received).toStartWith("HTTP/1.1 101");
    received = "";
    socket.write("ping through two replicas");
    await waitFor("the echo", () => received === "ping through two replicas");
    socket.destroy();
  });

  test("a token that is not valid is refused by the replica the user reached, with a Status", async () => {
    const res = await fetch(`${replica("r3").url}/v1/clusters/c1/k8s/api/who`, { headers: { authorization: "Bearer not-a-token" } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { kind: string }).kind).toBe("Status");
  });
});

describe("the internal endpoint", () => {
  test("refuses a request without the replicas' secret, even with a valid user token", async () => {
    const internal = /"internalUrl":"(https:\/\/[^"]+)"/.exec(replica("r1").log.join(""))![1]!;
    const res = await fetch(`${internal}/v1/clusters/c1/k8s/api/who`, { headers: { authorization: `Bearer ${alice}` }, tls: { rejectUnauthorized: false } } as RequestInit);
    expect(res.status).toBe(401);
    expect(await res.text()).toContain("internal endpoint");
  });
});

describe("revocation across replicas", () => {
  test("revoking c2's agent key with the CLI closes its tunnel on the replica that holds it within 5 s", async () => {
    expect(await holderOf("c2")).toBe("r2");
    const started = performance.now();
    expect(arcrelay(["cluster", "revoke-agent", "c2"]).code).toBe(0);
    await waitFor("r2 to close c2's tunnel", () => replica("r2").log.join("").includes("closing agent tunnel: its key is no longer enrolled"), 5_000);
    expect(performance.now() - started).toBeLessThan(5_000 + 1_000); // waitFor's bound; here for the reader
    const res = await api("r1", "c2", "/api/who");
    expect(res.status).toBe(503);
    expect(((await res.json()) as { message: string }).message).toContain("no agent is enrolled");
  });
});

describe("a replica killed with SIGKILL", () => {
  test("its agent redials to a survivor; requests meanwhile succeed or fail cleanly, and the next ones succeed", async () => {
    expect(await holderOf("c1")).toBe("r1");
    const outcomes: number[] = [];
    let running = true;
    const load = (async () => {
      while (running) {
        const res = await api("r3", "c1", "/api/who").catch(() => undefined);
        outcomes.push(res?.status ?? 0);
        await res?.body?.cancel();
      }
    })();
    await waitFor("some requests through r3 before the kill", () => outcomes.length >= 5);
    replica("r1").proc.kill("SIGKILL");
    await replica("r1").proc.exited;
    await waitFor("c1's agent back on a survivor", async () => ["r2", "r3"].includes((await holderOf("c1")) ?? ""), 30_000);
    const before = outcomes.length;
    await waitFor("requests after the agent is back", () => outcomes.length >= before + 10, 20_000);
    running = false;
    await load;
    // Every answer was a success or a clean refusal (503 with a Status): no hang, no connection error.
    expect(outcomes.every((s) => s === 200 || s === 503)).toBe(true);
    expect(outcomes.slice(before)).toEqual(Array(outcomes.length - before).fill(200));
    for (const via of ["r2", "r3"]) expect((await api(via, "c1", "/api/who")).status).toBe(200);
  });
});
