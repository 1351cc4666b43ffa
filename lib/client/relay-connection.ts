// Everything needed to open connections to one relay: its URL, TLS trust, proxy and pooled agent.
import http from "node:http";
import https from "node:https";
import type { ConnectionOptions } from "node:tls";
import { describeProxy, proxyAgentFor, proxyFor } from "./egress.ts";
import { parseRelayUrl, type RelayUrl } from "./relay-url.ts";
import { relayTlsOptions, type RelayTls } from "./relay-tls.ts";

/** TCP keepalive on every connection to the relay (ms): a quiet watch must not look idle to a NAT or load balancer. */
export const RELAY_TCP_KEEPALIVE_MS = 30_000;

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
  /**
   * Closes the pool's idle keep-alive sockets (requests in flight keep theirs). An agent calls it
   * once its tunnel is up: its few JSON calls are over, and at 10,000 agents an idle socket each
   * doubled the relay's connections until its keep-alive timeout (65 s) closed them.
   */
  closeIdle(): void;
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
  // keepAliveMsecs: the pool sets TCP keepalive again on every socket it takes back (node's
  // Agent#keepSocketAlive); with the default (1 s) that would undo RELAY_TCP_KEEPALIVE_MS.
  const pooled = { keepAlive: true, keepAliveMsecs: RELAY_TCP_KEEPALIVE_MS };
  const agent = proxyAgentFor(url.base, { ...pooled, ca: proxyCa })
    ?? (url.secure ? new https.Agent({ ...pooled, ...tlsOptions }) : new http.Agent(pooled));
  return {
    url,
    tls,
    tlsOptions,
    ...(proxy ? { proxy: describeProxy(proxy) } : {}),
    agent,
    dedicatedAgent: () => proxyAgentFor(url.base, { keepAlive: false, ca: proxyCa }),
    closeIdle() {
      // http.Agent#freeSockets (Node's documented pool of idle sockets, by host); Bun keeps it too.
      for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
    },
    close: () => agent.destroy(),
  };
}
