// Remembers tokens that verified, until they expire (at most a minute), so a busy client does not pay a signature check per request.

/** Like kube-apiserver's token cache: short enough that a key removed from a JWKS stops working soon. */
const MAX_CACHE_MS = 60_000;
const MAX_ENTRIES = 10_000;

export interface VerifiedTokenCache<T> {
  get(token: string): T | undefined;
  /** `expiresAtMs`: the token's own `exp`; the entry lives until then or a minute, whichever is first. */
  set(token: string, value: T, expiresAtMs: number): void;
}

export function createVerifiedTokenCache<T>(now: () => number = Date.now): VerifiedTokenCache<T> {
  const entries = new Map<string, { value: T; until: number }>();
  return {
    get(token) {
      const entry = entries.get(token);
      if (!entry) return undefined;
      if (now() >= entry.until) {
        entries.delete(token);
        return undefined;
      }
      return entry.value;
    },
    set(token, value, expiresAtMs) {
      const until = Math.min(expiresAtMs, now() + MAX_CACHE_MS);
      if (until <= now()) return;
      // Map keeps insertion order: the oldest entry goes first when the cache is full.
      if (entries.size >= MAX_ENTRIES) entries.delete(entries.keys().next().value!);
      entries.set(token, { value, until });
    },
  };
}
