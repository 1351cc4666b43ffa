// One arcproxy session: check the cluster, start the listener, write the kubeconfig; close() undoes all three.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildKubeconfig, mergeKubeconfigContext, validateClusterName, writeKubeconfig } from "../kube/index.ts";
import type { Logger } from "../observe/index.ts";
import { startLocalProxy } from "./local-proxy.ts";
import { createRelayConnection, type RelayTls } from "../client/index.ts";
import { fetchClusterInfo } from "./relay-client.ts";
import { checkArcproxyVersion } from "./version-gate.ts";

export interface ProxySessionOptions {
  relayUrl: string;
  cluster: string;
  getToken: () => Promise<string>;
  /** Token mode: the caller's own Kubernetes bearer token, forwarded without impersonation. */
  kubeToken?: string;
  /** 0 picks a free port. */
  port: number;
  /** Where the kubeconfig goes; default a kubeconfig of its own in a private temp folder. */
  kubeconfig?: KubeconfigTarget;
  tls: RelayTls;
  /** How long a request is sent again while the relay restarts (ms); default 30,000 (`--relay-retry`). */
  relayRetryMs?: number;
  /** This arcproxy's version, checked against the relay's minimum at start; default "dev" (never refused). */
  version?: string;
  logger: Logger;
}

/**
 * `merge`: a context (named `context`, default the cluster's name) added to the kubeconfig at
 * `path` and made current, removed on close (as `az connectedk8s proxy` does; other entries are
 * never touched). `temp`: a kubeconfig of its own, for a child command. `none`: no file; the
 * caller prints `ProxySession.kubeconfigYaml`.
 */
export type KubeconfigTarget = { kind: "merge"; path: string; context?: string } | { kind: "temp" } | { kind: "none" };

export interface ProxySession {
  /** The file holding the context (none for `kind: "none"`). */
  kubeconfigPath?: string;
  /** The context that reaches the cluster. */
  context: string;
  /** A kubeconfig of its own for the session (what `temp` writes). */
  kubeconfigYaml: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Starts an arcproxy session: asks the relay for the cluster (15 s bound), starts the loopback
 * HTTPS listener on `port`, and puts a context that points at it, with a per-session CA and
 * secret, where `kubeconfig` says (mode 0600). Resolves with the context, the file and the port;
 * `close()` stops the listener (open watches and exec sessions get CLOSE_GRACE_MS, 2 s) and
 * removes the context (or the temporary kubeconfig) again.
 *
 * Throws ConfigError for a bad relay URL; the relay's refusal as an ArcError with what to do next
 * (401 token, 403 grant, 404 cluster); RelayUnreachable/UpstreamTimeout when the relay cannot be
 * asked; ArcproxyTooOld naming the version and `arcproxy update` when the relay needs a newer
 * arcproxy; an Error naming the port when it is taken; ConfigError when the kubeconfig cannot be
 * merged (invalid YAML, locked, a context of that name arcproxy did not write), leaving it as it
 * was. A cluster whose agent is offline is not an
 * error: it is logged, and requests wait for the agent at the relay.
 */
export async function startProxySession(opts: ProxySessionOptions): Promise<ProxySession> {
  const logger = opts.logger.child({ cluster: opts.cluster });
  const relay = createRelayConnection(opts.relayUrl, opts.tls);
  if (opts.tls.insecureSkipVerify) {
    logger.warn("TLS verification of the relay is OFF (--insecure-skip-tls-verify): anyone on the path can read your token; use this for tests only");
  }
  if (relay.proxy) logger.info("reaching the relay through a proxy", { proxy: relay.proxy });
  let info;
  try {
    // No token is a local problem, told before the network is asked; then too old a client, as
    // its other failures could be a symptom of it.
    const token = await opts.getToken();
    await checkArcproxyVersion(relay, opts.version ?? "dev");
    info = await fetchClusterInfo(relay, opts.cluster, token);
  } catch (error) {
    relay.close();
    throw error;
  }
  if (info.connected) {
    logger.info("cluster found", { kubernetesVersion: info.kubernetesVersion, agentVersion: info.agentVersion });
  } else {
    logger.warn("cluster agent is not connected to the relay; requests fail until it connects", { lastSeen: info.lastSeen });
  }

  const proxy = await startLocalProxy({
    relay, cluster: opts.cluster, getToken: opts.getToken, kubeToken: opts.kubeToken, port: opts.port,
    relayRetryMs: opts.relayRetryMs, logger: opts.logger,
  }).catch((error: unknown) => {
    relay.close();
    throw error;
  });
  const closeProxy = () => proxy.close().finally(() => relay.close());
  const target = opts.kubeconfig ?? { kind: "temp" };
  const context = target.kind === "merge" && target.context ? validateClusterName(target.context) : opts.cluster;
  const server = `https://127.0.0.1:${proxy.port}`;
  const kubeconfigYaml = buildKubeconfig({ clusterName: context, server, caPem: proxy.caPem, token: proxy.sessionToken });
  const undo: (() => Promise<void>)[] = [closeProxy];
  const closeAll = async () => {
    for (const step of undo.reverse()) await step().catch((error: unknown) => logger.warn("cleaning up the session failed", { error }));
  };
  try {
    let kubeconfigPath: string | undefined;
    if (target.kind === "merge") {
      const merged = await mergeKubeconfigContext(target.path, { name: context, server, caPem: proxy.caPem, token: proxy.sessionToken });
      undo.push(() => merged.remove());
      kubeconfigPath = merged.path;
    } else if (target.kind === "temp") {
      const tempDir = await mkdtemp(join(tmpdir(), "arcproxy-"));
      undo.push(() => rm(tempDir, { recursive: true, force: true }));
      kubeconfigPath = join(tempDir, "kubeconfig");
      await writeKubeconfig(kubeconfigPath, kubeconfigYaml);
    }
    let closing: Promise<void> | undefined;
    return {
      ...(kubeconfigPath ? { kubeconfigPath } : {}),
      context,
      kubeconfigYaml,
      port: proxy.port,
      close() {
        return (closing ??= closeAll());
      },
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}
