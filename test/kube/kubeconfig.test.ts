import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { buildKubeconfig, writeKubeconfig } from "../../lib/kube/kubeconfig.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "kubeconfig-test-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

test("token kubeconfig: cluster, user and current context all named after the cluster", () => {
  const config = parse(buildKubeconfig({ clusterName: "prod-eu", server: "https://127.0.0.1:47011", caPem: CA, token: "s3cret", namespace: "web" }));
  expect(config).toEqual({
    apiVersion: "v1",
    kind: "Config",
    preferences: {},
    clusters: [{ name: "prod-eu", cluster: { server: "https://127.0.0.1:47011", "certificate-authority-data": Buffer.from(CA).toString("base64") } }],
    users: [{ name: "prod-eu", user: { token: "s3cret" } }],
    contexts: [{ name: "prod-eu", context: { cluster: "prod-eu", user: "prod-eu", namespace: "web" } }],
    "current-context": "prod-eu",
  });
});

test("exec kubeconfig carries the credential plugin and its env as name/value pairs", () => {
  const config = parse(buildKubeconfig({
    clusterName: "c1", server: "https://relay.example.com/v1/clusters/c1/k8s",
    exec: { command: "arcproxy", args: ["credential", "--relay", "https://relay.example.com"], env: { ARC_X: "1" }, apiVersion: "client.authentication.k8s.io/v1" },
  }));
  expect(config.users[0].user.exec).toEqual({
    apiVersion: "client.authentication.k8s.io/v1", command: "arcproxy", args: ["credential", "--relay", "https://relay.example.com"],
    env: [{ name: "ARC_X", value: "1" }], interactiveMode: "Never",
  });
  expect(config.clusters[0].cluster["certificate-authority-data"]).toBeUndefined();
});

test("token and exec together are a caller mistake", () => {
  expect(() => buildKubeconfig({ clusterName: "c", server: "https://x", token: "t", exec: { command: "a", args: [], apiVersion: "v" } })).toThrow(TypeError);
});

test("writeKubeconfig writes mode 0600 and leaves no temp file", async () => {
  const path = join(dir, "kubeconfig");
  await writeKubeconfig(path, "hello: world\n");
  expect(await readFile(path, "utf8")).toBe("hello: world\n");
  expect((await stat(path)).mode & 0o777).toBe(0o600);
  expect(await readdir(dir)).toEqual(["kubeconfig"]);
});

test("writeKubeconfig tightens an existing world-readable file to 0600", async () => {
  const path = join(dir, "kubeconfig");
  await writeFile(path, "old\n", { mode: 0o644 });
  await writeKubeconfig(path, "new\n");
  expect(await readFile(path, "utf8")).toBe("new\n");
  expect((await stat(path)).mode & 0o777).toBe(0o600);
});

test("writeKubeconfig names the path when the directory is missing", async () => {
  const path = join(dir, "missing", "kubeconfig");
  expect(writeKubeconfig(path, "x\n")).rejects.toThrow(`cannot write kubeconfig ${path}`);
});
