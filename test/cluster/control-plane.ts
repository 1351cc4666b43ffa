// The control plane of the test cluster on free loopback ports: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler, each with its own certificate identity.
import { readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import type { KubeBinaries } from "./build.ts";
import { writeKubeconfig } from "./kubeconfig-file.ts";
import type { Pki } from "./pki.ts";
import { startProcess, type ManagedProcess } from "./proc.ts";

const ETCD_TIMEOUT_MS = 30_000;
/** The API server's audit log (JSON lines, one event per request stage), in the cluster folder. */
export const AUDIT_LOG = "audit.log";
// Metadata for every request once it is answered: user, impersonated user, verb, URI, status.
const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
`;
const READYZ_TIMEOUT_MS = 90_000;

export interface ControlPlane {
  /** https://127.0.0.1:PORT */
  server: string;
  adminKubeconfig: string;
  processes: ManagedProcess[];
}

/**
 * Starts etcd and kube-apiserver and waits for /readyz; with `controllers`, also the controller
 * manager and scheduler (which need no wait: they work against the API server as it fills).
 */
export async function startControlPlane(opts: {
  dir: string;
  bins: KubeBinaries;
  pki: Pki;
  controllers: boolean;
  log: (line: string) => void;
  /** Receives each process as it starts, so a failure later still stops it. */
  onStart: (proc: ManagedProcess) => void;
}): Promise<ControlPlane> {
  const { dir, bins, pki, log } = opts;
  const started = Date.now();
  const [clientPort, peerPort, securePort] = await freePorts(3);
  // Mutual TLS on both etcd ports: a pod on the host network (the tests' agent) or a local user
  // must not be able to write pods into etcd behind the API server's back.
  const etcdUrl = `https://127.0.0.1:${clientPort}`;
  const server = `https://127.0.0.1:${securePort}`;
  const processes: ManagedProcess[] = [];
  const start = (name: string, cmd: string[]) => {
    const proc = startProcess(name, cmd, join(dir, `${name}.log`));
    processes.push(proc);
    opts.onStart(proc);
    return proc;
  };

  const etcdData = join(dir, "etcd");
  await rm(etcdData, { recursive: true, force: true }); // always a fresh cluster
  const peerUrl = `https://127.0.0.1:${peerPort}`;
  const etcd = start("etcd", [
    bins.etcd, "--name=default", `--data-dir=${etcdData}`,
    `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
    `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`, `--initial-cluster=default=${peerUrl}`,
    `--cert-file=${pki.etcdServer.cert}`, `--key-file=${pki.etcdServer.key}`, `--trusted-ca-file=${pki.caCert}`, "--client-cert-auth",
    `--peer-cert-file=${pki.etcdServer.cert}`, `--peer-key-file=${pki.etcdServer.key}`, `--peer-trusted-ca-file=${pki.caCert}`, "--peer-client-cert-auth",
    "--unsafe-no-fsync", // throwaway data: skip fsync for speed
  ]);
  const etcdTls = {
    ca: await readFile(pki.caCert, "utf8"),
    cert: await readFile(pki.etcdClient.cert, "utf8"),
    key: await readFile(pki.etcdClient.key, "utf8"),
  };
  await waitUntil(etcd, ETCD_TIMEOUT_MS, () => etcdHealthy(etcdUrl, etcdTls));
  log(`[kube] etcd ready at ${etcdUrl} (pid ${etcd.pid})`);

  const auditPolicy = join(dir, "audit-policy.yaml");
  await writeFile(auditPolicy, AUDIT_POLICY);
  const apiserver = start("kube-apiserver", [
    bins.apiserver,
    "--advertise-address=127.0.0.1",
    "--bind-address=127.0.0.1",
    `--secure-port=${securePort}`,
    `--etcd-servers=${etcdUrl}`,
    `--etcd-cafile=${pki.caCert}`,
    `--etcd-certfile=${pki.etcdClient.cert}`,
    `--etcd-keyfile=${pki.etcdClient.key}`,
    `--cert-dir=${pki.dir}`,
    `--client-ca-file=${pki.caCert}`,
    `--tls-cert-file=${pki.serverCert}`,
    `--tls-private-key-file=${pki.serverKey}`,
    `--service-account-key-file=${pki.saPub}`,
    `--service-account-signing-key-file=${pki.saKey}`,
    "--service-account-issuer=https://kubernetes.default.svc",
    // As a real cluster: nodes are authorized by the Node authorizer and confined by NodeRestriction.
    "--authorization-mode=Node,RBAC",
    "--enable-admission-plugins=NodeRestriction",
    // The kubelet's serving certificate is checked; the API server proves itself with its own client certificate.
    `--kubelet-client-certificate=${pki.apiserverKubeletClient.cert}`,
    `--kubelet-client-key=${pki.apiserverKubeletClient.key}`,
    `--kubelet-certificate-authority=${pki.caCert}`,
    // The node is named `localhost` and its kubelet listens on 127.0.0.1 (it refuses a loopback node IP).
    "--kubelet-preferred-address-types=Hostname",
    "--service-cluster-ip-range=10.0.0.0/24",
    "--profiling=false",
    // Who the API server saw, for tests that check identities (user, impersonated user, extras).
    `--audit-policy-file=${auditPolicy}`,
    `--audit-log-path=${join(dir, AUDIT_LOG)}`,
    // 127.0.0.1 is not a valid Endpoints address, and no kube-proxy would route the Service anyway.
    "--endpoint-reconciler-type=none",
  ]);
  const tls = {
    ca: await readFile(pki.caCert, "utf8"),
    cert: await readFile(pki.adminCert, "utf8"),
    key: await readFile(pki.adminKey, "utf8"),
  };
  await waitUntil(apiserver, READYZ_TIMEOUT_MS, () => apiserverReady(server, tls));
  log(`[kube] kube-apiserver ready at ${server} (pid ${apiserver.pid}) in ${((Date.now() - started) / 1000).toFixed(1)}s`);

  const adminKubeconfig = join(dir, "admin.kubeconfig");
  await writeKubeconfig(adminKubeconfig, { server, caFile: pki.caCert, userName: "admin", user: { certFile: pki.adminCert, keyFile: pki.adminKey } });
  if (!opts.controllers) return { server, adminKubeconfig, processes };

  const componentKubeconfig = async (name: string, cert: { cert: string; key: string }) => {
    const path = join(dir, `${name}.kubeconfig`);
    await writeKubeconfig(path, { server, caFile: pki.caCert, userName: name, user: { certFile: cert.cert, keyFile: cert.key } });
    return path;
  };
  const kcm = await componentKubeconfig("kube-controller-manager", pki.controllerManager);
  start("kube-controller-manager", [
    bins.controllerManager,
    `--kubeconfig=${kcm}`, `--authentication-kubeconfig=${kcm}`, `--authorization-kubeconfig=${kcm}`,
    `--service-account-private-key-file=${pki.saKey}`,
    `--root-ca-file=${pki.caCert}`,
    `--cluster-signing-cert-file=${pki.caCert}`,
    `--cluster-signing-key-file=${pki.caKey}`,
    // Each controller acts with its own ServiceAccount, as kubeadm sets it up.
    "--use-service-account-credentials=true",
    "--leader-elect=false",
    "--secure-port=0",
    "--profiling=false",
  ]);
  const scheduler = await componentKubeconfig("kube-scheduler", pki.scheduler);
  start("kube-scheduler", [
    bins.scheduler,
    `--kubeconfig=${scheduler}`, `--authentication-kubeconfig=${scheduler}`, `--authorization-kubeconfig=${scheduler}`,
    "--leader-elect=false",
    "--secure-port=0",
    "--profiling=false",
  ]);
  log("[kube] kube-controller-manager and kube-scheduler started");
  return { server, adminKubeconfig, processes };
}

/** Polls `ready` until it holds, failing early with the log tail if the process exits. */
export async function waitUntil(proc: ManagedProcess, timeoutMs: number, ready: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.hasExited()) {
      const code = await proc.exited;
      throw new Error(`${proc.name} exited (code ${code}) before becoming ready; ${proc.logFile} ends with:\n${proc.logTail()}`);
    }
    if (await ready()) return;
    if (Date.now() > deadline) throw new Error(`${proc.name} not ready after ${timeoutMs / 1000}s; ${proc.logFile} ends with:\n${proc.logTail()}`);
    await Bun.sleep(250);
  }
}

async function etcdHealthy(url: string, tls: { ca: string; cert: string; key: string }): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`, { tls, signal: AbortSignal.timeout(2_000) });
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

/** `count` distinct free loopback TCP ports (held open together so they differ). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => {
      const srv = createServer();
      return new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => resolve(srv));
      });
    }),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}
