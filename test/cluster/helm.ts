// Runs the real helm (built from its Go module, see build.ts) against a test cluster, with its
// cache, config and data under the cluster's folder instead of the user's home.
import { join } from "node:path";
import { buildHelm } from "./build.ts";
import type { KubeCluster } from "./cluster.ts";

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `helm ARGS` with the cluster's admin kubeconfig (when given); never throws for a non-zero exit. */
export async function runHelm(args: string[], opts: { cluster?: KubeCluster; dir: string; log?: (line: string) => void }): Promise<HelmResult> {
  const helm = await buildHelm(opts.log);
  const home = join(opts.dir, "helm");
  const proc = Bun.spawn([helm, ...args], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      // client-go's discovery cache goes to $HOME/.kube: keep it in the folder too.
      HOME: home,
      HELM_CACHE_HOME: join(home, "cache"),
      HELM_CONFIG_HOME: join(home, "config"),
      HELM_DATA_HOME: join(home, "data"),
      ...(opts.cluster ? { KUBECONFIG: opts.cluster.adminKubeconfig } : {}),
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** runHelm that throws with helm's own message on failure; resolves with stdout. */
export async function helm(args: string[], opts: { cluster?: KubeCluster; dir: string; log?: (line: string) => void }): Promise<string> {
  const r = await runHelm(args, opts);
  if (r.code !== 0) throw new Error(`helm ${args.join(" ")} failed (exit ${r.code}):\n${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}
