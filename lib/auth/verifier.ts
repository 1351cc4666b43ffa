// Verifies users' JWTs against the trusted issuers and maps their claims to a Kubernetes identity.
import {
  createLocalJWKSet, createRemoteJWKSet, customFetch, decodeJwt, decodeProtectedHeader, errors, jwtVerify,
  type JWK, type JWTPayload, type JWTVerifyGetKey,
} from "jose";
import { Unauthorized, ConfigError } from "../errors/index.ts";
import { subjectNameProblem } from "../kube/index.ts";
import { JwksFetchError, createJwksFetch } from "./jwks-fetch.ts";
import { createVerifiedTokenCache } from "./verified-token-cache.ts";

export interface TrustedIssuer {
  /** Exact `iss` value. */
  issuer: string;
  /** A token must name at least one of these in `aud`. */
  audiences: string[];
  /**
   * Keys given inline, or the issuer's JWKS URL (fetched lazily, cached, refetched on unknown kid),
   * or a function that finds that URL (OIDC discovery) on first use; its failure reads as a key fetch failure.
   */
  jwks: { keys: JWK[] } | { url: string } | { discover: () => Promise<string> };
  /** Claim holding the user name, e.g. `sub` or `email`. */
  usernameClaim: string;
  groupsClaim?: string;
  /** Prepended to the user name, e.g. `oidc:`. */
  usernamePrefix?: string;
  groupsPrefix?: string;
  /** Asymmetric JWS algorithms accepted from this issuer, e.g. ["RS256"]. */
  algorithms: string[];
  /** PEM CA certificate(s) trusted for this issuer's JWKS URL, besides the system roots and the verifier's `tlsCa`. */
  tlsCa?: string;
  /**
   * For an agent behind a firewall: "relay" means it fetches this issuer's keys from its relay
   * (which fetched them from the issuer) instead of from the issuer. Trust still comes from the
   * agent's own config: the relay is only asked about issuers listed there.
   */
  keysFrom?: "issuer" | "relay";
  /** Headers for each JWKS request, made fresh per fetch (the agent's token for the relay). */
  jwksRequestHeaders?: () => Promise<Record<string, string>>;
  /** A public OIDC client users log in with (`arcproxy login`); the relay advertises it. Not used to verify. */
  login?: IssuerLogin;
}

/** What `arcproxy login` needs to run the authorization code flow (with PKCE) against an issuer. */
export interface IssuerLogin {
  /** The public client's id; its ID tokens name it in `aud`, so it is one of the issuer's audiences. */
  clientId: string;
  /** Default ["openid", "profile", "email", "offline_access"]. */
  scopes: string[];
}

export interface Identity {
  user: string;
  groups: string[];
  subject: string;
  issuer: string;
  /** The token's verified `aud`, for relays that bind tokens to clusters. */
  audiences: string[];
}

export interface UserTokenVerifierOptions {
  issuers: TrustedIssuer[];
  /** Allowed clock skew for exp/nbf/iat; default 30. */
  clockToleranceSeconds?: number;
  /** Timeout of one JWKS fetch; default 5000. */
  fetchTimeoutMs?: number;
  /** Replaces the global fetch for JWKS requests (tests). */
  fetch?: typeof fetch;
  /** PEM CA certificate(s) trusted for JWKS URLs, in addition to the system roots. */
  tlsCa?: string;
  /** After a JWKS fetch, an unknown kid refetches only after this long; default 30000. */
  jwksCooldownMs?: number;
  /**
   * The clock for a token's exp, nbf and iat and for how long a verified token is remembered, in
   * milliseconds since the epoch; default Date.now. Tests move it instead of waiting. JWKS refetch
   * timing (jose's) does not use it.
   */
  now?: () => number;
}

export interface UserTokenVerifier {
  verifyUserToken(token: string): Promise<Identity>;
  /**
   * The identity of a token that verified within the last minute (and has not expired), without
   * verifying again; undefined otherwise. Lets a rate limiter wave known-good tokens through.
   */
  cachedIdentity(token: string): Identity | undefined;
}

/** Tokens larger than this are refused before any parsing. */
export const MAX_TOKEN_BYTES = 16 * 1024;
const DEFAULT_CLOCK_TOLERANCE_SECONDS = 30;
const DEFAULT_FETCH_TIMEOUT_MS = 5_000;
/** An unknown kid refetches the JWKS at most this often (key rotation vs. hammering the issuer). */
const JWKS_COOLDOWN_MS = 30_000;
/** Keys are refetched after this age even without an unknown kid. */
const JWKS_MAX_AGE_MS = 10 * 60_000;
const NEW_TOKEN_HINT = "get a new token (arcrelay token create, or your identity provider)";
/** HMAC and `none` would let anyone holding a public key, or no key, mint tokens. */
const REFUSED_ALGORITHMS = /^(?:none|HS\d+)$/i;


export function createUserTokenVerifier(opts: UserTokenVerifierOptions): UserTokenVerifier {
  const byIssuer = new Map<string, TrustedIssuer>();
  for (const trusted of opts.issuers) {
    checkTrustedIssuer(trusted);
    if (byIssuer.has(trusted.issuer)) throw new ConfigError(`issuer ${trusted.issuer} is configured twice`);
    byIssuer.set(trusted.issuer, trusted);
  }
  const clockTolerance = opts.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
  const fetchTimeoutMs = opts.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  const fetchJwks = createJwksFetch(opts.fetch ?? fetch, [opts.tlsCa], fetchTimeoutMs);
  const keySets = new Map<string, JWTVerifyGetKey>();

  function remoteKeySet(url: string, trusted: TrustedIssuer): JWTVerifyGetKey {
    return createRemoteJWKSet(new URL(url), {
      timeoutDuration: fetchTimeoutMs,
      cooldownDuration: opts.jwksCooldownMs ?? JWKS_COOLDOWN_MS,
      cacheMaxAge: JWKS_MAX_AGE_MS,
      [customFetch]: trusted.tlsCa || trusted.jwksRequestHeaders
        ? createJwksFetch(opts.fetch ?? fetch, [opts.tlsCa, trusted.tlsCa], fetchTimeoutMs, trusted.jwksRequestHeaders)
        : fetchJwks,
    });
  }

  /** Finds the JWKS URL on first use, so an issuer that is down at start only fails its own tokens. */
  function discoveredKeySet(discover: () => Promise<string>, trusted: TrustedIssuer): JWTVerifyGetKey {
    let remote: { url: string; keySet: JWTVerifyGetKey } | undefined;
    return async function getDiscoveredKey(header, token) {
      let url: string;
      try {
        url = await discover();
      } catch (error) {
        throw new JwksFetchError((error as Error)?.message ?? String(error), { cause: error });
      }
      if (remote?.url !== url) remote = { url, keySet: remoteKeySet(url, trusted) };
      return remote.keySet(header, token);
    };
  }

  function keySetOf(trusted: TrustedIssuer): JWTVerifyGetKey {
    let keySet = keySets.get(trusted.issuer);
    if (!keySet) {
      const jwks = trusted.jwks;
      keySet = "keys" in jwks
        ? createLocalJWKSet(jwks)
        : "url" in jwks ? remoteKeySet(jwks.url, trusted) : discoveredKeySet(jwks.discover, trusted);
      keySets.set(trusted.issuer, keySet);
    }
    return keySet;
  }

  const now = opts.now ?? (() => Date.now());
  const verified = createVerifiedTokenCache<Identity>(now);

  return {
    cachedIdentity: (token: string) => verified.get(token),
    async verifyUserToken(token: string): Promise<Identity> {
      const known = verified.get(token);
      if (known) return known;
      const trusted = pickIssuer(token, byIssuer);
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keySetOf(trusted), {
          issuer: trusted.issuer,
          audience: trusted.audiences,
          algorithms: trusted.algorithms,
          clockTolerance,
          currentDate: new Date(now()),
          requiredClaims: ["exp"],
        }));
      } catch (error) {
        throw explainVerifyError(error, token, trusted);
      }
      const identity = identityOf(payload, trusted);
      verified.set(token, identity, payload.exp! * 1000);
      return identity;
    },
  };
}

function checkTrustedIssuer(trusted: TrustedIssuer): void {
  if (!trusted.issuer) throw new ConfigError("trusted issuer: issuer is empty");
  if (trusted.audiences.length === 0) throw new ConfigError(`trusted issuer ${trusted.issuer}: no audiences`);
  if (trusted.algorithms.length === 0) throw new ConfigError(`trusted issuer ${trusted.issuer}: no algorithms`);
  const refused = trusted.algorithms.find((alg) => REFUSED_ALGORITHMS.test(alg));
  if (refused) throw new ConfigError(`trusted issuer ${trusted.issuer}: algorithm ${refused} is not allowed; use an asymmetric one`);
  if (!trusted.usernameClaim) throw new ConfigError(`trusted issuer ${trusted.issuer}: usernameClaim is empty`);
}

/** Reads the unverified `iss` only to choose which issuer's rules and keys apply. */
function pickIssuer(token: string, byIssuer: Map<string, TrustedIssuer>): TrustedIssuer {
  if (typeof token !== "string" || token.length === 0) throw new Unauthorized("no token given: " + NEW_TOKEN_HINT);
  if (token.length > MAX_TOKEN_BYTES) {
    throw new Unauthorized(`token is larger than ${MAX_TOKEN_BYTES / 1024} KiB: present a JWT from a trusted issuer`);
  }
  let iss: unknown;
  try {
    iss = decodeJwt(token).iss;
  } catch (error) {
    throw new Unauthorized("token is not a valid JWT: present a JWT from a trusted issuer", { cause: error });
  }
  if (typeof iss !== "string") throw new Unauthorized("token has no issuer (iss) claim: present a JWT from a trusted issuer");
  const trusted = byIssuer.get(iss);
  if (!trusted) throw new Unauthorized(`token issuer ${describe(iss)} is not trusted: use a token from an issuer the relay trusts`);
  return trusted;
}

function identityOf(payload: JWTPayload, trusted: TrustedIssuer): Identity {
  const name = payload[trusted.usernameClaim];
  if (typeof name !== "string" || name.length === 0) {
    throw new Unauthorized(
      `token of issuer ${trusted.issuer} has no usable user name: claim "${trusted.usernameClaim}" must be a non-empty string`,
    );
  }
  if (typeof payload.sub !== "string" || payload.sub.length === 0) {
    throw new Unauthorized(`token of issuer ${trusted.issuer} has no subject (sub) claim`);
  }
  const user = (trusted.usernamePrefix ?? "") + name;
  const groups = groupsOf(payload, trusted);
  // The agent impersonates exactly these names, so a claim such as groups: ["system:masters"]
  // (or " system:masters", which Go trims to it) would be cluster-admin. Kubernetes reserves the
  // prefix for its own identities and refuses it from OIDC claims too (KEP-3331).
  for (const [what, value] of [["user", user], ...groups.map((g) => ["group", g])] as [string, string][]) {
    const problem = subjectNameProblem(value);
    if (problem) {
      throw new Unauthorized(
        `token of issuer ${trusted.issuer} names ${what} ${JSON.stringify(value.slice(0, 100))}, which is never accepted from a token (${problem}); ` +
          "set usernamePrefix/groupsPrefix for this issuer, or use kubectl --as",
      );
    }
  }
  return {
    user,
    groups,
    subject: payload.sub,
    issuer: trusted.issuer,
    audiences: typeof payload.aud === "string" ? [payload.aud] : (payload.aud ?? []),
  };
}

function groupsOf(payload: JWTPayload, trusted: TrustedIssuer): string[] {
  if (!trusted.groupsClaim) return [];
  const claim = payload[trusted.groupsClaim];
  // Some providers send a single group as a plain string.
  const values = Array.isArray(claim) ? claim : typeof claim === "string" ? [claim] : [];
  const prefix = trusted.groupsPrefix ?? "";
  return values.filter((g): g is string => typeof g === "string" && g.length > 0).map((g) => prefix + g);
}

/** Turns jose's error into an Unauthorized that tells the user what to do; the jose error stays as `cause`. */
function explainVerifyError(error: unknown, token: string, trusted: TrustedIssuer): Unauthorized {
  const cause = { cause: error };
  const fetchError = findFetchError(error);
  if (fetchError) {
    return new Unauthorized(`could not fetch signing keys of issuer ${trusted.issuer}: ${fetchError.message}`, cause);
  }
  if (error instanceof errors.JWTExpired) return new Unauthorized(`token expired: ${NEW_TOKEN_HINT}`, cause);
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case "nbf":
        return new Unauthorized("token is not valid yet (nbf is in the future): check the clock where it was issued, or wait", cause);
      case "iat":
        return new Unauthorized("token is issued in the future (iat): check the clock where it was issued", cause);
      case "aud":
        return new Unauthorized(
          `token audience does not match: request a token for audience ${trusted.audiences.join(" or ")}`, cause,
        );
      case "exp":
        return new Unauthorized(`token has no valid expiry (exp): ${NEW_TOKEN_HINT}`, cause);
      default:
        return new Unauthorized(`token claim ${describe(error.claim)} is invalid (${error.reason}): ${NEW_TOKEN_HINT}`, cause);
    }
  }
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return new Unauthorized(
      `token algorithm ${describe(headerOf(token).alg)} is not accepted from issuer ${trusted.issuer} (allowed: ${trusted.algorithms.join(", ")})`,
      cause,
    );
  }
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return new Unauthorized(
      `token is signed with key ${describe(headerOf(token).kid)}, which issuer ${trusted.issuer} does not publish: ${NEW_TOKEN_HINT}`,
      cause,
    );
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return new Unauthorized(`token signature is invalid: ${NEW_TOKEN_HINT}`, cause);
  }
  return new Unauthorized(`token is invalid: ${NEW_TOKEN_HINT}`, cause);
}

function findFetchError(error: unknown): JwksFetchError | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof JwksFetchError) return e;
  }
  return undefined;
}

function headerOf(token: string): { alg?: unknown; kid?: unknown } {
  try {
    return decodeProtectedHeader(token);
  } catch {
    return {};
  }
}

/** Attacker-chosen header or claim values, quoted and cut short for messages. */
function describe(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}
