// The built-in issuer as the relay uses it: keys from the store, `iss` = the relay's public URL.
import { createBuiltinIssuer, loadOrCreateIssuerKeys, type BuiltinIssuer } from "../auth/index.ts";
import type { RelayStore } from "./store/index.ts";
import { ConfigError } from "../errors/index.ts";

/** Audience of the built-in issuer's tokens: any cluster on this relay. */
export const BUILTIN_AUDIENCE = "cluster-connect";
const ISSUER_URL_SETTING = "issuer.url";

/** Used by `serve`: records the public URL so offline `token create` signs for the same issuer. */
export async function loadRelayIssuer(store: RelayStore, publicUrl: string): Promise<BuiltinIssuer> {
  await store.setSetting(ISSUER_URL_SETTING, publicUrl);
  return createBuiltinIssuer({ issuer: publicUrl, audience: BUILTIN_AUDIENCE, ...(await loadOrCreateIssuerKeys(store)) });
}

/** Used by `token create --data-dir`: the issuer of the relay that last served from this data dir. */
export async function loadStoredIssuer(store: RelayStore, publicUrl?: string): Promise<BuiltinIssuer> {
  const issuer = publicUrl ?? (await store.getSetting(ISSUER_URL_SETTING));
  if (!issuer) {
    throw new ConfigError(
      "the relay's public URL is not known yet: start `arcrelay serve` once with this --data-dir, or pass --public-url",
    );
  }
  return createBuiltinIssuer({ issuer, audience: BUILTIN_AUDIENCE, ...(await loadOrCreateIssuerKeys(store)) });
}
