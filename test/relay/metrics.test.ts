// The relay's Prometheus endpoint: on its own listener, what an operator graphs, and no user, path or request id in a label.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createAgentMetrics } from "../../lib/agent/index.ts";
import { CLUSTER, startHarness, type Harness } from "./hardening/harness.ts";

setDefaultTimeout(30_000);
let h: Harness;
const agentMetrics = createAgentMetrics({ processMetrics: false });

beforeAll(async () => {
  h = await startHarness({ relayOptions: { metricsListen: { host: "127.0.0.1", port: 0 } }, agentMetrics });
});
afterAll(() => h?.stop());

async function scrape(): Promise<string> {
  const res = await fetch(h.relay.metricsUrl!);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
  return res.text();
}

/** The value of one series, by metric name and exact label set as Prometheus prints it. */
function value(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : undefined;
}

describe("GET /metrics on --metrics-listen", () => {
  test("is served on its own listener only, never on the relay's public port", async () => {
    expect(new URL(h.relay.metricsUrl!).port).not.toBe(String(h.port));
    const onPublic = await fetch(`${h.base}/metrics`);
    expect(onPublic.status).toBe(404);
    expect((await fetch(h.relay.metricsUrl!.replace("/metrics", "/other"))).status).toBe(404);
  });

  test("counts requests by cluster, verb, code and kind, with time to the response head and bytes", async () => {
    const before = await scrape();
    const ok = `arcrelay_requests_total{cluster="${CLUSTER}",verb="GET",code="200",kind="request"}`;
    const start = value(before, ok) ?? 0;
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${h.base}/v1/clusters/${CLUSTER}/k8s/api/v1/namespaces/default/pods`, { headers: { authorization: `Bearer ${h.alice}` } });
      await res.arrayBuffer();
    }
    const after = await scrape();
    expect(value(after, ok)).toBe(start + 3);
    expect(value(after, `arcrelay_request_duration_seconds_count{kind="request"}`)).toBeGreaterThanOrEqual(3);
    expect(value(after, `arcrelay_request_bytes_total{direction="out"}`)).toBeGreaterThan(0);
    expect(value(after, `arcrelay_active_streams{kind="request"}`)).toBe(0);
    expect(value(after, "arcrelay_tunnels_connected")).toBe(1);
    expect(value(after, `arcrelay_tunnel_connects_total{cluster="${CLUSTER}"}`)).toBeGreaterThanOrEqual(1);
  });

  test("refused credentials are counted by reason; the refused request counts with no cluster label value", async () => {
    const before = value(await scrape(), `arcrelay_authentication_failures_total{reason="unauthorized"}`) ?? 0;
    const res = await fetch(`${h.base}/v1/clusters/${CLUSTER}/k8s/api/v1/namespaces`, { headers: { authorization: "Bearer not-a-token" } });
    expect(res.status).toBe(401);
    const after = await scrape();
    expect(value(after, `arcrelay_authentication_failures_total{reason="unauthorized"}`)).toBe(before + 1);
    expect(value(after, `arcrelay_requests_total{cluster="",verb="GET",code="401",kind="request"}`)).toBeGreaterThanOrEqual(1);
  });

  test("store latency per operation, and process metrics", async () => {
    const text = await scrape();
    expect(text).toMatch(/arcrelay_store_operation_duration_seconds_count\{operation="getCluster"\} \d+/);
    expect(text).toContain("arcrelay_process_resident_memory_bytes");
  });

  test("no label carries a user, a token, a path or a request id", async () => {
    const text = await scrape();
    const labels = text.split("\n").filter((l) => !l.startsWith("#") && l.includes("{")).map((l) => l.slice(l.indexOf("{"), l.lastIndexOf("}") + 1));
    const joined = labels.join("\n");
    expect(joined).not.toContain("alice");
    expect(joined).not.toContain("/api/");
    expect(joined).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-/);
    expect(joined).not.toContain(h.alice.slice(0, 20));
  });
});

describe("the agent's metrics", () => {
  test("its tunnel is up and the requests it served are counted by verb, code and kind", async () => {
    const res = await fetch(`${h.base}/v1/clusters/${CLUSTER}/k8s/api/v1/namespaces/default/pods`, { headers: { authorization: `Bearer ${h.alice}` } });
    await res.arrayBuffer();
    const text = await agentMetrics.registry.metrics();
    expect(value(text, "arcagent_tunnel_connected")).toBe(1);
    expect(value(text, "arcagent_tunnel_connects_total")).toBe(1);
    expect(value(text, `arcagent_requests_total{verb="GET",code="200",kind="request"}`)).toBeGreaterThanOrEqual(1);
    expect(value(text, `arcagent_request_duration_seconds_count{kind="request"}`)).toBeGreaterThanOrEqual(1);
    expect(value(text, `arcagent_active_streams{kind="request"}`)).toBe(0);
  });
});
