// The replicas benchmark (bench/replicas-bench.ts) in its smoke mode, so it cannot rot: the
// forwarded hop and three replicas against one; idle agents' memory, the database's load and the
// agents coming back after a relay restart. A benchmark, not a timed test: only that each ran.
import { expect, setDefaultTimeout, test } from "bun:test";
import { join } from "node:path";

setDefaultTimeout(120_000);
const ROOT = join(import.meta.dir, "..", "..");

async function runBench(mode: string, ...flags: string[]): Promise<string> {
  const proc = Bun.spawn([process.execPath, "bench/replicas-bench.ts", mode, "--smoke", ...flags], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
  expect(stdout).toContain("the figures only show that it ran");
  return stdout;
}

test("bench/replicas-bench.ts hop --smoke: local and forwarded latency, and the three rates, each measured", async () => {
  const out = await runBench("hop");
  expect(out).toMatch(/sequential local: p50 \d+ us, p99 \d+ us \(20 requests\)/);
  expect(out).toMatch(/sequential forwarded: p50 \d+ us/);
  expect(out).toMatch(/forwarded hop adds: p50 -?\d+ us/);
  expect(out.match(/^c=32 .*: [1-9]\d* req\/s$/gm)?.length).toBe(3);
});

test.each([[[]], [["--tls"]]])("bench/replicas-bench.ts idle --smoke %p: 25 agents connect, memory and database load are read, and all come back after a relay restart", async (flags: string[]) => {
  const out = await runBench("idle", ...flags);
  expect(out).toContain(flags.includes("--tls") ? "mode=idle tls" : "mode=idle load average");
  expect(out).toContain("relay RSS with 25 idle agents");
  expect(out).toMatch(/per agent: -?[\d.]+ KiB \(slope from 5 to 25 agents\)/);
  expect(out).toMatch(/database transactions per second with 25 idle agents/);
  expect(out).toMatch(/relay restart \(SIGTERM, new process ready [\d.]+ s later\): agents back, from the SIGTERM: half [\d.]+ s, 99% [\d.]+ s, all [\d.]+ s/);
  expect(out).toMatch(/relay RSS after the restart with all 25 agents back: [\d.]+ MiB .*over the empty relay: -?[\d.]+ KiB per agent/);
});

test("bench/verify-rss.ts: five rounds of concurrent verifies, each read", async () => {
  const proc = Bun.spawn([process.execPath, "bench/verify-rss.ts"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  expect(code).toBe(0);
  expect(stdout.match(/^RSS after round \d of 64 concurrent verifies: [\d.]+ MiB$/gm)?.length).toBe(5);
});
