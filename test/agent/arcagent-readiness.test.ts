// arcagent's /readyz (the chart's readiness probe): 200 while its tunnel to the relay is up, 503 with why otherwise.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { silentLogger } from "../../lib/observe/index.ts";
import { addCluster, startRelay, type RunningRelay } from "../../lib/relay/index.ts";
import { freePorts } from "../cluster/control-plane.ts";
import { writeKubeconfig } from "../cluster/kubeconfig-file.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(30_000);
const ROOT = join(import.meta.dir, "..", "..");
let dir: string;
let upstream: http.Server;
let relay: RunningRelay;
let agent: Subprocess | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-readyz-"));
  upstream = http.createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end('{"major":"1","minor":"32","gitVersion":"v1.32.0"}'));
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  await writeKubeconfig(join(dir, "kubeconfig"), { server: `http://127.0.0.1:${(upstream.address() as { port: number }).port}`, userName: "agent", user: { token: "agent-sa" } });
  relay = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "relay"), logger: silentLogger });
});

afterAll(async () => {
  agent?.kill("SIGKILL");
  await agent?.exited;
  await relay?.close().catch(() => undefined);
  upstream.close();
  await rm(dir, { recursive: true, force: true });
});

async function readyz(port: number): Promise<{ status: number; body: string } | undefined> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
  return res && { status: res.status, body: await res.text() };
}

test("ready while its tunnel is up; once the relay is gone, 503 with why", async () => {
  const { token } = await addCluster(relay.store, "ready");
  const [metricsPort] = await freePorts(1);
  const start = (relayUrl: string) => Bun.spawn([
    process.execPath, "cmd/arcagent.ts", "--relay", relayUrl, "--cluster", "ready", "--state-dir", join(dir, "agent"),
    "--kubeconfig", join(dir, "kubeconfig"), "--metrics-listen", `127.0.0.1:${metricsPort}`, "--reconnect-backoff-base", "100ms", "--reconnect-backoff-max", "200ms",
  ], { cwd: ROOT, env: { PATH: process.env.PATH ?? "", ARC_ENROLL_TOKEN: token }, stdout: "ignore", stderr: "ignore" });

  agent = start(relay.url);
  await waitFor("the agent's tunnel", async () => (await readyz(metricsPort!))?.status === 200, 15_000);
  expect(await readyz(metricsPort!)).toEqual({ status: 200, body: "ok\n" });

  await relay.close();
  await waitFor("the agent to see its tunnel gone", async () => (await readyz(metricsPort!))?.status === 503, 15_000);
  expect(await readyz(metricsPort!)).toEqual({ status: 503, body: "the agent's tunnel to the relay is not up; its log says why\n" });
});
