// A full in-process flow logged at debug: no user token, agent token, enrollment secret or agent SA token in any line.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { createLogger } from "../../../lib/observe/index.ts";
import { CLUSTER, OTHER_CLUSTER, completeResponses, rawExchange, rawRequest, startHarness, type Harness } from "./harness.ts";

setDefaultTimeout(30_000);
let h: Harness;
const relayLines: string[] = [];
const agentLines: string[] = [];
const KUBE_TOKEN = "kube-sa-token-" + crypto.randomUUID();
const QUERY_SECRET = "query-secret-" + crypto.randomUUID();

beforeAll(async () => {
  h = await startHarness({
    logger: createLogger({ component: "relay", level: "debug", write: (l) => relayLines.push(l) }),
    agentLogger: createLogger({ component: "agent", level: "debug", write: (l) => agentLines.push(l) }),
    relayOptions: { authRateLimit: { maxFailures: 3 } },
  });
});
let stopped: Promise<void> | undefined;
afterAll(() => stopped ?? h?.stop());

const k8s = (path: string) => `${h.base}/v1/clusters/${CLUSTER}/k8s${path}`;

/** JWTs the agent presented to the relay (one per connection), read off the wire. */
function agentJwts(): string[] {
  return [...h.agentWire().matchAll(/authorization: Bearer ([A-Za-z0-9_.-]+)/gi)].map((m) => m[1]!);
}

test("no credential of any kind appears in a relay or agent log line", async () => {
  const tampered = h.alice.slice(0, -6) + "AAAAAA";
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

  // Successful traffic: plain, with a secret in the query, token mode, cluster details, an upgrade.
  expect((await fetch(k8s("/api/v1/pods"), { headers: bearer(h.alice) })).status).toBe(200);
  expect((await fetch(k8s(`/api/v1/pods?token=${QUERY_SECRET}&access_token=${h.alice}`), { headers: bearer(h.alice) })).status).toBe(200);
  expect((await fetch(k8s("/api/v1/pods"), { headers: { ...bearer(h.alice), "x-arc-kube-token": KUBE_TOKEN } })).status).toBe(200);
  expect(h.requests.at(-1)?.headers["authorization"]).toBe(`Bearer ${KUBE_TOKEN}`);
  expect((await fetch(`${h.base}/v1/clusters/${CLUSTER}`, { headers: bearer(h.alice) })).status).toBe(200);
  await rawExchange(h.port, rawRequest("GET", `/v1/clusters/${CLUSTER}/k8s/api/v1/namespaces/default/pods/demo/exec?command=sh`, [
    ...Object.entries(bearer(h.alice)).map(([k, v]) => `${k}: ${v}`), "Connection: Upgrade", "Upgrade: websocket",
    "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
  ]), { until: (received) => completeResponses(received) === 1 });

  // Refusals: forbidden, broken tokens (until the limiter steps in), a reused enrollment secret, a forged agent.
  expect((await fetch(`${h.base}/v1/clusters/${OTHER_CLUSTER}/k8s/version`, { headers: bearer(h.alice) })).status).toBe(403);
  expect((await fetch(k8s("/version"), { headers: bearer(tampered) })).status).toBe(401);
  expect((await fetch(k8s("/version"), { headers: bearer(`${tampered}x`) })).status).toBe(401);
  expect((await fetch(k8s("/version"), { headers: bearer(h.bob) })).status).toBe(403);
  expect((await fetch(`${h.base}/v1/clusters/${CLUSTER}`, { headers: bearer(tampered) })).status).toBe(401);
  // By now the failures above may have tripped the limiter (the cluster details route counts too).
  expect([401, 429]).toContain((await fetch(k8s("/version"), { headers: { "x-arc-kube-token": KUBE_TOKEN } })).status);
  const reEnroll = await fetch(`${h.base}/v1/agent/enroll`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ cluster: CLUSTER, token: h.enrollToken, publicKey: { kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" } }),
  });
  expect([401, 429]).toContain(reEnroll.status);
  const agentToken = agentJwts()[0]!;
  expect(agentToken).toBeDefined();
  await rawExchange(h.port, rawRequest("GET", "/v1/agent/connect", [
    `Authorization: Bearer ${agentToken.slice(0, -4)}AAAA`, "Connection: Upgrade", "Upgrade: websocket",
    "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol: arc-tunnel.v1",
  ]), { until: (received) => completeResponses(received) === 1 });
  for (let i = 0; i < 4; i++) await fetch(k8s("/version"), { headers: bearer(`${tampered}${i}`) });
  // Once relay and agent have shut down, every line they will write is in, shutdown lines included.
  stopped = h.stop();
  await stopped;

  const logs = [...relayLines, ...agentLines];
  expect(relayLines.some((l) => l.includes('"msg":"request refused"'))).toBe(true);
  expect(agentLines.some((l) => l.includes('"msg":"forwarding"'))).toBe(true);
  for (const l of logs) JSON.parse(l); // one JSON object per line

  const secrets: [string, string][] = [
    ["alice's token", h.alice], ["bob's token", h.bob], ["a tampered token", tampered],
    ["the agent's ServiceAccount token", h.agentSaToken], ["the enrollment secret", h.enrollToken],
    ["the caller's Kubernetes token (token mode)", KUBE_TOKEN], ["a secret in the query string", QUERY_SECRET],
    ...agentJwts().map((t, i) => [`agent connection JWT #${i}`, t] as [string, string]),
  ];
  for (const [what, secret] of secrets) {
    const leaks = logs.filter((l) => l.includes(secret) || jwtParts(secret).some((p) => l.includes(p)));
    expect({ what, leaks }).toEqual({ what, leaks: [] });
  }
});

/** Payload and signature of a JWT: either alone is as bad as the whole token in a log. */
function jwtParts(token: string): string[] {
  const parts = token.split(".");
  return parts.length === 3 ? parts.slice(1).filter((p) => p.length >= 16) : [];
}
