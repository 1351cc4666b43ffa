// Builds a real kube-apiserver, etcd and kubectl from the Go module in ./go, once per
// machine. Binaries are cached under <cache>/bin/<sha256(go.sum)[:16]>/ and
// GOCACHE/GOMODCACHE live under <cache>, so only the first build pays.
//
//   <cache> = ${CLUSTER_CONNECT_CACHE:-~/.cache/cluster-connect}/go
//
// Run as a script: `bun test/kube/build.ts` prints the binary paths.
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { findGo, goEnv } from "./go-toolchain.ts";
import { acquireLock } from "./lock.ts";
import { readLines } from "./lines.ts";

export interface KubeBinaries {
  apiserver: string;
  etcd: string;
  /** Same version as the API server; used only where the machine has no kubectl >= 1.33. */
  kubectl: string;
}

export interface BuildOptions {
  log?: (line: string) => void;
}

const MODULE_DIR = join(import.meta.dir, "go");
const HEARTBEAT_MS = 15_000;

export function kubeCacheDir(): string {
  return join(process.env.CLUSTER_CONNECT_CACHE ?? join(homedir(), ".cache", "cluster-connect"), "go");
}

export async function buildKubeBinaries(opts: BuildOptions = {}): Promise<KubeBinaries> {
  const log = opts.log ?? (() => {});
  const cache = kubeCacheDir();
  const goSum = await readFile(join(MODULE_DIR, "go.sum"));
  const key = new Bun.CryptoHasher("sha256").update(goSum).digest("hex").slice(0, 16);
  const binDir = join(cache, "bin", key);
  const bins: KubeBinaries = { apiserver: join(binDir, "kube-apiserver"), etcd: join(binDir, "etcd"), kubectl: join(binDir, "kubectl") };
  const built = () => existsSync(bins.apiserver) && existsSync(bins.etcd) && existsSync(bins.kubectl);
  if (built()) return bins;

  await mkdir(join(cache, "bin"), { recursive: true });
  const release = await acquireLock(`${binDir}.lock`, log);
  try {
    if (built()) return bins; // another process finished while we waited
    await runGoBuild(cache, binDir, log);
    return bins;
  } finally {
    await release();
  }
}

async function runGoBuild(cache: string, binDir: string, log: (l: string) => void): Promise<void> {
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
  const goMod = await readFile(join(MODULE_DIR, "go.mod"), "utf8");
  const m = /^\s*k8s\.io\/kubernetes\s+(v(\d+)\.(\d+)\.\d+)\s*$/m.exec(goMod);
  if (!m) throw new Error(`cannot find the k8s.io/kubernetes version in ${MODULE_DIR}/go.mod`);
  const [, version, major, minor] = m;
  const buildDate = await moduleTime(go, env);

  const ldflags = ["-s", "-w"];
  for (const pkg of ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"]) {
    ldflags.push(`-X ${pkg}.gitVersion=${version}`, `-X ${pkg}.gitMajor=${major}`, `-X ${pkg}.gitMinor=${minor}`);
    ldflags.push(`-X ${pkg}.gitTreeState=clean`);
    if (buildDate) ldflags.push(`-X ${pkg}.buildDate=${buildDate}`);
  }

  const tmpDir = `${binDir}.tmp-${process.pid}`;
  await rm(tmpDir, { recursive: true, force: true });
  await mkdir(tmpDir, { recursive: true });
  const args = [go, "build", "-v", "-trimpath", "-buildvcs=false", "-tags", "selinux,notest"];
  args.push("-ldflags", ldflags.join(" "), "-o", `${tmpDir}/`, "./cmd/kube-apiserver", "./cmd/etcd", "./cmd/kubectl");
  log(`[kube-build] building kube-apiserver ${version}, etcd and kubectl in ${binDir} (first build takes minutes)`);

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
    else log(`[kube-build] ${line}`);
  };
  const proc = Bun.spawn(args, { cwd: MODULE_DIR, env, stdout: "pipe", stderr: "pipe" });
  const heartbeat = setInterval(() => {
    const secs = Math.round((Date.now() - started) / 1000);
    log(`[kube-build] ${secs}s: ${downloads} modules downloaded, ${packages} packages compiled (last: ${last || "-"})`);
  }, HEARTBEAT_MS);
  try {
    await Promise.all([readLines(proc.stdout, onLine), readLines(proc.stderr, onLine)]);
    const code = await proc.exited;
    if (code !== 0) {
      throw new Error(`go build failed (exit ${code}) in ${MODULE_DIR}:\n${tail.join("\n")}`);
    }
    await rename(tmpDir, binDir);
  } finally {
    clearInterval(heartbeat);
    await rm(tmpDir, { recursive: true, force: true });
  }
  log(`[kube-build] done in ${Math.round((Date.now() - started) / 1000)}s`);
}

/** Release time of k8s.io/kubernetes, used as a reproducible buildDate. */
async function moduleTime(go: string, env: Record<string, string | undefined>): Promise<string | undefined> {
  const proc = Bun.spawn([go, "list", "-m", "-json", "k8s.io/kubernetes"], {
    cwd: MODULE_DIR,
    env,
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

if (import.meta.main) {
  const bins = await buildKubeBinaries({ log: (l) => console.error(l) });
  console.log(bins.apiserver);
  console.log(bins.etcd);
  console.log(bins.kubectl);
}
