// Tears a test cluster down completely, whatever state it was left in: pods, kubelet, containers,
// shims, containerd, control plane, mounts, cgroups, the bridge. Safe to run twice and on a
// cluster that never finished starting; it runs before every start and from a watchdog process
// when the harness dies without stopping its cluster (even by SIGKILL).
//
//   bun test/cluster/teardown.ts --dir DIR [--after-pid PID]
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, rmdirSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { findKubectl } from "./find-kubectl.ts";
import { CGROUP_V1_SUBSYSTEMS, nodePaths } from "./node.ts";
import { releaseSlotOf } from "./slot.ts";
import { isAlive } from "./proc.ts";

const STATE_FILE = "cluster-state.json";
const STOP_GRACE_MS = 5_000;
const POD_DELETE_TIMEOUT = "15s";

/** What teardown needs to know, written before anything starts. */
export interface ClusterState {
  dir: string;
  /** The slot the cluster holds (slot.ts); released by whoever tears it down. */
  slot: number;
  cgroupRoot: string;
  bridge: string;
  adminKubeconfig: string;
}

const CGROUP_ROOT = /^\/cluster-connect-test-\d{1,2}$/;
const BRIDGE = /^arctest\d{1,2}$/;

export function writeClusterState(state: ClusterState): void {
  writeFileSync(join(state.dir, STATE_FILE), JSON.stringify(state, null, 2), { mode: 0o600 });
}

/**
 * The state of the cluster in `dir`, if it is one of ours. Teardown runs as root, so nothing in a
 * folder someone else could have written is believed: the folder and the file must belong to us,
 * not be links, not be writable by others, and every value must have the shape we write.
 */
export function readClusterState(dir: string): ClusterState | undefined {
  const file = join(dir, STATE_FILE);
  try {
    if (!ownedAndPrivate(dir) || !ownedAndPrivate(file)) return undefined;
    const state = JSON.parse(readFileSync(file, "utf8")) as ClusterState;
    if (state.dir !== dir || !CGROUP_ROOT.test(state.cgroupRoot) || !BRIDGE.test(state.bridge) || !Number.isInteger(state.slot)) return undefined;
    if (state.adminKubeconfig !== join(dir, "admin.kubeconfig")) return undefined;
    return state;
  } catch {
    return undefined;
  }
}

function ownedAndPrivate(path: string): boolean {
  const info = lstatSync(path);
  return !info.isSymbolicLink() && info.uid === process.getuid?.() && (info.mode & 0o022) === 0;
}

/** Stops and removes everything the cluster in `dir` started. Never throws for what is already gone. */
export async function teardownCluster(dir: string, log: (line: string) => void = () => {}): Promise<void> {
  const state = readClusterState(dir);
  if (!state) return;
  const mine = processesOf(dir);
  const kubectl = findKubectlQuietly();
  if (kubectl && mine.some((p) => p.name === "kubelet") && mine.some((p) => p.name === "kube-apiserver")) {
    // Through the API first, so the kubelet runs each pod's CNI teardown and stops its containers.
    const proc = Bun.spawn([kubectl, "--kubeconfig", state.adminKubeconfig, "delete", "pods", "--all", "--all-namespaces",
      "--grace-period=1", "--wait=true", `--timeout=${POD_DELETE_TIMEOUT}`, "--request-timeout=10s"], { stdout: "ignore", stderr: "pipe" });
    if ((await proc.exited) !== 0) log(`[teardown] deleting pods through the API failed: ${(await new Response(proc.stderr).text()).trim()}`);
  }
  // The kubelet first (it would restart what we kill), then what runs in the node's cgroups,
  // then the shims and containerd, then the control plane: the reverse of the start order.
  await stopAll(mine.filter((p) => p.name === "kubelet"));
  if (state.cgroupRoot) await killCgroup(state.cgroupRoot);
  await stopAll(processesOf(dir).filter((p) => p.name.startsWith("containerd-shim")), "SIGKILL");
  for (const name of ["containerd", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]) {
    await stopAll(processesOf(dir).filter((p) => p.name === name));
  }
  await stopAll(processesOf(dir), "SIGKILL"); // anything else that named our folder
  unmountUnder(dir, log);
  if (state.cgroupRoot) removeCgroup(state.cgroupRoot, log);
  if (state.bridge) await deleteLink(state.bridge);
  removeContainerLogLinks(nodePaths(dir).podLogsDir);
  unlinkSync(join(dir, STATE_FILE));
  releaseSlotOf(state.slot, dir);
  log(`[teardown] cluster in ${dir} is gone`);
}

/** A kubectl for the pod deletion, never a path read from the state file. */
function findKubectlQuietly(): string | undefined {
  try {
    return findKubectl();
  } catch {
    return undefined;
  }
}

interface OwnedProcess {
  pid: number;
  name: string;
  /** Start time in clock ticks (/proc/PID/stat field 22): a reused PID has another. */
  started: string;
}

/** The programs we start name the folder as an argument or a flag's value, never as a mere prefix. */
function namesDir(arg: string, dir: string): boolean {
  const value = arg.startsWith("--") && arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : arg;
  return value === dir || value.startsWith(dir + "/");
}

/** Processes (not this one, nor its parents) whose command line names `dir`. */
function processesOf(dir: string): OwnedProcess[] {
  const skip = new Set([process.pid, process.ppid]);
  const found: OwnedProcess[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || skip.has(pid)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // gone meanwhile
    }
    // The watchdog and teardown scripts themselves name the folder too; they stop on their own.
    if (argv.some((a) => a.endsWith("teardown.ts"))) continue;
    // setpriv exec()s the real program, so argv[0] is the program itself.
    const started = startTimeOf(pid);
    if (started && argv.some((a) => namesDir(a, dir))) found.push({ pid, name: (argv[0] ?? "").split("/").at(-1) ?? "", started });
  }
  return found;
}

function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces and parentheses); starttime is field 22.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** Still the process we found (same PID, same start time), and not a zombie. */
function stillRunning(p: OwnedProcess): boolean {
  return isAlive(p.pid) && startTimeOf(p.pid) === p.started;
}

async function stopAll(procs: OwnedProcess[], signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  for (const p of procs) if (stillRunning(p)) signalPid(p.pid, signal);
  const deadline = Date.now() + STOP_GRACE_MS;
  while (procs.some(stillRunning) && Date.now() < deadline) await Bun.sleep(50);
  for (const p of procs) if (stillRunning(p)) signalPid(p.pid, "SIGKILL");
  // A process stuck in the kernel (D state) ignores even SIGKILL: wait a bounded while, then go on.
  const killDeadline = Date.now() + STOP_GRACE_MS;
  while (procs.some(stillRunning) && Date.now() < killDeadline) await Bun.sleep(20);
}

/** Kills every task in the node's cgroups (containers whose shims are gone included). */
async function killCgroup(root: string): Promise<void> {
  const deadline = Date.now() + STOP_GRACE_MS;
  for (;;) {
    const pids = new Set<number>();
    for (const subsystem of ["pids", "memory", "cpu"]) collectTasks(`/sys/fs/cgroup/${subsystem}${root}`, pids);
    pids.delete(process.pid);
    if (pids.size === 0 || Date.now() > deadline) return;
    for (const pid of pids) signalPid(pid, "SIGKILL");
    await Bun.sleep(50);
  }
}

function collectTasks(path: string, into: Set<number>): void {
  if (!existsSync(path)) return;
  for (const line of safeRead(join(path, "cgroup.procs")).split("\n")) if (line) into.add(Number(line));
  for (const entry of safeReaddir(path)) {
    const child = join(path, entry);
    if (isDirectory(child)) collectTasks(child, into);
  }
}

/** Deepest first; lazy, so a mount still busy for a moment does not stop the rest. */
function unmountUnder(dir: string, log: (line: string) => void): void {
  const points = readFileSync("/proc/self/mountinfo", "utf8").split("\n")
    .map((line) => line.split(" ")[4])
    .filter((point): point is string => !!point && (point === dir || point.startsWith(dir + "/")))
    .map((point) => point.replace(/\\040/g, " "))
    .sort((a, b) => b.length - a.length);
  for (const point of new Set(points)) {
    const result = Bun.spawnSync(["umount", "--lazy", point], { stderr: "pipe" });
    if (result.exitCode !== 0) log(`[teardown] umount ${point}: ${result.stderr.toString().trim()}`);
  }
}

function removeCgroup(root: string, log: (line: string) => void): void {
  for (const subsystem of CGROUP_V1_SUBSYSTEMS) {
    const path = `/sys/fs/cgroup/${subsystem}${root}`;
    if (!existsSync(path)) continue;
    try {
      removeCgroupTree(path);
    } catch (error) {
      log(`[teardown] cannot remove cgroup ${path}: ${(error as Error).message}`);
    }
  }
}

function removeCgroupTree(path: string): void {
  for (const entry of safeReaddir(path)) {
    const child = join(path, entry);
    if (isDirectory(child)) removeCgroupTree(child);
  }
  rmdirSync(path);
}

async function deleteLink(name: string): Promise<void> {
  if (!existsSync(`/sys/class/net/${name}`)) return;
  const proc = Bun.spawn(["ip", "link", "delete", name], { stderr: "ignore" });
  await proc.exited;
}

/** The kubelet links /var/log/containers/*.log to the pod logs; links into a removed folder are litter. */
function removeContainerLogLinks(podLogsDir: string): void {
  const linkDir = "/var/log/containers";
  for (const entry of safeReaddir(linkDir)) {
    const path = join(linkDir, entry);
    try {
      if (readlinkSync(path).startsWith(podLogsDir + "/")) unlinkSync(path);
    } catch {
      // not a link, or removed meanwhile
    }
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function safeReaddir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Starts a detached watchdog that tears the cluster down once `pid` (the harness) is gone, so even
 * a SIGKILLed harness leaves nothing running. Returns a function that stops the watchdog and
 * resolves once it has exited: until then its command line, which names the folder, is still in
 * /proc, and a loaded machine can take milliseconds to finish a SIGKILLed process.
 */
export function startTeardownWatchdog(dir: string, pid: number): () => Promise<void> {
  const proc = Bun.spawn([process.execPath, import.meta.path, "--dir", dir, "--after-pid", String(pid)], {
    stdin: "ignore", stdout: "ignore", stderr: "ignore", detached: true,
  });
  proc.unref();
  return async () => {
    proc.kill("SIGKILL");
    await proc.exited;
  };
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const dir = args[args.indexOf("--dir") + 1];
  const afterPid = args.includes("--after-pid") ? Number(args[args.indexOf("--after-pid") + 1]) : undefined;
  if (!dir || args.indexOf("--dir") < 0) {
    console.error("usage: bun test/cluster/teardown.ts --dir DIR [--after-pid PID]");
    process.exit(2);
  }
  if (afterPid) while (isAlive(afterPid)) await Bun.sleep(500);
  await teardownCluster(dir, (line) => console.error(line));
}
