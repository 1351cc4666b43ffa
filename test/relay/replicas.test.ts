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
import { createFileKeyStore, loadUpstream, runAgent } from "../../lib/agent/index.ts";
import { createRelayConnection } from "../../lib/client/index.ts";
import { MAX_FORWARDED_HEADER_FIELDS } from "../../lib/http/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { writeKubeconfig } from "../cluster/kubeconfig-file.ts";
import { startPostgres, type RunningPostgres } from "../support/postgres.ts";
import { startReplicaStack, type ReplicaStack } from "../support/replica-stack.ts";
import { waitFor, within } from "../support/wait-for.ts";

setDefaultTimeout(60_000);

let pg: RunningPostgres;
let db: { url: string; drop(): Promise<void> };
let dir: string;
let upstream: http.Server;
let stack: ReplicaStack;
let alice: string;
/** Watches the upstream has open: the test writes events into them. */
const watches = new Set<http.ServerResponse>();

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
    } else if (url.pathname === "/api/big-header") {
      res.writeHead(200, { "content-type": "application/json", "x-big": "h".repeat(Number(url.searchParams.get("bytes"))) });
      res.end("{}");
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

beforeAll(async () => {
  pg = await startPostgres();
  db = await pg.createDatabase();
  dir = await mkdtemp(join(tmpdir(), "arc-replicas-"));
  upstream = await startUpstream();
  const kubeconfig = join(dir, "agent.kubeconfig");
  await writeKubeconfig(kubeconfig, { server: `http://127.0.0.1:${(upstream.address() as net.AddressInfo).port}`, userName: "agent", user: { token: "sa" } });
  // Three replicas started at once on an empty database: they migrate it once and all come up.
  stack = await startReplicaStack({ databaseUrl: db.url });
  await stack.startAgent("c1", kubeconfig, "r1");
  await stack.startAgent("c2", kubeconfig, "r2");
  for (const cluster of ["c1", "c2"]) await stack.store.addGrant({ principal: "user:alice", cluster, role: "cluster-user" });
  alice = await stack.userToken("alice", ["dev"]);
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  upstream?.close();
  await db?.drop();
  await pg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const holderOf = (cluster: string) => stack.holderOf(cluster);
const arcrelay = (args: string[]) => stack.arcrelay(args);
const replica = (id: string) => stack.replica(id);
const api = (via: string, cluster: string, path: string, init: RequestInit = {}) =>
  fetch(`${replica(via).url}/v1/clusters/${cluster}/k8s${path}`, { ...init, headers: { authorization: `Bearer ${alice}`, ...(init.headers as Record<string, string> | undefined) } });

describe("a user on a replica that does not hold the tunnel", () => {
  test("the cluster is reported connected there too (the list arcproxy reads, and the cluster itself)", async () => {
    expect(await holderOf("c1")).toBe("r1");
    for (const via of ["r1", "r2", "r3"]) {
      const auth = { headers: { authorization: `Bearer ${alice}` } };
      const list = (await (await fetch(`${replica(via).url}/v1/clusters`, auth)).json()) as { name: string; connected: boolean }[];
      expect(list.filter((c) => c.name === "c1" || c.name === "c2").map((c) => [c.name, c.connected])).toEqual([["c1", true], ["c2", true]]);
      expect(((await (await fetch(`${replica(via).url}/v1/clusters/c1`, auth)).json()) as { connected: boolean }).connected).toBe(true);
    }
  });

  test("a GET crosses to the holder: the API server sees the verified user, the answer carries the request id", async () => {
    for (const via of ["r2", "r3"]) {
      const res = await api(via, "c1", "/api/who", { headers: { "x-arc-request-id": `who-via-${via}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-arc-request-id")).toBe(`who-via-${via}`);
      expect(await res.json()).toEqual({ user: "alice", groups: "dev" });
    }
    expect(replica("r2").log()).toContain('"replica":"r1"');
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

  test("a 70 KB response header (as an API server may send) comes through the extra hop whole", async () => {
    const res = await api("r2", "c1", "/api/big-header?bytes=70000");
    expect(res.status).toBe(200);
    expect(res.headers.get("x-big")?.length).toBe(70_000);
  });

  test("as many header fields as the relay forwards pass the extra hop, and one more is refused at the first replica with a 431 Status", async () => {
    // Raw, so the count is exact: Host, Authorization and Connection, then the extra ones.
    const send = (extra: number) => new Promise<string>((resolve, reject) => {
      const socket = net.connect(replica("r2").port, "127.0.0.1", () => {
        let head = `GET /v1/clusters/c1/k8s/api/who HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${alice}\r\nConnection: close\r\n`;
        for (let i = 0; i < extra; i++) head += `x-extra-${i}: v\r\n`;
        socket.write(`${head}\r\n`);
      });
      let answer = "";
      socket.on("data", (chunk: Buffer) => { answer += chunk.toString("latin1"); });
      socket.on("end", () => resolve(answer));
      socket.on("error", reject);
    });
    const passed = await within("the answer with the most fields forwarded", send(MAX_FORWARDED_HEADER_FIELDS - 3), 10_000);
    expect(passed).toStartWith("HTTP/1.1 200 ");
    const refused = await within("the answer with one field too many", send(MAX_FORWARDED_HEADER_FIELDS - 2), 10_000);
    expect(refused).toStartWith("HTTP/1.1 431 ");
    expect(refused).toContain(`the request has ${MAX_FORWARDED_HEADER_FIELDS + 1} header fields, and the relay forwards at most ${MAX_FORWARDED_HEADER_FIELDS}; send fewer headers`);
  });

  test("a token that is not valid is refused by the replica the user reached, with a Status", async () => {
    const res = await fetch(`${replica("r3").url}/v1/clusters/c1/k8s/api/who`, { headers: { authorization: "Bearer not-a-token" } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { kind: string }).kind).toBe("Status");
  });
});

describe("a replica started with another --public-url", () => {
  test("is refused, naming the live replicas and their URL, and the recorded URL stays", async () => {
    const proc = Bun.spawn([process.execPath, "cmd/arcrelay.ts", "serve", "--listen", "127.0.0.1:0", "--insecure-http", "--public-url", "http://127.0.0.1:1",
      "--replica-id", "r4", "--internal-listen", "127.0.0.1:0"], {
      cwd: join(import.meta.dir, "..", ".."), env: { ...process.env, ARC_DATABASE_URL: db.url }, stdout: "pipe", stderr: "pipe",
    });
    const stderr = new Response(proc.stderr).text();
    try {
      expect(await within("the replica to refuse to start", proc.exited, 30_000)).not.toBe(0);
    } finally {
      proc.kill("SIGKILL");
    }
    expect(await stderr).toContain(`replicas r1, r2, r3 of this relay serve the public URL ${stack.publicUrl}, and this one was started with --public-url http://127.0.0.1:1`);
    expect(await stderr).toContain("every replica needs the same --public-url");
    // `token create` still signs for the URL every replica serves, so each of them takes its tokens.
    const created = arcrelay(["token", "create", "--user", "alice", "--group", "dev", "--ttl", "5m"]);
    expect(created.code).toBe(0);
    const token = created.stdout.trim().split("\n").at(-1)!;
    for (const via of ["r1", "r2", "r3"]) {
      expect((await fetch(`${replica(via).url}/v1/clusters/c1/k8s/api/who`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    }
  });
});

describe("an agent that dials a replica by its own address, not the public URL", () => {
  test("stops before enrolling, saying which URL to dial; its token is not spent", async () => {
    const added = arcrelay(["cluster", "add", "c-direct"]);
    expect(added.code).toBe(0);
    const failed = await runAgent({
      relay: createRelayConnection(replica("r2").url), cluster: "c-direct", keyStore: createFileKeyStore(join(dir, "agents", "c-direct")),
      enrollToken: added.stdout.trim().split("\n").at(-1)!, upstream: loadUpstream({ kubeconfig: join(dir, "agent.kubeconfig") }),
      agentVersion: "test", logger: silentLogger, signal: AbortSignal.timeout(30_000),
    }).then(() => undefined, (error: Error) => error);
    expect(failed?.message).toBe(
      `the relay at ${replica("r2").url} serves as ${stack.publicUrl} (its public URL), and takes an agent's tunnel only for that URL: ` +
      `start the agent with --relay ${stack.publicUrl}, or, if agents must dial ${replica("r2").url}, start the relay with --public-url ${replica("r2").url}`,
    );
    expect((await stack.store.getCluster("c-direct"))?.agentKey).toBeUndefined();
  });
});

describe("the internal endpoint", () => {
  test("refuses a request without the replicas' secret, even with a valid user token", async () => {
    const internal = /"internalUrl":"(https:\/\/[^"]+)"/.exec(replica("r1").log())![1]!;
    const res = await fetch(`${internal}/v1/clusters/c1/k8s/api/who`, { headers: { authorization: `Bearer ${alice}` }, tls: { rejectUnauthorized: false } } as RequestInit);
    expect(res.status).toBe(401);
    expect(await res.text()).toContain("internal endpoint");
  });

  test("with the replicas' secret, a user still needs a valid token and a grant: the secret alone opens no cluster", async () => {
    const internal = /"internalUrl":"(https:\/\/[^"]+)"/.exec(replica("r1").log())![1]!;
    const secret = (await stack.store.getSetting("replica.secret"))!;
    const bob = await stack.userToken("bob");
    const call = (token: string) => fetch(`${internal}/v1/clusters/c1/k8s/api/who`, {
      headers: { authorization: `Bearer ${token}`, "x-arc-replica-secret": secret }, tls: { rejectUnauthorized: false },
    } as RequestInit);
    const refused = await call(bob);
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { message: string }).message).toContain('user "bob" has no cluster-user access to cluster "c1"');
    expect((await call("not-a-token")).status).toBe(401);
    expect((await call(alice)).status).toBe(200);
  });
});

describe("the built-in issuer's key, shared and rotated", () => {
  const who = (via: string, token: string) => fetch(`${replica(via).url}/v1/clusters/c1/k8s/api/who`, { headers: { authorization: `Bearer ${token}` } }).then(async (r) => {
    await r.body?.cancel();
    return r.status;
  });

  test("after rotate-key, tokens of the old key still verify on every replica, and tokens of the new key verify everywhere within seconds", async () => {
    const before = await stack.userToken("alice");
    const rotated = arcrelay(["issuer", "rotate-key"]);
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toContain("now signs with key");
    const made = arcrelay(["token", "create", "--user", "alice"]);
    expect(made.code).toBe(0);
    const after = made.stdout.trim().split("\n").at(-1)!;
    expect(JSON.parse(Buffer.from(after.split(".")[0]!, "base64url").toString()).kid).not.toBe(JSON.parse(Buffer.from(before.split(".")[0]!, "base64url").toString()).kid);
    for (const via of ["r1", "r2", "r3"]) {
      await waitFor(`${via} to verify the new key's token`, async () => (await who(via, after)) === 200, 5_000);
      expect(await who(via, before)).toBe(200);
    }
  });

  test("rotate-key --drop-old (a leaked key): the old key's tokens are refused everywhere within seconds", async () => {
    const leaked = await stack.userToken("alice");
    expect(await who("r1", leaked)).toBe(200);
    expect(arcrelay(["issuer", "rotate-key", "--drop-old"]).code).toBe(0);
    for (const via of ["r1", "r2", "r3"]) await waitFor(`${via} to refuse the dropped key's token`, async () => (await who(via, leaked)) === 401, 5_000);
    // A token of the new key works end to end once the agent fetched the keys again (it does at most once a second).
    alice = await stack.userToken("alice", ["dev"]);
    await waitFor("alice's new token through r2 and the agent", async () => (await who("r2", alice)) === 200, 5_000);
  });
});

describe("the failed-authentication budget across replicas", () => {
  test("bad tokens spread over all three replicas get at most the one budget of 401s (20), then 429; alice still passes", async () => {
    const answers: number[] = [];
    for (let i = 0; i < 45; i++) {
      const res = await fetch(`${replica(["r1", "r2", "r3"][i % 3]!).url}/v1/clusters/c1/k8s/api/who`, { headers: { authorization: `Bearer bad-token-${i}` } });
      answers.push(res.status);
      await res.body?.cancel();
    }
    const unauthorized = answers.filter((s) => s === 401).length;
    expect(unauthorized).toBeLessThanOrEqual(20);
    expect(unauthorized).toBeGreaterThan(0);
    expect(answers.slice(-9)).toEqual(Array(9).fill(429));
    const ok = await api("r2", "c1", "/api/who");
    expect({ status: ok.status, body: ok.status === 200 ? "" : await ok.text() }).toEqual({ status: 200, body: "" });
  });
});

describe("revocation across replicas", () => {
  test("revoking c2's agent key with the CLI closes its tunnel on the replica that holds it within 5 s", async () => {
    expect(await holderOf("c2")).toBe("r2");
    expect(arcrelay(["cluster", "revoke-agent", "c2"]).code).toBe(0);
    await waitFor("r2 to close c2's tunnel", () => replica("r2").log().includes("closing agent tunnel: its key is no longer enrolled"), 5_000);
    const res = await api("r1", "c2", "/api/who");
    expect(res.status).toBe(503);
    expect(((await res.json()) as { message: string }).message).toContain("no agent is enrolled");
  });
});

/** GETs one after another through `via` until stopped; each answer's status (0: no answer at all). */
function steadyLoad(via: string, cluster: string): { outcomes: number[]; stop(): Promise<void> } {
  const outcomes: number[] = [];
  let running = true;
  const load = (async () => {
    while (running) {
      const res = await api(via, cluster, "/api/who").catch(() => undefined);
      outcomes.push(res?.status ?? 0);
      await res?.body?.cancel();
    }
  })();
  return { outcomes, stop: async () => { running = false; await load; } };
}

describe("a replica whose process dies and comes back under the same id (its container restarted in its pod)", () => {
  test("forgets the tunnels its last process held, so nothing is routed to them", async () => {
    expect(arcrelay(["cluster", "add", "c-ghost"]).code).toBe(0);
    await stack.store.recordPresence({ cluster: "c-ghost", replicaId: "r3", expiresAt: new Date(Date.now() + 60_000) });
    expect(await holderOf("c-ghost")).toBe("r3");
    await stack.restart("r3", "SIGKILL");
    // Its heartbeat renewed every row under its id: the dead process's tunnels stayed "present"
    // for good, and each request for them crossed to r3 to hear it had none.
    expect(await holderOf("c-ghost")).toBeUndefined();
    expect(replica("r3").log()).toContain("a replica of this id was still registered");
    expect((await api("r3", "c1", "/api/who")).status).toBe(200);
  });
});

describe("a replica that drains (SIGTERM, as a rolling update stops a pod)", () => {
  test("requests through another replica carry on while its agent moves: each succeeds or fails cleanly, and the next ones succeed", async () => {
    await stack.startAgent("c3", join(dir, "agent.kubeconfig"), "r3");
    await stack.store.addGrant({ principal: "user:alice", cluster: "c3", role: "cluster-user" });
    const { outcomes, stop } = steadyLoad("r2", "c3");
    await waitFor("some requests through r2 before the drain", () => outcomes.length >= 5);
    replica("r3").proc.kill("SIGTERM");
    expect(await replica("r3").proc.exited).toBe(0);
    await waitFor("c3's agent on a survivor", async () => ["r1", "r2"].includes((await holderOf("c3")) ?? ""), 30_000);
    const before = outcomes.length;
    await waitFor("requests after the agent moved", () => outcomes.length >= before + 10, 20_000);
    await stop();
    expect(outcomes.filter((s) => s !== 200 && s !== 503)).toEqual([]);
    expect(outcomes.slice(before)).toEqual(Array(outcomes.length - before).fill(200));
    // A clean stop hands its record back: it is no longer listed among the replicas.
    expect((await stack.store.listReplicas(new Date())).map((r) => r.replicaId)).toEqual(["r1", "r2"]);
  });
});

describe("a replica killed with SIGKILL", () => {
  test("its agent redials to a survivor; requests meanwhile succeed or fail cleanly, and the next ones succeed", async () => {
    expect(await holderOf("c1")).toBe("r1");
    const { outcomes, stop } = steadyLoad("r2", "c1");
    await waitFor("some requests through r2 before the kill", () => outcomes.length >= 5);
    replica("r1").proc.kill("SIGKILL");
    await replica("r1").proc.exited;
    await waitFor("c1's agent back on the survivor", async () => (await holderOf("c1")) === "r2", 30_000);
    const before = outcomes.length;
    await waitFor("requests after the agent is back", () => outcomes.length >= before + 10, 20_000);
    await stop();
    // Every answer was a success or a clean refusal (503 with a Status): no hang, no connection error.
    expect(outcomes.filter((s) => s !== 200 && s !== 503)).toEqual([]);
    expect(outcomes.slice(before)).toEqual(Array(outcomes.length - before).fill(200));
    expect((await api("r2", "c1", "/api/who")).status).toBe(200);
  });
});
