// arcproxy as a kubectl exec credential plugin: the ExecCredential it prints and the kubeconfig that runs it.
import { isAbsolute, resolve } from "node:path";
import { clusterApiPath, parseRelayUrl } from "../client/index.ts";
import { buildKubeconfig, validateClusterName } from "../kube/index.ts";
import type { TokenCredential } from "./token-source-cache.ts";

/** The exec plugin protocol version kubectl 1.22+ speaks. */
export const EXEC_CREDENTIAL_API_VERSION = "client.authentication.k8s.io/v1";

/**
 * The JSON kubectl reads from the plugin's stdout. With an expiry kubectl reuses the token until
 * then; without one, for the rest of its run.
 */
export function buildExecCredential(credential: TokenCredential): string {
  const status: Record<string, string> = { token: credential.token };
  if (credential.expiresAt) status.expirationTimestamp = formatRfc3339(credential.expiresAt);
  return JSON.stringify({ apiVersion: EXEC_CREDENTIAL_API_VERSION, kind: "ExecCredential", status });
}

/** How to start this very arcproxy again: the command and the arguments before the subcommand. */
export interface SelfCommand {
  command: string;
  args: string[];
}

/**
 * `execPath` is process.execPath; `scriptPath` the entry module's path (import.meta.path). In a
 * `bun build --compile` binary the entry lives in Bun's virtual file system and execPath is
 * arcproxy itself; from source, execPath is the bun binary and the script is its first argument.
 */
export function resolveSelfCommand(execPath: string, scriptPath: string): SelfCommand {
  if (isCompiledEntry(scriptPath)) return { command: execPath, args: [] };
  return { command: execPath, args: [isAbsolute(scriptPath) ? scriptPath : resolve(scriptPath)] };
}

// Bun's embedded files: /$bunfs/root/... on Unix, B:\~BUN\root\... on Windows.
function isCompiledEntry(scriptPath: string): boolean {
  return scriptPath.startsWith("/$bunfs/") || /^[A-Za-z]:[\\/]~BUN[\\/]/.test(scriptPath);
}

export interface CredentialKubeconfigOptions {
  relayUrl: string;
  cluster: string;
  /** PEM to trust for the relay's certificate; omitted means the system roots. */
  caPem?: string;
  self: SelfCommand;
  /** Token flags for the plugin, from buildTokenSourceArgs. */
  tokenArgs: string[];
}

/** A kubeconfig that talks to the relay directly, with `arcproxy credential` supplying the token. */
export function buildCredentialKubeconfig(opts: CredentialKubeconfigOptions): string {
  const cluster = validateClusterName(opts.cluster);
  const relay = parseRelayUrl(opts.relayUrl).base;
  return buildKubeconfig({
    clusterName: cluster,
    server: relay + clusterApiPath(cluster),
    caPem: opts.caPem,
    exec: {
      apiVersion: EXEC_CREDENTIAL_API_VERSION,
      command: opts.self.command,
      args: [...opts.self.args, "credential", "--relay", relay, "--cluster", cluster, ...opts.tokenArgs],
    },
  });
}

// Kubernetes' metav1.Time: RFC 3339 to the second.
function formatRfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}
