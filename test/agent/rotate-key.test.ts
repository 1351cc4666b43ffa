// arcagent rotate-key against a real relay and a running agent: old tunnel closed, reconnect with the new key, old key refused.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JWK } from "jose";
import { createFileKeyStore, loadUpstream, rotateAgentKey, runAgent, type AgentKeyStore } from "../../lib/agent/index.ts";
import { createRelayConnection } from "../../lib/client/index.ts";
import { generateSigningKeyPair, signAgentToken } from "../../lib/auth/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { addCluster, loadStoredIssuer, startRelay, type RunningRelay } from "../../lib/relay/index.ts";
import { writeKubeconfig } from "../cluster/kubeconfig-file.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(20_000);

const CLUSTER = "rotating";

let dir: string;
let upstream: http.Server;
let relay: RunningRelay;
let keyStore: AgentKeyStore;
let userToken: string;
const controller = new AbortController();
const states: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-rotate-"));
  upstream = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"kind":"Status","status":"Success"}');
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  const kubeconfig = join(dir, "kubeconfig");
  await writeKubeconfig(kubeconfig, { server: `http://127.0.0.1:${(upstream.address() as { port: number }).port}`, userName: "agent", user: { token: "agent-sa" } });
  relay = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "relay"), logger: silentLogger });
  const { token: enrollToken } = await addCluster(relay.store, CLUSTER);
  await relay.store.addGrant({ principal: "user:alice", cluster: CLUSTER, role: "cluster-user" });
  userToken = await (await loadStoredIssuer(relay.store)).signUserToken({ user: "alice" });
  keyStore = createFileKeyStore(join(dir, "agent"));
  void runAgent({
    relay: createRelayConnection(relay.url), cluster: CLUSTER, keyStore, enrollToken,
    upstream: loadUpstream({ kubeconfig }), agentVersion: "test", logger: silentLogger, signal: controller.signal,
    onState: (s) => void states.push(s),
  });
  await waitFor("the agent's first tunnel", () => states.includes("connected"), 10_000);
});

afterAll(async () => {
  controller.abort();
  await relay.close();
  upstream.close();
  await rm(dir, { recursive: true, force: true });
});

describe("arcagent rotate-key", () => {
  test("the old key's tunnel closes within 5 s, the agent reconnects with the new key, the old key is refused", async () => {
    const old = (await keyStore.load())!;
    const before = states.length;
    const rotated = await rotateAgentKey({ relay: createRelayConnection(relay.url), cluster: CLUSTER, keyStore });

    expect(rotated.previousKid).toBe(old.publicJwk.kid!);
    expect(rotated.kid).not.toBe(rotated.previousKid);
    expect((await relay.store.getCluster(CLUSTER))?.agentKey?.kid).toBe(rotated.kid);
    const saved = JSON.parse(await readFile(keyStore.describe(), "utf8")) as Record<string, unknown> & { publicJwk: JWK };
    expect(saved.publicJwk.kid).toBe(rotated.kid);
    expect(saved.pending).toBeUndefined();

    await waitFor("the old key's tunnel to close", () => states.slice(before).includes("disconnected"), 5_000);
    await waitFor("the agent to reconnect with the new key", () => states.slice(before).includes("connected"), 10_000);
    expect(await getThroughRelay()).toBe(200);
    expect(await agentConnectStatus(await signAgentToken({ privateJwk: old.privateJwk, cluster: CLUSTER, audience: relay.url }))).toBe(401);
  }, 20_000);

  test("run again after the relay switched but the save failed, it finishes with the pending key", async () => {
    const stored = (await keyStore.load())!;
    const pending = await generateSigningKeyPair("EdDSA");
    const before = states.length;
    // What an interrupted run leaves behind: both pairs in the store, the relay already on the new one.
    await keyStore.save({ ...stored, pending } as typeof stored);
    await relay.store.setAgentKey(CLUSTER, pending.publicJwk);

    const rotated = await rotateAgentKey({ relay: createRelayConnection(relay.url), cluster: CLUSTER, keyStore });
    expect(rotated.kid).toBe(pending.publicJwk.kid!);
    const saved = JSON.parse(await readFile(keyStore.describe(), "utf8")) as Record<string, unknown> & { privateJwk: JWK };
    expect(saved.privateJwk.d).toBe(pending.privateJwk.d!);
    expect(saved.pending).toBeUndefined();
    await waitFor("the agent to reconnect with the pending key", () => states.slice(before).join() === "disconnected,connected", 10_000);
    expect(await getThroughRelay()).toBe(200);
  }, 20_000);

  test("a refused rotation leaves the key store as it was", async () => {
    const before = await readFile(keyStore.describe(), "utf8");
    const other = createFileKeyStore(join(dir, "other"));
    const stranger = await generateSigningKeyPair("EdDSA");
    await other.save({ cluster: CLUSTER, ...stranger });
    const error = await rotateAgentKey({ relay: createRelayConnection(relay.url), cluster: CLUSTER, keyStore: other }).catch((e: Error) => e);
    expect(String(error)).toContain("refused the key rotation");
    expect(String(error)).toContain("not signed by the enrolled key");
    expect((JSON.parse(await readFile(other.describe(), "utf8")) as { pending?: unknown }).pending).toBeUndefined();
    expect(await readFile(keyStore.describe(), "utf8")).toBe(before);
  });

  test("a key that was never enrolled is not rotated, and keeps its mark (the next start with a token enrolls it)", async () => {
    const unenrolled = createFileKeyStore(join(dir, "unenrolled"));
    await unenrolled.save({ cluster: CLUSTER, ...(await generateSigningKeyPair("EdDSA")), enrolled: false });
    const saved = await readFile(unenrolled.describe(), "utf8");
    const error = await rotateAgentKey({ relay: createRelayConnection(relay.url), cluster: CLUSTER, keyStore: unenrolled }).catch((e: Error) => e);
    expect(String(error)).toContain("was never enrolled: there is nothing at the relay to rotate; start the agent with --enroll-token");
    expect(await readFile(unenrolled.describe(), "utf8")).toBe(saved);
  });
});

function getThroughRelay(): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(`${relay.url}/v1/clusters/${CLUSTER}/k8s/api/v1/pods`, { headers: { authorization: `Bearer ${userToken}` } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    }).on("error", reject);
  });
}

/** The status the relay answers to an agent's WebSocket upgrade carrying `token`. */
function agentConnectStatus(token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${relay.url}/v1/agent/connect`, {
      headers: {
        authorization: `Bearer ${token}`, connection: "Upgrade", upgrade: "websocket",
        "sec-websocket-version": "13", "sec-websocket-key": Buffer.alloc(16, 1).toString("base64"), "sec-websocket-protocol": "arc-tunnel.v1",
      },
    });
    req.on("response", (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on("upgrade", (res, socket) => { socket.destroy(); resolve(res.statusCode ?? 101); });
    req.on("error", reject);
    req.end();
  });
}
