// Relay replicas on PostgreSQL (issue 12): the cost of the forwarded hop, three replicas against one,
// relay memory per idle agent, and database queries per second while agents sit idle.
//
//   bun bench/replicas-bench.ts hop                    # forwarded vs local: p50/p99, and req/s of 1 vs 3 replicas
//   bun bench/replicas-bench.ts idle --agents 1000     # relay RSS per idle agent, database transactions/s
//   bun bench/replicas-bench.ts idle --agents 10000    # (each idle run ends with a relay restart: time until every agent is back)
//   bun bench/replicas-bench.ts hop --smoke            # either mode once, small, no quiet waits (the tests run both)
//
// Real parts: a PostgreSQL 15 (Debian's, started here as the tests start it) and arcrelay
// processes run from source; agents run in this process (as bench/tunnel-bench.ts does), as does
// the load generator. Results go in bench/BENCHMARKS.md with the command and the machine.
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";
import { createFileKeyStore, loadUpstream, runAgent } from "../lib/agent/index.ts";
import { createRelayConnection } from "../lib/client/index.ts";
import { silentLogger } from "../lib/observe/index.ts";
import { addCluster } from "../lib/relay/index.ts";
import { writeKubeconfig } from "../test/cluster/kubeconfig-file.ts";
import { startPostgres } from "../test/support/postgres.ts";
import { startReplicaStack, type ReplicaStack } from "../test/support/replica-stack.ts";
import { leastSquaresSlope } from "../test/support/least-squares.ts";
import { waitFor } from "../test/support/wait-for.ts";

const USAGE = `usage: bun bench/replicas-bench.ts hop|idle [--agents N] [--tls] [--smoke]
  hop:  the forwarded hop's latency (p50, p99) and req/s of three replicas against one
  idle: relay memory per idle agent (--agents, default 1000), database transactions/s, agents back after a relay restart
  --tls: idle only: the relay serves TLS, as the chart's relay does (a certificate made at start)
  --smoke: each scenario once, small, no quiet waits (the tests run it); its figures mean nothing`;
const mode = process.argv.slice(2).find((a) => !a.startsWith("--") && process.argv[process.argv.indexOf(a) - 1] !== "--agents") ?? "hop";
if (process.argv.includes("--help") || process.argv.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}
if (mode !== "hop" && mode !== "idle") {
  console.error(`unknown mode ${JSON.stringify(mode)}\n${USAGE}`);
  process.exit(2);
}
/** Each scenario once, small and without the quiet waits: proves the bench runs (the tests run it); its figures mean nothing. */
const SMOKE = process.argv.includes("--smoke");
const TLS = process.argv.includes("--tls");
if (TLS && mode !== "idle") {
  console.error(`--tls is for idle only: the hop's replicas sit behind a plain TCP front\n${USAGE}`);
  process.exit(2);
}
const agentsArg = process.argv.indexOf("--agents");
const AGENTS = agentsArg > 0 ? Number(process.argv[agentsArg + 1]) : SMOKE ? 20 : 1000;
if (!Number.isInteger(AGENTS) || AGENTS < 4) {
  console.error(`--agents ${JSON.stringify(process.argv[agentsArg + 1])}: use a whole number of at least 4\n${USAGE}`);
  process.exit(2);
}
/**
 * Equal steps from the warm agents to all of them, RSS read after each. RSS grows in jumps of
 * megabytes (the engine's heap and the allocator's arenas), so a slope through five points moved
 * by a jump near either end: 1,000 agents gave 17-34 KiB per agent; ten steps average it out.
 */
const STEPS = SMOKE ? 2 : 10;
/** How long the relay is left alone before its RSS is read (ms). */
const SETTLE_MS = SMOKE ? 0 : 10_000;

const upstream = http.createServer((_req, res) => {
  res.writeHead(200, { "content-type": "application/json" });
  res.end('{"kind":"Status","status":"Success"}');
});
await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
const dir = await mkdtemp(join(tmpdir(), "arc-replicas-bench-"));
const kubeconfig = join(dir, "kubeconfig");
await writeKubeconfig(kubeconfig, { server: `http://127.0.0.1:${(upstream.address() as { port: number }).port}`, userName: "agent", user: { token: "bench" } });
const pg = await startPostgres();
const db = await pg.createDatabase();
let stack: ReplicaStack | undefined;
if (SMOKE) console.log("# smoke: each scenario once, small, no quiet waits: the figures only show that it ran");
console.log(`# ${new Date().toISOString()} mode=${mode}${TLS ? " tls" : ""} load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);

/** Stops the replicas and PostgreSQL and removes the bench's folders once, however the run ends. */
let cleaning: Promise<void> | undefined;
const cleanUp = () => (cleaning ??= (async () => {
  await stack?.stop();
  upstream.close();
  await db.drop();
  await pg.stop();
  await rm(dir, { recursive: true, force: true });
})());
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.error(`# ${signal}: stopping and cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}

try {
  if (mode === "hop") await hop();
  else await idle();
} finally {
  await cleanUp();
}
console.log(`# load average at the end ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
process.exit(0);

async function hop(): Promise<void> {
  stack = await startReplicaStack({ databaseUrl: db.url });
  // One cluster per replica, so "three replicas" can also mean three tunnels each served where it lives.
  for (const [cluster, via] of [["c1", "r1"], ["c2", "r2"], ["c3", "r3"]] as const) {
    await stack.startAgent(cluster, kubeconfig, via);
    await stack.store.addGrant({ principal: "user:bench", cluster, role: "cluster-user" });
  }
  const token = await stack.userToken("bench");
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const get = (port: number, cluster: string) => new Promise<void>((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: `/v1/clusters/${cluster}/k8s/api`, agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on("error", reject);
  });
  const port = (id: string) => stack!.replica(id).port;

  // Sequential latency, interleaved: local (r1 holds c1) then forwarded (r2 -> r1), round after round.
  const samples: Record<string, number[]> = { local: [], forwarded: [] };
  const [warm, rounds, perRound] = SMOKE ? [5, 1, 20] : [200, 6, 500];
  for (let i = 0; i < warm; i++) await get(port("r1"), "c1"); // warm-up: connections, token caches, JIT
  for (let i = 0; i < warm; i++) await get(port("r2"), "c1");
  for (let round = 0; round < rounds; round++) {
    for (const [name, via] of [["local", "r1"], ["forwarded", "r2"]] as const) {
      for (let i = 0; i < perRound; i++) {
        const t = performance.now();
        await get(port(via), "c1");
        samples[name]!.push(performance.now() - t);
      }
    }
  }
  const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)]!;
  for (const [name, xs] of Object.entries(samples)) console.log(`sequential ${name}: p50 ${(pct(xs, 0.5) * 1000).toFixed(0)} us, p99 ${(pct(xs, 0.99) * 1000).toFixed(0)} us (${xs.length} requests)`);
  console.log(`forwarded hop adds: p50 ${((pct(samples.forwarded!, 0.5) - pct(samples.local!, 0.5)) * 1000).toFixed(0)} us, p99 ${((pct(samples.forwarded!, 0.99) - pct(samples.local!, 0.99)) * 1000).toFixed(0)} us`);

  // Throughput, concurrency 32 for 5 s each, interleaved and repeated.
  const rate = async (targets: [number, string][]) => {
    let done = 0;
    let next = 0;
    const until = performance.now() + (SMOKE ? 500 : 5_000);
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (performance.now() < until) {
        const [p, c] = targets[next++ % targets.length]!;
        await get(p, c);
        done++;
      }
    }));
    return done / (SMOKE ? 0.5 : 5);
  };
  const scenarios: Record<string, [number, string][]> = {
    "one replica: users and the tunnel on r1": [[port("r1"), "c1"]],
    "three replicas, users spread over them, each cluster's tunnel where its users land": [[port("r1"), "c1"], [port("r2"), "c2"], [port("r3"), "c3"]],
    "three replicas, users spread over them, every request forwarded once": [[port("r2"), "c1"], [port("r3"), "c2"], [port("r1"), "c3"]],
  };
  const rates: Record<string, number[]> = {};
  for (let round = 0; round < (SMOKE ? 1 : 3); round++) {
    for (const [name, targets] of Object.entries(scenarios)) (rates[name] ??= []).push(await rate(targets));
  }
  for (const [name, xs] of Object.entries(rates)) console.log(`c=32 ${name}: ${xs.map((x) => x.toFixed(0)).join(", ")} req/s`);
}

async function idle(): Promise<void> {
  const metricsPort = await new Promise<number>((resolve) => {
    const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    resolve(probe.port);
    probe.stop(true);
  });
  stack = await startReplicaStack({ databaseUrl: db.url, ids: ["r1"], direct: true, tls: TLS, relayArgs: ["--metrics-listen", `127.0.0.1:${metricsPort}`] });
  const relay = stack.replica("r1");
  // The JavaScript heap as the relay's own metrics report it (prom-client's default metrics), beside
  // RSS. Bun reports it as of the engine's last collection, so a small run may show no change.
  const heapBytes = async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const used = /^arcrelay_nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1];
    return used === undefined ? undefined : Number(used);
  };
  const heapMiB = async () => {
    const used = await heapBytes();
    return used === undefined ? "unknown" : `${(used / 1048576).toFixed(1)} MiB`;
  };
  const rssOf = async (pid: number) => Number((await Bun.file(`/proc/${pid}/status`).text()).match(/VmRSS:\s+(\d+) kB/)![1]) * 1024;
  const settle = () => new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  await settle();
  const before = await rssOf(relay.proc.pid);
  console.log(`relay RSS with no agent: ${(before / 1048576).toFixed(1)} MiB (JS heap used ${await heapMiB()})`);

  const tokens: string[] = [];
  // WARM agents first, measured apart: what the relay allocates once (its database pool filling,
  // code compiled on first use) is not a cost per agent.
  const WARM = SMOKE ? 5 : 100;
  for (let i = 0; i < AGENTS + WARM; i++) tokens.push((await addCluster(stack.store, `idle-${i}`)).token);
  let connected = 0;
  // The relay's restart, and when each agent's tunnel was up again after it (ms since the SIGTERM).
  let restartedAt: number | undefined;
  const backAt: number[] = [];
  const stop = new AbortController();
  let started = performance.now();
  let warmRss = 0;
  // At most 16 agents enrolling at once: all come from one address, whose authentications the relay
  // verifies 20 at a time (64 more queued); the bench is about idle tunnels, not an enrollment storm.
  const connect = async (from: number, to: number) => {
    for (let i = from; i < to; i += 16) {
      const batch = tokens.slice(i, Math.min(i + 16, to)).map((token, j) => new Promise<void>((resolve) => {
        let first = true;
        void runAgent({
          relay: createRelayConnection(stack!.publicUrl, stack!.relayTls), cluster: `idle-${i + j}`, keyStore: createFileKeyStore(join(dir, "agents", `idle-${i + j}`)), enrollToken: token,
          upstream: loadUpstream({ kubeconfig }), agentVersion: "bench", logger: silentLogger, signal: stop.signal,
          onState: (state) => {
            if (state !== "connected") return;
            if (first) {
              first = false;
              connected++;
              resolve();
            } else if (restartedAt !== undefined) {
              backAt.push(performance.now() - restartedAt);
            }
          },
        });
      }));
      await Promise.all(batch);
    }
  };
  await connect(0, WARM);
  await waitFor("the warm-up agents recorded", async () => (await stack!.store.listPresence(new Date())).length === WARM, 60_000);
  await settle();
  warmRss = await rssOf(relay.proc.pid);
  const warmHeap = await heapBytes();
  console.log(`relay RSS with ${WARM} agents (warm): ${(warmRss / 1048576).toFixed(1)} MiB (JS heap used ${await heapMiB()})`);
  // Then the rest in STEPS steps, RSS after each: the slope through these points is what one
  // more idle agent costs, apart from what the process takes once as it grows (its heap's and
  // allocator's next size steps), which the figures over the empty relay include.
  const points: [number, number][] = [[WARM, warmRss]];
  started = performance.now();
  for (let step = 1; step <= STEPS; step++) {
    const to = WARM + Math.round((AGENTS * step) / STEPS);
    await connect(points.at(-1)![0], to);
    await waitFor("every tunnel recorded", async () => (await stack!.store.listPresence(new Date())).length === to, 120_000);
    await settle();
    points.push([to, await rssOf(relay.proc.pid)]);
    console.log(`relay RSS with ${to} idle agents: ${(points.at(-1)![1] / 1048576).toFixed(1)} MiB (JS heap used ${await heapMiB()})`);
  }
  console.log(`${connected - WARM} agents connected in ${((performance.now() - started) / 1000).toFixed(1)} s after the warm-up (settling included)`);
  const after = points.at(-1)![1];
  const pointsAt = performance.now();
  const endHeap = await heapBytes();
  const heapPerAgent = warmHeap === undefined || endHeap === undefined ? "unknown" : `${((endHeap - warmHeap) / AGENTS / 1024).toFixed(1)} KiB`;
  console.log(`per agent: ${(leastSquaresSlope(points) / 1024).toFixed(1)} KiB (slope from ${WARM} to ${AGENTS + WARM} agents); beyond the warm ${WARM}: ${((after - warmRss) / AGENTS / 1024).toFixed(1)} KiB; over the empty relay: ${((after - before) / (AGENTS + WARM) / 1024).toFixed(1)} KiB; JS heap beyond the warm ${WARM}: ${heapPerAgent}`);

  // Statements the database ran, from its own counters, over one minute of idleness (two heartbeats at least).
  const sql = new SQL(db.url, { max: 1 });
  const name = new URL(db.url).pathname.slice(1);
  const counters = async () => {
    const [row] = (await sql`SELECT xact_commit + xact_rollback AS xacts, tup_returned + tup_fetched AS reads FROM pg_stat_database WHERE datname = ${name}`) as { xacts: string; reads: string }[];
    return { xacts: Number(row!.xacts), reads: Number(row!.reads) };
  };
  await sql`SELECT pg_stat_clear_snapshot()`;
  const t0 = await counters();
  const windowS = SMOKE ? 2 : 60;
  await new Promise((resolve) => setTimeout(resolve, windowS * 1000));
  await sql`SELECT pg_stat_clear_snapshot()`;
  const t1 = await counters();
  // Our own two counter reads and two snapshot clears are transactions too.
  console.log(`database transactions per second with ${AGENTS + WARM} idle agents: ${((t1.xacts - t0.xacts - 4) / windowS).toFixed(2)} (over ${windowS} s)`);
  await sql.close();
  // The same tunnels later (after the database minute): the allocators have had time to give back
  // what the connection storm left (RSS moves in steps of megabytes, so one reading can be off by several).
  const settled = await rssOf(relay.proc.pid);
  console.log(`relay RSS ${((performance.now() - pointsAt) / 1000).toFixed(0)} s later: ${(settled / 1048576).toFixed(1)} MiB (JS heap used ${await heapMiB()}); beyond the warm ${WARM}: ${((settled - warmRss) / AGENTS / 1024).toFixed(1)} KiB per agent; over the empty relay: ${((settled - before) / (AGENTS + WARM) / 1024).toFixed(1)} KiB`);

  // A relay restart (SIGTERM: it drains, sends every agent GOAWAY and hands its tunnels back, then a
  // new process on the same port): how long until every agent has its tunnel again.
  const total = AGENTS + WARM;
  restartedAt = performance.now();
  const restarted = await stack.restart("r1", "SIGTERM");
  const upAgain = performance.now() - restartedAt;
  await waitFor(`all ${total} agents back`, () => backAt.length >= total, 300_000);
  const sorted = [...backAt].sort((a, b) => a - b);
  const at = (q: number) => (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! / 1000).toFixed(1);
  console.log(`relay restart (SIGTERM, new process ready ${(upAgain / 1000).toFixed(1)} s later): agents back, from the SIGTERM: half ${at(0.5)} s, 99% ${at(0.99)} s, all ${(sorted.at(-1)! / 1000).toFixed(1)} s`);
  // The new process holds the same tunnels without having enrolled anyone: a relay's memory as it
  // runs for long, after a restart or a rollout, when its agents come back with the keys they have.
  await waitFor("every tunnel recorded after the restart", async () => (await stack!.store.listPresence(new Date())).length === total, 120_000);
  await settle();
  const again = await rssOf(restarted.proc.pid);
  console.log(`relay RSS after the restart with all ${total} agents back: ${(again / 1048576).toFixed(1)} MiB (JS heap used ${await heapMiB()}); over the empty relay: ${((again - before) / total / 1024).toFixed(1)} KiB per agent`);
  stop.abort();
}
