// Token mode carries only the caller's credential: not the agent's token, and not the agent's client certificate.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import tls from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFileKeyStore, loadUpstream, runAgent } from "../../lib/agent/index.ts";
import { createRelayConnection } from "../../lib/client/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { addCluster, loadStoredIssuer, startRelay, type RunningRelay } from "../../lib/relay/index.ts";
import { generatePki } from "../cluster/pki.ts";
import { writeKubeconfig } from "../cluster/kubeconfig-file.ts";

setDefaultTimeout(20_000);

const CLUSTER = "certs";
let dir: string;
let upstream: tls.Server;
let relay: RunningRelay;
let userToken: string;
const seen: { clientCertSubject?: string; authorization?: string; impersonateUser?: string }[] = [];
const controller = new AbortController();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-token-mode-"));
  const pki = await generatePki(join(dir, "pki"));
  // The API server side: a TLS server that asks for client certificates and records, per request,
  // who presented what (Bun's https server does not expose the peer certificate, a TLS socket does).
  upstream = tls.createServer({
    cert: await readFile(pki.serverCert), key: await readFile(pki.serverKey), ca: await readFile(pki.caCert),
    requestCert: true, rejectUnauthorized: false,
  }, (socket) => {
    const peer = socket.getPeerCertificate();
    const clientCertSubject = peer && Object.keys(peer).length > 0 ? String(peer.subject?.CN) : undefined;
    let buffered = "";
    socket.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("latin1");
      let end: number;
      while ((end = buffered.indexOf("\r\n\r\n")) >= 0) {
        const head = buffered.slice(0, end).split("\r\n");
        buffered = buffered.slice(end + 4);
        const header = (name: string) => head.find((l) => l.toLowerCase().startsWith(name + ":"))?.slice(name.length + 1).trim();
        seen.push({ clientCertSubject, authorization: header("authorization"), impersonateUser: header("impersonate-user") });
        socket.write("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}");
      }
    });
    socket.on("error", () => socket.destroy());
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  const kubeconfig = join(dir, "agent.kubeconfig");
  // An agent that authenticates with a client certificate, as outside a cluster it may.
  await writeKubeconfig(kubeconfig, {
    server: `https://127.0.0.1:${(upstream.address() as { port: number }).port}`, caFile: pki.caCert,
    userName: "agent", user: { certFile: pki.adminCert, keyFile: pki.adminKey },
  });
  relay = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "relay"), logger: silentLogger });
  const { token: enrollToken } = await addCluster(relay.store, CLUSTER);
  await relay.store.addGrant({ principal: "user:alice", cluster: CLUSTER, role: "cluster-user" });
  userToken = await (await loadStoredIssuer(relay.store)).signUserToken({ user: "alice" });
  let connected!: () => void;
  const up = new Promise<void>((resolve) => { connected = resolve; });
  void runAgent({
    relay: createRelayConnection(relay.url), cluster: CLUSTER, keyStore: createFileKeyStore(join(dir, "agent")), enrollToken,
    upstream: loadUpstream({ kubeconfig }), agentVersion: "test", logger: silentLogger, signal: controller.signal,
    onState: (s) => s === "connected" && connected(),
  });
  await up;
});

afterAll(async () => {
  controller.abort();
  await relay.close();
  upstream.close();
  await rm(dir, { recursive: true, force: true });
});

const get = (headers: Record<string, string>) =>
  fetch(`${relay.url}/v1/clusters/${CLUSTER}/k8s/api`, { headers: { authorization: `Bearer ${userToken}`, ...headers } });

test("normally the agent presents its own certificate and impersonates the caller", async () => {
  expect((await get({})).status).toBe(200);
  expect(seen.at(-1)).toEqual({ clientCertSubject: "admin", authorization: undefined, impersonateUser: "alice" });
});

test("in token mode the API server sees only the caller's token: no agent certificate, no impersonation", async () => {
  expect((await get({ "x-arc-kube-token": "callers-own-sa-token" })).status).toBe(200);
  expect(seen.at(-1)).toEqual({ clientCertSubject: undefined, authorization: "Bearer callers-own-sa-token", impersonateUser: undefined });
});
