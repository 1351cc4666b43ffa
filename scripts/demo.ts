// `npm run demo`: the whole product on this machine, from source. A real kube-apiserver, arcrelay,
// arcagent (dialing out to the relay) and arcproxy, then real kubectl commands as user alice.
// Runs until Ctrl-C (or exits after the commands with --no-wait), then stops everything it started.
import { defineCommand, runMain } from "citty";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { createServiceAccountKubeconfig, kubectl as adminKubectl, startKubeCluster, type KubeCluster } from "../test/kube/cluster.ts";
import { tailFile } from "../test/kube/proc.ts";

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

/** Stands in for kube-controller-manager's ClusterRole aggregation (not run here), so `edit` has its rules. */
async function aggregateClusterRoles(cluster: KubeCluster, names: string[]): Promise<void> {
  for (const name of names) {
    const list = JSON.parse(await adminKubectl(cluster, ["get", "clusterroles", "-l", `rbac.authorization.k8s.io/aggregate-to-${name}=true`, "-o", "json"]));
    const rules = (list.items as { rules?: unknown[] }[]).flatMap((role) => role.rules ?? []);
    await adminKubectl(cluster, ["patch", "clusterrole", name, "--type", "merge", "-p", JSON.stringify({ rules })]);
  }
}

async function startCluster(dir: string): Promise<KubeCluster> {
  step("Starting a real Kubernetes control plane: etcd + kube-apiserver (the first run builds them from Go; this can take several minutes)");
  const started = Date.now();
  const cluster = await startKubeCluster({ dir: join(dir, "kube"), log: detail, manifests: [join(ROOT, "deploy", "agent.yaml")] });
  cleanups.push({ what: "kube-apiserver and etcd", run: () => cluster.stop() });
  detail(`API server ${cluster.server} ready in ${((Date.now() - started) / 1000).toFixed(1)}s; deploy/agent.yaml applied`);
  await aggregateClusterRoles(cluster, ["view", "edit"]);
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

  step("Starting arcagent as ServiceAccount cluster-connect/arcagent (impersonation rights only); it dials OUT to the relay");
  const { kubeconfig } = await createServiceAccountKubeconfig(cluster, { namespace: "cluster-connect", serviceAccount: "arcagent", out: join(dir, "agent.kubeconfig") });
  const agent = startService(dir, "arcagent", ["--relay", relayUrl, "--cluster", CLUSTER, "--state-dir", join(dir, "agent-state"), "--kubeconfig", kubeconfig], { ARC_ENROLL_TOKEN: enrollToken });
  await waitUntil("the agent's tunnel", async () => {
    const clusters = JSON.parse(await arcrelay(dataDir, ["cluster", "list", "-o", "json"])) as { name: string; state: string }[];
    return clusters.some((c) => c.name === CLUSTER && c.state === "connected");
  }, agent);
  detail(`cluster "${CLUSTER}" is connected (log ${agent.logFile})`);
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
  step(`Starting arcproxy as alice on 127.0.0.1:${port || "(a free port)"}, kubeconfig ${kubeconfig}`);
  const proxy = startService(dir, "arcproxy", ["--relay", relayUrl, "--cluster", CLUSTER, "--port", String(port), "--kubeconfig-out", kubeconfig], { ARC_TOKEN: token });
  await waitUntil("arcproxy's kubeconfig", () => existsSync(kubeconfig), proxy);
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

async function runDemo(dir: string): Promise<void> {
  const cluster = await startCluster(dir);
  const { relayUrl, dataDir } = await startRelayAndAgent(dir, cluster);
  const token = await setUpAlice(cluster, dataDir);
  const kubeconfig = await startArcproxy(dir, relayUrl, token);

  console.log("\nEverything below runs as alice: kubectl -> arcproxy -> arcrelay -> arcagent -> kube-apiserver.");
  await showKubectl(cluster.kubectl, kubeconfig, ["auth", "whoami"]);
  await showKubectl(cluster.kubectl, kubeconfig, ["create", "configmap", "hello", "-n", "demo", "--from-literal=greeting=hi from alice"]);
  await showKubectl(cluster.kubectl, kubeconfig, ["get", "configmaps", "-n", "demo"]);
  await showKubectl(cluster.kubectl, kubeconfig, ["get", "secrets", "-n", "kube-system"], true);
  detail("(denied by the API server's own RBAC: alice may edit only namespace demo)");
}

async function tearDown(): Promise<void> {
  for (const { what, run } of cleanups.splice(0).reverse()) {
    await run().catch((error) => console.error(`    stopping ${what}: ${(error as Error).message}`));
  }
}

const main = defineCommand({
  meta: { name: "demo", description: "Run kube-apiserver, arcrelay, arcagent and arcproxy locally and use kubectl through them" },
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
        console.log(`\nTry it yourself in another terminal:\n  export KUBECONFIG=${join(dir, "alice.kubeconfig")}\n  kubectl get configmaps -n demo\n\nLogs are in ${dir}. Press Ctrl-C to stop everything.`);
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
