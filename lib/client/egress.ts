// How a process leaves its network: directly, or through the HTTP(S) proxy that HTTPS_PROXY,
// HTTP_PROXY and NO_PROXY name (arcproxy, the admin CLI and the agent alike).
import type { Agent } from "node:http";
import { HttpsProxyAgent } from "https-proxy-agent";
import { getProxyForUrl } from "proxy-from-env";

/**
 * The proxy URL for `url` by the standard environment variables, via proxy-from-env (the resolver
 * axios uses; NO_PROXY's host, domain-suffix, port and `*` rules included), or undefined for a
 * direct connection. Credentials in the proxy URL are sent as Proxy-Authorization. A plain
 * http:// (or ws://) target is never proxied: its bearer token would cross the proxy in clear
 * (plain http is allowed to a loopback relay only, which needs no proxy).
 */
export function proxyFor(url: string | URL): string | undefined {
  const protocol = new URL(url).protocol;
  if (protocol === "http:" || protocol === "ws:") return undefined;
  return getProxyForUrl(url) || undefined;
}

/**
 * An agent that tunnels `https:` connections to `url` through the proxy with HTTP CONNECT, or
 * undefined when `url` is reached directly. `ca` is trusted for a proxy that speaks TLS itself;
 * the target's own TLS options stay those of each request.
 */
export function proxyAgentFor(url: string | URL, options: { ca?: string; keepAlive?: boolean; keepAliveMsecs?: number } = {}): Agent | undefined {
  const proxy = proxyFor(url);
  if (!proxy) return undefined;
  return new HttpsProxyAgent(proxy, {
    keepAlive: options.keepAlive ?? false,
    ...(options.keepAliveMsecs !== undefined ? { keepAliveMsecs: options.keepAliveMsecs } : {}),
    ...(options.ca ? { ca: options.ca } : {}),
  });
}

/** A proxy URL without its credentials, for logs. */
export function describeProxy(proxy: string): string {
  try {
    const url = new URL(proxy);
    url.username = "";
    url.password = "";
    return url.toString().replace(/\/$/, "");
  } catch {
    return "(unparseable proxy URL)";
  }
}
