// Builds a STAND-IN for gcr.io/distroless/cc-debian12:nonroot on machines that reach no registry
// (this project's CI among them), so Dockerfile.agent and Dockerfile.relay build unchanged with
// `--build-arg BASE_IMAGE=<the stand-in>`. Debian 12 only: it copies this machine's packages.
import { chmod, copyFile, cp, lstat, mkdir, readFile, readlink, rm, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { buildImage, imageExists, runTool } from "./buildah.ts";
import { cacheRoot } from "./cache-root.ts";

/** The packages distroless/cc-debian12 is made of (static + base + cc). */
const PACKAGES = ["libc6", "libgcc-s1", "libstdc++6", "libgomp1", "libssl3", "tzdata", "netbase", "base-files"];

/**
 * STAND-IN for gcr.io/distroless/cc-debian12:nonroot, which cannot be pulled here (no registry is
 * reachable). Assembled from this machine's own Debian 12 packages with the same contents as the
 * real one: glibc and the C/C++ runtime, OpenSSL, CA certificates, time zones, /etc/passwd with
 * `nonroot` (65532), a 1777 /tmp, no shell. Built once per machine; returns its name.
 */
export async function buildDistrolessStandin(log?: (line: string) => void): Promise<string> {
  // Named after what goes in: the packages' installed versions and the CA bundle. A security
  // update of libc or new CA certificates makes a new image, never a stale cached one.
  const versions = await runTool(["dpkg-query", "-W", ...PACKAGES], "dpkg-query -W");
  const key = new Bun.CryptoHasher("sha256").update(versions).update(await readFile("/etc/ssl/certs/ca-certificates.crt"))
    .update(await readFile(join(import.meta.dir, "distroless-standin.Dockerfile"))).digest("hex").slice(0, 12);
  const tag = `localhost/distroless-cc-standin:debian12-nonroot-${key}`;
  if (await imageExists(tag)) return tag;
  const context = join(cacheRoot(), "images", "distroless-standin");
  await rm(context, { recursive: true, force: true });
  const rootfs = join(context, "rootfs");
  await mkdir(rootfs, { recursive: true });
  // Their files as installed here.
  for (const pkg of PACKAGES) {
    const files = (await runTool(["dpkg", "-L", pkg], `dpkg -L ${pkg}`)).split("\n").filter((f) => f && !f.startsWith("/usr/share/doc") && !f.startsWith("/usr/share/man"));
    for (const file of files) await copyEntry(file, join(rootfs, file));
  }
  // ca-certificates generates its bundle at install time; the bundle is what distroless ships.
  await mkdir(join(rootfs, "etc/ssl/certs"), { recursive: true });
  await cp("/etc/ssl/certs/ca-certificates.crt", join(rootfs, "etc/ssl/certs/ca-certificates.crt"));
  await writeFile(join(rootfs, "etc/passwd"), "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n");
  await writeFile(join(rootfs, "etc/group"), "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n");
  await writeFile(join(rootfs, "etc/nsswitch.conf"), "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n");
  await mkdir(join(rootfs, "tmp"), { recursive: true });
  await chmod(join(rootfs, "tmp"), 0o1777);
  await mkdir(join(context, "home/nonroot"), { recursive: true });
  await writeFile(join(context, "Dockerfile"), await readFile(join(import.meta.dir, "distroless-standin.Dockerfile"), "utf8"));
  await buildImage({ dockerfile: join(context, "Dockerfile"), context, tag, log });
  return tag;
}

/** Copies one file, directory entry or symlink (kept as a link, target unchanged). */
async function copyEntry(source: string, target: string): Promise<void> {
  const info = await lstat(source).catch(() => undefined);
  if (!info) return; // listed by dpkg but removed since (e.g. by a diversion)
  if (info.isDirectory()) {
    await mkdir(target, { recursive: true });
    return;
  }
  await mkdir(dirname(target), { recursive: true });
  await rm(target, { force: true });
  if (!info.isSymbolicLink()) {
    await copyFile(source, target);
    return;
  }
  const linkTarget = await readlink(source);
  await symlink(linkTarget, target);
  // A merged-/usr link (/lib -> usr/lib): its directory must exist before files are copied through it.
  if (!linkTarget.startsWith("/") && (await stat(source).catch(() => undefined))?.isDirectory()) {
    await mkdir(join(dirname(target), linkTarget), { recursive: true });
  }
}
