// The Debian packages the test cluster needs (scripts/debian-packages.txt): which are missing,
// and installing them when we may.
import { readFileSync } from "node:fs";
import { join } from "node:path";

const LIST = join(import.meta.dir, "debian-packages.txt");

/** Package names from debian-packages.txt, without comments. */
export function requiredPackages(): string[] {
  return readFileSync(LIST, "utf8").split("\n").map((l) => l.replace(/#.*/, "").trim()).filter(Boolean);
}

/** Those not installed (dpkg says so); every one on a machine without dpkg. */
export function missingPackages(): string[] {
  if (!Bun.which("dpkg-query")) return requiredPackages();
  return requiredPackages().filter((name) => {
    const r = Bun.spawnSync(["dpkg-query", "-W", "-f=${Status}", name], { stderr: "ignore" });
    return !r.stdout.toString().includes("install ok installed");
  });
}

/**
 * Installs what is missing with apt-get when running as root on Debian; otherwise throws with the
 * command to run. The node needs root anyway (containerd, cgroups, mounts).
 */
export async function ensureSystemPackages(log: (line: string) => void): Promise<void> {
  const missing = missingPackages();
  if (missing.length === 0) return;
  const command = `apt-get install -y --no-install-recommends ${missing.join(" ")}`;
  if (process.getuid?.() !== 0 || !Bun.which("apt-get")) {
    throw new Error(`this needs Debian 12 packages that are missing: run \`sudo ${command}\` (and run as root: the test cluster's node needs it)`);
  }
  log(`installing Debian packages: ${missing.join(" ")}`);
  for (const args of [["apt-get", "update", "-qq"], command.split(" ")]) {
    const proc = Bun.spawn(args, { env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) throw new Error(`${args.join(" ")} failed (exit ${code}):\n${(err || out).trim().split("\n").slice(-15).join("\n")}`);
  }
}
