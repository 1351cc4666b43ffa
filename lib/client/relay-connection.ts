// Everything needed to open connections to one relay: its URL, TLS trust, proxy and pooled agent.
import http from "node:http";
import https from "node:https";
import type { ConnectionOptions } from "node:tls";
import { describeProxy, proxyAgentFor, proxyFor } from "./egress.ts";
import { parseRelayUrl, type RelayUrl } from "./relay-url.ts";
import { relayTlsOptions, type RelayTls } from "./relay-tls.ts";

export interface RelayConnection {
  readonly url: RelayUrl;
  readonly tls: RelayTls;
  /** For node:https, tls.connect and ws (relayTlsOptions). */
  readonly tlsOptions: ConnectionOptions;
  /** The HTTP(S) proxy chosen by the environment, without credentials (for logs); undefined when direct. */
  readonly proxy?: string;
  /** Keep-alive agent for ordinary requests, through the proxy when there is one. */
  readonly agent: http.Agent;
  /**
   * A new agent that pools nothing, for a connection that will be taken over (an Upgrade, the
   * tunnel's WebSocket); undefined when direct (node then opens a fresh socket itself).
   */
  dedicatedAgent(): http.Agent | undefined;
  /** Closes pooled sockets. */
  close(): void;
}

/**
 * Prepares connections to the relay at `relay` (a URL, checked by parseRelayUrl, which throws
 * ConfigError). Nothing is dialled until a request is made.
 */
export function createRelayConnection(relay: string | RelayUrl, tls: RelayTls = {}, flag = "--relay"): RelayConnection {
  const url = typeof relay === "string" ? parseRelayUrl(relay, flag) : relay;
  const tlsOptions = relayTlsOptions(url, tls);
  const proxy = proxyFor(url.base);
  const proxyCa = typeof tls.ca === "string" ? tls.ca : undefined;
  const agent = proxyAgentFor(url.base, { keepAlive: true, ca: proxyCa })
    ?? (url.secure ? new https.Agent({ keepAlive: true, ...tlsOptions }) : new http.Agent({ keepAlive: true }));
  return {
    url,
    tls,
    tlsOptions,
    ...(proxy ? { proxy: describeProxy(proxy) } : {}),
    agent,
    dedicatedAgent: () => proxyAgentFor(url.base, { keepAlive: false, ca: proxyCa }),
    close: () => agent.destroy(),
  };
}
