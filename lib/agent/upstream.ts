// The API server the agent talks to, and the agent's own credentials for it (kubeconfig or in-cluster).
import https from "node:https";
import http from "node:http";
import { KubeConfig } from "@kubernetes/client-node";

export interface Upstream {
  /** e.g. https://10.0.0.1:443 */
  server: URL;
  /** The agent's own credential headers plus TLS options, refreshed so rotated tokens are picked up. */
  requestOptions(): Promise<https.RequestOptions>;
  /** Keep-alive agent for ordinary requests; upgrades use their own connection. */
  agent: http.Agent;
}

/** Service-account tokens rotate; re-read credentials at most this often. */
const CREDENTIAL_REFRESH_MS = 60_000;

export function loadUpstream(opts: { kubeconfig?: string; context?: string }): Upstream {
  const kc = new KubeConfig();
  if (opts.kubeconfig) {
    kc.loadFromFile(opts.kubeconfig);
    if (opts.context) kc.setCurrentContext(opts.context);
  } else {
    kc.loadFromCluster();
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new TypeError(
      opts.kubeconfig ? `kubeconfig ${opts.kubeconfig} has no current cluster${opts.context ? ` for context ${opts.context}` : ""}` : "no in-cluster service account found",
    );
  }
  const server = new URL(cluster.server);
  const isHttps = server.protocol === "https:";
  const agent = isHttps ? new https.Agent({ keepAlive: true, maxSockets: 256 }) : new http.Agent({ keepAlive: true, maxSockets: 256 });
  let cached: { at: number; options: https.RequestOptions } | undefined;

  return {
    server,
    agent,
    async requestOptions() {
      if (!cached || Date.now() - cached.at > CREDENTIAL_REFRESH_MS) {
        const options: https.RequestOptions = { headers: {} };
        await kc.applyToHTTPSOptions(options);
        cached = { at: Date.now(), options };
      }
      return { ...cached.options, headers: { ...(cached.options.headers as Record<string, string>) } };
    },
  };
}
