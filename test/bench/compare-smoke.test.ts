// The comparison benchmark (bench/compare.ts) in its smoke mode: every path and every scenario once,
// small, so the suite cannot rot. A benchmark, not a timed test: only that each path answered.
import { expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

// A fresh machine builds the peers from their Go modules first (about 3 minutes on 2 cores).
setDefaultTimeout(15 * 60_000);
const ROOT = join(import.meta.dir, "..", "..");

test("bench/compare.ts --help prints its usage and runs nothing; an unknown flag is refused", () => {
  const help = Bun.spawnSync([process.execPath, "bench/compare.ts", "--help"], { cwd: ROOT });
  expect(help.exitCode).toBe(0);
  expect(help.stdout.toString()).toContain("usage: bun bench/compare.ts");
  const unknown = Bun.spawnSync([process.execPath, "bench/compare.ts", "--roundz", "2"], { cwd: ROOT });
  expect(unknown.exitCode).toBe(2);
  expect(unknown.stderr.toString()).toContain('unknown or incomplete argument "--roundz"');
  const both = Bun.spawnSync([process.execPath, "bench/compare.ts", "--watches-only", "--no-watches"], { cwd: ROOT });
  expect(both.exitCode).toBe(2);
  expect(both.stderr.toString()).toContain("--watches-only and --no-watches contradict each other");
});

test("bench/compare.ts --smoke --watches-only: only the watches, on a fresh relay and agent; 20 get every event", async () => {
  const dir = await mkdtemp(join(tmpdir(), "arc-compare-watches-"));
  try {
    const json = join(dir, "results.json");
    const proc = Bun.spawn([process.execPath, "bench/compare.ts", "--smoke", "--watches-only", "--json", json], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
    const { watchesOnly, watches } = JSON.parse(await readFile(json, "utf8")) as { watchesOnly: boolean; watches: { watches: number; p99Us: number }[] };
    expect(watchesOnly).toBe(true);
    expect(watches.map((w) => ({ watches: w.watches, delivered: w.p99Us > 0 }))).toEqual([{ watches: 20, delivered: true }]);
    expect(stdout).toContain("| watches on one tunnel |");
    expect(stdout).not.toContain("| direct |"); // no request scenario ran
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("bench/compare.ts --smoke: direct, ours, the relay, chisel, frp and konnectivity each answer every scenario, the LIST from a real API server included; arcproxy's start is timed; 20 watches on one tunnel get every event", async () => {
  const dir = await mkdtemp(join(tmpdir(), "arc-compare-smoke-"));
  try {
    const json = join(dir, "results.json");
    const proc = Bun.spawn([process.execPath, "bench/compare.ts", "--smoke", "--json", json], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
    const { results, arcproxyStartMs, watches } = JSON.parse(await readFile(json, "utf8")) as {
      results: Record<string, Record<string, number[]>>; arcproxyStartMs: number[]; watches: { watches: number; p99Us: number }[];
    };
    expect(Object.keys(results).sort()).toEqual(["LIST", "bulk", "c=1", "c=16", "c=64"]);
    expect(arcproxyStartMs.length).toBe(1);
    expect(arcproxyStartMs[0]!).toBeGreaterThan(0);
    // 20 watches held on one tunnel, each got every event.
    expect(watches.map((w) => ({ watches: w.watches, delivered: w.p99Us > 0 }))).toEqual([{ watches: 20, delivered: true }]);
    for (const [scenario, byPath] of Object.entries(results)) {
      expect({ scenario, paths: Object.keys(byPath).sort() }).toEqual({ scenario, paths: ["chisel", "direct", "frp", "konnectivity", "ours", "relay"] });
      for (const [path, figures] of Object.entries(byPath)) expect({ scenario, path, positive: figures.every((f) => f > 0) }).toEqual({ scenario, path, positive: true });
    }
    // The table a reader gets: one row per path, and the warning that smoke figures mean nothing.
    for (const path of ["direct", "arcproxy -> arcrelay -> arcagent", "arcrelay -> arcagent (user token)", "chisel", "frp", "konnectivity"]) expect(stdout).toContain(`| ${path} |`);
    expect(stdout).toContain("the figures only show that every path answered");
    expect(stdout).toContain("LIST of 50 p50 ms");
    expect(stdout).toContain("arcproxy start to its first answered request");
    expect(stdout).toContain("| watches on one tunnel |");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
