// The relay's status page in real headless Chromium: an admin signs in and watches a cluster go offline and come back.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServiceAccountKubeconfig, startKubeCluster, type KubeCluster } from "../cluster/cluster.ts";
import { startStack, type Stack } from "./stack.ts";

setDefaultTimeout(120_000);
const ROOT = join(import.meta.dir, "..", "..");
/** Where the test leaves its screenshot for people (and CI) to look at. */
const ARTIFACTS = join(ROOT, "test-artifacts");

let dir: string;
let cluster: KubeCluster;
let stack: Stack;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-status-"));
  cluster = await startKubeCluster({ dir, node: false, manifests: [join(ROOT, "deploy", "agent.yaml")], log: (l) => console.error(l) });
  const agent = await createServiceAccountKubeconfig(cluster, { namespace: "cluster-connect", serviceAccount: "arcagent", out: join(dir, "agent.kubeconfig") });
  stack = await startStack({ server: cluster.server, caFile: cluster.caFile, agentToken: agent.token });
  await stack.startAgent();
  await stack.waitForAgent("connected");
}, 40 * 60_000);

afterAll(async () => {
  await stack?.stop();
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs the browser script; `onLine` sees each line it prints as it comes. */
async function browse(args: string[], onLine: (line: string) => Promise<void> = async () => {}) {
  const proc = Bun.spawn(["node", join(ROOT, "test", "support", "status-page-browser.mjs"), "--url", stack.relayUrl, ...args], { stdout: "pipe", stderr: "pipe" });
  const lines: string[] = [];
  let buffered = "";
  for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
    buffered += new TextDecoder().decode(chunk);
    let at: number;
    while ((at = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
      lines.push(line);
      await onLine(line);
    }
  }
  return { lines, stderr: await new Response(proc.stderr).text(), code: await proc.exited };
}

test("a relay admin signs in; the cluster turns offline when its agent stops and back when it returns, live; a screenshot is kept", async () => {
  expect((await stack.arcrelay(["grant", "add", "--principal", "user:root", "--cluster", "*", "--role", "relay-admin"])).code).toBe(0);
  const tokenFile = join(dir, "admin.token");
  await writeFile(tokenFile, await stack.userToken("root"), { mode: 0o600 });
  await mkdir(ARTIFACTS, { recursive: true });
  const screenshot = join(ARTIFACTS, "status-page.png");
  await rm(screenshot, { force: true });
  const r = await browse(["--token-file", tokenFile, "--cluster", stack.cluster, "--screenshot", screenshot], async (line) => {
    if (line === "connected") await stack.stopAgent("SIGTERM");
    if (line === "offline") await stack.startAgent();
  });
  expect(r.stderr).toBe("");
  expect(r.lines).toEqual(["connected", "offline", "back"]); // and no CSP violation reported
  expect(r.code).toBe(0);
  expect((await stat(screenshot)).size).toBeGreaterThan(1_000);
});

test("a user without a relay-admin or cluster-admin grant is refused, saying which grant is needed", async () => {
  await stack.grant("user:dev");
  const tokenFile = join(dir, "dev.token");
  await writeFile(tokenFile, await stack.userToken("dev"), { mode: 0o600 });
  const r = await browse(["--token-file", tokenFile, "--cluster", stack.cluster, "--screenshot", join(dir, "x.png"), "--refused"]);
  expect(r.lines).toEqual(['refused: user "dev" may not see the relay\'s status: that needs a relay-admin grant, or cluster-admin on a cluster']);
});

test("the page is never framed, cached or scripted from elsewhere, and a form from another origin is refused", async () => {
  const page = await fetch(`${stack.relayUrl}/`);
  expect(page.headers.get("content-security-policy")).toBe("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
  expect(page.headers.get("x-frame-options")).toBe("DENY");
  expect(page.headers.get("cache-control")).toBe("no-store");
  const forged = await fetch(`${stack.relayUrl}/ui/sign-in`, {
    method: "POST", headers: { origin: "https://evil.example", "content-type": "application/x-www-form-urlencoded" }, body: "token=x",
  });
  expect(forged.status).toBe(403);
  expect((await fetch(`${stack.relayUrl}/ui/status.json`)).status).toBe(401);
});
