// 200 agents cut off by a relay restart: they come back spread out (full jitter), not in one
// second, and all of them within 30 s. Relay and agents share this process, as in
// bench/tunnel-bench.ts; the relay restarts on the same port and data dir, as a pod would.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFileKeyStore, loadUpstream, runAgent } from "../../lib/agent/index.ts";
import { createRelayConnection } from "../../lib/client/index.ts";
import { createLogger, silentLogger } from "../../lib/observe/index.ts";
import { addCluster, startRelay, type RunningRelay } from "../../lib/relay/index.ts";
import { writeKubeconfig } from "../cluster/kubeconfig-file.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(120_000);
const AGENTS = 200;

let dir: string;
let upstream: http.Server;
let relay: RunningRelay;
let port: number;
const stop = new AbortController();
/** When each cluster's tunnel registered at the current relay (ms since epoch). */
let connectedAt = new Map<string, number>();

/** A relay whose "agent connected" log lines record the time per cluster. */
async function start(): Promise<RunningRelay> {
  const logger = createLogger({
    component: "arcrelay",
    level: "info",
    write: (line) => {
      const entry = JSON.parse(line) as { msg: string; cluster?: string };
      if (entry.msg === "agent connected" && entry.cluster && !connectedAt.has(entry.cluster)) connectedAt.set(entry.cluster, performance.now());
    },
  });
  return startRelay({ host: "127.0.0.1", port, dataDir: join(dir, "relay"), logger });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-storm-"));
  upstream = http.createServer((_req, res) => res.end("{}"));
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  const kubeconfig = join(dir, "kubeconfig");
  await writeKubeconfig(kubeconfig, { server: `http://127.0.0.1:${(upstream.address() as { port: number }).port}`, userName: "agent", user: { token: "sa" } });
  port = 0;
  relay = await start();
  port = relay.port;
  const endpoint = createRelayConnection(relay.url);
  for (let i = 0; i < AGENTS; i++) {
    const cluster = `c${i}`;
    const { token } = await addCluster(relay.store, cluster);
    void runAgent({
      relay: endpoint, cluster, keyStore: createFileKeyStore(join(dir, "agents", cluster)), enrollToken: token,
      upstream: loadUpstream({ kubeconfig }), agentVersion: "test", logger: silentLogger, signal: stop.signal, drainTimeoutMs: 1_000,
    });
  }
  await waitFor("every agent's first tunnel", () => connectedAt.size === AGENTS, 60_000);
});

afterAll(async () => {
  stop.abort();
  await relay?.close();
  upstream?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

// A relay killed outright (no GOAWAY) is in test/e2e/faults.e2e.test.ts; here the agents learn
// of the restart from the drain, as in a rolling restart.
test(`${AGENTS} agents, relay restarted (drained): they do not all come back in the same second, and all are back within 30 s`, async () => {
  await relay.shutdown({ delayMs: 0, timeoutMs: 1_000 });
  connectedAt = new Map();
  relay = await start();
  // The monotonic clock: this machine's wall clock was seen to step by 47 s inside a 3 s run.
  const restartedAt = performance.now();
  await waitFor("every agent back", () => connectedAt.size === AGENTS, 30_000);
  const seconds = new Map<number, number>();
  for (const at of connectedAt.values()) {
    const second = Math.floor((at - restartedAt) / 1000);
    seconds.set(second, (seconds.get(second) ?? 0) + 1);
  }
  const last = Math.max(...connectedAt.values()) - restartedAt;
  const busiest = Math.max(...seconds.values());
  console.error(`[storm] all ${AGENTS} back within ${last} ms; per second: ${JSON.stringify(Object.fromEntries([...seconds].sort((a, b) => a[0] - b[0])))}`);
  expect(last).toBeLessThan(30_000);
  expect(busiest).toBeLessThan(AGENTS);
});
