// The whole path against a REAL cluster (test/cluster: control plane, controllers and a node):
// kubectl and @kubernetes/client-node -> arcproxy -> arcrelay -> arcagent -> kube-apiserver,
// where the server's own authentication and RBAC decide, as they would for any other client.
// The agent runs from source on this machine here, so the tests can stop and restart it at will;
// test/e2e/in-cluster.e2e.test.ts runs it as users do, as a pod from its image.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { createServiceAccountKubeconfig, kubectl as adminKubectl, startKubeCluster, type KubeCluster } from "../cluster/cluster.ts";
import { ensureKubectl } from "../cluster/find-kubectl.ts";
import { waitFor } from "../support/wait-for.ts";
import { expectOk, run, startStack, type Stack } from "./stack.ts";
import { expiredToken, forgedToken } from "./tokens.ts";

setDefaultTimeout(120_000);
const ROOT = join(import.meta.dir, "..", "..");
const BULK_COUNT = 5_000;

let dir: string;
let cluster: KubeCluster;
let stack: Stack;
let kubectl: string;
let alice: string;
let opsAdmin: string;

beforeAll(async () => {
  kubectl = await ensureKubectl();
  dir = await mkdtemp(join(tmpdir(), "arc-real-"));
  const started = Date.now();
  cluster = await startKubeCluster({ dir, manifests: [join(ROOT, "deploy", "agent.yaml")], log: (l) => console.error(l) });
  console.error(`[e2e] real cluster up in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  const agent = await createServiceAccountKubeconfig(cluster, {
    namespace: "cluster-connect", serviceAccount: "arcagent", out: join(dir, "agent.kubeconfig"),
  });
  await applyAsAdmin("rbac.yaml", RBAC_MANIFEST);
  stack = await startStack({ server: cluster.server, caFile: cluster.caFile, agentToken: agent.token });
  await stack.startAgent();
  await stack.waitForAgent("connected");
  alice = await stack.userToken("alice", ["dev"]);
  opsAdmin = await stack.userToken("ops-admin");
  await stack.grant("user:alice");
  await stack.grant("user:ops-admin");
}, 40 * 60_000); // a fresh machine builds kube-apiserver from Go first (~15 min on 2 cores)

afterAll(async () => {
  await stack?.stop();
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const RBAC_MANIFEST = `
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: v1
kind: Namespace
metadata: {name: bulk}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-edit, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dev-view, namespace: team-b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: dev}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-view, namespace: bulk}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ops-admin-cluster-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: ops-admin}]
---
# alice may act as "reader" (in group "auditors", uid "reader-uid") and nothing else: kubectl --as.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-reader}
rules:
  - {apiGroups: [""], resources: [users], resourceNames: [reader], verbs: [impersonate]}
  - {apiGroups: [""], resources: [groups], resourceNames: [auditors], verbs: [impersonate]}
  - {apiGroups: [authentication.k8s.io], resources: [uids], resourceNames: [reader-uid], verbs: [impersonate]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-impersonate-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-view, namespace: team-b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: reader}]
`;

/** `arcproxy --token T [args] -- kubectl ...kubectlArgs` */
function kubectlVia(token: string, kubectlArgs: string[], opts: { args?: string[]; stdin?: string; env?: Record<string, string> } = {}) {
  return stack.arcproxy({ token, args: opts.args, command: [kubectl, ...kubectlArgs], stdin: opts.stdin, env: opts.env });
}

async function applyAsAdmin(name: string, yaml: string): Promise<void> {
  const file = join(dir, name);
  await writeFile(file, yaml);
  await adminKubectl(cluster, ["apply", "--server-side", "-f", file]);
}

/** The admin's client certificate from its kubeconfig, for fetch(). */
async function adminTls(): Promise<{ ca: string; cert: string; key: string }> {
  const config = parse(await readFile(cluster.adminKubeconfig, "utf8"));
  const decode = (b64: string) => Buffer.from(b64, "base64").toString("utf8");
  return {
    ca: decode(config.clusters[0].cluster["certificate-authority-data"]),
    cert: decode(config.users[0].user["client-certificate-data"]),
    key: decode(config.users[0].user["client-key-data"]),
  };
}

/** Creates `count` ConfigMaps straight at the API server, `concurrency` POSTs at a time. */
async function createConfigMapsDirectly(namespace: string, count: number, concurrency = 16): Promise<void> {
  const tls = await adminTls();
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const body = { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `cm-${String(i).padStart(5, "0")}` }, data: { index: String(i) } };
      const res = await fetch(`${cluster.server}/api/v1/namespaces/${namespace}/configmaps`, {
        method: "POST", tls, headers: { "content-type": "application/json" }, body: JSON.stringify(body),
      });
      const text = await res.text();
      if (res.status !== 201) throw new Error(`creating ${body.metadata.name}: ${res.status} ${text}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

function whoami(stdout: string): { username: string; groups: string[]; extra?: Record<string, string[]> } {
  return JSON.parse(stdout).status.userInfo;
}

describe("identity as the API server sees it", () => {
  test("kubectl auth whoami shows alice, her groups, system:authenticated and the request id extra", async () => {
    const r = await kubectlVia(alice, ["auth", "whoami", "-o", "json"]);
    const info = whoami(expectOk(r));
    expect(info.username).toBe("alice");
    expect(info.groups).toEqual(expect.arrayContaining(["dev", "system:authenticated"]));
    expect(info.groups).not.toContain("system:masters");
    expect(info.extra?.["arc-request-id"]?.[0]).toMatch(/\S/);
  });

  test("kubectl --as to someone the caller may not impersonate is refused with 403, as the API server refuses it", async () => {
    // (kubectl's discovery reads a 403 as "unknown", whoever sends it; get --raw prints the Status.)
    const r = await kubectlVia(alice, ["--as", "system:admin", "--as-group", "system:masters", "get", "--raw", "/api/v1/namespaces/team-a/configmaps"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('users "system:admin" is forbidden: user "alice" cannot impersonate resource "users"');
    const secrets = await kubectlVia(alice, ["--as", "system:admin", "get", "--raw", "/api/v1/namespaces/kube-system/secrets"]);
    expect(secrets.code).not.toBe(0);
    expect(secrets.stderr).toContain("cannot impersonate");
  });

  test.each([
    ["--as-group", ["--as", "reader", "--as-group", "system:masters"], 'groups "system:masters" is forbidden'],
    ["--as-uid", ["--as", "reader", "--as-uid", "0"], 'uids "0" is forbidden'],
  ])("%s beyond what RBAC allows is refused, naming what was refused", async (_what, flags, message) => {
    const r = await kubectlVia(alice, [...flags, "get", "--raw", "/api/v1/namespaces/team-b/configmaps"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
  });

  test("kubectl --as, --as-group and --as-uid that RBAC allows: the API server sees the target, and who really asked", async () => {
    const r = await kubectlVia(alice, ["--as", "reader", "--as-group", "auditors", "--as-uid", "reader-uid", "auth", "whoami", "-o", "json"]);
    const info = whoami(expectOk(r)) as ReturnType<typeof whoami> & { uid?: string };
    expect(info.username).toBe("reader");
    expect(info.uid).toBe("reader-uid");
    expect(info.groups).toEqual(["auditors", "system:authenticated"]);
    expect(info.extra?.["arc-original-user"]).toEqual(["alice"]);
    expect(info.extra?.["arc-original-groups"]).toEqual(["dev"]);
    expect(info.extra?.["arc-request-id"]?.[0]).toMatch(/\S/);
  });

  test("kubectl auth can-i --as answers for the target, not for the caller", async () => {
    // alice may create ConfigMaps in team-a; reader may not. An auditor must see reader's answer.
    const asAlice = await kubectlVia(alice, ["auth", "can-i", "create", "configmaps", "-n", "team-a"]);
    expect({ stdout: asAlice.stdout.trim(), stderr: asAlice.stderr }).toEqual({ stdout: "yes", stderr: "" });
    const asReader = await kubectlVia(alice, ["--as", "reader", "auth", "can-i", "create", "configmaps", "-n", "team-a"]);
    expect(asReader.stdout.trim()).toBe("no");
    expect(asReader.code).toBe(1);
    const direct = await adminKubectl(cluster, ["--as", "reader", "auth", "can-i", "create", "configmaps", "-n", "team-a"]).catch((e: Error) => e.message);
    expect(String(direct)).toContain("no");
    expectOk(await kubectlVia(alice, ["--as", "reader", "get", "configmaps", "-n", "team-b", "-o", "name"]));
    const refused = await kubectlVia(alice, ["--as", "reader", "get", "configmaps", "-n", "team-a"]);
    expect(refused.stderr).toContain('User "reader" cannot list resource "configmaps"');
  });
});

describe("RBAC decided by the real API server", () => {
  test("alice creates, applies, gets, patches and deletes ConfigMaps in team-a", async () => {
    expectOk(await kubectlVia(alice, ["create", "configmap", "settings", "-n", "team-a", "--from-literal=color=blue"]));
    const manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: team-a\ndata:\n  size: small\n";
    expect(expectOk(await kubectlVia(alice, ["apply", "-f", "-"], { stdin: manifest }))).toContain("configmap/applied created");
    const patched = await kubectlVia(alice, ["patch", "configmap", "settings", "-n", "team-a", "--type", "merge", "-p", '{"data":{"color":"green"}}']);
    expect(expectOk(patched)).toContain("configmap/settings patched");
    const got = JSON.parse(expectOk(await kubectlVia(alice, ["get", "configmap", "settings", "-n", "team-a", "-o", "json"])));
    expect(got.data).toEqual({ color: "green" });
    expectOk(await kubectlVia(alice, ["create", "configmap", "short-lived", "-n", "team-a"]));
    expect(expectOk(await kubectlVia(alice, ["delete", "configmap", "short-lived", "-n", "team-a"]))).toContain('"short-lived" deleted');
    const gone = await kubectlVia(alice, ["get", "configmap", "short-lived", "-n", "team-a"]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('configmaps "short-lived" not found');
  });

  test("server-side apply records kubectl as the field manager", async () => {
    const manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: team-a\ndata:\n  mode: server-side\n";
    expect(expectOk(await kubectlVia(alice, ["apply", "--server-side", "-f", "-"], { stdin: manifest }))).toContain("configmap/ssa serverside-applied");
    const got = JSON.parse(expectOk(await kubectlVia(alice, ["get", "configmap", "ssa", "-n", "team-a", "-o", "json", "--show-managed-fields"])));
    expect(got.data).toEqual({ mode: "server-side" });
    expect(got.metadata.managedFields.map((f: { manager: string; operation: string }) => `${f.manager}/${f.operation}`)).toContain("kubectl/Apply");
  });

  test("alice creates, scales, gets and deletes a Deployment in team-a", async () => {
    expectOk(await kubectlVia(alice, ["create", "deployment", "web", "-n", "team-a", "--image=registry.k8s.io/pause:3.10"]));
    expectOk(await kubectlVia(alice, ["scale", "deployment", "web", "-n", "team-a", "--replicas=3"]));
    const got = JSON.parse(expectOk(await kubectlVia(alice, ["get", "deployment", "web", "-n", "team-a", "-o", "json"])));
    expect(got.spec.replicas).toBe(3);
    expectOk(await kubectlVia(alice, ["delete", "deployment", "web", "-n", "team-a"]));
  });

  test("in team-b alice may read through her group dev but not write: Kubernetes' own Forbidden", async () => {
    expectOk(await kubectlVia(alice, ["get", "configmaps", "-n", "team-b"]));
    const r = await kubectlVia(alice, ["create", "configmap", "nope", "-n", "team-b"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('User "alice" cannot create resource "configmaps" in API group "" in the namespace "team-b"');
  });

  test("in kube-system alice gets Kubernetes' own Forbidden", async () => {
    const r = await kubectlVia(alice, ["get", "configmaps", "-n", "kube-system"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('User "alice" cannot list resource "configmaps" in API group "" in the namespace "kube-system"');
  });

  test("namespace lifecycle: alice is refused, ops-admin (cluster-admin) creates, labels and deletes", async () => {
    const refused = await kubectlVia(alice, ["create", "namespace", "scratch"]);
    expect(refused.stderr).toContain('User "alice" cannot create resource "namespaces"');
    expectOk(await kubectlVia(opsAdmin, ["create", "namespace", "scratch"]));
    expectOk(await kubectlVia(opsAdmin, ["label", "namespace", "scratch", "owner=ops"]));
    const got = JSON.parse(expectOk(await kubectlVia(opsAdmin, ["get", "namespace", "scratch", "-o", "json"])));
    expect(got.metadata.labels.owner).toBe("ops");
    // The namespace controller finalizes it; kubectl waits until it is gone.
    expectOk(await kubectlVia(opsAdmin, ["delete", "namespace", "scratch", "--wait=true", "--timeout=60s"]));
    const gone = await kubectlVia(opsAdmin, ["get", "namespace", "scratch"]);
    expect(gone.stderr).toContain('namespaces "scratch" not found');
  });
});

describe("streams and big responses", () => {
  test("a watch through arcproxy sees a ConfigMap that another client creates", async () => {
    expectOk(await kubectlVia(alice, ["create", "configmap", "watch-marker", "-n", "team-a"]));
    const proc = Bun.spawn(
      [process.execPath, "cmd/arcproxy.ts", "--relay", stack.relayUrl, "--cluster", stack.cluster, "--port", "0", "--token", alice,
        "--", kubectl, "get", "configmaps", "-w", "-n", "team-a", "-o", "name"],
      { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
    );
    let out = "";
    void (async () => { for await (const c of proc.stdout as ReadableStream<Uint8Array>) out += new TextDecoder().decode(c); })();
    try {
      // The initial list is printed first; the watch starts from its resourceVersion, so nothing after it is missed.
      await waitFor("the watch's initial list", () => out.includes("configmap/watch-marker"), 20_000);
      await adminKubectl(cluster, ["create", "configmap", "made-by-admin", "-n", "team-a"]);
      await waitFor("the watch event for made-by-admin", () => out.includes("configmap/made-by-admin"), 15_000);
    } finally {
      proc.kill("SIGINT");
      await proc.exited;
    }
  });

  test(`a LIST of ${BULK_COUNT} ConfigMaps through the proxy equals the same LIST made directly`, async () => {
    const created = Date.now();
    await createConfigMapsDirectly("bulk", BULK_COUNT);
    console.error(`[e2e] created ${BULK_COUNT} ConfigMaps directly in ${ms(created)}`);

    // Into files, not pipes: this compares the proxied bytes; the next test covers pipes.
    const listInto = (file: string) => ["sh", "-c", '"$0" get configmaps -n bulk -o json > "$1"', kubectl, file];
    const viaFile = join(dir, "list-via-proxy.json");
    const directFile = join(dir, "list-direct.json");
    const viaStart = Date.now();
    expectOk(await stack.arcproxy({ token: alice, command: listInto(viaFile) }));
    const viaMs = ms(viaStart);
    const directStart = Date.now();
    expectOk(await run(listInto(directFile), { env: { KUBECONFIG: cluster.adminKubeconfig } }));
    console.error(`[e2e] LIST of ${BULK_COUNT}: through arcproxy ${viaMs} (incl. arcproxy start), direct ${ms(directStart)}`);

    const viaList = JSON.parse(await readFile(viaFile, "utf8"));
    const directList = JSON.parse(await readFile(directFile, "utf8"));
    delete viaList.metadata.resourceVersion;
    delete directList.metadata.resourceVersion;
    // Plus the kube-root-ca.crt ConfigMap that the controller manager puts in every namespace.
    expect(viaList.items).toHaveLength(BULK_COUNT + 1);
    const key = (list: { items: { metadata: { name: string; resourceVersion: string } }[] }) =>
      list.items.map((i) => `${i.metadata.name}@${i.metadata.resourceVersion}`);
    expect(key(viaList)).toEqual(key(directList));
    expect(viaList).toEqual(directList);
  });

  test("the same 2 MB LIST written by kubectl into a pipe arrives whole (kubectl's stdout stays blocking)", async () => {
    // What `arcproxy -- kubectl get ... -o json | jq` does. kubectl shares arcproxy's stdout; if
    // arcproxy switches that pipe to O_NONBLOCK while kubectl runs, kubectl fails with
    // "write /dev/stdout: resource temporarily unavailable" once the reader falls behind.
    const r = await kubectlVia(alice, ["get", "configmaps", "-n", "bulk", "-o", "json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).items).toHaveLength(BULK_COUNT + 1);
  });
});

describe("token mode", () => {
  test("with --kube-token the API server sees the ServiceAccount, not alice, and its RBAC applies", async () => {
    await applyAsAdmin("token-mode.yaml", `
apiVersion: v1
kind: ServiceAccount
metadata: {name: arcagent-tm, namespace: team-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: arcagent-tm-view, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: arcagent-tm, namespace: team-a}]
`);
    const saToken = (await adminKubectl(cluster, ["create", "token", "arcagent-tm", "-n", "team-a", "--duration", "1h"])).trim();
    const args = ["--kube-token", saToken];
    const info = whoami(expectOk(await kubectlVia(alice, ["auth", "whoami", "-o", "json"], { args })));
    expect(info.username).toBe("system:serviceaccount:team-a:arcagent-tm");
    expect(info.groups).toContain("system:serviceaccounts:team-a");
    expect(info.groups).not.toContain("dev");

    const names = expectOk(await kubectlVia(alice, ["get", "configmaps", "-n", "team-a", "-o", "name"], { args }));
    expect(names).toContain("configmap/settings");
    // view, not edit: the ServiceAccount's rights, not alice's.
    const write = await kubectlVia(alice, ["create", "configmap", "as-sa", "-n", "team-a"], { args });
    expect(write.stderr).toContain('User "system:serviceaccount:team-a:arcagent-tm" cannot create resource "configmaps"');
  });
});

describe("other clients and upgrades", () => {
  test("a @kubernetes/client-node program run through arcproxy lists alice's ConfigMaps", async () => {
    const r = await stack.arcproxy({ token: alice, command: [process.execPath, "test/e2e/client-node-program.ts", "team-a"] });
    expect(r.stderr).toBe("");
    const names = JSON.parse(expectOk(r)) as string[];
    expect(names).toEqual(expect.arrayContaining(["settings", "applied", "ssa"]));
  });

  test.each([["websocket", "true"], ["SPDY/3.1", "false"]])("kubectl exec over %s gets the API server's own refusal for a pod that does not exist", async (_, ws) => {
    const r = await kubectlVia(alice, ["exec", "-n", "team-a", "no-such-pod", "--", "true"], { env: { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: ws } });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('pods "no-such-pod" not found');
    expect(r.stderr).not.toMatch(/cluster-connect|arcproxy|arcrelay|arcagent/);
  });
});

describe("refusals", () => {
  test("raw Impersonate-* without the RBAC for it is refused, and reaches the API server only as the agent's question", async () => {
    const res = await fetch(`${stack.relayUrl}/v1/clusters/${stack.cluster}/k8s/apis/authentication.k8s.io/v1/selfsubjectreviews`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${alice}`, "content-type": "application/json",
        "IMPERSONATE-USER": "ops-admin", "impersonate-group": "system:masters",
      },
      body: JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }),
    });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { message: string }).message).toContain('user "alice" cannot impersonate resource "users"');
    const requestId = res.headers.get("x-arc-request-id")!;
    expect(await readFile(cluster.auditLog, "utf8")).not.toContain(`"arc-request-id":["${requestId}"]`);
  });

  test("front-proxy identity headers sent to the relay change nothing", async () => {
    const res = await fetch(`${stack.relayUrl}/v1/clusters/${stack.cluster}/k8s/apis/authentication.k8s.io/v1/selfsubjectreviews`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${alice}`, "content-type": "application/json",
        "X-Remote-User": "ops-admin", "X-Remote-Group": "system:masters", "X-Remote-Extra-Scopes": "all",
      },
      body: JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }),
    });
    expect(res.status).toBe(201);
    const info = ((await res.json()) as { status: { userInfo: { username: string; groups: string[]; extra?: Record<string, string[]> } } }).status.userInfo;
    expect(info.username).toBe("alice");
    expect(info.groups).not.toContain("system:masters");
    expect(Object.keys(info.extra ?? {})).toEqual(["arc-request-id"]);
    // The API server's own record: the agent's ServiceAccount, impersonating alice and nobody else.
    const requestId = res.headers.get("x-arc-request-id")!;
    await waitFor("the audit event", async () => (await readFile(cluster.auditLog, "utf8")).includes(requestId), 20_000);
    const event = (await readFile(cluster.auditLog, "utf8")).split("\n").filter((l) => l.includes(requestId)).map((l) => JSON.parse(l))[0];
    expect(event.user.username).toBe("system:serviceaccount:cluster-connect:arcagent");
    expect(event.impersonatedUser).toEqual({ username: "alice", groups: ["dev", "system:authenticated"], extra: { "arc-request-id": [requestId] } });
  });

  test("a user without a grant gets a Forbidden message that says what to do", async () => {
    const bob = await stack.userToken("bob");
    const r = await kubectlVia(bob, ["get", "--raw", "/version"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`user "bob" has no cluster-user access to cluster "${stack.cluster}"`);
  });

  test("forged and expired tokens are refused with 401 Status bodies", async () => {
    for (const token of [await forgedToken(stack.dataDir, stack.relayUrl, "alice"), await expiredToken(stack.dataDir, stack.relayUrl, "alice")]) {
      const res = await fetch(`${stack.relayUrl}/v1/clusters/${stack.cluster}/k8s/version`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(401);
      const status = (await res.json()) as { kind: string; reason: string };
      expect(status).toMatchObject({ kind: "Status", reason: "Unauthorized" });
    }
    const r = await stack.arcproxy({ token: await expiredToken(stack.dataDir, stack.relayUrl, "alice"), command: [kubectl, "get", "--raw", "/version"] });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/expired/i);
  });

  test("an enrollment token works once", async () => {
    const add = await stack.arcrelay(["cluster", "add", "second"]);
    const token = add.stdout.trim().split("\n").at(-1)!;
    const enroll = (body: object) => fetch(`${stack.relayUrl}/v1/agent/enroll`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const { generateSigningKeyPair } = await import("../../lib/auth/index.ts");
    const key = (await generateSigningKeyPair("EdDSA")).publicJwk;
    expect((await enroll({ cluster: "second", token, publicKey: key })).status).toBe(201);
    const again = await enroll({ cluster: "second", token, publicKey: key });
    expect(again.status).toBe(401);
    expect(((await again.json()) as { message: string }).message).toContain("already used");
  });
});

describe("agent lifecycle", () => {
  test("a request while the agent is down gets 503 with advice (--relay-retry 0: at once), and a restarted agent needs no token", async () => {
    await stack.stopAgent();
    await stack.waitForAgent("offline");
    const r = await kubectlVia(alice, ["get", "--raw", "/version"], { args: ["--relay-retry", "0"] });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`cluster "${stack.cluster}" is offline`);
    await stack.startAgent(); // no --enroll-token: the key from the first start is reused
    await stack.waitForAgent("connected");
    expectOk(await kubectlVia(alice, ["get", "--raw", "/version"]));
  });

  test("a request made while the agent restarts waits for it and succeeds", async () => {
    await stack.stopAgent();
    await stack.waitForAgent("offline");
    const pending = kubectlVia(alice, ["get", "--raw", "/version"]);
    // The relay answers 503 with Retry-After (the agent left seconds ago); arcproxy sends it again.
    await waitFor("arcproxy to have been refused once", () => stack.relayLog().includes("is offline"), 20_000);
    await stack.startAgent();
    expect(JSON.parse(expectOk(await pending)).gitVersion).toMatch(/^v1\.34\./);
  });

  test("the relay and agent logs carry request ids and never a token", () => {
    const logs = stack.relayLog() + stack.agentLog();
    expect(logs).toContain("requestId");
    expect(logs).not.toContain(alice);
    expect(logs).not.toMatch(/arcenroll_[A-Za-z0-9_-]{20,}/);
  });
});

function ms(since: number): string {
  return `${Date.now() - since} ms`;
}
