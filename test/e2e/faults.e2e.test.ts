// Faults that users of other tunnels meet, injected for real: kill -9 of the agent, a relay restart
// (drained and killed), a black-holed or reset tunnel (Shopify's toxiproxy between agent and relay),
// the API server gone and back (toxiproxy between agent and API server), a reader that stops, a
// client that walks away, and a corporate CONNECT proxy (Debian's tinyproxy). Against a whole
// cluster: the API server's own resourceVersions and audit log are the evidence.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFile, rm, writeFile } from "node:fs/promises";
import { mkdtemp } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { applyManifest, createServiceAccountKubeconfig, kubectl as adminKubectl, startKubeCluster, type KubeCluster } from "../cluster/cluster.ts";
import { freePorts } from "../cluster/control-plane.ts";
import { startProcess, type ManagedProcess } from "../cluster/proc.ts";
import { createSelfSignedCertificate } from "../../lib/http/index.ts";
import { startToxiproxy, type Toxiproxy } from "../faults/toxiproxy.ts";
import { rssMiB } from "../support/rss.ts";
import { waitFor } from "../support/wait-for.ts";
import { expectOk, run, startStack, type Stack } from "./stack.ts";

setDefaultTimeout(120_000);
const ROOT = join(import.meta.dir, "..", "..");
/** What a user may wait, at most, to learn that a request died with the agent. */
const CLIENT_SEES_FAILURE_WITHIN_MS = 5_000;
/** The default liveness bound (ping every 2 s, dead after 6 s): redialling within 10 s. */
const LIVENESS_BOUND_MS = 10_000;

let dir: string;
let cluster: KubeCluster;
let toxi: Toxiproxy;
let stack: Stack;
let alice: string;
let apiPort: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-faults-"));
  cluster = await startKubeCluster({ dir: join(dir, "kube"), log: (l) => console.error(l) });
  toxi = await startToxiproxy(dir);
  apiPort = Number(new URL(cluster.server).port);
  const apiProxyPort = await toxi.proxy("apiserver", `127.0.0.1:${apiPort}`);
  await applyManifest(cluster, "setup.yaml", SETUP(cluster.node!.testImage));
  const agent = await createServiceAccountKubeconfig(cluster, { namespace: "cluster-connect", serviceAccount: "arcagent", out: join(dir, "agent.kubeconfig") });
  stack = await startStack(
    { server: `https://127.0.0.1:${apiProxyPort}`, caFile: cluster.caFile, agentToken: agent.token },
    {
      // The agent reaches the relay through toxiproxy; users reach the relay directly.
      publicUrl: async (relayUrl) => `http://127.0.0.1:${await toxi.proxy("tunnel", new URL(relayUrl).host)}`,
      relayArgs: ["--agent-wait", "2s", "--shutdown-timeout", "10s"],
    },
  );
  await stack.startAgent();
  await stack.waitForAgent("connected");
  alice = await stack.userToken("alice");
  await stack.grant("user:alice");
  await adminKubectl(cluster, ["wait", "--for=condition=Ready", "pod/work", "pod/ticker", "-n", "faults", "--timeout=60s"]);
}, 40 * 60_000);

afterAll(async () => {
  await stack?.stop();
  await toxi?.stop();
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const SETUP = (image: string) => `
apiVersion: v1
kind: Namespace
metadata: {name: faults}
---
apiVersion: v1
kind: Namespace
metadata: {name: cluster-connect}
---
apiVersion: v1
kind: Namespace
metadata: {name: restart-sigterm}
---
apiVersion: v1
kind: Namespace
metadata: {name: restart-sigkill}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: arcagent, namespace: cluster-connect}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: faults-agent}
rules:
  - {apiGroups: [""], resources: [users, groups, serviceaccounts], verbs: [impersonate]}
  - {apiGroups: [authentication.k8s.io], resources: [userextras/arc-request-id], verbs: [impersonate]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: faults-agent}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: faults-agent}
subjects: [{kind: ServiceAccount, name: arcagent, namespace: cluster-connect}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
---
apiVersion: v1
kind: Pod
metadata: {name: work, namespace: faults}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: ${image}
      imagePullPolicy: Never
      command: ["sh", "-c", "mkdir -p /www && head -c 268435456 /dev/zero > /www/big && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Pod
metadata: {name: ticker, namespace: faults}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: ${image}
      imagePullPolicy: Never
      command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]
`;

function viaProxy(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}) {
  return stack.arcproxy({ token: alice, command: [cluster.kubectl, ...args], ...opts });
}

/** arcproxy -- kubectl ARGS in the background, output collected. */
function spawnViaProxy(args: string[], withStdin = false) {
  const proc = Bun.spawn([...stack.arcproxyArgv(alice), "--", cluster.kubectl, ...args], {
    cwd: ROOT, stdin: withStdin ? "pipe" : "ignore", stdout: "pipe", stderr: "pipe",
  });
  const out = { stdout: "", stderr: "" };
  void (async () => { for await (const c of proc.stdout as ReadableStream<Uint8Array>) out.stdout += new TextDecoder().decode(c); })();
  void (async () => { for await (const c of proc.stderr as ReadableStream<Uint8Array>) out.stderr += new TextDecoder().decode(c); })();
  return { proc, out };
}

/** A raw HTTP/1.1 request to the relay as alice that is never read: a pager nobody scrolls. */
async function stalledRelayRequest(path: string): Promise<Socket> {
  const relay = new URL(stack.relayUrl);
  const socket = connect(Number(relay.port), "127.0.0.1");
  await new Promise<void>((resolve, reject) => { socket.once("connect", () => resolve()); socket.once("error", reject); });
  socket.write(`GET /v1/clusters/${stack.cluster}/k8s${path} HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${alice}\r\n\r\n`);
  socket.pause();
  return socket;
}

async function auditEvents(): Promise<{ stage: string; requestURI: string; impersonatedUser?: { extra?: Record<string, string[]> } }[]> {
  return (await readFile(cluster.auditLog, "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

describe("kill -9 of the agent", () => {
  test("an exec and a large response in flight fail within 5 s, a watch carries on once the agent is back, missing no event", async () => {
    // Enough ConfigMaps (1.2 MB) for a LIST that a stalled reader holds open.
    const items = Array.from({ length: 300 }, (_, i) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: `bulk-${i}`, namespace: "faults" }, data: { data: "x".repeat(4000) } }));
    await applyManifest(cluster, "bulk.json", JSON.stringify({ apiVersion: "v1", kind: "List", items }));
    const watch = spawnViaProxy(["get", "configmaps", "-n", "faults", "-w", "-o", "name"]);
    const exec = spawnViaProxy(["exec", "-i", "work", "-n", "faults", "--", "cat"], true);
    await waitFor("the watch's first lines", () => watch.out.stdout.includes("configmap/bulk-"), 20_000);
    (exec.proc.stdin as import("bun").FileSink).write("ping\n");
    await waitFor("exec's echo", () => exec.out.stdout.includes("ping"), 20_000);
    // 256 MiB through the API server's pod proxy, read slowly: far more than all the buffers on the
    // way hold, so the agent is still sending when it dies.
    const list = await stalledRelayRequest("/api/v1/namespaces/faults/pods/work:8080/proxy/big");
    const listClosed = new Promise<number>((resolve) => list.once("close", () => resolve(Date.now())));
    await new Promise((resolve) => list.once("readable", resolve)); // the response is flowing

    const killedAt = Date.now();
    await stack.stopAgent("SIGKILL");
    let ended: number[];
    try {
      list.resume(); // it may drain what arrived; then the relay must cut it
      list.on("data", () => {});
      ended = await Promise.all([exec.proc.exited.then(() => Date.now()), listClosed]);
      // Made while the agent is gone: the watch (resumed by arcproxy from its last event) must show it.
      await applyManifest(cluster, "while-down.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: made-while-down, namespace: faults}\n");
    } finally {
      await stack.startAgent();
      await stack.waitForAgent("connected");
    }
    console.error(`[faults] after kill -9: exec ended in ${ended[0]! - killedAt} ms, the large response in ${ended[1]! - killedAt} ms`);
    for (const at of ended) expect(at - killedAt).toBeLessThan(CLIENT_SEES_FAILURE_WITHIN_MS);
    expect(await exec.proc.exited).not.toBe(0);
    await waitFor("the watch to show what was made while the agent was down", () => watch.out.stdout.includes("configmap/made-while-down"), 40_000);
    expect(watch.proc.exitCode).toBeNull();
    watch.proc.kill("SIGINT");
    await watch.proc.exited;

    expect(expectOk(await viaProxy(["get", "configmap", "bulk-0", "-n", "faults", "-o", "name"]))).toBe("configmap/bulk-0\n");
  });
});

describe("SIGTERM of the agent (a rolling update)", () => {
  test("a download in flight finishes whole; the agent exits 0 once it is done; the next agent serves what comes next", async () => {
    const res = await fetch(`${stack.relayUrl}/v1/clusters/${stack.cluster}/k8s/api/v1/namespaces/faults/pods/work:8080/proxy/big`, { headers: { authorization: `Bearer ${alice}` } });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let received = (await reader.read()).value?.length ?? 0; // the download is under way
    const exited = stack.stopAgent("SIGTERM");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      received += value.length;
    }
    expect(received).toBe(256 * 1024 * 1024);
    await exited;
    expect(stack.agentLog()).toContain("draining the tunnel");
    await stack.startAgent();
    await stack.waitForAgent("connected");
    expectOk(await viaProxy(["get", "--raw", "/version"]));
  });
});

describe("large request heads", () => {
  test("a label selector of 80 KB works through arcproxy with kubectl; a 2 MiB one gets a 431 Status that names the limit", async () => {
    const selector = `app in (${Array.from({ length: 14_000 }, (_, i) => `v${i}`).join(",")})`;
    expect(selector.length).toBeGreaterThan(80_000);
    const r = await viaProxy(["get", "configmaps", "-n", "faults", "-l", selector, "-o", "name"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    // Too long for a command line (Linux takes 128 KiB per argument): straight at the relay.
    const huge = `/v1/clusters/${stack.cluster}/k8s/api/v1/namespaces/faults/configmaps?labelSelector=${"a".repeat(2 * 1024 * 1024)}`;
    const refused = await fetch(stack.relayUrl + huge, { headers: { authorization: `Bearer ${alice}` } });
    expect(refused.status).toBe(431);
    const status = (await refused.json()) as { kind: string; message: string };
    expect(status.kind).toBe("Status");
    expect(status.message).toContain("1 MiB");
  });
});

describe("a tunnel that goes silent or is reset", () => {
  test.each([
    ["black-holed (toxiproxy timeout)", "timeout"],
    ["reset (toxiproxy reset_peer)", "reset_peer"],
  ])("%s: both ends notice within the liveness bound and the agent redials", async (_, type) => {
    const logMark = { relay: stack.relayLog().length, agent: stack.agentLog().length };
    const started = Date.now();
    await toxi.addToxic("tunnel", { name: "fault", type, attributes: { timeout: 0 } });
    try {
      await waitFor("the relay to see the agent offline", async () => (await stack.clusterState()) !== "connected", LIVENESS_BOUND_MS + 2_000);
      const relayNoticed = Date.now() - started;
      await waitFor("the agent to notice and redial", () => /reconnecting|tunnel closed|tunnel to relay failed/.test(stack.agentLog().slice(logMark.agent)), LIVENESS_BOUND_MS + 2_000);
      const agentNoticed = Date.now() - started;
      console.error(`[faults] ${type}: relay noticed after ${relayNoticed} ms, agent after ${agentNoticed} ms`);
      expect(relayNoticed).toBeLessThanOrEqual(LIVENESS_BOUND_MS);
      expect(agentNoticed).toBeLessThanOrEqual(LIVENESS_BOUND_MS);
    } finally {
      await toxi.removeToxic("tunnel", "fault");
    }
    await stack.waitForAgent("connected", 30_000);
    expectOk(await viaProxy(["get", "--raw", "/version"]));
    expect(stack.relayLog().slice(logMark.relay)).toMatch(/agent disconnected/);
  });
});

describe("the API server down and back", () => {
  test("requests get a 503 Status naming the cluster while it is down, and succeed once it is back", async () => {
    await toxi.setEnabled("apiserver", false);
    try {
      const down = await viaProxy(["get", "--raw", "/version"]);
      expect(down.code).not.toBe(0);
      expect(down.stderr).toContain(`the API server of cluster "${stack.cluster}" could not be reached by the agent`);
      expect(down.stderr).toMatch(/ServiceUnavailable|503/);
    } finally {
      await toxi.setEnabled("apiserver", true);
    }
    expectOk(await viaProxy(["get", "--raw", "/version"]));
  });
});

describe("a relay restart", () => {
  test.each([["SIGTERM (drained)", "SIGTERM"], ["SIGKILL", "SIGKILL"]] as const)(
    "%s: kubectl get -w through arcproxy carries on by itself and misses no event made meanwhile; the agent is back within 30 s",
    async (_, signal) => {
      const ns = `restart-${signal.toLowerCase()}`;
      const watch = spawnViaProxy(["get", "configmaps", "-n", ns, "-w", "-o", "name"]);
      await adminKubectl(cluster, ["create", "configmap", "first", "-n", ns]);
      await waitFor("the watch to see the first ConfigMap", () => watch.out.stdout.includes("configmap/first"), 20_000);

      const code = await stack.stopRelay(signal);
      if (signal === "SIGTERM") expect(code).toBe(0); // a drain ends with success
      // Made while no relay runs: only a resumed watch from the right resourceVersion shows them.
      for (const n of [1, 2, 3]) await adminKubectl(cluster, ["create", "configmap", `during-${n}`, "-n", ns]);
      const restarted = Date.now();
      await stack.startRelay();
      await stack.waitForAgent("connected", 30_000);
      const back = Date.now() - restarted;
      console.error(`[faults] relay ${signal}: agent back ${back} ms after the relay started again`);
      expect(back).toBeLessThan(30_000);
      await waitFor("the watch to show what happened during the restart", () => [1, 2, 3].every((n) => watch.out.stdout.includes(`configmap/during-${n}`)), 30_000);
      expect(watch.proc.exitCode).toBeNull(); // still the same kubectl, still watching
      watch.proc.kill("SIGINT");
      await watch.proc.exited;
    },
  );
});

describe("a reader that stops", () => {
  // What a stalled reader could do to its neighbours is take the tunnel's connection-level HTTP/2
  // window: then every other stream on the tunnel waits for it, forever. So the evidence is that
  // every small request is answered while the stall holds, and that the stalled response is held
  // back by flow control rather than read into memory. How fast they are answered is a benchmark
  // figure (bench/BENCHMARKS.md), not an assertion: on 2 shared cores a rate ratio is noise.
  test("one reader stalled on a 256 MiB response: 1,000 small requests from 50 concurrent callers beside it are all answered, and the stalled response is held back", async () => {
    const SMALL_REQUESTS = 1_000;
    /** Far above the few MiB of windows and buffers a held stream costs, far below the body. */
    const HELD_BACK_MIB = 96;
    const smallRequests = async () => {
      const startedAt = Date.now();
      const statuses: Record<number, number> = {};
      let next = 0;
      await Promise.all(Array.from({ length: 50 }, async () => {
        while (next < SMALL_REQUESTS) {
          next += 1;
          const res = await fetch(`${stack.relayUrl}/v1/clusters/${stack.cluster}/k8s/api/v1/namespaces/faults/configmaps/probe`, { headers: { authorization: `Bearer ${alice}` } });
          await res.arrayBuffer();
          statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        }
      }));
      return { statuses, perSecond: SMALL_REQUESTS / ((Date.now() - startedAt) / 1000) };
    };
    await adminKubectl(cluster, ["create", "configmap", "probe", "-n", "faults"]);
    const before = await smallRequests();
    expect(before.statuses).toEqual({ 200: SMALL_REQUESTS });
    const stalled = await stalledRelayRequest("/api/v1/namespaces/faults/pods/work:8080/proxy/big");
    let stalledClosed = false;
    stalled.once("close", () => { stalledClosed = true; });
    await new Promise((resolve) => stalled.once("readable", resolve)); // flowing, and now never read
    const rssBefore = { relay: rssMiB(stack.relayPid()), agent: rssMiB(stack.agentPid()) };
    let grewMiB = { relay: NaN, agent: NaN };
    let during: Awaited<ReturnType<typeof smallRequests>>;
    try {
      during = await smallRequests();
      // Held, not swallowed: a hop that read the stalled body into memory instead of applying
      // backpressure would have grown by up to 256 MiB while these requests ran.
      expect(stalledClosed).toBe(false);
      grewMiB = { relay: rssMiB(stack.relayPid())! - rssBefore.relay!, agent: rssMiB(stack.agentPid())! - rssBefore.agent! };
      expect(grewMiB.relay).toBeLessThan(HELD_BACK_MIB);
      expect(grewMiB.agent).toBeLessThan(HELD_BACK_MIB);
    } finally {
      stalled.destroy();
    }
    console.error(`[faults] small requests: ${before.perSecond.toFixed(0)}/s alone, ${during.perSecond.toFixed(0)}/s beside a stalled 256 MiB reader (a benchmark figure, not asserted); RSS grew ${grewMiB.relay.toFixed(0)} MiB (relay), ${grewMiB.agent.toFixed(0)} MiB (agent)`);
    expect(during.statuses).toEqual({ 200: SMALL_REQUESTS });
  });
});

describe("a client that walks away", () => {
  test.each([
    ["logs -f", ["logs", "-f", "ticker", "-n", "faults"], "/log?"],
    ["a watch", ["get", "pods", "-n", "faults", "-w"], "watch=true"],
  ])("%s ended by Ctrl-C: the API server's request is over within 1 s (its audit log)", async (_, args, marker) => {
    const before = (await auditEvents()).length;
    const client = spawnViaProxy(args);
    await waitFor("output", () => client.out.stdout.length > 0, 20_000);
    // `get -w` prints its LIST before it starts the watch, so the output can come first.
    let started: Awaited<ReturnType<typeof auditEvents>>[number] | undefined;
    await waitFor("the API server to start the streamed response", async () =>
      (started = (await auditEvents()).slice(before).find((e) => e.stage === "ResponseStarted" && e.requestURI.includes(marker))) !== undefined, 10_000);
    const stoppedAt = Date.now();
    client.proc.kill("SIGINT");
    await client.proc.exited;
    await waitFor("the API server to finish the request", async () =>
      (await auditEvents()).slice(before).some((e) => e.stage === "ResponseComplete" && e.requestURI === started!.requestURI), 5_000);
    expect(Date.now() - stoppedAt).toBeLessThan(1_000 + 500); // + the audit log's own write delay
  });
});

describe("corporate egress", () => {
  let tinyproxy: ManagedProcess | undefined;
  let tlsRelay: ManagedProcess | undefined;
  afterAll(async () => {
    await tinyproxy?.stop();
    await tlsRelay?.stop();
  });

  // Plain http:// never goes through a proxy (the token would cross it in clear), so this agent
  // dials a relay of its own over TLS, as a corporate network's relay would be.
  test("an agent dials an https relay through an HTTP CONNECT proxy (tinyproxy), and NO_PROXY keeps the API server direct", async () => {
    const [proxyPort, relayPort] = await freePorts(2);
    const conf = join(dir, "tinyproxy.conf");
    const tinyLog = join(dir, "tinyproxy.log");
    await writeFile(conf, `Port ${proxyPort}\nListen 127.0.0.1\nTimeout 600\nLogFile "${tinyLog}"\nLogLevel Connect\nMaxClients 50\nAllow 127.0.0.1\n`);
    tinyproxy = startProcess("tinyproxy", ["tinyproxy", "-d", "-c", conf], join(dir, "tinyproxy.out"));
    await waitFor("tinyproxy to listen", () => listening(proxyPort!), 20_000);

    const cert = await createSelfSignedCertificate({ commonName: "test" });
    const certFile = join(dir, "relay-cert.pem");
    const keyFile = join(dir, "relay-key.pem");
    await writeFile(certFile, cert.certPem);
    await writeFile(keyFile, cert.keyPem, { mode: 0o600 });
    const relayUrl = `https://127.0.0.1:${relayPort}`;
    const relayData = join(dir, "tls-relay");
    tlsRelay = startProcess("arcrelay-tls", [process.execPath, join(ROOT, "cmd/arcrelay.ts"), "serve", "--listen", `127.0.0.1:${relayPort}`,
      "--data-dir", relayData, "--tls-cert", certFile, "--tls-key", keyFile, "--public-url", relayUrl], join(dir, "tls-relay.log"));
    await waitFor("the TLS relay to listen", () => listening(relayPort!), 30_000);
    const local = (args: string[]) => run([process.execPath, join(ROOT, "cmd/arcrelay.ts"), ...args, "--data-dir", relayData]);
    const enrollToken = expectOk(await local(["cluster", "add", "egress"])).trim().split("\n").at(-1)!;
    expectOk(await local(["grant", "add", "--principal", "user:alice", "--cluster", "egress", "--role", "cluster-user"]));
    const token = expectOk(await local(["token", "create", "--user", "alice"])).trim().split("\n").at(-1)!;

    const kubeconfig = join(dir, "agent.kubeconfig");
    const proxy = `http://127.0.0.1:${proxyPort}`;
    const agent = Bun.spawn([process.execPath, "cmd/arcagent.ts", "--relay", relayUrl, "--relay-ca", certFile, "--cluster", "egress",
      "--state-dir", join(dir, "egress-agent"), "--kubeconfig", kubeconfig, "--enroll-token", enrollToken], {
      cwd: ROOT, stdout: "ignore", stderr: "pipe",
      // The relay goes through the proxy; the API server (its own port on the same host) does not.
      env: { ...process.env, HTTPS_PROXY: proxy, HTTP_PROXY: proxy, NO_PROXY: `127.0.0.1:${apiPort}` },
    });
    try {
      await waitFor("the egress agent's tunnel", async () => {
        const r = await local(["cluster", "list", "-o", "json"]);
        return (JSON.parse(r.stdout) as { name: string; state: string }[]).some((c) => c.name === "egress" && c.state === "connected");
      }, 30_000);
      const egress = await run([process.execPath, join(ROOT, "cmd/arcproxy.ts"), "--relay", relayUrl, "--relay-ca", certFile, "--cluster", "egress",
        "--token", token, "--", cluster.kubectl, "get", "--raw", "/version"]);
      expect(JSON.parse(expectOk(egress)).gitVersion).toMatch(/^v1\.34\./);
      const proxied = await readFile(tinyLog, "utf8");
      expect(proxied).toContain(`127.0.0.1:${relayPort}`); // enrollment, discovery and the tunnel went through it
      expect(proxied).not.toContain(`127.0.0.1:${apiPort}`); // NO_PROXY held for the API server
    } finally {
      agent.kill("SIGTERM");
      await agent.exited;
    }
  });
});

function listening(port: number): Promise<boolean> {
  const s = connect(port, "127.0.0.1");
  return new Promise<boolean>((resolve) => {
    s.once("connect", () => { s.destroy(); resolve(true); });
    s.once("error", () => resolve(false));
  });
}
