// Builds the arcagent and arcrelay images from Dockerfile.agent and Dockerfile.relay with buildah
// (no Docker daemon needed) and writes them as OCI archives to dist/images/.
//
//   bun scripts/image-build.ts                          base: gcr.io/distroless/cc-debian12:nonroot
//   bun scripts/image-build.ts --local-base             base: a stand-in made from this Debian 12 machine's packages
//   bun scripts/image-build.ts --base-image REF         any other base (a registry mirror)
//   bun scripts/image-build.ts --target linux-arm64     another architecture (needs a base of that architecture)
//   bun scripts/image-build.ts --all-downloads          the relay image serves arcproxy for every release platform
//
// The binaries are cross-compiled first (scripts/build.ts); the Dockerfiles only copy them.
import { rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { buildBinaries, parsePlatform, readVersion, RELEASE_PLATFORMS, type Platform } from "./build.ts";
import { buildImage, pruneImages } from "./buildah.ts";
import { buildDistrolessStandin } from "./distroless-standin.ts";

const ROOT = resolve(import.meta.dir, "..");
export const IMAGE_NAMES = ["arcagent", "arcrelay"] as const;
export type ImageName = (typeof IMAGE_NAMES)[number];

export interface BuiltImage {
  name: ImageName;
  /** e.g. localhost/arcagent:0.1.0-1a2b3c4 */
  tag: string;
  /** OCI archive, ready for `ctr images import`, `podman load` or `skopeo copy`. */
  archive: string;
  /** Size of the archive (compressed layers). */
  bytes: number;
}

export interface BuildImagesOptions {
  /** Default: linux on this machine's architecture. */
  platform?: Platform;
  /** Base image of the final stage (Dockerfile ARG BASE_IMAGE); default: the Dockerfiles' own. */
  baseImage?: string;
  /** Which images; default both. */
  names?: readonly ImageName[];
  /** Default: dist/images under the repository root. */
  outDir?: string;
  /** Default: package.json's version plus the git commit. */
  version?: string;
  /** The arcproxy builds the relay image serves; default the image's own platform (RELEASE_PLATFORMS with --all-downloads). */
  downloadPlatforms?: readonly Platform[];
  log?: (line: string) => void;
}

/** Cross-compiles the Linux binaries, then builds one image per name. Throws on the first failure. */
export async function buildProductImages(opts: BuildImagesOptions = {}): Promise<BuiltImage[]> {
  const log = opts.log ?? console.log;
  const platform: Platform = opts.platform ?? { os: "linux", arch: process.arch === "arm64" ? "arm64" : "amd64" };
  if (platform.os !== "linux") throw new TypeError(`images are Linux only, not ${platform.os}`);
  const names = opts.names ?? IMAGE_NAMES;
  const version = opts.version ?? (await readVersion(ROOT));
  await buildBinaries({ names, platforms: [platform], version, log });
  if (names.includes("arcrelay")) {
    // What the relay image carries for `curl .../install.sh | sh`: arcproxy, laid out as build:all writes it.
    const downloads = join(ROOT, "dist", "downloads");
    rmSync(downloads, { recursive: true, force: true });
    await buildBinaries({ names: ["arcproxy"], platforms: opts.downloadPlatforms ?? [platform], version, outDir: downloads, log });
    writeFileSync(join(downloads, "VERSION"), `${version}\n`);
  }
  const outDir = opts.outDir ?? join(ROOT, "dist", "images");
  const built: BuiltImage[] = [];
  for (const name of names) {
    // Image tags allow [A-Za-z0-9_.-]: a semver build suffix (+commit) becomes -commit.
    const tag = `localhost/${name}:${version.replace(/[^A-Za-z0-9_.-]/g, "-")}`;
    const archive = join(outDir, `${name}-linux-${platform.arch}.tar`);
    await buildImage({
      dockerfile: join(ROOT, name === "arcagent" ? "Dockerfile.agent" : "Dockerfile.relay"),
      context: ROOT,
      tag,
      platform: `linux/${platform.arch}`,
      buildArgs: opts.baseImage ? { BASE_IMAGE: opts.baseImage } : {},
      archive,
      log,
    });
    const bytes = statSync(archive).size;
    log(`${archive}  ${tag}  ${(bytes / 1024 / 1024).toFixed(1)} MiB`);
    await pruneImages(`localhost/${name}`, log);
    built.push({ name, tag, archive, bytes });
  }
  return built;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      target: { type: "string" },
      "base-image": { type: "string" },
      "local-base": { type: "boolean", default: false },
      "all-downloads": { type: "boolean", default: false },
      only: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log("usage: bun scripts/image-build.ts [--target linux-<amd64|arm64>] [--base-image REF | --local-base] [--only arcagent|arcrelay] [--all-downloads]");
    return;
  }
  if (values["base-image"] && values["local-base"]) throw new TypeError("--base-image and --local-base cannot be combined");
  const only = values.only as ImageName | undefined;
  if (only && !IMAGE_NAMES.includes(only)) throw new TypeError(`--only ${only}: expected one of ${IMAGE_NAMES.join(", ")}`);
  const baseImage = values["local-base"] ? await buildDistrolessStandin(console.log) : values["base-image"];
  await buildProductImages({
    platform: values.target ? parsePlatform(values.target) : undefined,
    baseImage,
    names: only ? [only] : undefined,
    ...(values["all-downloads"] ? { downloadPlatforms: RELEASE_PLATFORMS } : {}),
  });
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    console.error(`image-build: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
