// Measures the relay <-> agent path in one process: sequential latency, concurrent rate, bulk throughput.
// Run: bun bench/tunnel-bench.ts   (results go in bench/BENCHMARKS.md with the command and machine)
//   BENCH_TARGET=direct bun bench/tunnel-bench.ts   the same client against the stand-in upstream itself
//   BENCH_DEBUG=1                                   the relay's log on stderr
if (process.argv.includes("--help") || process.argv.includes("-h")) {
  console.log("usage: [BENCH_TARGET=direct] [BENCH_DEBUG=1] bun bench/tunnel-bench.ts   (no flags; prints one JSON object)");
  process.exit(0);
}
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFileKeyStore, loadUpstream, runAgent } from "../lib/agent/index.ts";
import { createRelayConnection } from "../lib/client/index.ts";
import { createLogger, silentLogger } from "../lib/observe/index.ts";
import { addCluster, loadStoredIssuer, startRelay } from "../lib/relay/index.ts";
import { writeKubeconfig } from "../test/cluster/kubeconfig-file.ts";

const BULK_BYTES = 64 * 1024 * 1024;
const chunk = Buffer.alloc(1024 * 1024, 120);

// A stand-in upstream: tiny JSON for small requests, a fixed-size body for bulk.
const upstream = http.createServer((req, res) => {
  if (req.url?.startsWith("/bulk")) {
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(BULK_BYTES) });
    let sent = 0;
    const write = () => {
      while (sent < BULK_BYTES) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once("drain", write);
      }
      res.end();
    };
    return write();
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end('{"kind":"Status","status":"Success"}');
});
await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
const upstreamPort = (upstream.address() as { port: number }).port;

const dir = await mkdtemp(join(tmpdir(), "arc-bench-"));
const kubeconfig = join(dir, "kubeconfig");
await writeKubeconfig(kubeconfig, { server: `http://127.0.0.1:${upstreamPort}`, userName: "agent", user: { token: "bench" } });
// 200 requests at once from one user: above the per-user default of 100, so raised here.
const relay = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "relay"), maxRequestsPerUser: 1000, logger: process.env.BENCH_DEBUG ? createLogger({ component: "bench" }) : silentLogger });
const { token: enrollToken } = await addCluster(relay.store, "bench");
await relay.store.addGrant({ principal: "user:bench", cluster: "bench", role: "cluster-user" });
const userToken = await (await loadStoredIssuer(relay.store)).signUserToken({ user: "bench" });
const controller = new AbortController();
let connected!: () => void;
const up = new Promise<void>((resolve) => { connected = resolve; });
void runAgent({
  relay: createRelayConnection(relay.url), cluster: "bench", keyStore: createFileKeyStore(join(dir, "agent")), enrollToken,
  upstream: loadUpstream({ kubeconfig }), agentVersion: "bench", logger: silentLogger, signal: controller.signal,
  onState: (s) => s === "connected" && connected(),
});
await up;

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
// BENCH_TARGET=direct measures the same client against the upstream itself, for comparison.
const direct = process.env.BENCH_TARGET === "direct";
const base = direct ? `http://127.0.0.1:${upstreamPort}` : `${relay.url}/v1/clusters/bench/k8s`;

function get(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}${path}`, { agent, headers: { authorization: `Bearer ${userToken}` } }, (res) => {
      let bytes = 0;
      res.on("data", (d: Buffer) => { bytes += d.length; });
      let body = "";
      res.on("data", (d: Buffer) => { if (res.statusCode !== 200 && body.length < 2000) body += d; });
      res.on("end", () => (res.statusCode === 200 ? resolve(bytes) : reject(new Error(`status ${res.statusCode}: ${body}`))));
    });
    req.on("error", reject);
  });
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

for (let i = 0; i < 200; i++) await get("/warmup");
const latencies: number[] = [];
for (let i = 0; i < 2000; i++) {
  const t = performance.now();
  await get("/api/v1/namespaces/default/configmaps/x");
  latencies.push((performance.now() - t) * 1000);
}
latencies.sort((a, b) => a - b);

const concurrency = 200;
const total = 20_000;
let next = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: concurrency }, async () => { while (next++ < total) await get("/api/v1/pods"); }));
const rate = total / ((performance.now() - t0) / 1000);

const t1 = performance.now();
const bytes = await get("/bulk");
const mbps = bytes / 1024 / 1024 / ((performance.now() - t1) / 1000);

console.log(JSON.stringify({
  target: direct ? "upstream directly" : "relay -> tunnel -> agent -> upstream",
  sequentialSmallRequest: { n: latencies.length, p50_us: Math.round(percentile(latencies, 0.5)), p99_us: Math.round(percentile(latencies, 0.99)) },
  concurrent: { concurrency, requests: total, requestsPerSecond: Math.round(rate) },
  bulk: { bytes, MiBps: Math.round(mbps) },
}, null, 2));

controller.abort();
agent.destroy();
await relay.close();
upstream.close();
await rm(dir, { recursive: true, force: true });
process.exit(0);
