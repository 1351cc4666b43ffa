// One arcproxy session: check the cluster, start the listener, write the kubeconfig; close() undoes all three.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildKubeconfig, writeKubeconfig } from "../kube/index.ts";
import type { Logger } from "../observe/index.ts";
import { startLocalProxy } from "./local-proxy.ts";
import { createRelayConnection, type RelayTls } from "../client/index.ts";
import { fetchClusterInfo } from "./relay-client.ts";

export interface ProxySessionOptions {
  relayUrl: string;
  cluster: string;
  getToken: () => Promise<string>;
  /** Token mode: the caller's own Kubernetes bearer token, forwarded without impersonation. */
  kubeToken?: string;
  /** 0 picks a free port. */
  port: number;
  /** Where to write the kubeconfig; default a fresh private temp directory. */
  kubeconfigOut?: string;
  tls: RelayTls;
  /** How long a request is sent again while the relay restarts (ms); default 30,000 (`--relay-retry`). */
  relayRetryMs?: number;
  logger: Logger;
}

export interface ProxySession {
  kubeconfigPath: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Starts an arcproxy session: asks the relay for the cluster (15 s bound), starts the loopback
 * HTTPS listener on `port`, writes a kubeconfig (mode 0600) that points at it with a per-session
 * CA and secret. Resolves with the kubeconfig's path and the port; `close()` stops the listener
 * (open watches and exec sessions get CLOSE_GRACE_MS, 2 s) and removes a temporary kubeconfig.
 *
 * Throws ConfigError for a bad relay URL; the relay's refusal as an ArcError with what to do next
 * (401 token, 403 grant, 404 cluster); RelayUnreachable/UpstreamTimeout when the relay cannot be
 * asked; an Error naming the port when it is taken. A cluster whose agent is offline is not an
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
    info = await fetchClusterInfo(relay, opts.cluster, await opts.getToken());
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
  let tempDir: string | undefined;
  try {
    if (!opts.kubeconfigOut) tempDir = await mkdtemp(join(tmpdir(), "arcproxy-"));
    const kubeconfigPath = opts.kubeconfigOut ?? join(tempDir!, "kubeconfig");
    const yaml = buildKubeconfig({
      clusterName: opts.cluster, server: `https://127.0.0.1:${proxy.port}`, caPem: proxy.caPem, token: proxy.sessionToken,
    });
    await writeKubeconfig(kubeconfigPath, yaml);
    let closing: Promise<void> | undefined;
    return {
      kubeconfigPath,
      port: proxy.port,
      close() {
        return (closing ??= closeSession(closeProxy, tempDir));
      },
    };
  } catch (error) {
    await closeSession(closeProxy, tempDir);
    throw error;
  }
}

// A kubeconfig the user asked for (--kubeconfig-out) stays; the temp one goes with its directory.
async function closeSession(closeProxy: () => Promise<void>, tempDir: string | undefined): Promise<void> {
  await closeProxy();
  if (tempDir) await rm(tempDir, { recursive: true, force: true });
}
