// The one reader of a relay URL, for arcproxy, arcagent and the admin CLI alike.
import { ConfigError } from "../errors/index.ts";
import { isLoopbackHost } from "../kube/index.ts";

/** A relay's base URL, checked and normalised. */
export interface RelayUrl {
  /**
   * Lower-case scheme and host, default port dropped, no trailing slash, e.g.
   * `https://relay.example.com/cc`. Also the audience agents sign their tokens for, so it must
   * equal the relay's --public-url.
   */
  readonly base: string;
  readonly secure: boolean;
  /** Host name or IP, without IPv6 brackets. */
  readonly hostname: string;
  readonly port: number;
  /** Path prefix ("" or e.g. "/cc"), prepended to every request path. */
  readonly basePath: string;
}

/**
 * Checks and normalises `input`, naming `flag` in errors. Throws ConfigError for anything that is
 * not an http(s) URL; for plain http:// to a host that is not loopback (a token must never cross
 * a network in clear text); and for a query, fragment or user:password (a base URL has none, and
 * credentials in a URL end up in logs).
 */
export function parseRelayUrl(input: string, flag = "--relay"): RelayUrl {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new ConfigError(`${flag} ${JSON.stringify(input)} is not a URL: give the relay's base URL, e.g. https://relay.example.com`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new ConfigError(`${flag} ${input}: the scheme must be https://`);
  }
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  const secure = url.protocol === "https:";
  if (!secure && !isLoopbackHost(hostname)) {
    throw new ConfigError(`${flag} ${input}: refusing plain http:// to ${url.host}; use https:// (http:// is allowed for loopback hosts only)`);
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new ConfigError(`${flag} ${input}: give the relay's base URL without query, fragment or credentials`);
  }
  const basePath = url.pathname.replace(/\/+$/, "");
  return {
    base: `${url.origin}${basePath}`,
    secure,
    hostname,
    port: url.port ? Number(url.port) : secure ? 443 : 80,
    basePath,
  };
}

/**
 * The path of a cluster's Kubernetes API, relative to the relay's base URL (requests put the base
 * path in front); `kubePath` starts with "/" and may carry a query.
 */
export function clusterApiPath(cluster: string, kubePath = ""): string {
  return `/v1/clusters/${encodeURIComponent(cluster)}/k8s${kubePath}`;
}

/** The absolute URL of `path` (relative to the relay's base URL, starting with "/"). */
export function relayHref(relay: RelayUrl, path: string): string {
  return relay.base + path;
}

/** The ws(s):// URL of one of the relay's WebSocket paths. */
export function relayWebSocketUrl(relay: RelayUrl, path: string): string {
  return relay.base.replace(/^http/, "ws") + path;
}
