// The arcproxy command as a user runs it: a real process against the fake relay.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { CLUSTER, USER_TOKEN, startFakeRelay, type FakeRelay } from "./fake-relay.ts";

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
  expect(stderr).toBe("arcproxy: no token: pass --token or set ARC_TOKEN (e.g. from arcrelay token create)\n");
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

test("serve mode prints the kubeconfig, and SIGTERM cleans it up", async () => {
  const child = runArcproxy(["--relay", relay.url, "--cluster", CLUSTER, "--port", "0", "--log-level", "warn"], { ARC_TOKEN: USER_TOKEN });
  const reader = child.stdout.getReader();
  let out = "";
  while (!out.includes("export KUBECONFIG=")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += new TextDecoder().decode(value);
  }
  const path = /^kubeconfig: (.+)$/m.exec(out)?.[1];
  expect(out).toContain(`export KUBECONFIG=${path}`);
  expect(existsSync(path!)).toBe(true);
  child.kill("SIGTERM");
  expect(await child.exited).toBe(0);
  expect(existsSync(path!)).toBe(false);
});
