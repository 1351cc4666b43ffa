// The built-in issuer as the relay uses it: keys from the store, `iss` = the relay's public URL.
import { createBuiltinIssuer, loadOrCreateIssuerKeys, type BuiltinIssuer } from "../auth/index.ts";
import type { RelayStore } from "./store/index.ts";
import { ConfigError } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";

/** Audience of the built-in issuer's tokens: any cluster on this relay. */
export const BUILTIN_AUDIENCE = "cluster-connect";
const ISSUER_URL_SETTING = "issuer.url";

/** The built-in issuer of a running relay, whose keys can change under it (`arcrelay issuer rotate-key`). */
export interface RelayIssuer extends BuiltinIssuer {
  /** Reads the keys again; resolves true when the set of keys that sign or verify changed. */
  reload(): Promise<boolean>;
}

/**
 * Used by `serve`: records the public URL so offline `token create` signs for the same issuer.
 * Throws ConfigError when live replicas other than `opts.replicaId` were started with another
 * public URL: replicas that each recorded their own overwrote one another, so tokens signed for one
 * URL were refused by the replicas of the other (found by the newcomer). A single relay moved to a
 * new URL is told what that breaks through `opts.logger`.
 */
export async function loadRelayIssuer(store: RelayStore, publicUrl: string, opts: { replicaId?: string; logger?: Logger } = {}): Promise<RelayIssuer> {
  const recorded = await store.getSetting(ISSUER_URL_SETTING);
  if (recorded !== undefined && recorded !== publicUrl) {
    const others = (await store.listReplicas(new Date())).map((r) => r.replicaId).filter((id) => id !== opts.replicaId);
    if (others.length > 0) {
      throw new ConfigError(
        `replica${others.length > 1 ? "s" : ""} ${others.join(", ")} of this relay serve${others.length > 1 ? "" : "s"} the public URL ${recorded}, and this one was ` +
        `started with --public-url ${publicUrl}: every replica needs the same --public-url, the one address users and agents reach ` +
        "(the load balancer's), because tokens and agents are bound to it. To move the relay to a new URL, stop every replica, then start them all with it",
      );
    }
    opts.logger?.warn("the relay's public URL changed: tokens issued for the old one no longer verify, and agents must dial the new one", { from: recorded, to: publicUrl });
  }
  await store.setSetting(ISSUER_URL_SETTING, publicUrl);
  const build = async () => createBuiltinIssuer({ issuer: publicUrl, audience: BUILTIN_AUDIENCE, ...(await loadOrCreateIssuerKeys(store)) });
  let current = await build();
  const kids = (issuer: BuiltinIssuer) => issuer.jwks().keys.map((k) => k.kid).join(" ");
  return {
    issuer: current.issuer,
    audience: current.audience,
    jwks: () => current.jwks(),
    discovery: () => current.discovery(),
    signUserToken: (input) => current.signUserToken(input),
    async reload() {
      const next = await build();
      const changed = kids(next) !== kids(current);
      current = next;
      return changed;
    },
  };
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
