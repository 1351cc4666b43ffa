// One arcproxy session: check the cluster, start the listener, write the kubeconfig; close() undoes all three.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildKubeconfig, writeKubeconfig } from "../kube/index.ts";
import type { Logger } from "../observe/index.ts";
import { startLocalProxy } from "./local-proxy.ts";
import { fetchClusterInfo } from "./relay-client.ts";
import type { RelayTls } from "./relay-endpoint.ts";

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

/** Starts a session; fails early, with the relay's own message, if the cluster is not reachable for this user. */
export async function startProxySession(opts: ProxySessionOptions): Promise<ProxySession> {
  const logger = opts.logger.child({ cluster: opts.cluster });
  if (opts.tls.insecureSkipVerify) {
    logger.warn("TLS verification of the relay is OFF (--insecure-skip-tls-verify): anyone on the path can read your token; use this for tests only");
  }
  const info = await fetchClusterInfo({ relayUrl: opts.relayUrl, cluster: opts.cluster, token: await opts.getToken(), tls: opts.tls });
  if (info.connected) {
    logger.info("cluster found", { kubernetesVersion: info.kubernetesVersion, agentVersion: info.agentVersion });
  } else {
    logger.warn("cluster agent is not connected to the relay; requests fail until it connects", { lastSeen: info.lastSeen });
  }

  const proxy = await startLocalProxy({
    relayUrl: opts.relayUrl, cluster: opts.cluster, getToken: opts.getToken, kubeToken: opts.kubeToken, port: opts.port, tls: opts.tls,
    relayRetryMs: opts.relayRetryMs, logger: opts.logger,
  });
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
        return (closing ??= closeSession(proxy.close, tempDir));
      },
    };
  } catch (error) {
    await closeSession(proxy.close, tempDir);
    throw error;
  }
}

// A kubeconfig the user asked for (--kubeconfig-out) stays; the temp one goes with its directory.
async function closeSession(closeProxy: () => Promise<void>, tempDir: string | undefined): Promise<void> {
  await closeProxy();
  if (tempDir) await rm(tempDir, { recursive: true, force: true });
}
