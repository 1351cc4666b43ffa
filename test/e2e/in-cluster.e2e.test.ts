// The whole path as users deploy it: kubectl -> arcproxy -> arcrelay -> the agent running as a pod
// (image built from Dockerfile.agent, installed with the real helm from deploy/helm/arcagent) ->
// kube-apiserver -> the kubelet and containerd of a real node, where the pods run.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSelfSignedCertificate } from "../../lib/http/index.ts";
import { AGENT_NAMESPACE, installAgentChart, provideImage, waitForAgentPod } from "../cluster/agent-install.ts";
import { applyManifest, createServiceAccountKubeconfig, kubectl as adminKubectl, startKubeCluster, type KubeCluster } from "../cluster/cluster.ts";
import { helm } from "../cluster/helm.ts";
import { waitFor } from "../support/wait-for.ts";
import { startPostgres, type RunningPostgres } from "../support/postgres.ts";
import { startReplicaStack, type ReplicaStack } from "../support/replica-stack.ts";
import { expectOk, run, startRelayStack, type RelayStack } from "./stack.ts";

setDefaultTimeout(120_000);
const ROOT = join(import.meta.dir, "..", "..");
const FOUR_MB = 4 * 1024 * 1024;
const RELAY_CHART = join(ROOT, "deploy", "helm", "arcrelay");
const PROTOCOLS = [["WebSocket", "true"], ["SPDY/3.1", "false"]] as const;

let dir: string;
let cluster: KubeCluster;
let relay: RelayStack;
let alice: string;
let image: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-in-cluster-"));
  cluster = await startKubeCluster({ dir, log: (l) => console.error(l) });
  image = cluster.node!.testImage;
  relay = await startRelayStack({ cluster: "edge" });
  await installAgentChart(cluster, { relayUrl: relay.relayUrl, cluster: relay.cluster, enrollToken: relay.enrollToken, log: (l) => console.error(l) });
  await relay.waitForAgent("connected", 60_000);
  await applyManifest(cluster, "rbac.yaml", RBAC);
  alice = await relay.userToken("alice", ["dev"]);
  await relay.grant("user:alice");
  await applyManifest(cluster, "workload.yaml", workload(image));
  await adminKubectl(cluster, ["wait", "--for=condition=Ready", "pod/work", "pod/ticker", "pod/reader", "-n", "team-a", "--timeout=60s"]);
}, 40 * 60_000); // a fresh machine builds the Kubernetes binaries and helm from Go first

afterAll(async () => {
  await relay?.stop();
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const RBAC = `
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-edit, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-reader}
rules:
  - {apiGroups: [""], resources: [users], resourceNames: [reader], verbs: [impersonate]}
  - {apiGroups: [authentication.k8s.io], resources: [uids], resourceNames: [reader-uid], verbs: [impersonate]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-impersonate-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
`;

/** A pod serving 4 MB over HTTP, one writing a log line every 100 ms, one reading its stdin. */
function workload(ref: string): string {
  const pod = (name: string, command: string, extra = "") => `---
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: team-a}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: ${ref}
      imagePullPolicy: Never
      command: ["sh", "-c", ${JSON.stringify(command)}]${extra}
`;
  return [
    pod("work", "mkdir -p /www && head -c 4194304 /dev/urandom > /www/blob && sha256sum /www/blob | cut -d' ' -f1 > /www/blob.sha256 && exec httpd -f -p 8080 -h /www"),
    pod("ticker", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done"),
    pod("reader", "while read line; do echo got:$line; done", "\n      stdin: true\n      tty: false"),
  ].join("");
}

function kubectlVia(token: string, args: string[], opts: { stdin?: string; env?: Record<string, string>; timeoutMs?: number } = {}) {
  return relay.arcproxy({ token, command: [cluster.kubectl, ...args], ...opts });
}

function sha256(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Spawns `arcproxyArgv -- kubectl ARGS` in the background, collecting its output as it comes. */
function spawnKubectlThrough(arcproxyArgv: string[], args: string[], env: Record<string, string> = {}, withStdin = false) {
  const proc = Bun.spawn([...arcproxyArgv, "--", cluster.kubectl, ...args], {
    cwd: ROOT, stdin: withStdin ? "pipe" : "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env },
  });
  const output = { stdout: "", stderr: "" };
  void (async () => { for await (const c of proc.stdout as ReadableStream<Uint8Array>) output.stdout += new TextDecoder().decode(c); })();
  void (async () => { for await (const c of proc.stderr as ReadableStream<Uint8Array>) output.stderr += new TextDecoder().decode(c); })();
  return { proc, output };
}

/** Spawns arcproxy -- kubectl ARGS against the stack's relay in the background, collecting its output. */
function spawnVia(token: string, args: string[], env: Record<string, string> = {}, withStdin = false) {
  return spawnKubectlThrough(relay.arcproxyArgv(token), args, env, withStdin);
}

describe("the agent as users deploy it", () => {
  test("the agent pod enrolled with its ServiceAccount and keeps its key in the Secret", async () => {
    const secret = JSON.parse(await adminKubectl(cluster, ["get", "secret", "arcagent-key", "-n", AGENT_NAMESPACE, "-o", "json"])) as { data?: Record<string, string> };
    const stored = JSON.parse(Buffer.from(secret.data!["agent-key.json"]!, "base64").toString("utf8")) as { cluster: string; publicJwk: { kty: string; crv: string } };
    expect(stored.cluster).toBe("edge");
    expect(stored.publicJwk).toMatchObject({ kty: "OKP", crv: "Ed25519" });
    const listed = JSON.parse((await relay.arcrelay(["cluster", "list", "-o", "json"])).stdout) as { name: string; state: string; kubernetesVersion?: string }[];
    expect(listed.find((c) => c.name === "edge")).toMatchObject({ state: "connected", kubernetesVersion: expect.stringMatching(/^v1\.34\./) });
    const pod = JSON.parse(await adminKubectl(cluster, ["get", "pods", "-n", AGENT_NAMESPACE, "-l", "app.kubernetes.io/name=arcagent", "-o", "json"])) as {
      items: { spec: { containers: { image: string; securityContext: Record<string, unknown> }[] } }[];
    };
    expect(pod.items[0]!.spec.containers[0]!.image).toMatch(/^localhost\/arcagent:/);
    expect(pod.items[0]!.spec.containers[0]!.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
  });
});

describe("workloads through the tunnel", () => {
  test("kubectl run starts a pod that runs on the node, and kubectl logs shows its output", async () => {
    expectOk(await kubectlVia(alice, ["run", "hello", "-n", "team-a", `--image=${image}`, "--image-pull-policy=Never", "--restart=Never", "--", "sh", "-c", "echo hello from the node"]));
    expectOk(await kubectlVia(alice, ["wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/hello", "-n", "team-a", "--timeout=60s"]));
    expect(expectOk(await kubectlVia(alice, ["logs", "hello", "-n", "team-a"]))).toBe("hello from the node\n");
  });

  test("kubectl logs -f streams lines as the container writes them, until Ctrl-C", async () => {
    const { proc, output } = spawnVia(alice, ["logs", "-f", "ticker", "-n", "team-a", "--tail=1"]);
    try {
      await waitFor("three new log lines", () => (output.stdout.match(/^tick \d+$/gm) ?? []).length >= 4, 20_000);
      const numbers = (output.stdout.match(/^tick (\d+)$/gm) ?? []).map((l) => Number(l.split(" ")[1]));
      for (let i = 1; i < numbers.length; i++) expect(numbers[i]).toBe(numbers[i - 1]! + 1);
    } finally {
      proc.kill("SIGINT");
    }
    expect(await proc.exited).not.toBe(-1);
  });

  test("kubectl exec passes the command's exit status through", async () => {
    const r = await kubectlVia(alice, ["exec", "work", "-n", "team-a", "--", "sh", "-c", "echo from-the-container; exit 7"]);
    expect(r.stdout).toBe("from-the-container\n");
    expect(r.code).toBe(7);
  });

  for (const [proto, ws] of PROTOCOLS) {
    test(`kubectl exec -i carries 4 MB of stdin whole over ${proto}`, async () => {
      const data = randomBytes(FOUR_MB).toString("base64"); // text, so it travels through run()'s stdin
      const r = await kubectlVia(alice, ["exec", "-i", "work", "-n", "team-a", "--", "sha256sum"], { stdin: data, env: { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: ws } });
      expect(expectOk(r).split(" ")[0]).toBe(sha256(data));
    });

    test(`kubectl exec -it gives a terminal over ${proto} (under a real pty from script)`, async () => {
      const inner = [...relay.arcproxyArgv(alice), "--", cluster.kubectl, "exec", "-it", "work", "-n", "team-a", "--", "sh"].join(" ");
      const proc = Bun.spawn(["script", "-qec", inner, "/dev/null"], {
        cwd: ROOT,
        stdin: new TextEncoder().encode("echo tty-$((6*7)); tty; exit 5\n"),
        stdout: "pipe", stderr: "pipe",
        env: { ...process.env, KUBECTL_REMOTE_COMMAND_WEBSOCKETS: ws },
      });
      const out = await new Response(proc.stdout as ReadableStream).text();
      expect(await proc.exited).toBe(5);
      expect(out).toContain("tty-42");
      expect(out).toMatch(/\/dev\/pts\/\d+/); // the shell in the container has a terminal of its own
    });

    test(`kubectl attach -i reaches the container's own process over ${proto}`, async () => {
      const marker = `line-${ws}-${randomBytes(4).toString("hex")}`;
      const { proc, output } = spawnVia(alice, ["attach", "-i", "reader", "-n", "team-a", "--quiet"], { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: ws }, true);
      try {
        // attach returns as soon as its stdin ends, so the line goes in and stays open until echoed.
        const stdin = proc.stdin as import("bun").FileSink;
        stdin.write(`${marker}\n`);
        await stdin.flush();
        await waitFor("the container's answer", () => output.stdout.includes(`got:${marker}`), 20_000);
        await stdin.end();
        expect(await proc.exited).toBe(0);
      } finally {
        proc.kill("SIGKILL");
      }
    });

    test(`kubectl port-forward carries 4 MB whole over ${proto}`, async () => {
      const { proc, output } = spawnVia(alice, ["port-forward", "pod/work", ":8080", "-n", "team-a", "--address", "127.0.0.1"], { KUBECTL_PORT_FORWARD_WEBSOCKETS: ws });
      try {
        await waitFor("port-forward to listen", () => /Forwarding from 127\.0\.0\.1:\d+/.test(output.stdout), 20_000);
        const port = Number(/Forwarding from 127\.0\.0\.1:(\d+)/.exec(output.stdout)![1]);
        const expected = (await (await fetch(`http://127.0.0.1:${port}/blob.sha256`)).text()).trim();
        const body = new Uint8Array(await (await fetch(`http://127.0.0.1:${port}/blob`)).arrayBuffer());
        expect(body.length).toBe(FOUR_MB);
        expect(sha256(body)).toBe(expected);
        // A raw TCP round trip too: HTTP above could hide a truncated stream behind a retry.
        const head = await new Promise<string>((resolve, reject) => {
          const sock = connect(port, "127.0.0.1", () => sock.write("HEAD /blob HTTP/1.0\r\n\r\n"));
          let got = "";
          sock.on("data", (d) => (got += d));
          sock.on("end", () => resolve(got));
          sock.on("error", reject);
        });
        expect(head).toContain(`Content-Length: ${FOUR_MB}`);
      } finally {
        proc.kill("SIGINT");
        await proc.exited;
      }
    });

    test(`kubectl cp copies 1 MB into and out of the container over ${proto}`, async () => {
      const env = { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: ws };
      const local = join(dir, `up-${ws}.bin`);
      const data = randomBytes(1024 * 1024);
      await writeFile(local, data);
      expectOk(await kubectlVia(alice, ["cp", local, `team-a/work:/tmp/up-${ws}.bin`], { env }));
      const inPod = expectOk(await kubectlVia(alice, ["exec", "work", "-n", "team-a", "--", "sha256sum", `/tmp/up-${ws}.bin`], { env }));
      expect(inPod.split(" ")[0]).toBe(sha256(data));
      const back = join(dir, `down-${ws}.bin`);
      expectOk(await kubectlVia(alice, ["cp", `team-a/work:/www/blob`, back], { env }));
      const expected = expectOk(await kubectlVia(alice, ["exec", "work", "-n", "team-a", "--", "cat", "/www/blob.sha256"], { env })).trim();
      expect(sha256(await readFile(back))).toBe(expected);
    });
  }
});

describe("relay replicas on PostgreSQL: kubectl on a replica that does not hold the tunnel", () => {
  // Three arcrelay processes on one real PostgreSQL; this cluster's second agent (from source, with
  // the chart's ServiceAccount) holds its tunnel on r1, and kubectl always goes to r2.
  let pg: RunningPostgres;
  let db: { url: string; drop(): Promise<void> };
  let replicas: ReplicaStack;
  let token: string;
  const CLUSTER = "edge-replicated";
  const arcproxyViaR2 = () => [process.execPath, "cmd/arcproxy.ts", "--relay", replicas.replica("r2").url, "--cluster", CLUSTER, "--port", "0", "--token", token];
  const viaR2 = (args: string[], opts: { env?: Record<string, string> } = {}) => run([...arcproxyViaR2(), "--", cluster.kubectl, ...args], opts);
  const spawnViaR2 = (args: string[], env: Record<string, string> = {}) => spawnKubectlThrough(arcproxyViaR2(), args, env);

  beforeAll(async () => {
    pg = await startPostgres();
    db = await pg.createDatabase();
    replicas = await startReplicaStack({ databaseUrl: db.url });
    const { kubeconfig } = await createServiceAccountKubeconfig(cluster, { namespace: AGENT_NAMESPACE, serviceAccount: "arcagent", out: join(dir, "replicated-agent.kubeconfig") });
    await replicas.startAgent(CLUSTER, kubeconfig, "r1");
    await replicas.store.addGrant({ principal: "user:alice", cluster: CLUSTER, role: "cluster-user" });
    token = await replicas.userToken("alice", ["dev"]);
  }, 120_000);

  afterAll(async () => {
    await replicas?.stop();
    await db?.drop();
    await pg?.stop();
  });

  test("get, and the request crossed from r2 to r1", async () => {
    expect(expectOk(await viaR2(["get", "pods", "-n", "team-a", "-o", "name"]))).toContain("pod/work");
    expect(await replicas.holderOf(CLUSTER)).toBe("r1");
    expect(replicas.replica("r2").log()).toContain('"replica":"r1"');
  });

  test("a watch sees a ConfigMap created while it runs", async () => {
    const { proc, output } = spawnViaR2(["get", "configmaps", "-n", "team-a", "--watch", "-o", "name"]);
    try {
      await waitFor("the watch to list what exists", () => output.stdout.includes("configmap/kube-root-ca.crt"), 20_000);
      await adminKubectl(cluster, ["create", "configmap", "seen-across-replicas", "-n", "team-a"]);
      await waitFor("the new ConfigMap in the watch", () => output.stdout.includes("configmap/seen-across-replicas"), 20_000);
    } finally {
      proc.kill("SIGINT");
      await proc.exited;
    }
  });

  test("logs -f streams lines as the container writes them", async () => {
    const { proc, output } = spawnViaR2(["logs", "-f", "ticker", "-n", "team-a", "--tail=1"]);
    try {
      await waitFor("three new log lines", () => (output.stdout.match(/^tick \d+$/gm) ?? []).length >= 4, 20_000);
    } finally {
      proc.kill("SIGINT");
      await proc.exited;
    }
  });

  for (const [proto, ws] of PROTOCOLS) {
    test(`exec passes stdout and the exit status over ${proto}`, async () => {
      const r = await viaR2(["exec", "work", "-n", "team-a", "--", "sh", "-c", "echo across-replicas; exit 7"], { env: { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: ws } });
      expect(r.stdout).toBe("across-replicas\n");
      expect(r.code).toBe(7);
    });

    test(`port-forward carries 4 MB whole over ${proto}`, async () => {
      const { proc, output } = spawnViaR2(["port-forward", "pod/work", ":8080", "-n", "team-a", "--address", "127.0.0.1"], { KUBECTL_PORT_FORWARD_WEBSOCKETS: ws });
      try {
        await waitFor("port-forward to listen", () => /Forwarding from 127\.0\.0\.1:\d+/.test(output.stdout), 20_000);
        const port = Number(/Forwarding from 127\.0\.0\.1:(\d+)/.exec(output.stdout)![1]);
        const expected = (await (await fetch(`http://127.0.0.1:${port}/blob.sha256`)).text()).trim();
        const body = new Uint8Array(await (await fetch(`http://127.0.0.1:${port}/blob`)).arrayBuffer());
        expect(body.length).toBe(FOUR_MB);
        expect(sha256(body)).toBe(expected);
      } finally {
        proc.kill("SIGINT");
        await proc.exited;
      }
    });
  }
});

describe("RBAC as in a real cluster", () => {
  test("a user bound to edit in team-a creates a Deployment that gets running pods", async () => {
    // The test image's tag is not `latest`, so the default pull policy (IfNotPresent) finds it on the node.
    expectOk(await kubectlVia(alice, ["create", "deployment", "web", "-n", "team-a", `--image=${image}`, "--replicas=2", "--", "sleep", "3600"]));
    expectOk(await kubectlVia(alice, ["rollout", "status", "deployment/web", "-n", "team-a", "--timeout=90s"]));
    const phases = expectOk(await kubectlVia(alice, ["get", "pods", "-n", "team-a", "-l", "app=web", "-o", "jsonpath={.items[*].status.phase}"]));
    expect(phases.split(" ").filter((p) => p === "Running").length).toBe(2);
  });

  test("the same user is refused in team-b with the API server's own message", async () => {
    const r = await kubectlVia(alice, ["create", "deployment", "web", "-n", "team-b", `--image=${image}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('deployments.apps is forbidden: User "alice" cannot create resource "deployments" in API group "apps" in the namespace "team-b"');
  });
});

describe("kubectl --as with the chart's RBAC", () => {
  test("allowed impersonation runs as the target with the original user recorded; the rest is refused", async () => {
    const info = JSON.parse(expectOk(await kubectlVia(alice, ["--as", "reader", "--as-uid", "reader-uid", "auth", "whoami", "-o", "json"]))).status.userInfo;
    expect(info.username).toBe("reader");
    expect(info.uid).toBe("reader-uid");
    expect(info.extra["arc-original-user"]).toEqual(["alice"]);
    const refused = await kubectlVia(alice, ["--as", "system:admin", "get", "--raw", "/api/v1/namespaces/team-a/configmaps"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('user "alice" cannot impersonate resource "users"');
  });
});

describe("agent restarts", () => {
  test("a deleted agent pod comes back and reconnects with its stored key, no enrollment token needed", async () => {
    // Take the token away first: the new pod can only connect with the key kept in the Secret.
    await adminKubectl(cluster, ["delete", "secret", "arcagent-enroll", "-n", AGENT_NAMESPACE]);
    const old = await waitForAgentPod(cluster);
    await adminKubectl(cluster, ["delete", "pod", old, "-n", AGENT_NAMESPACE, "--wait=true"]);
    await waitForAgentPod(cluster, old);
    await relay.waitForAgent("connected", 60_000);
    expectOk(await kubectlVia(alice, ["get", "pods", "-n", "team-a"]));
    expect(relay.relayLog()).not.toContain(relay.enrollToken);
  });
});

describe("the relay as users deploy it", () => {
  test("its image runs from its chart and turns Ready once /readyz answers over TLS", async () => {
    const ref = await provideImage(cluster, "arcrelay");
    const [repository, tag] = ref.split(/:(?=[^:]+$)/) as [string, string];
    const { certPem, keyPem } = await createSelfSignedCertificate({ commonName: "arcrelay" });
    await writeFile(join(dir, "relay.crt"), certPem);
    await writeFile(join(dir, "relay.key"), keyPem);
    await adminKubectl(cluster, ["create", "namespace", "relay"]);
    await adminKubectl(cluster, ["create", "secret", "tls", "arcrelay-tls", "-n", "relay", "--cert", join(dir, "relay.crt"), "--key", join(dir, "relay.key")]);
    await helm(["install", "arcrelay", RELAY_CHART, "-n", "relay", "--wait", "--timeout", "90s",
      "--set", "publicUrl=https://relay.example.com", "--set", "tls.existingSecret=arcrelay-tls", "--set", "persistence.enabled=false",
      "--set", `image.repository=${repository}`, "--set-string", `image.tag=${tag}`, "--set", "image.pullPolicy=Never"], { cluster, dir });
    const ready = await adminKubectl(cluster, ["get", "pods", "-n", "relay", "-l", "app.kubernetes.io/name=arcrelay", "-o", "jsonpath={.items[0].status.conditions[?(@.type==\"Ready\")].status}"]);
    expect(ready).toBe("True"); // the kubelet's HTTPS readiness probe on /readyz passed
    const logs = await adminKubectl(cluster, ["logs", "-n", "relay", "deploy/arcrelay"]);
    expect(logs).toContain('"msg":"relay listening"');
    // The image carries arcproxy for install.sh, signed at start (the chart passes --downloads-dir).
    expect(logs).toMatch(/serving 1 downloads \(version [^)]+\) at https:\/\/relay\.example\.com\/v1\/downloads\//);
    expect(logs).toMatch(/downloads signing key SHA-256 [0-9a-f]{64}/);
    // The image holds nothing but the binary, and its admin commands work in place.
    const added = await adminKubectl(cluster, ["exec", "-n", "relay", "deploy/arcrelay", "--", "arcrelay", "cluster", "add", "from-the-pod", "--data-dir", "/data"]);
    expect(added.trim().split("\n").at(-1)).toMatch(/^arcenroll_/);
  });
});

test("the relay's log never holds a user token", () => {
  expect(relay.relayLog()).not.toContain(alice);
});

