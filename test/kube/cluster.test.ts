// End to end: a real etcd + kube-apiserver (built from Go modules on first run,
// which can take 15+ minutes on 2 cores; later runs reuse the cached binaries).
import { expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServiceAccountKubeconfig, kubectl, startKubeCluster } from "./cluster.ts";

const MANIFEST = `apiVersion: v1
kind: Namespace
metadata:
  name: e2e
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: robot
  namespace: e2e
`;

interface WhoAmI {
  status: { userInfo: { username: string; groups?: string[] } };
}

test("startKubeCluster runs a real kube-apiserver v1.34 and stops it", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kube-cluster-test-"));
  const manifest = join(dir, "e2e.yaml");
  await writeFile(manifest, MANIFEST);
  const log = (line: string) => console.error(line);
  const started = Date.now();
  const cluster = await startKubeCluster({ dir, log, manifests: [manifest] });
  log(`[test] cluster up in ${((Date.now() - started) / 1000).toFixed(1)}s at ${cluster.server}`);
  try {
    expect(cluster.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(cluster.adminKubeconfig).toBe(join(dir, "admin.kubeconfig"));

    const version = JSON.parse(await kubectl(cluster, ["get", "--raw", "/version"])) as { gitVersion: string };
    expect(version.gitVersion).toMatch(/^v1\.34\.\d+$/);

    const admin = JSON.parse(await kubectl(cluster, ["auth", "whoami", "-o", "json"])) as WhoAmI;
    expect(admin.status.userInfo.username).toBe("admin");
    expect(admin.status.userInfo.groups).toContain("system:masters");

    const sa = await createServiceAccountKubeconfig(cluster, {
      namespace: "e2e",
      serviceAccount: "robot",
      out: join(dir, "robot.kubeconfig"),
    });
    const robot = JSON.parse(await kubectl(cluster, ["auth", "whoami", "-o", "json"], sa.kubeconfig)) as WhoAmI;
    expect(robot.status.userInfo.username).toBe("system:serviceaccount:e2e:robot");
  } finally {
    await cluster.stop();
  }
  expect(isAlive(cluster.pids.etcd)).toBe(false);
  expect(isAlive(cluster.pids.apiserver)).toBe(false);
  await rm(dir, { recursive: true, force: true });
}, 40 * 60_000); // a fresh machine builds kube-apiserver from Go first (~15 min on 2 cores)

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
