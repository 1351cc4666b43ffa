// Where and how to reach the relay: URL checks, TLS trust, and the keep-alive agent for requests.
import { isLoopbackHost } from "../kube/index.ts";
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { ConfigError } from "../errors/index.ts";

/** How the relay's certificate is checked. */
export interface RelayTls {
  /** Extra CA (PEM) trusted besides the system roots, e.g. a relay's self-signed cert. */
  ca?: string;
  /** Accept any certificate. For tests only: the caller warns the user loudly. */
  insecureSkipVerify?: boolean;
}

export interface RelayEndpoint {
  /** The relay URL as given, without a trailing slash. */
  url: string;
  secure: boolean;
  hostname: string;
  port: number;
  /** Path prefix of the relay URL (empty, or e.g. "/relay"), prepended to every request path. */
  basePath: string;
  /** TLS options for direct socket dials (upgrades); empty for http://. */
  tlsOptions: { ca?: string; rejectUnauthorized: boolean; servername?: string };
  /** Keep-alive agent for ordinary requests. */
  agent: http.Agent;
}

/**
 * Validates `relayUrl` and prepares the connection settings. Plain http:// is refused unless
 * the host is loopback, so a token never crosses a network in clear text.
 */
export function createRelayEndpoint(relayUrl: string, tls: RelayTls): RelayEndpoint {
  let url: URL;
  try {
    url = new URL(relayUrl);
  } catch {
    throw new ConfigError(`invalid relay URL ${JSON.stringify(relayUrl)}: expected https://HOST[:PORT]`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new ConfigError(`invalid relay URL ${relayUrl}: the scheme must be https://`);
  }
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  const secure = url.protocol === "https:";
  if (!secure && !isLoopbackHost(hostname)) {
    throw new ConfigError(`refusing plain http:// to ${url.host}: use https:// (http:// is allowed for loopback hosts only)`);
  }
  const port = url.port ? Number(url.port) : secure ? 443 : 80;
  const tlsOptions = secure
    ? {
        ...(tls.ca ? { ca: tls.ca } : {}),
        rejectUnauthorized: !tls.insecureSkipVerify,
        ...(isIP(hostname) ? {} : { servername: hostname }),
      }
    : { rejectUnauthorized: true };
  const agent = secure
    ? new https.Agent({ keepAlive: true, ...tlsOptions })
    : new http.Agent({ keepAlive: true });
  return {
    url: `${url.origin}${url.pathname.replace(/\/+$/, "")}`,
    secure,
    hostname,
    port,
    basePath: url.pathname.replace(/\/+$/, ""),
    tlsOptions,
    agent,
  };
}

/** Path on the relay for a cluster's Kubernetes API; `kubePath` starts with "/" and may carry a query. */
export function buildClusterApiPath(endpoint: RelayEndpoint, cluster: string, kubePath: string): string {
  return `${endpoint.basePath}/v1/clusters/${encodeURIComponent(cluster)}/k8s${kubePath}`;
}

