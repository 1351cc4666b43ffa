// Reuses a fetched token until shortly before it expires; concurrent callers share one refresh.
import { decodeJwt } from "jose";
import type { Logger } from "../observe/index.ts";
import { REFRESH_BEFORE_EXPIRY_MS, RETRY_AFTER_FAILURE_MS, SHORT_TOKEN_MIN_REUSE_MS, UNKNOWN_EXPIRY_TTL_MS } from "./token-source-timeouts.ts";

/** A token and, when known, the moment it stops being valid. */
export interface TokenCredential {
  token: string;
  expiresAt?: Date;
}

/** The `exp` claim of a JWT as a Date; undefined for anything that is not a JWT with a numeric `exp`. */
export function readJwtExpiry(token: string): Date | undefined {
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === "number" && Number.isFinite(exp) ? new Date(exp * 1000) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Wraps `fetchCredential` so it runs only when needed: at first use, then 60 s before the
 * token's expiry (halfway through the life of a token shorter than 90 s), or every 5 minutes
 * when the expiry is unknown. A failed refresh falls back to the cached token while that has not expired yet.
 */
export function createRefreshingCredential(
  fetchCredential: () => Promise<TokenCredential>,
  opts: { now: () => number; describe: string; logger?: Logger },
): () => Promise<TokenCredential> {
  let current: { credential: TokenCredential; refreshAt: number } | undefined;
  let inflight: Promise<TokenCredential> | undefined;

  // One refresh for all callers waiting on it, so a failure is also handled (and logged) once.
  async function refresh(): Promise<TokenCredential> {
    const startedAt = opts.now();
    try {
      const credential = await fetchCredential();
      current = { credential, refreshAt: computeRefreshAt(credential, startedAt) };
      return credential;
    } catch (error) {
      const cached = current;
      const now = opts.now();
      if (!cached?.credential.expiresAt || now >= cached.credential.expiresAt.getTime()) throw error;
      cached.refreshAt = Math.min(now + RETRY_AFTER_FAILURE_MS, cached.credential.expiresAt.getTime());
      opts.logger?.warn("token refresh failed; using the current token until it expires", {
        source: opts.describe, expiresAt: cached.credential.expiresAt.toISOString(), error: (error as Error).message,
      });
      return cached.credential;
    }
  }

  return function getRefreshedCredential(): Promise<TokenCredential> {
    if (current && opts.now() < current.refreshAt) return Promise.resolve(current.credential);
    return (inflight ??= refresh().finally(() => {
      inflight = undefined;
    }));
  };
}

function computeRefreshAt(credential: TokenCredential, fetchedAt: number): number {
  if (!credential.expiresAt) return fetchedAt + UNKNOWN_EXPIRY_TTL_MS;
  const expiresAt = credential.expiresAt.getTime();
  // A token that lives under 90 s is renewed halfway through its life, not on every request.
  const halfLife = Math.min((expiresAt - fetchedAt) / 2, SHORT_TOKEN_MIN_REUSE_MS);
  return Math.max(expiresAt - REFRESH_BEFORE_EXPIRY_MS, fetchedAt + halfLife);
}
