// Compiles cmd/<name>.ts into standalone executables: for this machine, one target, or every release platform.
//
//   bun scripts/build.ts                         dist/arcproxy, dist/arcrelay, dist/arcagent
//   bun scripts/build.ts --all                   dist/<os>-<arch>/<name>[.exe] for RELEASE_PLATFORMS
//   bun scripts/build.ts --only arcagent         one binary (repeatable, or comma-separated)
//   bun scripts/build.ts --target linux-arm64    dist/linux-arm64/<name> (x64 and aarch64 accepted too)
//
// Folders use Go's and Docker's names (linux-amd64, darwin-arm64), as kubectl and helm downloads
// do: a Dockerfile finds its binary as dist/linux-${TARGETARCH}/ with no mapping step.
//   bun scripts/build.ts --set-version 1.2.3     bake in this version instead of package.json's + git commit
import { existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

export const BINARIES = ["arcproxy", "arcrelay", "arcagent"] as const;

export type Platform = { os: "linux" | "darwin" | "windows"; arch: "amd64" | "arm64" };

/** What `--all` builds; Bun fetches each foreign runtime from the npm registry on first use. */
export const RELEASE_PLATFORMS: readonly Platform[] = [
  { os: "linux", arch: "amd64" },
  { os: "linux", arch: "arm64" },
  { os: "darwin", arch: "amd64" },
  { os: "darwin", arch: "arm64" },
  { os: "windows", arch: "amd64" },
];

export interface BuildOptions {
  /** Repository root: holds package.json and cmd/. Default: the folder above this script. */
  root?: string;
  /** Where `<name>.ts` entrypoints live. Default: `<root>/cmd`. */
  cmdDir?: string;
  /** Output folder. Default: `<root>/dist`. */
  outDir?: string;
  /** Which entrypoints to build. Default: BINARIES. */
  names?: readonly string[];
  /** Cross-compile for these platforms into `<outDir>/<os>-<arch>/`. Default: this machine, into `<outDir>/`. */
  platforms?: readonly Platform[];
  /** Baked in as the global `VERSION`. Default: package.json version plus the short git commit. */
  version?: string;
  /** Receives one line per built binary. Default: console.log. */
  log?: (line: string) => void;
}

export interface BuiltBinary {
  name: string;
  /** Undefined for a build for this machine. */
  platform?: Platform;
  path: string;
  bytes: number;
}

/** Builds every requested binary, one at a time, and returns what it wrote. Throws on the first failure. */
export async function buildBinaries(opts: BuildOptions = {}): Promise<BuiltBinary[]> {
  const root = resolve(opts.root ?? join(import.meta.dir, ".."));
  const cmdDir = resolve(opts.cmdDir ?? join(root, "cmd"));
  const outDir = resolve(opts.outDir ?? join(root, "dist"));
  const names = opts.names ?? BINARIES;
  const version = opts.version ?? (await readVersion(root));
  const log = opts.log ?? console.log;

  const entrypoints = names.map((name) => ({ name, file: join(cmdDir, `${name}.ts`) }));
  const missing = entrypoints.filter((e) => !existsSync(e.file));
  if (missing.length > 0) {
    throw new Error(`missing entrypoint(s): ${missing.map((e) => e.file).join(", ")}`);
  }

  const targets: (Platform | undefined)[] = opts.platforms ? [...opts.platforms] : [undefined];
  const built: BuiltBinary[] = [];
  for (const platform of targets) {
    for (const { name, file } of entrypoints) {
      const binary = await compileOne({ name, file, platform, outDir, version });
      log(`${binary.path}  ${formatBytes(binary.bytes)}`);
      built.push(binary);
    }
  }
  return built;
}

async function compileOne(args: {
  name: string;
  file: string;
  platform: Platform | undefined;
  outDir: string;
  version: string;
}): Promise<BuiltBinary> {
  const { name, file, platform, outDir, version } = args;
  const isWindows = (platform?.os ?? hostPlatform().os) === "windows";
  const dir = platform ? join(outDir, `${platform.os}-${platform.arch}`) : outDir;
  const path = join(dir, isWindows ? `${name}.exe` : name);
  mkdirSync(dir, { recursive: true });

  const result = await Bun.build({
    entrypoints: [file],
    compile: {
      ...(platform ? { target: bunTarget(platform) } : {}),
      outfile: path,
      // A stray .env or bunfig.toml in a pod's working directory must not change a compiled binary.
      autoloadDotenv: false,
      autoloadBunfig: false,
    },
    define: { VERSION: JSON.stringify(version) },
    // Identifiers stay as written so stack traces name our functions.
    minify: { whitespace: true, syntax: true, identifiers: false },
    // Parsed ahead of time: `arcproxy --version` in 20-24 ms instead of 75-144 ms, and every start
    // (kubectl's exec plugin runs arcproxy per command) as much faster; ESM bytecode needs `compile`.
    bytecode: true,
    format: "esm",
    sourcemap: "linked",
    throw: false,
  });
  if (!result.success) {
    const detail = result.logs.map((m) => String(m)).join("\n");
    throw new Error(`building ${name}${platform ? ` for ${platform.os}-${platform.arch}` : ""} failed:\n${detail}`);
  }
  // The map is embedded in the executable already; the copy beside it would only clutter dist/.
  for (const out of result.outputs) if (out.kind === "sourcemap") rmSync(out.path, { force: true });
  return { name, platform, path, bytes: statSync(path).size };
}

/** package.json's version, plus `+<short commit>` when git knows one. */
export async function readVersion(root: string): Promise<string> {
  const pkg = (await Bun.file(join(root, "package.json")).json()) as { version?: string };
  const base = pkg.version ?? "0.0.0";
  try {
    const git = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: root, stderr: "ignore" });
    const commit = git.stdout.toString().trim();
    return git.exitCode === 0 && commit ? `${base}+${commit}` : base;
  } catch {
    return base; // no git on PATH (e.g. inside a container build)
  }
}

/** Bun names amd64 `x64`. */
function bunTarget(platform: Platform): Bun.Build.CompileTarget {
  return `bun-${platform.os}-${platform.arch === "amd64" ? "x64" : "arm64"}` as Bun.Build.CompileTarget;
}

/** Accepts `linux-amd64`, docker's `linux/amd64`, and Bun's `bun-linux-x64` or `linux-aarch64`. */
export function parsePlatform(text: string): Platform {
  const [os, rawArch] = text.replace(/^bun-/, "").split(/[-/]/);
  const arch = ({ x64: "amd64", amd64: "amd64", arm64: "arm64", aarch64: "arm64" } as const)[rawArch ?? ""];
  if ((os !== "linux" && os !== "darwin" && os !== "windows") || !arch) {
    throw new TypeError(`unknown target "${text}": expected <linux|darwin|windows>-<amd64|arm64>`);
  }
  return { os, arch };
}

/** This machine in the release names (linux-amd64, darwin-arm64, ...). */
export function hostPlatform(): Platform {
  const os = process.platform === "win32" ? "windows" : process.platform === "darwin" ? "darwin" : "linux";
  return { os, arch: process.arch === "arm64" ? "arm64" : "amd64" };
}

function formatBytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      all: { type: "boolean", default: false },
      only: { type: "string", multiple: true },
      target: { type: "string", multiple: true },
      "set-version": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log("usage: bun scripts/build.ts [--all | --target <os>-<arch>...] [--only <name>...] [--set-version <v>]");
    return;
  }
  if (values.all && values.target) throw new TypeError("--all and --target cannot be combined");

  const names = values.only?.flatMap((s) => s.split(",")).filter(Boolean);
  const unknown = names?.filter((n) => !(BINARIES as readonly string[]).includes(n)) ?? [];
  if (unknown.length > 0) throw new TypeError(`unknown binary ${unknown.join(", ")}: expected one of ${BINARIES.join(", ")}`);

  const platforms = values.all ? RELEASE_PLATFORMS : values.target?.map(parsePlatform);
  const version = values["set-version"] || (await readVersion(join(import.meta.dir, "..")));
  await buildBinaries({ names, platforms, version });
  // `arcrelay serve --downloads-dir dist` reads the release's version here.
  if (platforms) await Bun.write(join(import.meta.dir, "..", "dist", "VERSION"), `${version}\n`);
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    console.error(`build: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
