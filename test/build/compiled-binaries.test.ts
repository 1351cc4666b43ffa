// The three single-file executables, as users download them: built with bun build --compile, run without sources.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBinaries } from "../../scripts/build.ts";

setDefaultTimeout(30_000);
let dir: string;
let bin: (name: string) => string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-build-"));
  await buildBinaries({ outDir: join(dir, "dist"), version: "9.9.9-test", log: () => {} });
  bin = (name) => join(dir, "dist", name);
}, 180_000);

afterAll(() => rm(dir, { recursive: true, force: true }));

async function run(cmd: string[], cwd = dir) {
  // A different working directory with a hostile .env and bunfig.toml: a compiled binary must ignore both.
  const proc = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH ?? "" } });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { stdout, stderr, code };
}

test.each(["arcproxy", "arcrelay", "arcagent"])("%s reports the stamped version", async (name) => {
  const r = await run([bin(name), "--version"]);
  expect(r.stdout.trim()).toBe("9.9.9-test");
  expect(r.code).toBe(0);
});

test("compiled arcrelay registers a cluster and issues a token without any source files", async () => {
  await Bun.write(join(dir, ".env"), "ARC_TOKEN=from-dotenv\n");
  await Bun.write(join(dir, "bunfig.toml"), 'preload = ["./does-not-exist.ts"]\n');
  const data = join(dir, "data");
  // The store as `arcrelay serve` leaves it at its first start; admin commands refuse a dir without one.
  const { openSqliteStore } = await import("../../lib/relay/index.ts");
  await (await openSqliteStore(data)).close();
  const added = await run([bin("arcrelay"), "cluster", "add", "edge", "--data-dir", data]);
  expect(added.code).toBe(0);
  expect(added.stdout.trim().split("\n").at(-1)).toMatch(/^arcenroll_[A-Za-z0-9_-]{43}$/);
  const token = await run([bin("arcrelay"), "token", "create", "--user", "alice", "--public-url", "https://relay.example.com", "--data-dir", data]);
  expect(token.code).toBe(0);
  expect(token.stdout.trim().split(".")).toHaveLength(3);
});

test("compiled arcproxy fails with one clear line, not a stack trace, and ignores a .env token", async () => {
  const r = await run([bin("arcproxy"), "--relay", "http://127.0.0.1:9", "--cluster", "edge", "--", "true"]);
  expect(r.code).toBe(1);
  expect(r.stderr).toBe("arcproxy: no token: run arcproxy login --relay http://127.0.0.1:9 (or pass --token, or set ARC_TOKEN)\n");
});

test("compiled arcproxy older than the relay's minimum is told the version it needs and the command to run", async () => {
  const { startRelay } = await import("../../lib/relay/index.ts");
  const { silentLogger } = await import("../../lib/observe/index.ts");
  const relay = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "gate"), minArcproxyVersion: "10.0.0", logger: silentLogger });
  try {
    const r = await run([bin("arcproxy"), "--relay", relay.url, "--cluster", "edge", "--token", "any", "--", "true"]);
    expect(r.stderr).toBe(`arcproxy: relay ${relay.url} needs arcproxy 10.0.0 or newer; this is 9.9.9-test. Run: arcproxy update (or curl -fsSL ${relay.url}/install.sh | sh)\n`);
    expect(r.code).toBe(1);
  } finally {
    await relay.close();
  }
});
