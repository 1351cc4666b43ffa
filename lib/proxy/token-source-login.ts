// The token from `arcproxy login`: the stored ID token while it is fresh, else a refresh shared with other arcproxy processes through the file.
import { decodeJwt } from "jose";
import { ConfigError } from "../errors/index.ts";
import { readLogin, writeLogin, type StoredLogin } from "./login-store.ts";
import { refreshLogin } from "./oidc-login.ts";
import type { TokenCredential } from "./token-source-cache.ts";
import { REFRESH_BEFORE_EXPIRY_MS } from "./token-source-timeouts.ts";

/**
 * A fetch function for createRefreshingCredential: reads the login file (another arcproxy may have
 * refreshed it), returns its ID token while more than REFRESH_BEFORE_EXPIRY_MS (60 s, or half the
 * token's life when that is shorter) is left, else refreshes and saves it. When the refresh is
 * refused because another process used the refresh token first, that process's saved token is used.
 * Throws ConfigError when there is no login, and Unauthorized saying to run arcproxy login when it expired.
 */
export function createLoginCredential(relay: string, dir: string | undefined, now: () => number): () => Promise<TokenCredential> {
  const load = async (): Promise<StoredLogin> => {
    const login = await readLogin(relay, dir);
    if (!login) throw new ConfigError(`no token: run arcproxy login --relay ${relay} (or pass --token, or set ARC_TOKEN)`);
    return login;
  };
  const fresh = (login: StoredLogin): boolean => {
    const expiresAt = Date.parse(login.expiresAt);
    const { iat } = decodeJwt(login.idToken);
    const life = typeof iat === "number" ? expiresAt - iat * 1000 : Infinity;
    return expiresAt - now() > Math.min(REFRESH_BEFORE_EXPIRY_MS, life / 2);
  };
  const credential = (login: StoredLogin): TokenCredential => ({ token: login.idToken, expiresAt: new Date(login.expiresAt) });
  return async () => {
    const login = await load();
    if (fresh(login)) return credential(login);
    try {
      const renewed = await refreshLogin(login);
      await writeLogin(renewed, dir);
      return credential(renewed);
    } catch (error) {
      const other = await load();
      if (other.idToken !== login.idToken && fresh(other)) return credential(other);
      throw error;
    }
  };
}
