// The test cluster's own images, built with buildah (scripts/buildah.ts) from the Dockerfiles in
// ./images: the pod sandbox (pause) and the busybox workload image. No registry is reachable here.
import { existsSync } from "node:fs";
import { cp, mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { buildImage, exportImage, imageExists } from "../../scripts/buildah.ts";
import { cacheRoot } from "../../scripts/cache-root.ts";

const IMAGES_DIR = join(import.meta.dir, "images");

/** The pod sandbox image (the pause program built from test/cluster/go/cmd/pause). */
export async function buildPauseImage(pauseBinary: string, log?: (line: string) => void): Promise<string> {
  const key = new Bun.CryptoHasher("sha256").update(await readFile(pauseBinary)).digest("hex").slice(0, 12);
  const tag = `localhost/cluster-connect-test/pause:${key}`;
  if (await imageExists(tag)) return tag;
  const context = join(cacheRoot(), "images", "pause");
  await rm(context, { recursive: true, force: true });
  await mkdir(context, { recursive: true });
  await cp(pauseBinary, join(context, "pause"));
  await buildImage({ dockerfile: join(IMAGES_DIR, "pause.Dockerfile"), context, tag, log });
  return tag;
}

/**
 * The workload image of the tests: Debian's static busybox (sh, cat, sleep, tar, httpd, ...), so
 * `exec`, `attach`, `cp` and `port-forward` run against real containers.
 */
export async function buildTestImage(log?: (line: string) => void): Promise<string> {
  const busybox = "/bin/busybox";
  if (!existsSync(busybox)) throw new Error("/bin/busybox not found: install Debian's busybox-static package (.ci/run does)");
  const key = new Bun.CryptoHasher("sha256").update(await readFile(busybox))
    .update(await readFile(join(IMAGES_DIR, "test-image.Dockerfile"))).digest("hex").slice(0, 12);
  const tag = `localhost/cluster-connect-test/busybox:${key}`;
  if (await imageExists(tag)) return tag;
  const context = join(cacheRoot(), "images", "busybox");
  await rm(context, { recursive: true, force: true });
  await mkdir(context, { recursive: true });
  await cp(busybox, join(context, "busybox"));
  await buildImage({ dockerfile: join(IMAGES_DIR, "test-image.Dockerfile"), context, tag, log });
  return tag;
}

/** Exports `tag` into `<dir>/<file>` (an OCI archive) unless it is there already; returns the path. */
export async function archiveFor(tag: string, dir: string): Promise<string> {
  const path = join(dir, `${tag.replace(/[^a-zA-Z0-9.-]+/g, "_")}.tar`);
  if (!existsSync(path)) await exportImage(tag, path);
  return path;
}
