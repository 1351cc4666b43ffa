// Builds the main packages of one Go module into a cached folder, once per machine and source version.
//
//   <cache>/go/bin/<module name>-<sha256(go.mod, go.sum, sources under the module)[:16]>/<binary>
//   <cache> = ${CLUSTER_CONNECT_CACHE:-~/.cache/cluster-connect}
//
// GOCACHE and GOMODCACHE live under <cache>/go as well, so the Kubernetes binaries, helm and the
// peers of the benchmarks share downloaded modules and compiled packages.
import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { mkdir, readFile, rename, rm } from "node:fs/promises";
import { join, relative } from "node:path";
import { cacheRoot } from "../../scripts/cache-root.ts";
import { findGo, goEnv } from "./go-toolchain.ts";
import { readLines } from "./lines.ts";
import { acquireLock } from "./lock.ts";

export interface GoModuleBuild {
  /** Short name for logs and the cache folder, e.g. "kube". */
  name: string;
  /** Folder holding go.mod. */
  moduleDir: string;
  /** Main packages to build, e.g. "./cmd/kubelet" or "helm.sh/helm/v4/cmd/helm"; each binary is named after the last element. */
  packages: string[];
  /** Extra -ldflags; a function is called only when a build actually runs (e.g. to look up a date). */
  ldflags?: string[] | (() => Promise<string[]>);
  tags?: string[];
}

const HEARTBEAT_MS = 15_000;

export function goCacheDir(): string {
  return join(cacheRoot(), "go");
}

/**
 * Returns the folder holding one binary per package, building them first when the cache has no
 * build of these exact sources. Concurrent callers (two test processes) wait on a lock file and
 * reuse the first one's build. Throws with the tail of the compiler's output when `go build` fails.
 * Progress goes to stderr unless `log` says otherwise: a first build takes minutes, never silently.
 */
export async function buildGoModule(spec: GoModuleBuild, log: (line: string) => void = (line) => console.error(line)): Promise<string> {
  const cache = goCacheDir();
  const key = await sourceKey(spec);
  const binDir = join(cache, "bin", `${spec.name}-${key}`);
  const names = spec.packages.map((p) => p.split("/").at(-1)!);
  const built = () => names.every((n) => existsSync(join(binDir, n)));
  if (built()) return binDir;

  await mkdir(join(cache, "bin"), { recursive: true });
  const release = await acquireLock(`${binDir}.lock`, log);
  try {
    if (built()) return binDir; // another process finished while we waited
    await runGoBuild(spec, cache, binDir, log);
    return binDir;
  } finally {
    await release();
  }
}

/** Builds running now, stopped (and their half-written output removed) if this process exits first. */
const runningBuilds = new Set<{ proc: { kill(signal?: number | NodeJS.Signals): void }; tmpDir: string }>();

/**
 * A process that exits during a build (kube-up stopped by Ctrl-C while Kubernetes compiles) skips
 * every `finally`: without this its `go build` went on compiling as an orphan, beside the next
 * run's own build of the same sources, and left its temporary folder behind.
 */
function stopOnExit(build: { proc: { kill(signal?: number | NodeJS.Signals): void }; tmpDir: string }): void {
  if (runningBuilds.size === 0 && !exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const { proc, tmpDir } of runningBuilds) {
        proc.kill("SIGKILL");
        rmSync(tmpDir, { recursive: true, force: true });
      }
    });
  }
  runningBuilds.add(build);
}
let exitHookInstalled = false;

/** Hash of everything that decides the binaries: module files, our own sources, flags. */
async function sourceKey(spec: GoModuleBuild): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  const ldflags = typeof spec.ldflags === "function" ? spec.ldflags.toString() : spec.ldflags;
  hasher.update(JSON.stringify({ packages: spec.packages, ldflags, tags: spec.tags }));
  for (const file of listSources(spec.moduleDir)) {
    hasher.update(relative(spec.moduleDir, file));
    hasher.update(await readFile(file));
  }
  return hasher.digest("hex").slice(0, 16);
}

function listSources(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...listSources(path));
    else if (entry === "go.mod" || entry === "go.sum" || entry.endsWith(".go")) out.push(path);
  }
  return out;
}

async function runGoBuild(spec: GoModuleBuild, cache: string, binDir: string, log: (l: string) => void): Promise<void> {
  const go = await findGo({ log });
  const env: Record<string, string | undefined> = {
    ...process.env,
    ...goEnv(),
    GOCACHE: join(cache, "build"),
    GOMODCACHE: join(cache, "mod"),
    CGO_ENABLED: "0",
    GOFLAGS: "-mod=readonly",
    GOWORK: "off",
  };
  const tmpDir = `${binDir}.tmp-${process.pid}`;
  await rm(tmpDir, { recursive: true, force: true });
  await mkdir(tmpDir, { recursive: true });
  const args = [go, "build", "-v", "-trimpath", "-buildvcs=false"];
  if (spec.tags?.length) args.push("-tags", spec.tags.join(","));
  const ldflags = typeof spec.ldflags === "function" ? await spec.ldflags() : (spec.ldflags ?? []);
  args.push("-ldflags", ["-s", "-w", ...ldflags].join(" "), "-o", `${tmpDir}/`, ...spec.packages);
  log(`[go-build] building ${spec.name} (${spec.packages.map((p) => p.split("/").at(-1)).join(", ")}) into ${binDir}; the first build takes minutes`);

  const started = Date.now();
  let packages = 0;
  let downloads = 0;
  let last = "";
  const tail: string[] = [];
  const onLine = (line: string) => {
    tail.push(line);
    if (tail.length > 60) tail.shift();
    if (line.startsWith("go: downloading ")) downloads++;
    else if (/^[\w.\-/~]+$/.test(line)) (packages++, (last = line));
    else log(`[go-build] ${line}`);
  };
  const proc = Bun.spawn(args, { cwd: spec.moduleDir, env, stdout: "pipe", stderr: "pipe" });
  const running = { proc, tmpDir };
  stopOnExit(running);
  const heartbeat = setInterval(() => {
    const secs = Math.round((Date.now() - started) / 1000);
    log(`[go-build] ${spec.name} ${secs}s: ${downloads} modules downloaded, ${packages} packages compiled (last: ${last || "-"})`);
  }, HEARTBEAT_MS);
  try {
    await Promise.all([readLines(proc.stdout, onLine), readLines(proc.stderr, onLine)]);
    const code = await proc.exited;
    if (code !== 0) throw new Error(`go build of ${spec.name} failed (exit ${code}) in ${spec.moduleDir}:\n${tail.join("\n")}`);
    await rename(tmpDir, binDir);
  } finally {
    clearInterval(heartbeat);
    runningBuilds.delete(running);
    await rm(tmpDir, { recursive: true, force: true });
  }
  log(`[go-build] ${spec.name} done in ${Math.round((Date.now() - started) / 1000)}s`);
}

/** Release time of a module in the build list, as a reproducible build date (undefined if unknown). */
export async function moduleTime(moduleDir: string, modulePath: string, log: (l: string) => void = () => {}): Promise<string | undefined> {
  const go = await findGo({ log });
  const proc = Bun.spawn([go, "list", "-m", "-json", modulePath], {
    cwd: moduleDir,
    env: { ...process.env, ...goEnv(), GOMODCACHE: join(goCacheDir(), "mod"), GOFLAGS: "-mod=readonly", GOWORK: "off" },
    stdout: "pipe",
    stderr: "ignore",
  });
  const out = await new Response(proc.stdout).text();
  if ((await proc.exited) !== 0) return undefined;
  try {
    const time = (JSON.parse(out) as { Time?: string }).Time;
    return time ? new Date(time).toISOString().replace(/\.\d{3}Z$/, "Z") : undefined;
  } catch {
    return undefined;
  }
}
