// A real single-node Kubernetes control plane for end-to-end tests: etcd and
// kube-apiserver (built from Go modules by build.ts) on free loopback ports,
// with a throwaway PKI. No kubelet, scheduler or controller-manager.
import { mkdir, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { buildKubeBinaries } from "./build.ts";
import { ensureKubectl } from "./find-kubectl.ts";
import { writeKubeconfig } from "./kubeconfig-file.ts";
import { generatePki } from "./pki.ts";
import { startProcess, type ManagedProcess } from "./proc.ts";

export interface KubeCluster {
  /** https://127.0.0.1:PORT */
  server: string;
  adminKubeconfig: string;
  caFile: string;
  kubectl: string;
  dir: string;
  /** Process ids of the control plane (for checks that they are gone). */
  pids: { etcd: number; apiserver: number };
  /** Resolves with a message when etcd or kube-apiserver exits, expectedly or not. */
  exited: Promise<string>;
  stop(): Promise<void>;
}

export interface StartKubeClusterOptions {
  dir: string;
  log?: (line: string) => void;
  /** Applied in order with `kubectl apply --server-side -f`. */
  manifests?: string[];
}

const ETCD_TIMEOUT_MS = 30_000;
const READYZ_TIMEOUT_MS = 90_000;

export async function startKubeCluster(opts: StartKubeClusterOptions): Promise<KubeCluster> {
  const log = opts.log ?? (() => {});
  const dir = opts.dir;
  await mkdir(dir, { recursive: true });
  const bins = await buildKubeBinaries({ log });
  const kubectlPath = await ensureKubectl(log);
  const started = Date.now();
  const pki = await generatePki(join(dir, "pki"));
  const [clientPort, peerPort, securePort] = await freePorts3();
  const etcdUrl = `http://127.0.0.1:${clientPort}`;
  const server = `https://127.0.0.1:${securePort}`;

  const procs: ManagedProcess[] = [];
  const stop = async () => {
    // apiserver first, then etcd
    for (const p of [...procs].reverse()) await p.stop();
  };
  try {
    const etcdData = join(dir, "etcd");
    await rm(etcdData, { recursive: true, force: true }); // always a fresh cluster
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const etcd = startProcess("etcd", [
      bins.etcd,
      "--name=default",
      `--data-dir=${etcdData}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=default=${peerUrl}`,
      "--unsafe-no-fsync", // throwaway data: skip fsync for speed
    ], join(dir, "etcd.log"));
    procs.push(etcd);
    await waitFor(etcd, ETCD_TIMEOUT_MS, () => etcdHealthy(etcdUrl));
    log(`[kube] etcd ready at ${etcdUrl} (pid ${etcd.pid})`);

    const apiserver = startProcess("kube-apiserver", [
      bins.apiserver,
      "--advertise-address=127.0.0.1",
      "--bind-address=127.0.0.1",
      `--secure-port=${securePort}`,
      `--etcd-servers=${etcdUrl}`,
      `--cert-dir=${pki.dir}`,
      `--client-ca-file=${pki.caCert}`,
      `--tls-cert-file=${pki.serverCert}`,
      `--tls-private-key-file=${pki.serverKey}`,
      `--service-account-key-file=${pki.saPub}`,
      `--service-account-signing-key-file=${pki.saKey}`,
      "--service-account-issuer=https://kubernetes.default.svc",
      "--authorization-mode=RBAC",
      "--service-cluster-ip-range=10.0.0.0/24",
      "--profiling=false",
      // 127.0.0.1 is not a valid Endpoints address; nothing in-cluster needs it.
      "--endpoint-reconciler-type=none",
    ], join(dir, "kube-apiserver.log"));
    procs.push(apiserver);
    const tls = {
      ca: await readFile(pki.caCert, "utf8"),
      cert: await readFile(pki.adminCert, "utf8"),
      key: await readFile(pki.adminKey, "utf8"),
    };
    await waitFor(apiserver, READYZ_TIMEOUT_MS, () => apiserverReady(server, tls));
    log(`[kube] kube-apiserver ready at ${server} (pid ${apiserver.pid}) in ${secs(started)}s`);

    const adminKubeconfig = join(dir, "admin.kubeconfig");
    await writeKubeconfig(adminKubeconfig, {
      server,
      caFile: pki.caCert,
      userName: "admin",
      user: { certFile: pki.adminCert, keyFile: pki.adminKey },
    });
    const exited = Promise.race(
      [etcd, apiserver].map((p) => p.exited.then((code) => `${p.name} (pid ${p.pid}) exited with code ${code}`)),
    );
    const cluster: KubeCluster = {
      server,
      adminKubeconfig,
      caFile: pki.caCert,
      kubectl: kubectlPath,
      dir,
      pids: { etcd: etcd.pid, apiserver: apiserver.pid },
      exited,
      stop,
    };
    for (const manifest of opts.manifests ?? []) {
      log(`[kube] applying ${manifest}`);
      await kubectl(cluster, ["apply", "--server-side", "-f", manifest]);
    }
    return cluster;
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Runs kubectl with the cluster's admin kubeconfig; resolves with stdout. */
export async function kubectl(
  cluster: KubeCluster,
  args: string[],
  kubeconfig = cluster.adminKubeconfig,
): Promise<string> {
  const proc = Bun.spawn([cluster.kubectl, "--kubeconfig", kubeconfig, ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (exit ${code}):\n${err.trim() || out.trim()}`);
  return out;
}

/** Writes a kubeconfig at `out` authenticating as a ServiceAccount with a bound token. */
export async function createServiceAccountKubeconfig(
  cluster: KubeCluster,
  opts: { namespace: string; serviceAccount: string; out: string; duration?: string },
): Promise<{ kubeconfig: string; token: string }> {
  const args = ["create", "token", opts.serviceAccount, "-n", opts.namespace, "--duration", opts.duration ?? "24h"];
  const token = (await kubectl(cluster, args)).trim();
  await writeKubeconfig(opts.out, {
    server: cluster.server,
    caFile: cluster.caFile,
    userName: `${opts.namespace}-${opts.serviceAccount}`,
    user: { token },
    namespace: opts.namespace,
  });
  return { kubeconfig: opts.out, token };
}

async function waitFor(proc: ManagedProcess, timeoutMs: number, ready: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.hasExited()) {
      const code = await proc.exited;
      throw new Error(
        `${proc.name} exited (code ${code}) before becoming ready; ${proc.logFile} ends with:\n${proc.logTail()}`,
      );
    }
    if (await ready()) return;
    if (Date.now() > deadline) {
      throw new Error(
        `${proc.name} not ready after ${timeoutMs / 1000}s; ${proc.logFile} ends with:\n${proc.logTail()}`,
      );
    }
    await Bun.sleep(500);
  }
}

async function etcdHealthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
    return res.ok && ((await res.json()) as { health?: string }).health === "true";
  } catch {
    return false;
  }
}

async function apiserverReady(server: string, tls: { ca: string; cert: string; key: string }): Promise<boolean> {
  try {
    const res = await fetch(`${server}/readyz`, { tls, signal: AbortSignal.timeout(5_000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

/** Three distinct free loopback TCP ports (held open together so they differ). */
async function freePorts3(): Promise<[number, number, number]> {
  const servers = await Promise.all(
    [0, 1, 2].map(() => {
      const srv = createServer();
      return new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => resolve(srv));
      });
    }),
  );
  const ports = servers.map((s) => {
    const addr = s.address();
    if (!addr || typeof addr === "string") throw new Error("unexpected server address");
    return addr.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  const [a, b, c] = ports;
  if (a === undefined || b === undefined || c === undefined) throw new Error("could not allocate ports");
  return [a, b, c];
}

function secs(since: number): string {
  return ((Date.now() - since) / 1000).toFixed(1);
}
