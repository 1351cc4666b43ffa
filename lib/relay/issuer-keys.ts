// The signing keys of the relay's trusted external issuers, fetched and cached for agents that cannot reach them.
import type { JWK } from "jose";
import type { TrustedIssuer } from "../auth/index.ts";
import { BadGateway, NotFound } from "../errors/index.ts";

/** Keys change rarely; an agent asking on an unknown kid refetches at most this often. */
const KEYS_CACHE_MS = 60_000;
const FETCH_TIMEOUT_MS = 5_000;

export interface IssuerKeySource {
  keysOf(issuer: string): Promise<{ keys: JWK[] }>;
}

export function createIssuerKeySource(trusted: TrustedIssuer[], fetchImpl: typeof fetch = fetch): IssuerKeySource {
  const byIssuer = new Map(trusted.map((t) => [t.issuer, t]));
  const cache = new Map<string, { at: number; keys: Promise<{ keys: JWK[] }> }>();

  async function fetchKeys(t: TrustedIssuer): Promise<{ keys: JWK[] }> {
    const jwks = t.jwks;
    if ("keys" in jwks) return { keys: jwks.keys };
    const url = "url" in jwks ? jwks.url : await jwks.discover();
    const response = await fetchImpl(url, {
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      redirect: "error",
      ...(t.tlsCa ? { tls: { ca: t.tlsCa } } : {}),
    } as RequestInit);
    if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}`);
    const body = (await response.json()) as { keys?: unknown };
    if (!Array.isArray(body.keys)) throw new Error(`${url} did not return a JSON Web Key Set`);
    // Only public members travel on: whatever else the issuer's document holds stays here.
    return { keys: (body.keys as JWK[]).map(({ kty, kid, alg, use, n, e, crv, x, y }) => ({ kty, kid, alg, use, n, e, crv, x, y })) };
  }

  return {
    async keysOf(issuer) {
      const t = byIssuer.get(issuer);
      if (!t) throw new NotFound(`the relay does not trust issuer ${issuer}: add it to the relay's --config as well`);
      const hit = cache.get(issuer);
      if (hit && performance.now() - hit.at < KEYS_CACHE_MS) return hit.keys;
      const keys = fetchKeys(t).catch((cause: unknown) => {
        cache.delete(issuer);
        throw new BadGateway(`the relay could not fetch the signing keys of issuer ${issuer}: ${(cause as Error)?.message ?? cause}`, { cause });
      });
      cache.set(issuer, { at: performance.now(), keys });
      return keys;
    },
  };
}
