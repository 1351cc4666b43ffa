// What a client needs to know about this relay before anything else, at one well-known URL.
import type { TrustedIssuer } from "../auth/index.ts";

/** `GET /.well-known/cluster-connect`: public, no credentials. */
export interface ClientConfig {
  /** The relay's public URL (its built-in issuer's `iss`). */
  relay: string;
  /** The relay's version (arcrelay --version). */
  version: string;
  /** The oldest arcproxy this relay works with; an older one tells its user to update. */
  minArcproxyVersion?: string;
  /** Issuers `arcproxy login` can use: authorization code flow with PKCE, public client. */
  loginIssuers: { issuer: string; clientId: string; scopes: string[] }[];
}

/** Builds the document from the relay's options: only issuers with a `login` client are listed. */
export function buildClientConfig(opts: { relay: string; version: string; minArcproxyVersion?: string; trustedIssuers: TrustedIssuer[] }): ClientConfig {
  return {
    relay: opts.relay,
    version: opts.version,
    ...(opts.minArcproxyVersion ? { minArcproxyVersion: opts.minArcproxyVersion } : {}),
    loginIssuers: opts.trustedIssuers
      .filter((t) => t.login)
      .map((t) => ({ issuer: t.issuer, clientId: t.login!.clientId, scopes: t.login!.scopes })),
  };
}
