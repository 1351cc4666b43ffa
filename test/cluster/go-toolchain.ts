// Finds a `go` new enough to build our Go test fixtures, or fetches one from the Go module proxy
// (where `GOTOOLCHAIN` gets its toolchains) so a machine with only Node.js and npm can run the tests.
//
//   <cache>/toolchain/go<GO_TOOLCHAIN_VERSION>-<os>-<arch>/bin/go
//   <cache> = $CLUSTER_CONNECT_CACHE or ~/.cache/cluster-connect
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { inflateSync } from "fflate";
import { cacheRoot } from "../../scripts/cache-root.ts";
import { acquireLock } from "./lock.ts";

/** Go release downloaded when no usable `go` is installed; the newest 1.26 patch when pinned. */
export const GO_TOOLCHAIN_VERSION = "1.26.8";
/** Oldest Go that builds every Go module of the tests (test/cluster/helm/go.mod says `go 1.26.0`). */
const MIN_GO_MINOR = 26;
const DEFAULT_PROXY = "https://proxy.golang.org";
const TOOLCHAIN_MODULE = "golang.org/toolchain";
const PROGRESS_MS = 3_000;
const DOWNLOAD_TIMEOUT_MS = 15 * 60_000;
const SUMDB_TIMEOUT_MS = 10_000;

export interface FindGoOptions {
  log?: (line: string) => void;
  /** Skip the installed `go` and use the downloaded toolchain (tests). */
  forceDownload?: boolean;
  /** Replaces <cache> (tests). */
  cacheRoot?: string;
}

/** Returns the path of a usable `go`: the installed one if >= 1.24, else a cached download. */
export async function findGo(opts: FindGoOptions = {}): Promise<string> {
  const log = opts.log ?? (() => {});
  if (!opts.forceDownload) {
    for (const candidate of [process.env.GO, Bun.which("go")]) {
      if (!candidate) continue;
      const version = await probeGoVersion(candidate);
      if (version && isNewEnough(version)) return candidate;
      log(`[go-toolchain] ignoring ${candidate} (${version ?? "does not run"}): need go1.${MIN_GO_MINOR} or newer`);
    }
  }
  return downloadGoToolchain(opts.cacheRoot ?? cacheRoot(), log);
}

/** Environment for running the `go` that findGo returned: never switch to another toolchain. */
export function goEnv(): Record<string, string> {
  return { GOTOOLCHAIN: "local" };
}

/** Go's names for Node's platform and architecture. */
export function goPlatform(platform: string, arch: string): { os: string; arch: string } {
  const os = ({ linux: "linux", darwin: "darwin", win32: "windows" } as Record<string, string>)[platform];
  const goArch = ({ x64: "amd64", arm64: "arm64" } as Record<string, string>)[arch];
  if (!os || !goArch) throw new Error(`no Go toolchain download for ${platform}/${arch}: install Go >= 1.${MIN_GO_MINOR} yourself`);
  return { os, arch: goArch };
}

async function probeGoVersion(go: string): Promise<string | undefined> {
  try {
    const proc = Bun.spawn([go, "env", "GOVERSION"], {
      env: { ...process.env, ...goEnv() },
      stdout: "pipe",
      stderr: "ignore",
    });
    const out = (await new Response(proc.stdout).text()).trim();
    return (await proc.exited) === 0 && out ? out : undefined;
  } catch {
    return undefined;
  }
}

function isNewEnough(goVersion: string): boolean {
  const m = /go(\d+)\.(\d+)/.exec(goVersion);
  return !!m && (Number(m[1]) > 1 || Number(m[2]) >= MIN_GO_MINOR);
}

async function downloadGoToolchain(cacheRoot: string, log: (l: string) => void): Promise<string> {
  const { os, arch } = goPlatform(process.platform, process.arch);
  const dir = join(cacheRoot, "toolchain", `go${GO_TOOLCHAIN_VERSION}-${os}-${arch}`);
  const go = join(dir, "bin", os === "windows" ? "go.exe" : "go");
  if (existsSync(go)) return go;

  await mkdir(dirname(dir), { recursive: true });
  const release = await acquireLock(`${dir}.lock`, log);
  const tmp = `${dir}.tmp-${process.pid}`;
  try {
    if (existsSync(go)) return go; // another process finished while we waited
    const version = `v0.0.1-go${GO_TOOLCHAIN_VERSION}.${os}-${arch}`;
    const proxy = goProxy();
    const expected = lookupSum(proxy, version); // runs during the download
    const zip = await download(`${proxy}/${TOOLCHAIN_MODULE}/@v/${version}.zip`, log);

    log(`[go-toolchain] extracting into ${dir}`);
    await rm(tmp, { recursive: true, force: true });
    const { h1 } = extractZip(zip, tmp, `${TOOLCHAIN_MODULE}@${version}/`);
    const want = await expected;
    if (!want) log("[go-toolchain] checksum database not reachable: skipped the go.sum hash check (zip CRCs did pass)");
    else if (want !== h1) throw new Error(`Go toolchain ${version}: hash ${h1} does not match the checksum database's ${want}`);
    else log(`[go-toolchain] verified ${h1} against sum.golang.org`);
    await rename(tmp, dir);
    return go;
  } finally {
    await rm(tmp, { recursive: true, force: true });
    await release();
  }
}

/** First http(s) entry of GOPROXY (entries are split by "," or "|"), else proxy.golang.org. */
function goProxy(): string {
  const entries = (process.env.GOPROXY ?? "").split(/[,|]/).map((e) => e.trim());
  return (entries.find((e) => /^https?:\/\//.test(e)) ?? DEFAULT_PROXY).replace(/\/+$/, "");
}

/** The `h1:` hash the checksum database records for the toolchain zip, or undefined if unreachable. */
async function lookupSum(proxy: string, version: string): Promise<string | undefined> {
  // Proxies may serve the checksum database themselves (proxy.golang.org does); try that first.
  const path = `lookup/${TOOLCHAIN_MODULE}@${version}`;
  for (const base of [`${proxy}/sumdb/sum.golang.org`, "https://sum.golang.org"]) {
    try {
      const res = await fetch(`${base}/${path}`, { signal: AbortSignal.timeout(SUMDB_TIMEOUT_MS) });
      if (!res.ok) continue;
      const line = (await res.text()).split("\n").find((l) => l.startsWith(`${TOOLCHAIN_MODULE} ${version} h1:`));
      if (line) return line.split(" ")[2];
    } catch {}
  }
  return undefined;
}

async function download(url: string, log: (l: string) => void): Promise<Uint8Array> {
  const res = await fetch(url, { signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS) });
  if (!res.ok || !res.body) throw new Error(`downloading ${url}: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get("content-length") ?? Number.NaN);
  const mb = (n: number) => (n / 1e6).toFixed(1);
  log(`[go-toolchain] no Go >= 1.${MIN_GO_MINOR} found: downloading ${url} (${Number.isFinite(total) ? `${mb(total)} MB` : "size unknown"})`);
  const chunks: Uint8Array[] = [];
  let received = 0;
  const started = Date.now();
  let lastLog = started;
  for await (const chunk of res.body) {
    chunks.push(chunk);
    received += chunk.length;
    if (Date.now() - lastLog >= PROGRESS_MS) {
      log(`[go-toolchain] ${mb(received)}${Number.isFinite(total) ? ` / ${mb(total)}` : ""} MB`);
      lastLog = Date.now();
    }
  }
  if (Number.isFinite(total) && received !== total) {
    throw new Error(`downloading ${url}: got ${received} of ${total} bytes (connection cut?); run again to retry`);
  }
  log(`[go-toolchain] downloaded ${mb(received)} MB in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  return Buffer.concat(chunks);
}

/**
 * Extracts a Go module zip whose entries all start with `prefix` into `dest`, checking each CRC and
 * keeping Unix modes; bin/ and pkg/tool/ are executable even when the zip records no mode.
 * Returns the module's go.sum hash (`h1:`, golang.org/x/mod/sumdb/dirhash Hash1 over the zip).
 */
export function extractZip(zip: Uint8Array, dest: string, prefix: string): { files: number; h1: string } {
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  const eocd = findEndOfCentralDirectory(view);
  const count = view.getUint16(eocd + 10, true);
  let p = view.getUint32(eocd + 16, true);
  if (count === 0xffff || p === 0xffffffff) throw new Error("zip64 archives are not supported");
  const decoder = new TextDecoder();
  const hashes: [name: string, sha256: string][] = [];
  const made = new Set<string>();
  for (let i = 0; i < count; i++) {
    if (view.getUint32(p, true) !== 0x02014b50) throw new Error(`corrupt zip: bad central directory entry ${i}`);
    const madeBy = view.getUint16(p + 4, true) >> 8;
    const method = view.getUint16(p + 10, true);
    const crc = view.getUint32(p + 16, true);
    const size = view.getUint32(p + 20, true);
    const rawSize = view.getUint32(p + 24, true);
    const nameLen = view.getUint16(p + 28, true);
    const skip = nameLen + view.getUint16(p + 30, true) + view.getUint16(p + 32, true);
    const unixMode = madeBy === 3 ? view.getUint32(p + 38, true) >>> 16 : 0;
    const local = view.getUint32(p + 42, true);
    const name = decoder.decode(zip.subarray(p + 46, p + 46 + nameLen));
    p += 46 + skip;

    const rel = name.startsWith(prefix) ? name.slice(prefix.length) : "";
    if (!rel || rel.startsWith("/") || rel.split("/").some((s) => s === ".." || s === "") || name.includes("\\")) {
      throw new Error(`unexpected zip entry ${JSON.stringify(name)} (want files under ${prefix})`);
    }
    const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    const raw = zip.subarray(start, start + size);
    const data = method === 0 ? raw : method === 8 ? inflateSync(raw, { out: new Uint8Array(rawSize) }) : undefined;
    if (!data) throw new Error(`zip entry ${name}: unsupported compression method ${method}`);
    if (data.length !== rawSize || Bun.hash.crc32(data) >>> 0 !== crc) throw new Error(`zip entry ${name}: CRC mismatch (corrupt download?)`);

    const path = join(dest, rel);
    const parent = dirname(path);
    if (!made.has(parent)) (mkdirSync(parent, { recursive: true }), made.add(parent));
    const executable = (unixMode & 0o111) !== 0 || rel.startsWith("bin/") || rel.startsWith("pkg/tool/");
    writeFileSync(path, data, { mode: executable ? 0o755 : 0o644 });
    hashes.push([name, new Bun.CryptoHasher("sha256").update(data).digest("hex")]);
  }
  // dirhash.Hash1: sha256 over "<sha256 hex>  <name>\n" lines sorted by name, base64.
  hashes.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const summary = hashes.map(([name, sha]) => `${sha}  ${name}\n`).join("");
  const h1 = `h1:${new Bun.CryptoHasher("sha256").update(summary).digest("base64")}`;
  return { files: count, h1 };
}

function findEndOfCentralDirectory(view: DataView): number {
  const min = Math.max(0, view.byteLength - 22 - 0xffff);
  for (let i = view.byteLength - 22; i >= min; i--) if (view.getUint32(i, true) === 0x06054b50) return i;
  throw new Error("not a zip file (no end of central directory record)");
}
