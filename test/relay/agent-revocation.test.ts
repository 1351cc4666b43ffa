// Agent keys at the relay over HTTP: revocation closes the tunnel, rotation needs proof, cluster A's key never serves B.
import { afterAll, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JWK } from "jose";
import { createFileKeyStore, loadUpstream, runAgent } from "../../lib/agent/index.ts";
import { createRelayConnection } from "../../lib/client/index.ts";
import { generateSigningKeyPair, signAgentToken } from "../../lib/auth/index.ts";
import { createLogger, silentLogger } from "../../lib/observe/index.ts";
import { addCluster, loadStoredIssuer, startRelay, type RunningRelay } from "../../lib/relay/index.ts";
import { enrollAgent } from "../../lib/relay/enrollment.ts";
import { writeKubeconfig } from "../cluster/kubeconfig-file.ts";
import { timeouts } from "../../lib/tunnel/index.ts";
import { waitFor, within } from "../support/wait-for.ts";

setDefaultTimeout(20_000);

const ROTATE = "/v1/agent/rotate-key";
type KeyPair = { privateJwk: JWK; publicJwk: JWK };

let dir: string;
let upstream: http.Server;
let relay: RunningRelay;
let kubeconfig: string;
let alpha: KeyPair;
let beta: KeyPair;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-revoke-"));
  upstream = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    // A watch stays open until its client or the tunnel goes.
    if (req.url?.includes("watch=true")) res.flushHeaders();
    else res.end('{"kind":"Status","status":"Success"}');
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  kubeconfig = join(dir, "kubeconfig");
  await writeKubeconfig(kubeconfig, { server: `http://127.0.0.1:${(upstream.address() as { port: number }).port}`, userName: "agent", user: { token: "agent-sa" } });
  relay = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "relay"), logger: silentLogger });
  for (const name of ["alpha", "beta"]) await addCluster(relay.store, name);
});

beforeEach(async () => {
  alpha = await generateSigningKeyPair("EdDSA");
  beta = await generateSigningKeyPair("EdDSA");
  await relay.store.setAgentKey("alpha", alpha.publicJwk);
  await relay.store.setAgentKey("beta", beta.publicJwk);
});

afterAll(async () => {
  await relay.close();
  upstream.close();
  await rm(dir, { recursive: true, force: true });
});

describe("revocation", () => {
  test("clearing the agent key closes the tunnel within 5 s, requests get 503 offline, the agent logs how to re-enroll", async () => {
    const { token: enrollToken } = await addCluster(relay.store, "gamma");
    await relay.store.addGrant({ principal: "user:alice", cluster: "gamma", role: "cluster-user" });
    const userToken = await (await loadStoredIssuer(relay.store)).signUserToken({ user: "alice" });
    const states: string[] = [];
    const agentLog: string[] = [];
    const controller = new AbortController();
    void runAgent({
      relay: createRelayConnection(relay.url), cluster: "gamma", keyStore: createFileKeyStore(join(dir, "gamma")), enrollToken,
      upstream: loadUpstream({ kubeconfig }), agentVersion: "test", signal: controller.signal,
      logger: createLogger({ component: "arcagent", write: (line) => void agentLog.push(line) }),
      onState: (s) => void states.push(s),
    });
    try {
      await waitFor("the agent to connect", () => states.includes("connected"), 10_000);
      expect((await get(relay.url + "/v1/clusters/gamma/k8s/api", userToken)).status).toBe(200);
      const watch = await fetch(relay.url + "/v1/clusters/gamma/k8s/api/v1/pods?watch=true", { headers: { authorization: `Bearer ${userToken}` } });
      expect(watch.status).toBe(200);
      const watchEnded = watch.text().then(() => "ended", () => "cut");

      await relay.store.setAgentKey("gamma", undefined);
      // Cut with the tunnel, not left to finish: a graceful close would have let it run the
      // tunnel's whole drain timeout (the newcomer watched one live 5 s after its agent was revoked).
      expect(await within("the open watch to be cut", watchEnded, timeouts.TUNNEL_DRAIN_TIMEOUT_MS - 1_000)).toBe("cut");
      await waitFor("the revoked tunnel to close", () => states.includes("disconnected"), 5_000);
      const offline = await get(relay.url + "/v1/clusters/gamma/k8s/api", userToken);
      expect(offline.status).toBe(503);
      expect(offline.body).toContain("offline");
      // Nothing reached the cluster: clients (arcproxy, client-go) may send it again after this.
      expect(offline.retryAfter).toBe("2");

      await waitFor("the agent to log the refusal", () => agentLog.some((l) => l.includes("relay refused the agent's key")), 10_000);
      const refusal = JSON.parse(agentLog.find((l) => l.includes("relay refused the agent's key"))!) as { level: string; msg: string; error: { message: string } };
      expect(refusal.level).toBe("error");
      expect(refusal.msg).toContain("arcrelay cluster enroll-token gamma");
      expect(refusal.error.message).toContain("cluster gamma has no enrolled agent");
      expect(states.at(-1)).toBe("disconnected");
    } finally {
      controller.abort();
    }
  });
});

describe("enrollment mistakes an agent recovers from", () => {
  /** Starts an agent with a fresh logger; resolves how its first start ended: connected, or the error it stopped with. */
  async function startAgent(stateDir: string, cluster: string, enrollToken: string | undefined) {
    const states: string[] = [];
    const controller = new AbortController();
    let stopped: Error | undefined;
    const run = runAgent({
      relay: createRelayConnection(relay.url), cluster, keyStore: createFileKeyStore(stateDir), ...(enrollToken ? { enrollToken } : {}),
      upstream: loadUpstream({ kubeconfig }), agentVersion: "test", signal: controller.signal, logger: silentLogger,
      backoff: { baseMs: 10, maxMs: 50 },
      onState: (state) => void states.push(state),
    }).catch((error: Error) => { stopped = error; });
    await waitFor("the agent to connect or stop", () => states.includes("connected") || stopped !== undefined, 10_000);
    controller.abort();
    await run;
    return stopped ? `stopped: ${stopped.message}` : "connected";
  }

  test("a mistyped enrollment token, twice, then the right one: the agent stops saying what to do, then enrolls (it used to mark its key enrolled and redial forever)", async () => {
    const { token } = await addCluster(relay.store, "delta");
    const stateDir = join(dir, "delta-agent");
    expect(await startAgent(stateDir, "delta", "arcenroll_typo")).toContain('enrollment token for cluster "delta" is invalid, expired or already used');
    expect(await startAgent(stateDir, "delta", "arcenroll_typo")).toBe(
      "stopped: the relay does not know this agent's key, saved for an enrollment that did not go through (its token was invalid, expired, already used, or for another cluster): " +
        "create a new token with `arcrelay cluster enroll-token delta` and start the agent again with --enroll-token",
    );
    expect(await startAgent(stateDir, "delta", token)).toBe("connected");
    // Enrolled for good: the next start needs no token.
    expect(await startAgent(stateDir, "delta", undefined)).toBe("connected");
  });

  test("a start that crashed after the relay took its token connects with the stored key, whose enrollment the relay had registered", async () => {
    const { token } = await addCluster(relay.store, "epsilon");
    const stateDir = join(dir, "epsilon-agent");
    const keyStore = createFileKeyStore(stateDir);
    const keys = await generateSigningKeyPair("EdDSA");
    // What the crashed start left: the key saved as not yet enrolled, the token spent at the relay.
    await keyStore.save({ cluster: "epsilon", ...keys, enrolled: false });
    await enrollAgent(relay.store, { cluster: "epsilon", token, publicKey: keys.publicJwk });
    expect(await startAgent(stateDir, "epsilon", token)).toBe("connected");
    expect((await keyStore.load())?.enrolled).toBe(true);
  });

  test("a mistyped --cluster does not burn the token: the agent stops naming the token's cluster, then enrolls with it", async () => {
    const { token } = await addCluster(relay.store, "zeta");
    const stateDir = join(dir, "zeta-agent");
    const named = 'this enrollment token is for cluster "zeta", not "zteta": run the agent with --cluster zeta; the token was not used and is still valid';
    expect(await startAgent(stateDir, "zteta", token)).toContain(named);
    // Started again as it was (a restart loop): the same advice, never one about the wrong cluster.
    expect(await startAgent(stateDir, "zteta", token)).toContain(named);
    expect(await startAgent(stateDir, "zeta", token)).toBe("connected");
  });
});

describe("an agent of cluster A can never act as cluster B", () => {
  test("alpha's key signing a token for beta is refused at /v1/agent/connect", async () => {
    const token = await signAgentToken({ privateJwk: alpha.privateJwk, cluster: "beta", audience: relay.url });
    const refused = await agentConnect(token);
    expect(refused.status).toBe(401);
    expect(refused.body).toContain("not signed by the enrolled key of cluster beta");
    expect((await agentConnect(await signAgentToken({ privateJwk: beta.privateJwk, cluster: "beta", audience: relay.url }))).status).toBe(101);
  });

  test("alpha's key cannot rotate beta's key", async () => {
    const next = await generateSigningKeyPair("EdDSA");
    const response = await rotate(
      await signAgentToken({ privateJwk: alpha.privateJwk, cluster: "beta", audience: relay.url }),
      { publicKey: next.publicJwk, proof: await signAgentToken({ privateJwk: next.privateJwk, cluster: "beta", audience: relay.url }) },
    );
    expect(response.status).toBe(401);
    expect((await relay.store.getCluster("beta"))?.agentKey).toEqual(beta.publicJwk);
  });
});

describe("POST /v1/agent/rotate-key", () => {
  test("with proof of the new key it switches the key; sending the same key again changes nothing", async () => {
    const next = await generateSigningKeyPair("EdDSA");
    const body = { publicKey: next.publicJwk, proof: await signAgentToken({ privateJwk: next.privateJwk, cluster: "alpha", audience: relay.url }) };
    const first = await rotate(await signAgentToken({ privateJwk: alpha.privateJwk, cluster: "alpha", audience: relay.url }), body);
    expect(first.status).toBe(200);
    expect(JSON.parse(first.body)).toEqual({ cluster: "alpha", kid: next.publicJwk.kid, rotated: true });
    expect((await relay.store.getCluster("alpha"))?.agentKey?.kid).toBe(next.publicJwk.kid!);

    const again = await rotate(await signAgentToken({ privateJwk: next.privateJwk, cluster: "alpha", audience: relay.url }), body);
    expect(JSON.parse(again.body)).toEqual({ cluster: "alpha", kid: next.publicJwk.kid, rotated: false });
    expect((await agentConnect(await signAgentToken({ privateJwk: alpha.privateJwk, cluster: "alpha", audience: relay.url }))).status).toBe(401);
  });

  test.each([
    ["the proof is signed by another key", 401, "signed with the new key", async (next: KeyPair, other: KeyPair) =>
      ({ publicKey: next.publicJwk, proof: await signAgentToken({ privateJwk: other.privateJwk, cluster: "alpha", audience: relay.url }) })],
    ["the proof is for another cluster", 401, "the proof names cluster beta", async (next: KeyPair) =>
      ({ publicKey: next.publicJwk, proof: await signAgentToken({ privateJwk: next.privateJwk, cluster: "beta", audience: relay.url }) })],
    ["the proof is for another relay", 401, "signed with the new key", async (next: KeyPair) =>
      ({ publicKey: next.publicJwk, proof: await signAgentToken({ privateJwk: next.privateJwk, cluster: "alpha", audience: "https://elsewhere.test" }) })],
    ["the proof is missing", 400, "needs a proof", async (next: KeyPair) => ({ publicKey: next.publicJwk })],
    ["the new key is a private JWK", 400, "Ed25519 public JWK", async (next: KeyPair) =>
      ({ publicKey: next.privateJwk, proof: await signAgentToken({ privateJwk: next.privateJwk, cluster: "alpha", audience: relay.url }) })],
  ] as const)("refused when %s (%i) and the stored key is unchanged", async (_case, status, message, makeBody) => {
    const [next, other] = await Promise.all([generateSigningKeyPair("EdDSA"), generateSigningKeyPair("EdDSA")]);
    const response = await rotate(await signAgentToken({ privateJwk: alpha.privateJwk, cluster: "alpha", audience: relay.url }), await makeBody(next, other));
    expect(response.status).toBe(status);
    expect(JSON.parse(response.body)).toMatchObject({ kind: "Status", code: status });
    expect(response.body).toContain(message);
    expect((await relay.store.getCluster("alpha"))?.agentKey).toEqual(alpha.publicJwk);
  });

  test("refused without an agent token signed by the current key", async () => {
    const next = await generateSigningKeyPair("EdDSA");
    const body = { publicKey: next.publicJwk, proof: await signAgentToken({ privateJwk: next.privateJwk, cluster: "alpha", audience: relay.url }) };
    expect((await rotate(undefined, body)).status).toBe(401);
    // The new key cannot vouch for itself.
    expect((await rotate(body.proof, body)).status).toBe(401);
    expect((await relay.store.getCluster("alpha"))?.agentKey).toEqual(alpha.publicJwk);
  });
});

async function rotate(bearer: string | undefined, body: unknown): Promise<{ status: number; body: string }> {
  const response = await fetch(relay.url + ROTATE, {
    method: "POST",
    headers: { "content-type": "application/json", ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.text() };
}

async function get(url: string, token: string): Promise<{ status: number; body: string; retryAfter: string | null }> {
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, body: await response.text(), retryAfter: response.headers.get("retry-after") };
}

/** Status (101 when accepted) and body of the relay's answer to an agent's WebSocket upgrade. */
function agentConnect(token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${relay.url}/v1/agent/connect`, {
      headers: {
        authorization: `Bearer ${token}`, connection: "Upgrade", upgrade: "websocket",
        "sec-websocket-version": "13", "sec-websocket-key": Buffer.alloc(16, 1).toString("base64"), "sec-websocket-protocol": "arc-tunnel.v1",
      },
    });
    req.on("response", (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => { body += c; });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("upgrade", (res, socket) => { socket.destroy(); resolve({ status: res.statusCode ?? 101, body: "" }); });
    req.on("error", reject);
    req.end();
  });
}
