// A newcomer's path, end to end, from a fresh HOME: install.sh from a running relay installs the
// compiled arcproxy (verified), `arcproxy login` through headless Chromium at a real OpenID Connect
// provider, `arcproxy clusters`, `arcproxy --cluster demo` merging its context into ~/.kube/config,
// `kubectl get ns` against a real kube-apiserver, a refresh once the ID token expired, Ctrl-C, and
// the kubeconfig is byte for byte what it was.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBinaries, hostPlatform } from "../../scripts/build.ts";
import { kubectl as adminKubectl, createServiceAccountKubeconfig, startKubeCluster, type KubeCluster } from "../cluster/cluster.ts";
import { ensureKubectl } from "../cluster/find-kubectl.ts";
import { browserLogin, startOidcProvider, type RunningProvider } from "../support/oidc-provider.ts";
import { waitFor } from "../support/wait-for.ts";
import { startStack, type Stack } from "./stack.ts";

setDefaultTimeout(120_000);
const ROOT = join(import.meta.dir, "..", "..");
/** Short, so the test sees a running proxy outlive its first ID token. */
const ID_TOKEN_TTL_SECONDS = 15;

let dir: string;
let cluster: KubeCluster;
let provider: RunningProvider;
let stack: Stack;
let kubectl: string;

beforeAll(async () => {
  const began = Date.now();
  const step = (what: string) => console.error(`[newcomer] ${what} after ${((Date.now() - began) / 1000).toFixed(1)}s`);
  kubectl = await ensureKubectl();
  dir = await mkdtemp(join(tmpdir(), "arc-newcomer-"));
  // What the relay serves: the compiled arcproxy for this machine, as `bun run build:all` lays it out.
  const downloads = join(dir, "downloads");
  const platform = hostPlatform();
  await buildBinaries({ outDir: downloads, names: ["arcproxy"], platforms: [platform], version: "1.0.0", log: () => {} });
  await writeFile(join(downloads, "VERSION"), "1.0.0\n");
  step("arcproxy built");

  cluster = await startKubeCluster({ dir, node: false, manifests: [join(ROOT, "deploy", "agent.yaml")], log: (l) => console.error(l) });
  const agent = await createServiceAccountKubeconfig(cluster, { namespace: "cluster-connect", serviceAccount: "arcagent", out: join(dir, "agent.kubeconfig") });
  // Without controllers the aggregated roles are empty: a role of its own lets alice list namespaces.
  await writeFile(join(dir, "rbac.yaml"), `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: namespace-reader}
rules: [{apiGroups: [""], resources: [namespaces], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-namespace-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: namespace-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice@example.com}]
`);
  await adminKubectl(cluster, ["apply", "-f", join(dir, "rbac.yaml")]);
  step("API server up");

  provider = await startOidcProvider({ idTokenTtlSeconds: ID_TOKEN_TTL_SECONDS });
  await writeFile(join(dir, "issuers.yaml"), `issuers:
  - issuer: ${provider.issuer}
    audiences: [arcproxy]
    usernameClaim: email
    login: {clientId: arcproxy, scopes: [openid, email, profile]}
`);
  stack = await startStack({ server: cluster.server, caFile: cluster.caFile, agentToken: agent.token }, {
    relayArgs: ["--config", join(dir, "issuers.yaml"), "--downloads-dir", downloads],
  });
  step("relay up");
  // The agent checks every token itself (the relay is not trusted with identity), so it trusts the issuer too.
  await stack.startAgent(["--config", join(dir, "issuers.yaml")]);
  await stack.waitForAgent("connected");
  await stack.grant("user:alice@example.com");
  step("agent connected");
}, 40 * 60_000); // a fresh machine builds kube-apiserver from Go first

afterAll(async () => {
  await stack?.stop();
  await provider?.stop();
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("install.sh, arcproxy login in Chromium, arcproxy clusters, arcproxy --cluster, kubectl get ns, a refresh, Ctrl-C: the kubeconfig is as before", async () => {
  const home = join(dir, "home");
  const bin = join(home, ".local", "bin");
  await mkdir(join(home, ".kube"), { recursive: true });
  // The newcomer already has a kubeconfig of their own: it must come out exactly as it went in.
  const original = `apiVersion: v1
kind: Config
clusters:
- name: work
  cluster: {server: "https://work.example.invalid:6443"}
users:
- name: me
  user: {token: not-a-real-token}
contexts:
- name: work
  context: {cluster: work, user: me, namespace: apps}
current-context: work
preferences: {}
`;
  const kubeconfig = join(home, ".kube", "config");
  await writeFile(kubeconfig, original, { mode: 0o600 });
  const opened = join(home, "browser-url");
  await writeFile(join(home, "browser.sh"), `#!/bin/sh\nprintf '%s' "$1" > "${opened}"\n`);
  await chmod(join(home, "browser.sh"), 0o755);
  const env = { HOME: home, PATH: `${bin}:${process.env.PATH}`, BROWSER: join(home, "browser.sh"), ARC_INSTALL_DIR: bin };
  const sh = async (script: string) => {
    const proc = Bun.spawn(["sh", "-c", script], { env, stdout: "pipe", stderr: "pipe", cwd: home });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { stdout, stderr, code };
  };

  // 1. One line installs arcproxy, verified, and remembers the relay.
  const installed = await sh(`curl -fsSL ${stack.relayUrl}/install.sh | sh`);
  expect(installed.stderr).toContain(`arcproxy 1.0.0 installed to ${join(bin, "arcproxy")}`);
  expect(installed.stderr).toContain("next, arcproxy login, then arcproxy clusters and arcproxy --cluster NAME");
  expect(installed.code).toBe(0);
  expect((await sh("arcproxy --version")).stdout.trim()).toBe("1.0.0");

  // 2. Log in once, in the browser.
  const login = Bun.spawn(["arcproxy", "login"], { env, stdout: "pipe", stderr: "pipe" });
  await waitFor("arcproxy login to open the browser", async () => Bun.file(opened).exists(), 30_000);
  const browser = await browserLogin(await readFile(opened, "utf8"), "alice");
  expect(browser.text).toContain("Logged in to");
  expect(await new Response(login.stdout).text()).toContain(`Logged in to ${stack.relayUrl} as alice@example.com`);
  expect(await login.exited).toBe(0);

  // 3. What may I reach?
  const clusters = await sh("arcproxy clusters");
  expect(clusters.stdout).toMatch(/demo\s+connected/);

  // 4. The proxy, with its context merged into ~/.kube/config and made current.
  const ready = join(home, "ready.json");
  const proxy = Bun.spawn(["arcproxy", "--cluster", stack.cluster, "--port", "0", "--ready-file", ready, "--log-level", "debug"], { env, stdout: "pipe", stderr: "pipe" });
  const proxyLog: string[] = [];
  void (async () => {
    for await (const chunk of proxy.stderr as ReadableStream<Uint8Array>) proxyLog.push(new TextDecoder().decode(chunk));
  })();
  try {
    await waitFor("arcproxy's ready file", async () => Bun.file(ready).exists(), 30_000);
    const first = await sh(`${kubectl} get ns -o name`);
    expect(first.stderr).toBe("");
    expect(first.stdout).toContain("namespace/default");
    expect((await sh(`${kubectl} config current-context`)).stdout.trim()).toBe(stack.cluster);

    // One request id from arcproxy's log, through the relay's and the agent's, to the API server's audit log.
    const forwarded = proxyLog.join("").split("\n").filter(Boolean).map((line) => JSON.parse(line) as { msg: string; path?: string; requestId?: string })
      .find((line) => line.msg === "forwarded" && line.path === "/api/v1/namespaces");
    const id = forwarded?.requestId;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(stack.relayLog()).toContain(`"requestId":"${id}"`);
    expect(stack.agentLog()).toContain(`"requestId":"${id}"`);
    await waitFor("the API server's audit event for that request", async () => (await readFile(cluster.auditLog, "utf8")).includes(id!), 10_000);
    const audited = (await readFile(cluster.auditLog, "utf8")).split("\n").filter((line) => line.includes(id!)).map((line) => JSON.parse(line) as {
      requestURI: string; user: { username: string; extra?: Record<string, string[]> }; impersonatedUser?: { username: string; extra?: Record<string, string[]> };
    });
    expect(audited[0]!.requestURI).toStartWith("/api/v1/namespaces");
    expect(audited[0]!.impersonatedUser?.username).toBe("alice@example.com");
    expect(audited[0]!.impersonatedUser?.extra?.["arc-request-id"]).toEqual([id!]);

    // 5. The ID token expires while the proxy runs; the next request gets a refreshed one.
    const loginFile = (await sh("ls $HOME/.config/cluster-connect/logins/*.json")).stdout.trim();
    const expiresAt = Date.parse((JSON.parse(await readFile(loginFile, "utf8")) as { expiresAt: string }).expiresAt);
    await waitFor("the first ID token to expire", () => Date.now() > expiresAt + 1_000, (ID_TOKEN_TTL_SECONDS + 10) * 1000);
    const second = await sh(`${kubectl} get ns -o name`);
    expect(second.stderr).toBe("");
    expect(second.stdout).toContain("namespace/default");
    expect(Date.parse((JSON.parse(await readFile(loginFile, "utf8")) as { expiresAt: string }).expiresAt)).toBeGreaterThan(expiresAt);
  } finally {
    // 6. Ctrl-C.
    proxy.kill("SIGINT");
  }
  expect(await proxy.exited).toBe(0);
  expect(await readFile(kubeconfig, "utf8")).toBe(original);
  expect(await Bun.file(ready).exists()).toBe(false);
});
