// Finds a kubectl new enough for the tests (>= 1.33): the one on PATH, or one
// of the versioned kubectl.1.NN binaries that the Google Cloud SDK ships; on a
// machine with none, ensureKubectl builds one with the test API server.
import { existsSync, readdirSync, realpathSync } from "node:fs";
import { dirname, join } from "node:path";

const MIN_MINOR = 33; // kubectl 1.33+

let cached: string | undefined;

/** Path of the newest kubectl >= 1.33 on this machine; throws if there is none. */
export function findKubectl(): string {
  if (cached) return cached;
  const seen = new Map<string, number | undefined>();
  const consider = (path: string) => {
    if (seen.has(path)) return;
    seen.set(path, kubectlMinor(path));
  };
  const best = (): string | undefined => {
    let pick: [string, number] | undefined;
    for (const [path, minor] of seen) {
      if (minor !== undefined && minor >= MIN_MINOR && (!pick || minor > pick[1])) pick = [path, minor];
    }
    return pick?.[0];
  };

  if (process.env.KUBECTL) consider(process.env.KUBECTL);
  const onPath = Bun.which("kubectl");
  if (onPath) consider(onPath);
  for (const dir of sdkBinDirs(false)) for (const file of versionedKubectls(dir)) consider(file);
  if (!best()) for (const dir of sdkBinDirs(true)) for (const file of versionedKubectls(dir)) consider(file);

  const found = best();
  if (!found) {
    const tried = [...seen].map(([p, m]) => `  ${p}: ${m === undefined ? "unusable" : `1.${m}`}`).join("\n");
    throw new Error(
      `no kubectl >= 1.${MIN_MINOR} found. Install one on PATH (or set KUBECTL=/path/to/kubectl), ` +
        `or \`gcloud components install kubectl\`. Candidates checked:\n${tried || "  (none)"}`,
    );
  }
  cached = found;
  return found;
}

/** Google Cloud SDK bin folders; `gcloud info` (slow, ~2 s) only when askGcloud. */
function sdkBinDirs(askGcloud: boolean): string[] {
  const dirs: string[] = [];
  const gcloud = Bun.which("gcloud");
  if (askGcloud) {
    if (!gcloud) return [];
    const res = Bun.spawnSync([gcloud, "info", "--format=value(installation.sdk_root)"], { stderr: "ignore" });
    const root = res.stdout.toString().trim();
    if (res.exitCode === 0 && root) dirs.push(join(root, "bin"));
    return dirs;
  }
  if (gcloud) {
    dirs.push(dirname(gcloud));
    try {
      dirs.push(dirname(realpathSync(gcloud)));
    } catch {
      // dangling symlink: ignore
    }
  }
  dirs.push("/usr/lib/google-cloud-sdk/bin", "/usr/share/google-cloud-sdk/bin", "/opt/google-cloud-sdk/bin");
  dirs.push(join(process.env.HOME ?? "/root", "google-cloud-sdk", "bin"), "/snap/google-cloud-cli/current/bin");
  return [...new Set(dirs)].filter((d) => existsSync(d));
}

/** kubectl and kubectl.1.NN (NN >= 33) files in dir, by name only. */
function versionedKubectls(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => {
      if (n === "kubectl") return true;
      const m = /^kubectl\.1\.(\d+)$/.exec(n);
      return !!m && Number(m[1]) >= MIN_MINOR;
    })
    .map((n) => join(dir, n));
}

/** Minor version reported by `kubectl version --client -o json`, if it runs. */
function kubectlMinor(path: string): number | undefined {
  try {
    const res = Bun.spawnSync([path, "version", "--client", "-o", "json"], { stderr: "ignore" });
    if (res.exitCode !== 0) return undefined;
    const info = JSON.parse(res.stdout.toString()) as { clientVersion?: { gitVersion?: string } };
    const m = /^v1\.(\d+)\./.exec(info.clientVersion?.gitVersion ?? "");
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The machine's kubectl >= 1.33 if it has one, else the kubectl built from the same Go module as
 * the test API server (a newcomer's machine may have only Node.js and npm).
 */
export async function ensureKubectl(log: (line: string) => void = () => {}): Promise<string> {
  try {
    return findKubectl();
  } catch (error) {
    log(`[kubectl] ${(error as Error).message.split("\n")[0]}; building kubectl 1.34 from Go modules instead`);
    const { buildKubeBinaries } = await import("./build.ts");
    cached = (await buildKubeBinaries()).kubectl;
    return cached;
  }
}

if (import.meta.main) console.log(await ensureKubectl(console.error));
