// The test cluster's one node: its own containerd instance (Debian's containerd and runc), the
// bridge CNI plugin (Debian's containernetworking-plugins) and a kubelet built from Go modules.
//
// Settings this machine needs, each found by trying: no systemd (cgroupfs driver), cgroups v1
// (failCgroupV1: false), no CAP_SYS_RESOURCE (containerd's restrict_oom_score_adj, kubelet
// oomScoreAdj: 0), no registry (the sandbox image is built locally, image GC never runs).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { stringify } from "yaml";
import { writeKubeconfig } from "./kubeconfig-file.ts";
import { NODE_NAME, type Pki } from "./pki.ts";
import { startProcess, type ManagedProcess } from "./proc.ts";
import type { Slot } from "./slot.ts";

/** Where Debian's containernetworking-plugins package puts the plugins. */
const CNI_BIN_DIR = "/usr/lib/cni";
/** cgroup v1 hierarchies the kubelet and runc use; cpuset needs its parent's cpus and mems copied. */
export const CGROUP_V1_SUBSYSTEMS = ["cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer", "blkio", "hugetlb", "systemd"];
const CONTAINERD_READY_TIMEOUT_MS = 30_000;

export interface NodePaths {
  containerdDir: string;
  containerdSocket: string;
  kubeletDir: string;
  podLogsDir: string;
  cniConfDir: string;
  cniDataDir: string;
}

export function nodePaths(dir: string): NodePaths {
  const containerdDir = join(dir, "containerd");
  return {
    containerdDir,
    containerdSocket: join(containerdDir, "containerd.sock"),
    kubeletDir: join(dir, "kubelet"),
    podLogsDir: join(dir, "pod-logs"),
    cniConfDir: join(dir, "cni", "net.d"),
    cniDataDir: join(dir, "cni", "ipam"),
  };
}

/** Starts this node's containerd and waits until its socket answers. */
export async function startContainerd(opts: {
  dir: string;
  slot: Slot;
  sandboxImage: string;
  log: (line: string) => void;
}): Promise<ManagedProcess> {
  const paths = nodePaths(opts.dir);
  for (const d of [paths.containerdDir, paths.cniConfDir, paths.cniDataDir]) await mkdir(d, { recursive: true });
  await writeFile(join(paths.cniConfDir, "10-bridge.conflist"), JSON.stringify(cniConfig(opts.slot, paths), null, 2));
  const config = join(paths.containerdDir, "config.toml");
  await writeFile(config, containerdConfig(opts.dir, paths, opts.sandboxImage));
  const containerd = startProcess("containerd", [Bun.which("containerd") ?? "/usr/bin/containerd", "--config", config], join(opts.dir, "containerd.log"));
  const deadline = Date.now() + CONTAINERD_READY_TIMEOUT_MS;
  while (!(await ctrAnswers(paths.containerdSocket))) {
    if (containerd.hasExited()) throw new Error(`containerd exited before it was ready:\n${containerd.logTail()}`);
    if (Date.now() > deadline) throw new Error(`containerd not ready after ${CONTAINERD_READY_TIMEOUT_MS / 1000}s:\n${containerd.logTail()}`);
    await Bun.sleep(200);
  }
  opts.log(`[node] containerd ready at ${paths.containerdSocket} (pid ${containerd.pid})`);
  return containerd;
}

/** Starts the kubelet; the node registers itself as `localhost` and turns Ready within seconds. */
export async function startKubelet(opts: {
  dir: string;
  slot: Slot;
  kubelet: string;
  server: string;
  pki: Pki;
  port: number;
  log: (line: string) => void;
}): Promise<ManagedProcess> {
  const paths = nodePaths(opts.dir);
  for (const d of [paths.kubeletDir, paths.podLogsDir]) await mkdir(d, { recursive: true });
  createCgroupRoot(opts.slot.cgroupRoot);
  const kubeconfig = join(opts.dir, "kubelet.kubeconfig");
  await writeKubeconfig(kubeconfig, {
    server: opts.server, caFile: opts.pki.caCert, userName: `system:node:${NODE_NAME}`,
    user: { certFile: opts.pki.node.cert, keyFile: opts.pki.node.key },
  });
  const config = join(opts.dir, "kubelet-config.yaml");
  await writeFile(config, stringify(kubeletConfig(opts.slot, paths, opts.pki, opts.port)));
  const kubelet = startProcess("kubelet", [
    opts.kubelet,
    `--config=${config}`,
    `--kubeconfig=${kubeconfig}`,
    `--root-dir=${paths.kubeletDir}`,
    `--hostname-override=${NODE_NAME}`,
    "--v=1",
  ], join(opts.dir, "kubelet.log"));
  opts.log(`[node] kubelet started on 127.0.0.1:${opts.port} (pid ${kubelet.pid})`);
  return kubelet;
}

function containerdConfig(dir: string, paths: NodePaths, sandboxImage: string): string {
  const q = JSON.stringify;
  return `# containerd for the test cluster in ${dir}: its own socket, root and state; nothing shared with a system containerd.
version = 2
root = ${q(join(paths.containerdDir, "root"))}
state = ${q(join(paths.containerdDir, "state"))}
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = ${q(paths.containerdSocket)}

[ttrpc]
  address = ${q(join(paths.containerdDir, "containerd.sock.ttrpc"))}

[debug]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = ${q(join(paths.containerdDir, "opt"))}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${q(sandboxImage)}
  # Without CAP_SYS_RESOURCE runc cannot lower a container's OOM score below ours.
  restrict_oom_score_adj = true
  # Network namespaces live in the state folder, so teardown finds and unmounts them.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ${q(CNI_BIN_DIR)}
    conf_dir = ${q(paths.cniConfDir)}
    max_conf_num = 1
`;
}

function cniConfig(slot: Slot, paths: NodePaths): unknown {
  return {
    cniVersion: "0.4.0",
    name: `cluster-connect-test-${slot.index}`,
    plugins: [
      {
        type: "bridge",
        bridge: slot.bridge,
        isGateway: true,
        // No masquerading: pods talk to this host only (the relay, the API server); nothing needs NAT.
        ipMasq: false,
        hairpinMode: true,
        ipam: { type: "host-local", ranges: [[{ subnet: slot.subnet }]], dataDir: paths.cniDataDir },
      },
    ],
  };
}

function kubeletConfig(slot: Slot, paths: NodePaths, pki: Pki, port: number): unknown {
  return {
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    address: "127.0.0.1",
    port,
    readOnlyPort: 0,
    healthzPort: 0,
    // Only the API server (client certificate) and authorized callers reach the kubelet.
    authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: pki.caCert } },
    authorization: { mode: "Webhook" },
    tlsCertFile: pki.kubeletServing.cert,
    tlsPrivateKeyFile: pki.kubeletServing.key,
    containerRuntimeEndpoint: `unix://${paths.containerdSocket}`,
    cgroupDriver: "cgroupfs",
    cgroupRoot: slot.cgroupRoot,
    failCgroupV1: false,
    oomScoreAdj: 0,
    failSwapOn: false,
    podLogsDir: paths.podLogsDir,
    clusterDomain: "cluster.local",
    // No registry is reachable: images are imported, never pulled, so nothing may be collected.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: { "memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%" },
    makeIPTablesUtilChains: false,
    serializeImagePulls: false,
    rotateCertificates: false,
    serverTLSBootstrap: false,
    nodeStatusReportFrequency: "10s",
  };
}

/** Creates the node's cgroup root in every v1 hierarchy; cpuset children start without cpus, so copy the parent's. */
function createCgroupRoot(root: string): void {
  for (const subsystem of CGROUP_V1_SUBSYSTEMS) {
    const base = `/sys/fs/cgroup/${subsystem}`;
    if (!existsSync(base)) continue;
    const path = join(base, root);
    mkdirSync(path, { recursive: true });
    if (subsystem === "cpuset") {
      for (const file of ["cpuset.cpus", "cpuset.mems"]) {
        writeFileSync(join(path, file), readFileSync(join(base, file), "utf8"));
      }
    }
  }
}

async function ctrAnswers(socket: string): Promise<boolean> {
  if (!existsSync(socket)) return false;
  const proc = Bun.spawn(["ctr", "--address", socket, "version"], { stdout: "ignore", stderr: "ignore" });
  return (await proc.exited) === 0;
}

/** Imports an OCI archive into the node's containerd, where the kubelet's CRI finds it. */
export async function importImage(dir: string, archive: string): Promise<void> {
  const { containerdSocket } = nodePaths(dir);
  const proc = Bun.spawn(["ctr", "--address", containerdSocket, "-n", "k8s.io", "images", "import", archive], {
    stdout: "pipe", stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`ctr images import ${archive} failed (exit ${code}): ${err.trim() || out.trim()}`);
}
