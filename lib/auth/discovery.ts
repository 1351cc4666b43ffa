// Finds an external OIDC issuer's JWKS URL from its discovery document, once, on first use.
import { isLoopbackHost } from "../kube/index.ts";
import { rootCertificates } from "node:tls";

export interface DiscoveryOptions {
  /** Replaces the global fetch (tests). */
  fetch?: typeof fetch;
  /** Timeout of one discovery request; default 5000. */
  timeoutMs?: number;
  /** PEM CA certificate(s) trusted for the issuer, besides the system roots. */
  tlsCa?: string;
}

/** OpenID Connect Discovery 1.0, section 4: appended to the issuer without its trailing slash. */
export const DISCOVERY_PATH = "/.well-known/openid-configuration";
const DEFAULT_TIMEOUT_MS = 5_000;
/** After a failed discovery, callers get the same failure for this long before it is tried again. */
const DEFAULT_RETRY_AFTER_MS = 10_000;
/** Plain http is only for issuers on this machine (tests, local Dex). */

class OidcDiscoveryError extends Error {
  override name = "OidcDiscoveryError";
}

/**
 * GETs `issuer/.well-known/openid-configuration` and returns its `jwks_uri`. The document must name
 * exactly `issuer`, or someone else's keys could vouch for this issuer's tokens.
 */
export async function discoverJwksUrl(issuer: string, opts: DiscoveryOptions = {}): Promise<string> {
  const url = issuer.replace(/\/+$/, "") + DISCOVERY_PATH;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const init = {
    signal: AbortSignal.timeout(timeoutMs),
    redirect: "manual",
    headers: { accept: "application/json" },
    ...(opts.tlsCa ? { tls: { ca: [...rootCertificates, opts.tlsCa] } } : {}),
  } as RequestInit;
  let response: Response;
  try {
    response = await (opts.fetch ?? fetch)(url, init);
  } catch (error) {
    const reason = (error as Error)?.name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : (error as Error)?.message ?? String(error);
    throw new OidcDiscoveryError(`discovery at ${url} failed: ${reason}`, { cause: error });
  }
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => {});
    throw new OidcDiscoveryError(`discovery at ${url} answered HTTP ${response.status}`);
  }
  const doc = (await response.json().catch((cause: unknown) => {
    throw new OidcDiscoveryError(`discovery at ${url} did not return JSON`, { cause });
  })) as { issuer?: unknown; jwks_uri?: unknown } | null;
  if (doc?.issuer !== issuer) {
    throw new OidcDiscoveryError(
      `discovery at ${url} names issuer ${JSON.stringify(doc?.issuer)}, not ${JSON.stringify(issuer)}: set "issuer" in the config to exactly the value the provider publishes`,
    );
  }
  if (typeof doc.jwks_uri !== "string") throw new OidcDiscoveryError(`discovery at ${url} has no jwks_uri`);
  const problem = endpointUrlProblem(doc.jwks_uri);
  if (problem) throw new OidcDiscoveryError(`discovery at ${url}: jwks_uri ${problem}`);
  return doc.jwks_uri;
}

/**
 * Returns a function that discovers the JWKS URL on its first call and remembers it. A failure is
 * remembered for `retryAfterMs`, so a down issuer is not asked again on every request.
 */
export function createLazyJwksUrl(
  issuer: string,
  opts: DiscoveryOptions & { retryAfterMs?: number } = {},
): () => Promise<string> {
  const retryAfterMs = opts.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS;
  let pending: Promise<string> | undefined;
  let failedAt = 0;
  return function discoverOnce(): Promise<string> {
    if (pending && failedAt > 0 && Date.now() - failedAt >= retryAfterMs) pending = undefined;
    if (!pending) {
      failedAt = 0;
      pending = discoverJwksUrl(issuer, opts);
      pending.catch(() => {
        failedAt = Date.now();
      });
    }
    return pending;
  };
}

/** Why `value` is not an https URL (or http on a loopback host) without credentials or fragment; undefined if it is. */
export function endpointUrlProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `${JSON.stringify(value)} is not a URL`;
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHost(url.hostname))) {
    return `${value} must be an https URL (plain http only on a loopback address)`;
  }
  if (url.username || url.password || url.hash) return `${value} must not carry credentials or a fragment`;
  return undefined;
}
