// A whole single-node Kubernetes cluster for tests and the demo: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and a node (containerd + runc + bridge CNI + kubelet),
// all built or installed from Go modules and Debian's packages, on loopback.
//
// Starting it first tears down whatever an earlier run left in the same folder; a watchdog process
// tears it down if the harness dies without calling stop() (see teardown.ts).
import { chmod, lstat, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ensureSystemPackages } from "../../scripts/system-packages.ts";
import { buildKubeBinaries } from "./build.ts";
import { AUDIT_LOG, freePorts, startControlPlane } from "./control-plane.ts";
import { ensureKubectl } from "./find-kubectl.ts";
import { archiveFor, buildPauseImage, buildTestImage } from "./images.ts";
import { writeKubeconfig } from "./kubeconfig-file.ts";
import { importImage, startContainerd, startKubelet } from "./node.ts";
import { APISERVER_KUBELET_CLIENT, NODE_NAME, generatePki } from "./pki.ts";
import type { ManagedProcess } from "./proc.ts";
import { claimSlot } from "./slot.ts";
import { readClusterState, startTeardownWatchdog, teardownCluster, writeClusterState } from "./teardown.ts";

export interface KubeCluster {
  /** https://127.0.0.1:PORT */
  server: string;
  adminKubeconfig: string;
  caFile: string;
  kubectl: string;
  dir: string;
  /** The API server's audit log (JSON lines, audit.k8s.io/v1 Event at Metadata level). */
  auditLog: string;
  /** The node, when the cluster has one. */
  node?: ClusterNode;
  /** Process ids by program name (for checks that they are gone). */
  pids: Record<string, number>;
  /** Resolves with a message when a cluster process exits, expectedly or not. */
  exited: Promise<string>;
  stop(): Promise<void>;
}

export interface ClusterNode {
  name: string;
  /** Reference of the busybox workload image, already on the node (imagePullPolicy: Never works). */
  testImage: string;
  /** Makes an OCI archive's image available to pods (e.g. the agent image). */
  importImage(archive: string): Promise<void>;
}

export interface StartClusterOptions {
  dir: string;
  log?: (line: string) => void;
  /** Applied in order with `kubectl apply --server-side -f` once the cluster is ready. */
  manifests?: string[];
  /** Run a node (kubelet, containerd) and the controllers; default true. Without, only etcd and the API server. */
  node?: boolean;
}

const NODE_READY_TIMEOUT_MS = 60_000;

// The API server's kubelet client identity gets exactly the kubelet API (logs, exec, port-forward).
const KUBELET_CLIENT_BINDING = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kube-apiserver-kubelet-client}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:kubelet-api-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: ${APISERVER_KUBELET_CLIENT}}]
`;

export async function startKubeCluster(opts: StartClusterOptions): Promise<KubeCluster> {
  const log = opts.log ?? (() => {});
  const dir = opts.dir;
  const withNode = opts.node ?? true;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if ((await lstat(dir)).isSymbolicLink()) throw new Error(`${dir} is a symbolic link: give the cluster a real folder`);
  await chmod(dir, 0o700); // teardown (as root) believes only a folder no one else can write
  await ensureSystemPackages(log);
  await teardownCluster(dir, log);
  // Build progress always shows (stderr by default): a first build takes minutes.
  const bins = await buildKubeBinaries(opts.log);
  const kubectlPath = await ensureKubectl(log);
  const slot = await claimSlot(dir, async (previous, index) => {
    if (readClusterState(previous)?.slot === index) await teardownCluster(previous, log);
  });
  const started = Date.now();
  const processes: ManagedProcess[] = [];
  const adminKubeconfig = join(dir, "admin.kubeconfig");
  writeClusterState({ dir, slot: slot.index, cgroupRoot: slot.cgroupRoot, bridge: slot.bridge, adminKubeconfig });
  const stopWatchdog = startTeardownWatchdog(dir, process.pid);
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= (async () => {
    await teardownCluster(dir, log);
    await stopWatchdog();
    await slot.release();
  })());

  try {
    const pki = await generatePki(join(dir, "pki"));
    const plane = await startControlPlane({ dir, bins, pki, controllers: withNode, log, onStart: (p) => processes.push(p) });
    const cluster: KubeCluster = {
      server: plane.server, adminKubeconfig, caFile: pki.caCert, kubectl: kubectlPath, dir, auditLog: join(dir, AUDIT_LOG),
      pids: {}, exited: new Promise(() => {}), stop,
    };
    if (withNode) {
      await applyManifest(cluster, "kubelet-client.yaml", KUBELET_CLIENT_BINDING);
      const [pause, testImage] = [await buildPauseImage(bins.pause, log), await buildTestImage(log)];
      const imagesDir = join(dir, "images");
      const containerd = await startContainerd({ dir, slot, sandboxImage: pause, log });
      processes.push(containerd);
      for (const image of [pause, testImage]) await importImage(dir, await archiveFor(image, imagesDir));
      const [kubeletPort] = await freePorts(1);
      processes.push(await startKubelet({ dir, slot, kubelet: bins.kubelet, server: plane.server, pki, port: kubeletPort!, log }));
      await waitForNode(cluster, processes);
      cluster.node = { name: NODE_NAME, testImage, importImage: (archive) => importImage(dir, archive) };
      log(`[kube] node ${NODE_NAME} Ready; whole cluster up in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    }
    cluster.pids = Object.fromEntries(processes.map((p) => [p.name, p.pid]));
    cluster.exited = Promise.race(processes.map((p) => p.exited.then((code) => `${p.name} (pid ${p.pid}) exited with code ${code}`)));
    for (const manifest of opts.manifests ?? []) {
      log(`[kube] applying ${manifest}`);
      await kubectl(cluster, ["apply", "--server-side", "-f", manifest]);
    }
    return cluster;
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Waits for the node to be Ready and the controllers to have done what a real cluster has done by
 * the time anyone uses it: the `default` ServiceAccount made, and the aggregated roles (`edit`,
 * which `admin` aggregates too) filled; tests and users bind to them.
 */
async function waitForNode(cluster: KubeCluster, processes: ManagedProcess[]): Promise<void> {
  const deadline = Date.now() + NODE_READY_TIMEOUT_MS;
  for (;;) {
    const dead = processes.find((p) => p.hasExited());
    if (dead) throw new Error(`${dead.name} exited while the node was starting; ${dead.logFile} ends with:\n${dead.logTail()}`);
    const node = await getJson(cluster, `/api/v1/nodes/${NODE_NAME}`);
    const ready = (node?.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions
      ?.some((c) => c.type === "Ready" && c.status === "True");
    if (ready && (await getJson(cluster, "/api/v1/namespaces/default/serviceaccounts/default"))
      && ((await getJson(cluster, "/apis/rbac.authorization.k8s.io/v1/clusterroles/edit"))?.rules as unknown[] | undefined)?.length) return;
    if (Date.now() > deadline) {
      const kubelet = processes.find((p) => p.name === "kubelet");
      throw new Error(`node ${NODE_NAME} not Ready after ${NODE_READY_TIMEOUT_MS / 1000}s; kubelet log ends with:\n${kubelet?.logTail()}`);
    }
    await Bun.sleep(250);
  }
}

/** GET as admin; undefined on 404 or when the API server does not answer. */
async function getJson(cluster: KubeCluster, path: string): Promise<Record<string, unknown> | undefined> {
  const pki = join(cluster.dir, "pki");
  const tls = {
    ca: await readFile(cluster.caFile, "utf8"),
    cert: await readFile(join(pki, "admin.crt"), "utf8"),
    key: await readFile(join(pki, "admin.key"), "utf8"),
  };
  try {
    const res = await fetch(cluster.server + path, { tls, signal: AbortSignal.timeout(5_000) });
    return res.ok ? ((await res.json()) as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Runs kubectl with the cluster's admin kubeconfig (or `kubeconfig`); resolves with stdout. */
export async function kubectl(cluster: KubeCluster, args: string[], kubeconfig = cluster.adminKubeconfig): Promise<string> {
  const proc = Bun.spawn([cluster.kubectl, "--kubeconfig", kubeconfig, ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (exit ${code}):\n${err.trim() || out.trim()}`);
  return out;
}

/** Writes `yaml` into the cluster folder and applies it as admin (server-side). */
export async function applyManifest(cluster: KubeCluster, name: string, yaml: string): Promise<void> {
  const file = join(cluster.dir, name);
  await writeFile(file, yaml);
  await kubectl(cluster, ["apply", "--server-side", "-f", file]);
}

/** Writes a kubeconfig at `out` authenticating as a ServiceAccount with a bound token. */
export async function createServiceAccountKubeconfig(
  cluster: KubeCluster,
  opts: { namespace: string; serviceAccount: string; out: string; duration?: string },
): Promise<{ kubeconfig: string; token: string }> {
  const args = ["create", "token", opts.serviceAccount, "-n", opts.namespace, "--duration", opts.duration ?? "24h"];
  const token = (await kubectl(cluster, args)).trim();
  await writeKubeconfig(opts.out, {
    server: cluster.server, caFile: cluster.caFile, userName: `${opts.namespace}-${opts.serviceAccount}`, user: { token }, namespace: opts.namespace,
  });
  return { kubeconfig: opts.out, token };
}
