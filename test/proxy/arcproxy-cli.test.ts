// The arcproxy command as a user runs it: a real process against the fake relay.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { waitFor } from "../support/wait-for.ts";
import { CLUSTER, USER_TOKEN, VERSION_BODY, startFakeRelay, type FakeRelay } from "./fake-relay.ts";

const ENTRY = join(import.meta.dir, "../../cmd/arcproxy.ts");
let relay: FakeRelay;
beforeAll(async () => {
  relay = await startFakeRelay();
});
afterAll(() => relay.close());

function runArcproxy(args: string[], env: Record<string, string> = {}) {
  const { ARC_TOKEN: _drop, ...inherited } = process.env;
  return Bun.spawn([process.execPath, ENTRY, ...args], { stdout: "pipe", stderr: "pipe", env: { ...inherited, ...env } });
}

async function finish(child: ReturnType<typeof runArcproxy>) {
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { stdout, stderr, code };
}

test("no token: one line on stderr, exit 1", async () => {
  const { stderr, code } = await finish(runArcproxy(["--relay", relay.url, "--cluster", CLUSTER]));
  expect(code).toBe(1);
  expect(stderr).toBe(`arcproxy: no token: run arcproxy login --relay ${relay.url} (or pass --token, or set ARC_TOKEN)\n`);
});

test("a forbidden cluster: the relay's message, no stack trace", async () => {
  const { stderr, code } = await finish(runArcproxy(["--relay", relay.url, "--cluster", "secret", "--port", "0"], { ARC_TOKEN: USER_TOKEN }));
  expect(code).toBe(1);
  const lines = stderr.split("\n").filter((l) => l.startsWith("arcproxy:"));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain("user alice may not use cluster secret");
  expect(stderr).not.toContain("    at ");
});

test("-- COMMAND runs with KUBECONFIG set and arcproxy exits with its status", async () => {
  const script = 'kubectl get --raw /version >/dev/null || exit 99; echo "$KUBECONFIG"; exit 3';
  const { stdout, stderr, code } = await finish(
    runArcproxy(["--relay", relay.url, "--cluster", CLUSTER, "--port", "0", "--token", USER_TOKEN, "--", "sh", "-c", script]),
  );
  expect(stderr).toBe("");
  expect(code).toBe(3);
  const kubeconfig = stdout.trim();
  expect(kubeconfig).toEndWith("/kubeconfig");
  expect(existsSync(kubeconfig)).toBe(false);
});

test("serve mode merges a context into the user's kubeconfig, writes the ready file, and SIGTERM puts everything back", async () => {
  const home = await mkdtemp(join(tmpdir(), "arcproxy-home-"));
  try {
    const kubeconfig = join(home, "config");
    const original = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://other.example\n  name: other\ncontexts:\n- context:\n    cluster: other\n    user: other\n  name: other\ncurrent-context: other\nkind: Config\nusers:\n- name: other\n  user:\n    token: mine\n";
    await writeFile(kubeconfig, original, { mode: 0o600 });
    const ready = join(home, "ready.json");
    const child = runArcproxy(["--relay", relay.url, "--cluster", CLUSTER, "--port", "0", "--log-level", "warn", "--ready-file", ready], { ARC_TOKEN: USER_TOKEN, KUBECONFIG: kubeconfig });
    await waitFor("the ready file", () => existsSync(ready), 20_000);
    const info = JSON.parse(await readFile(ready, "utf8")) as { kubeconfig: string; context: string; port: number };
    expect(info).toMatchObject({ kubeconfig, context: CLUSTER });
    const merged = parse(await readFile(kubeconfig, "utf8"));
    expect(merged["current-context"]).toBe(CLUSTER);
    expect(merged.contexts.map((c: { name: string }) => c.name)).toEqual(["other", CLUSTER]);
    const kubectl = Bun.spawn(["kubectl", "--kubeconfig", kubeconfig, "get", "--raw", "/version"], { stdout: "pipe", stderr: "pipe" });
    expect(JSON.parse(await new Response(kubectl.stdout).text())).toEqual(VERSION_BODY);
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    expect(await readFile(kubeconfig, "utf8")).toBe(original);
    expect(existsSync(ready)).toBe(false);
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

test("--kubeconfig-out - prints a kubeconfig and writes no file", async () => {
  const child = runArcproxy(["--relay", relay.url, "--cluster", CLUSTER, "--port", "0", "--log-level", "warn", "--kubeconfig-out", "-"], { ARC_TOKEN: USER_TOKEN, KUBECONFIG: "/nonexistent/never-written" });
  const reader = child.stdout.getReader();
  let out = "";
  // current-context is the last key written; its whole line ends the document.
  while (!/current-context: .+\n/.test(out)) {
    const { value, done } = await reader.read();
    if (done) break;
    out += new TextDecoder().decode(value);
  }
  child.kill("SIGTERM");
  expect(await child.exited).toBe(0);
  expect(parse(out)["current-context"]).toBe(CLUSTER);
  expect(existsSync("/nonexistent/never-written")).toBe(false);
});

test("a kubeconfig that is not valid YAML is refused and left as it was", async () => {
  const home = await mkdtemp(join(tmpdir(), "arcproxy-home-"));
  try {
    const kubeconfig = join(home, "config");
    await writeFile(kubeconfig, "clusters: [\n");
    const { stderr, code } = await finish(runArcproxy(["--relay", relay.url, "--cluster", CLUSTER, "--port", "0"], { ARC_TOKEN: USER_TOKEN, KUBECONFIG: kubeconfig }));
    expect(code).toBe(1);
    expect(stderr).toContain(`kubeconfig ${kubeconfig} is not valid YAML`);
    expect(await readFile(kubeconfig, "utf8")).toBe("clusters: [\n");
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

test("arcproxy clusters lists what the user may reach, using the remembered relay when none is named", async () => {
  const home = await mkdtemp(join(tmpdir(), "arcproxy-home-"));
  try {
    const configDir = join(home, "cluster-connect");
    await mkdir(configDir, { recursive: true });
    await writeFile(join(configDir, "config.yaml"), `relay: ${relay.url}\n`);
    const { stdout, stderr, code } = await finish(runArcproxy(["clusters"], { ARC_TOKEN: USER_TOKEN, XDG_CONFIG_HOME: home, ARC_RELAY: "" }));
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout.split("\n")[0]).toMatch(/^NAME\s+STATUS\s+KUBERNETES\s+LAST SEEN$/);
    expect(stdout).toMatch(new RegExp(`^${CLUSTER}\\s+connected\\s+v1\\.33\\.0\\s+now$`, "m"));
    expect(stdout).toMatch(new RegExp(`^${CLUSTER}-eu\\s+offline\\s+-\\s+2026-11-30T10:00:00\\.000Z$`, "m"));
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

test("no relay anywhere: one line that says how to name one", async () => {
  const home = await mkdtemp(join(tmpdir(), "arcproxy-home-"));
  try {
    const { stderr, code } = await finish(runArcproxy(["clusters"], { ARC_TOKEN: USER_TOKEN, XDG_CONFIG_HOME: home, ARC_RELAY: "" }));
    expect(code).toBe(1);
    expect(stderr).toContain("no relay: pass --relay https://relay.example.com, set ARC_RELAY, or run arcproxy login --relay URL once");
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

test("an unknown cluster name suggests the nearest ones the user may reach", async () => {
  const { stderr, code } = await finish(runArcproxy(["--relay", relay.url, "--cluster", `${CLUSTER}-e`, "--port", "0", "--", "true"], { ARC_TOKEN: USER_TOKEN }));
  expect(code).toBe(1);
  expect(stderr).toContain(`did you mean ${CLUSTER}-eu, ${CLUSTER}? (arcproxy clusters lists them)`);
});

test("--help into a pipe is plain text: no terminal colour codes for grep or a file", async () => {
  const { code, stdout } = await finish(runArcproxy(["--help"]));
  expect(code).toBe(0);
  expect(stdout).toContain("USAGE arcproxy [OPTIONS]");
  expect(stdout).not.toContain("\u001b[");
});
