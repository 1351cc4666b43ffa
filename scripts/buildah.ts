// Container images built without a daemon or a registry: buildah (Debian's package) builds our
// Dockerfiles, RUN steps included, and writes OCI archives that any runtime can import.
//
// Storage: <cache>/buildah (vfs driver, chroot isolation: no daemon, no overlay-on-overlay, no
// user namespaces needed), shared by every build on the machine, so base images are built once.
//   <cache> = ${CLUSTER_CONNECT_CACHE:-~/.cache/cluster-connect}
import { mkdir, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { cacheRoot } from "./cache-root.ts";

const ROOT = resolve(import.meta.dir, "..");

export interface BuildImageOptions {
  /** Dockerfile path. */
  dockerfile: string;
  /** Build context folder. */
  context: string;
  /** Fully qualified local name, e.g. localhost/arcagent:0.1.0. */
  tag: string;
  buildArgs?: Record<string, string>;
  /** `linux/arm64` etc.; default: this machine's. */
  platform?: string;
  /** Also write the image as an OCI archive here. */
  archive?: string;
  log?: (line: string) => void;
}

function buildah(args: string[]): string[] {
  const storage = join(cacheRoot(), "buildah");
  return ["buildah", "--storage-driver", "vfs", "--root", join(storage, "root"), "--runroot", join(storage, "runroot"), ...args];
}

/** Runs a command; throws with the tail of its output when it fails. Resolves with stdout. */
export async function runTool(cmd: string[], what: string, cwd = ROOT): Promise<string> {
  if (!Bun.which(cmd[0]!)) throw new Error(`${cmd[0]} not found: install Debian's ${cmd[0]} package (.ci/run does)`);
  const proc = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`${what} failed (exit ${code}):\n${(err.trim() || out.trim()).split("\n").slice(-30).join("\n")}`);
  return out;
}

/** Builds a Dockerfile (RUN steps included) with buildah and optionally exports it as an OCI archive. */
export async function buildImage(opts: BuildImageOptions): Promise<void> {
  const started = Date.now();
  const args = ["bud", "--isolation", "chroot", "--pull=false", "--layers=false", "-f", opts.dockerfile, "-t", opts.tag];
  if (opts.platform) args.push("--platform", opts.platform);
  for (const [name, value] of Object.entries(opts.buildArgs ?? {})) args.push("--build-arg", `${name}=${value}`);
  args.push(opts.context);
  await runTool(buildah(args), `buildah bud ${opts.dockerfile}`);
  if (opts.archive) await exportImage(opts.tag, opts.archive);
  opts.log?.(`[images] built ${opts.tag} from ${opts.dockerfile} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
}

/** Writes a built image as an OCI archive whose index names it `tag`. */
export async function exportImage(tag: string, archive: string): Promise<void> {
  await mkdir(dirname(archive), { recursive: true });
  await rm(archive, { force: true });
  await runTool(buildah(["push", tag, `oci-archive:${archive}:${tag}`]), `buildah push ${tag}`);
}

export async function imageExists(tag: string): Promise<boolean> {
  const proc = Bun.spawn(buildah(["inspect", "--type", "image", tag]), { stdout: "ignore", stderr: "ignore" });
  return (await proc.exited) === 0;
}

/** Removes images by tag or id; those already gone are not an error. */
export async function removeImages(refs: string[]): Promise<void> {
  for (const ref of refs) {
    if (await imageExists(ref)) await runTool(buildah(["rmi", ref]), `buildah rmi ${ref}`);
  }
}

/** Product images of one name kept in the shared storage: the newest few, for runs going on beside this one. */
const KEEP_IMAGES_PER_NAME = 3;

/**
 * Removes from the shared storage every image of `repository` (e.g. localhost/arcagent) but the
 * newest KEEP_IMAGES_PER_NAME, and every untagged image. Each commit builds its own tag, and the
 * vfs driver keeps a full copy of each (about 380 MB a commit for the two product images), so the
 * storage otherwise grows with every build. Runs read their images from the OCI archives they
 * export, so an older tag going away does not break a run that built it.
 */
export async function pruneImages(repository: string, log?: (line: string) => void): Promise<void> {
  const listed = JSON.parse(await runTool(buildah(["images", "--json"]), "buildah images")) as { id: string; names: string[] | null; createdatraw: string }[];
  // createdatraw is RFC 3339 with up to nine fraction digits, trailing zeros dropped (Go's format):
  // compared as instants, not as strings.
  const instant = (raw: string) => {
    const m = /^(.*?)(?:\.(\d+))?Z$/.exec(raw);
    return m ? [Date.parse(`${m[1]}Z`), Number((m[2] ?? "").padEnd(9, "0"))] as const : [Date.parse(raw), 0] as const;
  };
  const ofName = listed.filter((image) => image.names?.some((n) => n.startsWith(`${repository}:`)))
    .sort((a, b) => {
      const [sa, na] = instant(a.createdatraw);
      const [sb, nb] = instant(b.createdatraw);
      return sb - sa || nb - na;
    });
  const untagged = listed.filter((image) => !image.names?.length);
  const doomed = [...ofName.slice(KEEP_IMAGES_PER_NAME), ...untagged];
  let removed = 0;
  for (const image of doomed) {
    // Another run may have removed it, or may be using it as a base: not this run's failure.
    const proc = Bun.spawn(buildah(["rmi", image.id]), { stdout: "ignore", stderr: "pipe" });
    if ((await proc.exited) === 0) removed += 1;
    else log?.(`[images] kept ${image.id}: ${(await new Response(proc.stderr).text()).trim().split("\n").at(-1)}`);
  }
  if (removed) log?.(`[images] removed ${removed} older image(s) of ${repository} and untagged ones from the shared storage`);
}
