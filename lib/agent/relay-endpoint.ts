// How the agent reaches its relay: base URL and the TLS trust for it.
import { isLoopbackHost } from "../kube/index.ts";
import { readFileSync } from "node:fs";
import { proxyFor } from "./egress.ts";
import { ConfigError } from "../errors/index.ts";

export interface RelayEndpoint {
  /** Base URL without trailing slash, e.g. https://relay.example.com */
  url: string;
  /** Extra CA (PEM) for a relay with a private certificate. */
  ca?: string;
}


export function parseRelayEndpoint(url: string, caFile?: string): RelayEndpoint {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`--relay ${JSON.stringify(url)} is not a URL: use https://relay.example.com`);
  }
  if (parsed.protocol === "http:" && !isLoopbackHost(parsed.hostname)) {
    throw new ConfigError(`--relay ${url}: plain http is only allowed to a loopback relay; use https`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new ConfigError(`--relay ${url}: use an https URL`);
  if (parsed.search || parsed.hash || parsed.username || parsed.password) {
    throw new ConfigError(`--relay ${url}: give the relay's base URL without query, fragment or credentials`);
  }
  // The normalized form (lower-case scheme and host, default port dropped) is also the audience the
  // agent signs for, so it must match the relay's --public-url.
  const base = (parsed.origin + parsed.pathname).replace(/\/+$/, "");
  return { url: base, ca: caFile ? readFileSync(caFile, "utf8") : undefined };
}

/** Converts the relay's https URL into the wss URL of one of its WebSocket paths. */
export function relayWebSocketUrl(relay: RelayEndpoint, path: string): string {
  return relay.url.replace(/^http/, "ws") + path;
}

/**
 * A fetch to the relay with its extra CA (Bun's fetch takes `tls.ca`) and the same proxy decision
 * as the tunnel (egress.ts), with a 15 s timeout unless the caller passes a signal.
 */
export function relayFetch(relay: RelayEndpoint, path: string, init: RequestInit = {}): Promise<Response> {
  const proxy = proxyFor(relay.url);
  return fetch(relay.url + path, {
    ...init,
    signal: init.signal ?? AbortSignal.timeout(15_000),
    ...(relay.ca ? { tls: { ca: relay.ca } } : {}),
    ...(proxy ? { proxy } : {}),
  } as RequestInit);
}
