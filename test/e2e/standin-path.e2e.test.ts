// The whole path with the real kubectl: kubectl -> arcproxy -> arcrelay -> arcagent -> the stand-in API server.
// The stand-in (test/fixtures) serves exec/attach/port-forward, which need a kubelet the real server lacks here.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStandinApiServer } from "../fixtures/standin-apiserver.ts";
import { ensureKubectl } from "../kube/find-kubectl.ts";
import { startStack, waitFor, type Stack } from "./stack.ts";
import { expiredToken, forgedToken } from "./tokens.ts";

setDefaultTimeout(60_000);
const AGENT_TOKEN = "standin-agent-token-" + crypto.randomUUID();
const CI_SERVICE_ACCOUNT = "system:serviceaccount:ci:deployer";
const CI_KUBE_TOKEN = "ci-kube-token-" + crypto.randomUUID();
let standin: Awaited<ReturnType<typeof startStandinApiServer>>;
let stack: Stack;
let kubectl: string;
let alice: string;

beforeAll(async () => {
  kubectl = await ensureKubectl();
  standin = await startStandinApiServer({
    dir: await mkdtemp(join(tmpdir(), "arc-standin-")),
    agentToken: AGENT_TOKEN,
    userTokens: { [CI_SERVICE_ACCOUNT]: CI_KUBE_TOKEN },
  });
  stack = await startStack({ server: standin.url, caFile: standin.caFile, agentToken: AGENT_TOKEN });
  await stack.startAgent();
  await stack.waitForAgent("connected");
  alice = await stack.userToken("alice", ["dev", "ops"]);
  await stack.grant("user:alice");
}, 30 * 60_000); // a fresh machine builds the stand-in from Go first

afterAll(async () => {
  await stack?.stop();
  await standin?.stop();
});

function kubectlVia(token: string, args: string[], opts: { env?: Record<string, string>; stdin?: string } = {}) {
  return stack.arcproxy({ token, command: [kubectl, ...args], ...opts });
}

describe("identity", () => {
  test("kubectl auth whoami shows the caller's user and groups as the API server sees them", async () => {
    const r = await kubectlVia(alice, ["auth", "whoami", "-o", "json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout).status.userInfo;
    expect(info.username).toBe("alice");
    expect(info.groups).toEqual(expect.arrayContaining(["dev", "ops"]));
  });

  test("kubectl --as/--as-group cannot change the identity the API server sees", async () => {
    await standin.clearRequests();
    const r = await kubectlVia(alice, ["--as", "system:admin", "--as-group", "system:masters", "auth", "whoami", "-o", "json"]);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout).status.userInfo;
    expect(info.username).toBe("alice");
    expect(info.groups).not.toContain("system:masters");
    const seen = await standin.requests();
    expect(JSON.stringify(seen)).not.toContain("system:admin");
  });

  test("raw Impersonate-* and smuggled identity headers never reach the API server", async () => {
    await standin.clearRequests();
    const res = await fetch(`${stack.relayUrl}/v1/clusters/${stack.cluster}/k8s/apis/authentication.k8s.io/v1/selfsubjectreviews`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${alice}`, "content-type": "application/json",
        "IMPERSONATE-USER": "system:admin", "impersonate-group": "system:masters", "Impersonate-Extra-Scopes": "all",
        "X-Remote-User": "root",
      },
      body: JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }),
    });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { status: { userInfo: { username: string; groups: string[] } } };
    expect(body.status.userInfo.username).toBe("alice");
    expect(JSON.stringify(await standin.requests())).not.toMatch(/system:admin|system:masters|root|"all"/);
  });
});

test("token mode: a caller's own Kubernetes token is forwarded as is, with no impersonation", async () => {
  await standin.clearRequests();
  const r = await stack.arcproxy({ token: alice, args: ["--kube-token", CI_KUBE_TOKEN], command: [kubectl, "auth", "whoami", "-o", "json"] });
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout).status.userInfo.username).toBe(CI_SERVICE_ACCOUNT);
  const seen = (await standin.requests()).filter((q) => q.path.includes("selfsubjectreviews"));
  expect(seen.length).toBeGreaterThan(0);
  for (const q of seen) {
    expect(q.token).toBe(`user:${CI_SERVICE_ACCOUNT}`);
    expect(Object.keys(q.impersonate ?? {})).toEqual([]);
  }
});

describe("requests and streams", () => {
  test("kubectl get --raw returns the API server's answer", async () => {
    const r = await kubectlVia(alice, ["get", "--raw", "/version"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).gitVersion).toContain("standin");
  });

  test("a watch delivers events as they happen", async () => {
    const name = `watched-${Date.now()}`;
    const proc = Bun.spawn(
      [process.execPath, "cmd/arcproxy.ts", "--relay", stack.relayUrl, "--cluster", stack.cluster, "--port", "0", "--token", alice, "--", kubectl, "get", "configmaps", "-w", "-o", "name"],
      { cwd: join(import.meta.dir, "..", ".."), stdout: "pipe", stderr: "pipe" },
    );
    let out = "";
    void (async () => { for await (const c of proc.stdout as ReadableStream<Uint8Array>) out += new TextDecoder().decode(c); })();
    try {
      await Bun.sleep(1500); // the watch is established and idle
      const created = await kubectlVia(alice, ["create", "configmap", name, "--from-literal=k=v"]);
      expect(created.code).toBe(0);
      await waitFor(`watch event for ${name}`, () => out.includes(`configmap/${name}`), 10_000);
    } finally {
      proc.kill("SIGINT");
      await proc.exited;
    }
  });

  test("kubectl logs -f delivers lines as the pod writes them", async () => {
    const proc = Bun.spawn(
      [process.execPath, "cmd/arcproxy.ts", "--relay", stack.relayUrl, "--cluster", stack.cluster, "--port", "0", "--token", alice, "--", kubectl, "logs", "-f", "demo"],
      { cwd: join(import.meta.dir, "..", ".."), stdout: "pipe", stderr: "pipe" },
    );
    let out = "";
    void (async () => { for await (const c of proc.stdout as ReadableStream<Uint8Array>) out += new TextDecoder().decode(c); })();
    try {
      // Lines 4 and 5 are written half a second apart, long after the response started.
      await waitFor("the 5th log line", () => out.includes("standin demo log line 5\n"), 15_000);
      expect(out.startsWith("standin demo log line 1\n")).toBe(true);
    } finally {
      proc.kill("SIGINT");
      await proc.exited;
    }
  });

  test("kubectl exec without stdin prints the command's output", async () => {
    const r = await kubectlVia(alice, ["exec", "demo", "--", "echo", "hello-from-pod"]);
    expect(r.stdout).toBe("hello-from-pod\n");
    expect(r.code).toBe(0);
  });

  test.each([["websocket", "true"], ["SPDY/3.1", "false"]])("kubectl exec -i carries stdin over %s", async (_, ws) => {
    const r = await kubectlVia(alice, ["exec", "-i", "demo", "--", "cat"], { stdin: "line one\nline two\n", env: { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: ws } });
    expect(r.stdout).toBe("line one\nline two\n");
    expect(r.code).toBe(0);
  });

  test("the exit status of a command in the pod and of the child command pass through", async () => {
    const r = await kubectlVia(alice, ["exec", "demo", "--", "sh", "-c", "exit 3"]);
    expect(r.code).toBe(3);
    const missing = await kubectlVia(alice, ["get", "configmap", "does-not-exist"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("not found");
  });
});

describe("upgrades through the tunnel", () => {
  for (const [proto, ws] of [["websocket", "true"], ["SPDY/3.1", "false"]] as const) {
    test(`kubectl port-forward over ${proto} reaches a port in the pod`, async () => {
      const echo = createServer((sock) => sock.pipe(sock));
      await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
      const podPort = (echo.address() as { port: number }).port;
      const proc = Bun.spawn(
        [process.execPath, "cmd/arcproxy.ts", "--relay", stack.relayUrl, "--cluster", stack.cluster, "--port", "0", "--token", alice,
          "--", kubectl, "port-forward", "pod/demo", `:${podPort}`, "--address", "127.0.0.1"],
        { cwd: join(import.meta.dir, "..", ".."), stdout: "pipe", stderr: "pipe", env: { ...process.env, KUBECTL_PORT_FORWARD_WEBSOCKETS: ws } },
      );
      let out = "";
      void (async () => { for await (const c of proc.stdout as ReadableStream<Uint8Array>) out += new TextDecoder().decode(c); })();
      try {
        await waitFor("port-forward to listen", () => /Forwarding from 127\.0\.0\.1:\d+/.test(out), 15_000);
        const localPort = Number(/Forwarding from 127\.0\.0\.1:(\d+)/.exec(out)![1]);
        const reply = await new Promise<string>((resolve, reject) => {
          const sock = connect(localPort, "127.0.0.1", () => sock.write("ping-through-relay"));
          let got = "";
          sock.on("data", (d) => {
            got += d;
            if (got.length >= "ping-through-relay".length) { sock.end(); resolve(got); }
          });
          sock.on("error", reject);
        });
        expect(reply).toBe("ping-through-relay");
      } finally {
        proc.kill("SIGINT");
        await proc.exited;
        echo.close();
      }
    });
  }

  for (const [proto, ws] of [["websocket", "true"], ["SPDY/3.1", "false"]] as const) {
    test(`kubectl exec -it gives an interactive terminal over ${proto} (under a real pty from script)`, async () => {
      const arcproxy = [process.execPath, "cmd/arcproxy.ts", "--relay", stack.relayUrl, "--cluster", stack.cluster, "--port", "0", "--token", alice];
      const inner = [...arcproxy, "--", kubectl, "exec", "-it", "demo", "--", "sh"].join(" ");
      const proc = Bun.spawn(["script", "-qec", inner, "/dev/null"], {
        cwd: join(import.meta.dir, "..", ".."),
        stdin: new TextEncoder().encode("echo tty-$((6*7)); tty; exit 5\n"),
        stdout: "pipe", stderr: "pipe",
        env: { ...process.env, KUBECTL_REMOTE_COMMAND_WEBSOCKETS: ws },
      });
      const out = await new Response(proc.stdout as ReadableStream).text();
      expect(await proc.exited).toBe(5);
      expect(out).toContain("tty-42");
      expect(out).toMatch(/\/dev\/pts\/\d+/); // the command in the pod has a terminal of its own
    });
  }

  test("kubectl cp copies a file out of and into the pod", async () => {
    await writeFile(join(standin.podDir, "report.txt"), "from the pod\n");
    const local = join(stack.dir, "report-copy.txt");
    const out = await kubectlVia(alice, ["cp", "demo:report.txt", local]);
    expect(out.code).toBe(0);
    expect(await readFile(local, "utf8")).toBe("from the pod\n");
    const up = await kubectlVia(alice, ["cp", local, "demo:uploaded.txt"], { env: { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: "false" } });
    expect(up.code).toBe(0);
    expect(await readFile(join(standin.podDir, "uploaded.txt"), "utf8")).toBe("from the pod\n");
  });

  test("kubectl attach -i reaches the pod's process", async () => {
    const r = await kubectlVia(alice, ["attach", "-i", "demo"], { stdin: "attached-line\n" });
    expect(r.stdout).toContain("attached-line");
  });
});

describe("refusals", () => {
  test("a user without a grant gets a Forbidden message that says what to do", async () => {
    const bob = await stack.userToken("bob");
    const r = await kubectlVia(bob, ["get", "--raw", "/version"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('user "bob" has no cluster-user access to cluster "demo"');
  });

  test("forged and expired tokens are refused with 401", async () => {
    for (const token of [await forgedToken(stack.dataDir, stack.relayUrl, "alice"), await expiredToken(stack.dataDir, stack.relayUrl, "alice")]) {
      const res = await fetch(`${stack.relayUrl}/v1/clusters/${stack.cluster}/k8s/version`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(401);
      const status = (await res.json()) as { kind: string; reason: string; message: string };
      expect(status.kind).toBe("Status");
      expect(status.reason).toBe("Unauthorized");
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
  test("a request while the agent is down gets 503 with advice, and a restarted agent needs no token", async () => {
    await stack.stopAgent();
    await stack.waitForAgent("offline");
    const r = await kubectlVia(alice, ["get", "--raw", "/version"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('cluster "demo" is offline');
    await stack.startAgent(); // no --enroll-token: the key from the first start is reused
    await stack.waitForAgent("connected");
    const again = await kubectlVia(alice, ["get", "--raw", "/version"]);
    expect(again.code).toBe(0);
  }, 60_000);

  test("the relay and agent logs carry request ids and never a token", async () => {
    const logs = stack.relayLog() + stack.agentLog();
    expect(logs).toContain("requestId");
    expect(logs).not.toContain(alice);
    expect(logs).not.toContain(AGENT_TOKEN);
    expect(logs).not.toMatch(/arcenroll_[A-Za-z0-9_-]{20,}/);
  });
});
