// The API server the agent talks to, and the agent's own credentials for it (kubeconfig or in-cluster).
import https from "node:https";
import http from "node:http";
import { KubeConfig } from "@kubernetes/client-node";
import { proxyAgentFor } from "../client/index.ts";
import { ConfigError } from "../errors/index.ts";
import { timeouts } from "../tunnel/index.ts";
import { silentLogger, type Logger } from "../observe/index.ts";
import { ApiServerSessions } from "./api-server-sessions.ts";

export interface Upstream {
  /** e.g. https://10.0.0.1:443 */
  server: URL;
  /** The agent's own credential headers plus TLS options, refreshed so rotated tokens are picked up. */
  requestOptions(): Promise<https.RequestOptions>;
  /** Keep-alive agent for ordinary requests (through the egress proxy when one applies). */
  agent: http.Agent;
  /**
   * A connection of its own for one request (an upgrade; a token-mode request, which must never
   * share a pooled connection that may carry the agent's client certificate): a one-shot proxy
   * agent when a proxy applies, else `false` (node:http's "no agent").
   */
  dedicatedAgent(): http.Agent | false;
  /**
   * HTTP/2 sessions for ordinary requests (not upgrades, not token mode), when the API server is
   * HTTPS and reached without an egress proxy; undefined otherwise (everything goes by `agent`).
   */
  http2?: ApiServerSessions;
}

/** Service-account tokens rotate; re-read credentials at most this often. */
const CREDENTIAL_REFRESH_MS = 60_000;

/**
 * The API server from `kubeconfig` (its `context`, else the current one), or the in-cluster service
 * account when no kubeconfig is given. `http2` (default true): ordinary requests share HTTP/2
 * sessions when the API server is HTTPS and no egress proxy applies. Throws ConfigError when the
 * kubeconfig names no cluster.
 */
export function loadUpstream(opts: { kubeconfig?: string; context?: string; http2?: boolean; logger?: Logger }): Upstream {
  const kc = new KubeConfig();
  if (opts.kubeconfig) {
    kc.loadFromFile(opts.kubeconfig);
    if (opts.context) kc.setCurrentContext(opts.context);
  } else {
    kc.loadFromCluster();
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    throw new ConfigError(
      opts.kubeconfig ? `kubeconfig ${opts.kubeconfig} has no current cluster${opts.context ? ` for context ${opts.context}` : ""}` : "no in-cluster service account found",
    );
  }
  const server = new URL(cluster.server);
  const isHttps = server.protocol === "https:";
  // HTTPS_PROXY/NO_PROXY decide for the API server as for the relay (as client-go does); an
  // in-cluster API server belongs in NO_PROXY.
  // One connection per request in flight, as many as the tunnel carries at once: a watch, `logs -f`
  // or exec holds its connection for as long as it runs, so a smaller pool queued every request
  // beyond it (a GET too) until one of them ended, which for watches may be never.
  const pool = { keepAlive: true, maxSockets: timeouts.MAX_CONCURRENT_STREAMS };
  const agent = proxyAgentFor(server, { keepAlive: true }) ?? (isHttps ? new https.Agent(pool) : new http.Agent(pool));
  let cached: { at: number; options: https.RequestOptions } | undefined;

  const upstream: Upstream = {
    server,
    agent,
    dedicatedAgent: () => proxyAgentFor(server) ?? false,
    async requestOptions() {
      if (!cached || performance.now() - cached.at > CREDENTIAL_REFRESH_MS) {
        const options: https.RequestOptions = { headers: {} };
        await kc.applyToHTTPSOptions(options);
        // PEM as strings, once: the connection pool names each request's pool from these, and a
        // Buffer is decoded to a string again for every request (1.6% of the agent's CPU).
        for (const field of ["ca", "cert", "key"] as const) {
          const value = options[field];
          if (Buffer.isBuffer(value)) options[field] = value.toString("utf8");
        }
        cached = { at: performance.now(), options };
      }
      return { ...cached.options, headers: { ...(cached.options.headers as Record<string, string>) } };
    },
  };
  // Through an egress proxy the agent keeps HTTP/1.1: the proxy's CONNECT tunnel is per connection.
  if (isHttps && (opts.http2 ?? true) && !proxyAgentFor(server)) {
    upstream.http2 = new ApiServerSessions({ server, logger: opts.logger ?? silentLogger });
  }
  return upstream;
}
