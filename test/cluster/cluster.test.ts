// The test cluster itself: a real control plane and node come up, run a pod, and leave nothing
// behind when stopped, even when the harness dies without stopping it.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "../support/wait-for.ts";
import { isAlive } from "./proc.ts";
import { applyManifest, createServiceAccountKubeconfig, kubectl, startKubeCluster, type KubeCluster } from "./cluster.ts";

setDefaultTimeout(120_000);

interface WhoAmI {
  status: { userInfo: { username: string; groups?: string[] } };
}

let dir: string;
let cluster: KubeCluster;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kube-cluster-test-"));
  cluster = await startKubeCluster({ dir, log: (line) => console.error(line) });
}, 40 * 60_000); // a fresh machine builds the Kubernetes binaries from Go first

afterAll(async () => {
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("a whole single-node cluster", () => {
  test("serves Kubernetes v1.34 with the admin and ServiceAccount identities a real cluster has", async () => {
    const version = JSON.parse(await kubectl(cluster, ["get", "--raw", "/version"])) as { gitVersion: string };
    expect(version.gitVersion).toMatch(/^v1\.34\.\d+$/);
    const admin = JSON.parse(await kubectl(cluster, ["auth", "whoami", "-o", "json"])) as WhoAmI;
    expect(admin.status.userInfo.username).toBe("admin");
    expect(admin.status.userInfo.groups).toContain("system:masters");

    await kubectl(cluster, ["create", "namespace", "e2e"]);
    await kubectl(cluster, ["create", "serviceaccount", "robot", "-n", "e2e"]);
    const sa = await createServiceAccountKubeconfig(cluster, { namespace: "e2e", serviceAccount: "robot", out: join(dir, "robot.kubeconfig") });
    const robot = JSON.parse(await kubectl(cluster, ["auth", "whoami", "-o", "json"], sa.kubeconfig)) as WhoAmI;
    expect(robot.status.userInfo.username).toBe("system:serviceaccount:e2e:robot");
  });

  test("the controllers run: aggregated roles are filled and a Deployment gets a running pod", async () => {
    const edit = JSON.parse(await kubectl(cluster, ["get", "clusterrole", "edit", "-o", "json"])) as { rules?: unknown[] };
    expect(edit.rules?.length ?? 0).toBeGreaterThan(5);
    await kubectl(cluster, ["create", "deployment", "sleeper", "-n", "default", `--image=${cluster.node!.testImage}`, "--", "sleep", "3600"]);
    await kubectl(cluster, ["rollout", "status", "deployment/sleeper", "-n", "default", "--timeout=60s"]);
    const pods = JSON.parse(await kubectl(cluster, ["get", "pods", "-n", "default", "-l", "app=sleeper", "-o", "json"])) as {
      items: { status: { phase: string; podIP?: string } }[];
    };
    expect(pods.items.map((p) => p.status.phase)).toContain("Running");
    expect(pods.items[0]!.status.podIP).toMatch(/^10\.123\.\d+\.\d+$/);
  });

  test("the node runs containers: logs, exec with its exit status, and the API server reaches the kubelet securely", async () => {
    await applyManifest(cluster, "echo.yaml", `apiVersion: v1
kind: Pod
metadata: {name: echo, namespace: default}
spec:
  containers:
    - name: main
      image: ${cluster.node!.testImage}
      imagePullPolicy: Never
      command: ["sh", "-c", "echo started; sleep 3600"]
`);
    await kubectl(cluster, ["wait", "--for=condition=Ready", "pod/echo", "-n", "default", "--timeout=60s"]);
    expect(await kubectl(cluster, ["logs", "echo", "-n", "default"])).toBe("started\n");
    const proc = Bun.spawn([cluster.kubectl, "--kubeconfig", cluster.adminKubeconfig, "exec", "echo", "-n", "default", "--", "sh", "-c", "echo in-pod; exit 7"], { stdout: "pipe", stderr: "pipe" });
    expect(await new Response(proc.stdout).text()).toBe("in-pod\n");
    expect(await proc.exited).toBe(7);
    // The kubelet answers only authenticated, authorized callers: anonymous gets 401.
    const kubeletPort = JSON.parse(await kubectl(cluster, ["get", "node", "localhost", "-o", "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}"]));
    const anonymous = await fetch(`https://127.0.0.1:${kubeletPort}/pods`, { tls: { rejectUnauthorized: false } });
    expect(anonymous.status).toBe(401);
  });
});

describe("stopping", () => {
  test("stop() removes every process, mount, cgroup and the bridge", async () => {
    const state = JSON.parse(readFileSync(join(dir, "cluster-state.json"), "utf8")) as { cgroupRoot: string; bridge: string };
    expect(Object.keys(cluster.pids).sort()).toEqual(["containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"]);
    const pids = Object.values(cluster.pids);
    expect(processesMentioning(dir).length).toBeGreaterThan(0); // the pods' containerd shims, still running
    await cluster.stop();
    expect(pids.filter(isAlive)).toEqual([]);
    expect(readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((line) => line.includes(dir))).toEqual([]);
    expect(existsSync(`/sys/fs/cgroup/memory${state.cgroupRoot}`)).toBe(false);
    expect(existsSync(`/sys/class/net/${state.bridge}`)).toBe(false);
    expect(processesMentioning(dir)).toEqual([]);
  });
});

test("a harness killed with SIGKILL leaves nothing running: the watchdog tears its cluster down", async () => {
  const killedDir = await mkdtemp(join(tmpdir(), "kube-cluster-killed-"));
  const harness = Bun.spawn([process.execPath, join(import.meta.dir, "kube-up.ts"), "--dir", killedDir], { stdout: "pipe", stderr: "ignore" });
  const reader = harness.stdout.getReader();
  let out = "";
  while (!out.includes("ready\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`kube-up exited before it was ready: ${out}`);
    out += new TextDecoder().decode(value);
  }
  const state = JSON.parse(readFileSync(join(killedDir, "cluster-state.json"), "utf8")) as { cgroupRoot: string; bridge: string };
  harness.kill("SIGKILL");
  await harness.exited;
  await expectTornDown(killedDir, state);
}, 5 * 60_000);

test("SIGTERM while the cluster is still starting stops kube-up then, not once it is up, and the watchdog removes what had started", async () => {
  const startingDir = await mkdtemp(join(tmpdir(), "kube-cluster-starting-"));
  const harness = Bun.spawn([process.execPath, join(import.meta.dir, "kube-up.ts"), "--dir", startingDir], { stdout: "pipe", stderr: "pipe" });
  const stdout = new Response(harness.stdout).text();
  const reader = harness.stderr.getReader();
  let err = "";
  while (!err.includes("kube-apiserver ready")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`kube-up exited before its API server was up: ${err}`);
    err += new TextDecoder().decode(value);
  }
  const state = JSON.parse(readFileSync(join(startingDir, "cluster-state.json"), "utf8")) as { cgroupRoot: string; bridge: string };
  harness.kill("SIGTERM");
  void (async () => { for (;;) { const { value, done } = await reader.read(); if (done) break; err += new TextDecoder().decode(value); } })();
  expect(await harness.exited).toBe(143);
  expect(await stdout).not.toContain("ready"); // it did not wait for the node
  expect(err).toContain("SIGTERM during start-up; stopping");
  await expectTornDown(startingDir, state);
}, 5 * 60_000);

/**
 * The watchdog polls every half second and stops everything with a bounded grace each. Done means
 * the state file gone and the watchdog itself exited: it removes the file a moment before it exits,
 * and its own command line names the folder (CI once caught it in between).
 */
async function expectTornDown(dir: string, state: { cgroupRoot: string; bridge: string }): Promise<void> {
  const left = () => [...(existsSync(join(dir, "cluster-state.json")) ? ["cluster-state.json"] : []), ...processesMentioning(dir)];
  await waitFor("the watchdog to tear the cluster down and exit", () => left().length === 0, 60_000)
    .catch((error: Error) => { throw new Error(`${error.message}; still there: ${left().join("; ")}`); });
  expect(existsSync(`/sys/fs/cgroup/memory${state.cgroupRoot}`)).toBe(false);
  expect(existsSync(`/sys/class/net/${state.bridge}`)).toBe(false);
  expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(dir);
  await rm(dir, { recursive: true, force: true });
}

/** "PID: command line" of every process whose command line names `path`, so a failure says what was left running. */
function processesMentioning(path: string): string[] {
  const found: string[] = [];
  for (const entry of new Bun.Glob("[0-9]*").scanSync({ cwd: "/proc", onlyFiles: false })) {
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (argv.includes(path)) found.push(`${entry}: ${argv.replaceAll("\0", " ").trim()}`);
    } catch {
      // exited meanwhile
    }
  }
  return found;
}
