// Builds a kubeconfig (one cluster, one user, one context) and writes it privately and atomically.
import { randomBytes } from "node:crypto";
import { chmod, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { stringify } from "yaml";

/** An exec credential plugin entry (`users[].user.exec`). */
export interface KubeconfigExec {
  command: string;
  args: string[];
  env?: Record<string, string>;
  apiVersion: string;
}

export interface KubeconfigOptions {
  clusterName: string;
  server: string;
  /** PEM of the CA that signs the server's cert; omitted means the system roots. */
  caPem?: string;
  token?: string;
  exec?: KubeconfigExec;
  namespace?: string;
}

/** YAML text of a kubeconfig whose cluster, user and current context are all named `clusterName`. */
export function buildKubeconfig(opts: KubeconfigOptions): string {
  if (!opts.clusterName) throw new TypeError("buildKubeconfig: clusterName is empty");
  if (!opts.server) throw new TypeError("buildKubeconfig: server is empty");
  if (opts.token && opts.exec) throw new TypeError("buildKubeconfig: pass token or exec, not both");
  const name = opts.clusterName;
  const cluster: Record<string, unknown> = { server: opts.server };
  if (opts.caPem) cluster["certificate-authority-data"] = Buffer.from(opts.caPem).toString("base64");
  const context: Record<string, unknown> = { cluster: name, user: name };
  if (opts.namespace) context.namespace = opts.namespace;
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    preferences: {},
    clusters: [{ name, cluster }],
    users: [{ name, user: buildUser(opts) }],
    contexts: [{ name, context }],
    "current-context": name,
  });
}

function buildUser(opts: KubeconfigOptions): Record<string, unknown> {
  if (opts.token) return { token: opts.token };
  if (!opts.exec) return {};
  const { command, args, env, apiVersion } = opts.exec;
  const exec: Record<string, unknown> = { apiVersion, command, args, interactiveMode: "Never" };
  if (env) exec.env = Object.entries(env).map(([name, value]) => ({ name, value }));
  return { exec };
}

/**
 * Writes `yamlText` to `path` with mode 0600: a temp file beside it, then rename, so a reader
 * never sees half a file. The chmod after rename also tightens a file that existed before.
 */
export async function writeKubeconfig(path: string, yamlText: string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    await writeFile(temp, yamlText, { mode: 0o600, flag: "wx" });
    await chmod(temp, 0o600);
    await rename(temp, path);
    await chmod(path, 0o600);
  } catch (error) {
    await rm(temp, { force: true }).catch(() => {});
    throw new Error(`cannot write kubeconfig ${path}: ${(error as Error).message}`, { cause: error });
  }
}
