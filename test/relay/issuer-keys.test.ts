// A firewalled agent verifies an external issuer's tokens with keys fetched through its relay.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { createFileKeyStore, loadUpstream, runAgent } from "../../lib/agent/index.ts";
import { createRelayConnection } from "../../lib/client/index.ts";
import { signAgentToken, type TrustedIssuer } from "../../lib/auth/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { addCluster, startRelay, type RunningRelay } from "../../lib/relay/index.ts";
import { writeKubeconfig } from "../cluster/kubeconfig-file.ts";

setDefaultTimeout(20_000);

const CLUSTER = "edge";
let dir: string;
let issuerServer: http.Server;
let upstream: http.Server;
let relay: RunningRelay;
let issuerUrl: string;
let sign: (sub: string) => Promise<string>;
const seenByApiServer: string[] = [];
const controller = new AbortController();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-issuer-keys-"));
  // A test issuer shaped like GitHub Actions' OIDC provider, on loopback.
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "gh-1", alg: "RS256", use: "sig" };
  issuerServer = http.createServer((req, res) => {
    res.setHeader("content-type", "application/json");
    if (req.url === "/.well-known/openid-configuration") res.end(JSON.stringify({ issuer: issuerUrl, jwks_uri: `${issuerUrl}/jwks` }));
    else if (req.url === "/jwks") res.end(JSON.stringify({ keys: [jwk] }));
    else res.writeHead(404).end("{}");
  });
  await new Promise<void>((resolve) => issuerServer.listen(0, "127.0.0.1", resolve));
  issuerUrl = `http://127.0.0.1:${(issuerServer.address() as { port: number }).port}`;
  sign = (sub) => new SignJWT({ repository: "acme/app" }).setProtectedHeader({ alg: "RS256", kid: "gh-1" })
    .setIssuer(issuerUrl).setAudience("cluster-connect").setSubject(sub).setIssuedAt().setExpirationTime("5m").sign(privateKey);

  upstream = http.createServer((req, res) => {
    seenByApiServer.push(String(req.headers["impersonate-user"]));
    res.writeHead(200, { "content-type": "application/json" }).end("{}");
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  const kubeconfig = join(dir, "kubeconfig");
  await writeKubeconfig(kubeconfig, { server: `http://127.0.0.1:${(upstream.address() as { port: number }).port}`, userName: "agent", user: { token: "agent-sa" } });
  const trust = (jwks: TrustedIssuer["jwks"]): TrustedIssuer => ({
    issuer: issuerUrl, audiences: ["cluster-connect"], jwks, usernameClaim: "sub", usernamePrefix: "gh:", algorithms: ["RS256"],
  });
  relay = await startRelay({
    host: "127.0.0.1", port: 0, dataDir: join(dir, "relay"), logger: silentLogger,
    trustedIssuers: [trust({ url: `${issuerUrl}/jwks` })],
  });
  const { token: enrollToken } = await addCluster(relay.store, CLUSTER);
  await relay.store.addGrant({ principal: "sub:repo:acme/app:*", cluster: CLUSTER, role: "cluster-user" });
  let connected!: () => void;
  const up = new Promise<void>((resolve) => { connected = resolve; });
  void runAgent({
    relay: createRelayConnection(relay.url), cluster: CLUSTER, keyStore: createFileKeyStore(join(dir, "agent")), enrollToken,
    upstream: loadUpstream({ kubeconfig }), agentVersion: "test", logger: silentLogger, signal: controller.signal,
    // The agent's own config names the issuer; its JWKS address is unreachable from "inside the cluster".
    trustedIssuers: [{ ...trust({ url: "http://127.0.0.1:1/unreachable" }), keysFrom: "relay" }],
    onState: (s) => s === "connected" && connected(),
  });
  await up;
});

afterAll(async () => {
  controller.abort();
  await relay.close();
  upstream.close();
  issuerServer.close();
  await rm(dir, { recursive: true, force: true });
});

test("a GitHub Actions token reaches the API server although the agent cannot reach the issuer", async () => {
  const token = await sign("repo:acme/app:ref:refs/heads/main");
  const res = await fetch(`${relay.url}/v1/clusters/${CLUSTER}/k8s/api`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  expect(seenByApiServer.at(-1)).toBe("gh:repo:acme/app:ref:refs/heads/main");
});

test("the relay serves issuer keys only to enrolled agents, and only for issuers it trusts", async () => {
  const path = `${relay.url}/v1/agent/issuer-keys?issuer=${encodeURIComponent(issuerUrl)}`;
  expect((await fetch(path)).status).toBe(401);
  const stranger = await signAgentToken({
    privateJwk: { ...(await exportJWK((await generateKeyPair("EdDSA", { extractable: true })).privateKey)), alg: "EdDSA" },
    cluster: CLUSTER, audience: relay.url,
  });
  expect((await fetch(path, { headers: { authorization: `Bearer ${stranger}` } })).status).toBe(401);

  const keys = JSON.parse(await Bun.file(join(dir, "agent", "agent-key.json")).text());
  const agentToken = await signAgentToken({ privateJwk: keys.privateJwk, cluster: CLUSTER, audience: relay.url });
  const ok = await fetch(path, { headers: { authorization: `Bearer ${agentToken}` } });
  expect(ok.status).toBe(200);
  const body = (await ok.json()) as { keys: { kid: string; d?: string }[] };
  expect(body.keys.map((k) => k.kid)).toEqual(["gh-1"]);

  const unknown = await fetch(`${relay.url}/v1/agent/issuer-keys?issuer=${encodeURIComponent("https://evil.example")}`, {
    headers: { authorization: `Bearer ${agentToken}` },
  });
  expect(unknown.status).toBe(404);
});
