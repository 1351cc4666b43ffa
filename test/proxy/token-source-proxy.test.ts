// arcproxy's proxy mode asks its token source on every request: a rotated token file reaches the relay.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLUSTER, USER_TOKEN, startFakeRelay, type FakeRelay } from "./fake-relay.ts";

setDefaultTimeout(15_000);

const ENTRY = join(import.meta.dir, "../../cmd/arcproxy.ts");
let relay: FakeRelay;
let dir: string;
beforeAll(async () => {
  relay = await startFakeRelay();
  dir = await mkdtemp(join(tmpdir(), "token-source-proxy-"));
});
afterAll(async () => {
  await relay.close();
  await rm(dir, { recursive: true, force: true });
});

test("--token-file: a token written mid-session is used for the next request", async () => {
  const file = join(dir, "token");
  await writeFile(file, USER_TOKEN + "\n");
  // The fake relay accepts USER_TOKEN only, so after the rotation the relay's 401 proves the new token was sent.
  // The wait is the behaviour under test: arcproxy, a separate process whose clock the test cannot
  // move, looks at the file at most once a second (FILE_CHECK_INTERVAL_MS).
  const script = [
    "kubectl get --raw /version >/dev/null && echo first-ok",
    `printf 'rotated-token' > '${file}'`,
    "sleep 1.1",
    "kubectl get --raw /version 2>&1; true",
  ].join("; ");
  const { ARC_TOKEN: _drop, ...env } = process.env;
  const child = Bun.spawn([process.execPath, ENTRY, "--relay", relay.url, "--cluster", CLUSTER, "--port", "0", "--token-file", file, "--", "sh", "-c", script], {
    stdout: "pipe", stderr: "pipe", env,
  });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  expect(stderr).toBe("");
  expect(code).toBe(0);
  expect(stdout).toStartWith("first-ok\n");
  expect(stdout).toContain("token expired or invalid");
});

test("two token sources: one line on stderr, exit 1", async () => {
  const { ARC_TOKEN: _drop, ...env } = process.env;
  const child = Bun.spawn([process.execPath, ENTRY, "--relay", relay.url, "--cluster", CLUSTER, "--token", "a", "--token-command", "echo b"], { stdout: "pipe", stderr: "pipe", env });
  const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  expect(code).toBe(1);
  expect(stderr).toBe("arcproxy: pass one token source, not --token and --token-command\n");
});

test("a missing --token-file fails at start with the path", async () => {
  const { ARC_TOKEN: _drop, ...env } = process.env;
  const missing = join(dir, "nope");
  const child = Bun.spawn([process.execPath, ENTRY, "--relay", relay.url, "--cluster", CLUSTER, "--port", "0", "--token-file", missing], { stdout: "pipe", stderr: "pipe", env });
  const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  expect(code).toBe(1);
  expect(stderr).toContain(`token file ${missing} does not exist`);
});
