// `npm run demo`: the whole product on this machine. A whole single-node Kubernetes cluster, arcrelay,
// the agent installed into the cluster as users install it (its image from Dockerfile.agent, the
// Helm chart), arcproxy, then real kubectl commands as user alice: a pod's logs, exec, port-forward.
// Runs until Ctrl-C (or exits after the commands with --no-wait), then stops everything it started.
import { defineCommand, runMain } from "citty";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { installAgentChart } from "../test/cluster/agent-install.ts";
import { kubectl as adminKubectl, startKubeCluster, type KubeCluster } from "../test/cluster/cluster.ts";
import { tailFile } from "../test/cluster/proc.ts";

const ROOT = join(import.meta.dir, "..");
const BUN = process.execPath;
const CLUSTER = "demo";
const PREFERRED_PROXY_PORT = 47011;

/** Everything started so far, stopped in reverse order. */
const cleanups: { what: string; run: () => Promise<void> }[] = [];
const step = (text: string) => console.log(`\n==> ${text}`);
const detail = (text: string) => console.log(text.replace(/^/gm, "    "));

interface Service {
  name: string;
  proc: Subprocess;
  logFile: string;
}

/** Starts `bun cmd/<name>.ts args`, output to DIR/<name>.log, stopped (SIGTERM) at teardown. */
function startService(dir: string, name: string, args: string[], env: Record<string, string> = {}): Service {
  const logFile = join(dir, `${name}.log`);
  const proc = Bun.spawn([BUN, `cmd/${name}.ts`, ...args], {
    cwd: ROOT, env: { ...process.env, ...env }, stdin: "ignore", stdout: Bun.file(logFile), stderr: Bun.file(logFile),
  });
  cleanups.push({ what: name, run: async () => { proc.kill("SIGTERM"); await proc.exited; } });
  return { name, proc, logFile };
}

/** Polls `check` until it holds; fails early, with the service's log, if the service exits. */
async function waitUntil(what: string, check: () => Promise<boolean> | boolean, service?: Service, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (service?.proc.exitCode != null) throw new Error(`${service.name} exited (code ${service.proc.exitCode}) while waiting for ${what}; ${service.logFile} ends with:\n${tailFile(service.logFile, 20)}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${service ? `; see ${service.logFile}` : ""}`);
    await Bun.sleep(200);
  }
}

async function arcrelay(dataDir: string, args: string[]): Promise<string> {
  const proc = Bun.spawn([BUN, "cmd/arcrelay.ts", ...args, "--data-dir", dataDir], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`arcrelay ${args.join(" ")} failed: ${err.trim() || out.trim()}`);
  return out;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function startCluster(dir: string): Promise<KubeCluster> {
  step("Starting a whole Kubernetes cluster: etcd, kube-apiserver, controller-manager, scheduler and a node (kubelet + containerd); the first run builds them from Go, which takes several minutes");
  const started = Date.now();
  const cluster = await startKubeCluster({ dir: join(dir, "kube"), log: detail });
  cleanups.push({ what: "the cluster", run: () => cluster.stop() });
  detail(`cluster ready in ${((Date.now() - started) / 1000).toFixed(1)}s: API server ${cluster.server}, node localhost`);
  return cluster;
}

async function startRelayAndAgent(dir: string, cluster: KubeCluster): Promise<{ relayUrl: string; dataDir: string }> {
  const port = await freePort();
  const relayUrl = `http://127.0.0.1:${port}`;
  const dataDir = join(dir, "relay-data");
  step(`Starting arcrelay at ${relayUrl} (data ${dataDir}, log ${join(dir, "arcrelay.log")})`);
  const relay = startService(dir, "arcrelay", ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--insecure-http"]);
  await waitUntil("the relay to answer /healthz", async () => (await fetch(`${relayUrl}/healthz`).catch(() => undefined))?.ok === true, relay);

  step(`Registering cluster "${CLUSTER}" on the relay (arcrelay cluster add ${CLUSTER})`);
  const enrollToken = (await arcrelay(dataDir, ["cluster", "add", CLUSTER])).trim().split("\n").at(-1)!;

  step("Installing the agent into the cluster as users do: its image built from Dockerfile.agent, then");
  detail(`helm install arcagent deploy/helm/arcagent -n cluster-connect --create-namespace --set relay.url=${relayUrl} --set cluster=${CLUSTER} --set enrollment.token=...`);
  detail("(with hostNetwork, so the pod reaches a relay on this machine's 127.0.0.1)");
  await installAgentChart(cluster, { relayUrl, cluster: CLUSTER, enrollToken, log: detail });
  await waitUntil("the agent's tunnel", async () => {
    const clusters = JSON.parse(await arcrelay(dataDir, ["cluster", "list", "-o", "json"])) as { name: string; state: string }[];
    return clusters.some((c) => c.name === CLUSTER && c.state === "connected");
  }, relay, 60_000);
  detail(await arcrelay(dataDir, ["cluster", "list"]));
  return { relayUrl, dataDir };
}

async function setUpAlice(cluster: KubeCluster, dataDir: string): Promise<string> {
  step("Creating a relay token for user alice (group dev) and granting her cluster-user on the relay");
  const token = (await arcrelay(dataDir, ["token", "create", "--user", "alice", "--group", "dev", "--ttl", "12h"])).trim().split("\n").at(-1)!;
  await arcrelay(dataDir, ["grant", "add", "--principal", "user:alice", "--cluster", CLUSTER, "--role", "cluster-user"]);
  step("In the cluster (admin kubeconfig): namespace demo, and a RoleBinding giving alice the edit ClusterRole there");
  await adminKubectl(cluster, ["create", "namespace", "demo"]);
  await adminKubectl(cluster, ["create", "rolebinding", "alice-edit", "-n", "demo", "--clusterrole=edit", "--user=alice"]);
  return token;
}

async function startArcproxy(dir: string, relayUrl: string, token: string): Promise<string> {
  const port = (await portIsFree(PREFERRED_PROXY_PORT)) ? PREFERRED_PROXY_PORT : 0;
  const kubeconfig = join(dir, "alice.kubeconfig");
  const ready = join(dir, "arcproxy.ready");
  step(`Starting arcproxy as alice on 127.0.0.1:${port || "(a free port)"}, kubeconfig ${kubeconfig}`);
  const proxy = startService(dir, "arcproxy", [
    "--relay", relayUrl, "--cluster", CLUSTER, "--port", String(port), "--kubeconfig-out", kubeconfig, "--ready-file", ready,
  ], { ARC_TOKEN: token });
  await waitUntil("arcproxy to be ready", () => existsSync(ready), proxy);
  return kubeconfig;
}

/** Runs kubectl with alice's kubeconfig and prints what it printed; `expectFailure` for the denied request. */
async function showKubectl(kubectlPath: string, kubeconfig: string, args: string[], expectFailure = false): Promise<void> {
  step(`kubectl ${args.join(" ")}`);
  const proc = Bun.spawn([kubectlPath, ...args], { env: { ...process.env, KUBECONFIG: kubeconfig }, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  detail((out + err).trimEnd());
  if ((code !== 0) !== expectFailure) throw new Error(`kubectl ${args.join(" ")} exited with ${code}, expected ${expectFailure ? "a failure" : "success"}`);
}

/** `kubectl port-forward` in the background until it listens; fetches `path` through it and stops it. */
async function showPortForward(kubectlPath: string, kubeconfig: string, pod: string, path: string): Promise<void> {
  step(`kubectl port-forward -n demo pod/${pod} :8080   (then GET ${path} through it)`);
  const proc = Bun.spawn([kubectlPath, "port-forward", "-n", "demo", `pod/${pod}`, ":8080", "--address", "127.0.0.1"], {
    env: { ...process.env, KUBECONFIG: kubeconfig }, stdout: "pipe", stderr: "pipe",
  });
  let out = "";
  void (async () => { for await (const c of proc.stdout as ReadableStream<Uint8Array>) out += new TextDecoder().decode(c); })();
  try {
    await waitUntil("port-forward to listen", () => /Forwarding from 127\.0\.0\.1:\d+/.test(out), undefined, 20_000);
    detail(out.trimEnd());
    const port = Number(/Forwarding from 127\.0\.0\.1:(\d+)/.exec(out)![1]);
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    detail(`GET ${path} -> ${res.status}: ${(await res.text()).trim()}`);
  } finally {
    proc.kill("SIGINT");
    await proc.exited;
  }
}

async function runDemo(dir: string): Promise<void> {
  const cluster = await startCluster(dir);
  const { relayUrl, dataDir } = await startRelayAndAgent(dir, cluster);
  const token = await setUpAlice(cluster, dataDir);
  const kubeconfig = await startArcproxy(dir, relayUrl, token);
  const image = cluster.node!.testImage;
  const kubectl = (args: string[], expectFailure = false) => showKubectl(cluster.kubectl, kubeconfig, args, expectFailure);

  console.log("\nEverything below runs as alice: kubectl -> arcproxy -> arcrelay -> arcagent (a pod) -> kube-apiserver -> kubelet.");
  await kubectl(["auth", "whoami"]);
  await kubectl(["run", "web", "-n", "demo", `--image=${image}`, "--", "sh", "-c",
    "mkdir -p /www && echo 'hello from a pod, through the tunnel' > /www/index.html && echo serving /www on :8080 && exec httpd -f -v -p 8080 -h /www"]);
  await kubectl(["wait", "--for=condition=Ready", "pod/web", "-n", "demo", "--timeout=60s"]);
  await kubectl(["get", "pods", "-n", "demo", "-o", "wide"]);
  await kubectl(["logs", "web", "-n", "demo"]);
  await kubectl(["exec", "web", "-n", "demo", "--", "sh", "-c", "echo \"in the pod: $(hostname), $(id)\"; ls /www"]);
  await showPortForward(cluster.kubectl, kubeconfig, "web", "/index.html");
  await kubectl(["get", "secrets", "-n", "kube-system"], true);
  detail("(denied by the API server's own RBAC: alice may edit only namespace demo)");
}

async function tearDown(): Promise<void> {
  for (const { what, run } of cleanups.splice(0).reverse()) {
    await run().catch((error) => console.error(`    stopping ${what}: ${(error as Error).message}`));
  }
}

const main = defineCommand({
  meta: { name: "demo", description: "Run a whole cluster, arcrelay, the agent (a pod, installed with its chart) and arcproxy locally, and use kubectl through them" },
  args: {
    wait: { type: "boolean", default: true, description: "Stay running until Ctrl-C (--no-wait: stop after the kubectl commands)" },
  },
  async run({ args }) {
    const dir = await mkdtemp(join(tmpdir(), "arc-demo-"));
    // Persistent handlers: a second Ctrl-C must not fall through to a hard kill mid-teardown.
    const stopped = new Promise<string>((resolve) => {
      for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => resolve(signal));
    });
    let code = 0;
    try {
      const outcome = await Promise.race([runDemo(dir).then(() => "done"), stopped]);
      if (outcome !== "done") throw new Error(`interrupted (${outcome}) during start-up`);
      if (args.wait) {
        console.log(`\nTry it yourself in another terminal:\n  export KUBECONFIG=${join(dir, "alice.kubeconfig")}\n  kubectl get pods -n demo\n  kubectl exec -it web -n demo -- sh\n\nLogs are in ${dir}. Press Ctrl-C to stop everything.`);
        console.log(`\nStopping (${await stopped}).`);
      }
    } catch (error) {
      console.error(`\ndemo failed: ${(error as Error).message}\nStopping everything it started.`);
      code = 1;
    }
    await tearDown();
    await rm(dir, { recursive: true, force: true });
    console.log(code === 0 ? "Stopped; temp files removed." : "Stopped.");
    process.exit(code);
  },
});

await runMain(main);
