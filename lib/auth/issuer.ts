// The relay's built-in token issuer: its persisted keys, JWKS, OIDC discovery and user tokens.
import { randomBytes } from "node:crypto";
import { SignJWT, type JWK } from "jose";
import { BadRequest, ConfigError } from "../errors/index.ts";
import { validateGroupName, validateUserName } from "../kube/index.ts";
import { generateSigningKeyPair, importPrivateJwk, toPublicJwk } from "./keys.ts";
import type { TrustedIssuer } from "./verifier.ts";

/** The two RelayStore methods the issuer needs. */
export interface SettingsStore {
  getSetting(k: string): Promise<string | undefined>;
  setSetting(k: string, v: string): Promise<void>;
  /** Stores `v` only if `k` has no value yet; resolves with the value stored now (the first writer's). */
  setSettingIfAbsent(k: string, v: string): Promise<string>;
}

export interface BuiltinIssuer {
  issuer: string;
  audience: string;
  /** Served at `<issuer>/.well-known/jwks.json`. */
  jwks(): { keys: JWK[] };
  /** Served at `<issuer>/.well-known/openid-configuration`. */
  discovery(): Record<string, unknown>;
  /** `extraAudiences` are added to the issuer's audience, e.g. `cluster-connect:prod` for relays that bind tokens to clusters. */
  signUserToken(input: { user: string; groups?: string[]; ttlSeconds?: number; extraAudiences?: string[] }): Promise<string>;
}

export const ISSUER_KEYS_SETTING = "issuer.keys";
export const ISSUER_ALGORITHM = "ES256";
export const DEFAULT_USER_TOKEN_TTL_SECONDS = 3600;
export const MAX_USER_TOKEN_TTL_SECONDS = 31 * 24 * 3600;
export const JWKS_PATH = "/.well-known/jwks.json";

/**
 * The issuer's keys: the ES256 pair it signs with, and the public keys of pairs it signed with
 * before a rotation, each verifying until `verifyUntil` (epoch seconds), when the last token it
 * could have signed has expired.
 */
export interface IssuerKeys {
  privateJwk: JWK;
  publicJwk: JWK;
  retired: { publicJwk: JWK; verifyUntil: number }[];
}

/** The issuer's keys, created and stored under `issuer.keys` on first use; retired keys past their time are left out. */
export async function loadOrCreateIssuerKeys(settings: SettingsStore, now: () => number = Date.now): Promise<IssuerKeys> {
  const stored = await settings.getSetting(ISSUER_KEYS_SETTING);
  if (stored !== undefined) return parseIssuerKeys(stored, now());
  // The first replica's pair wins, atomically: replicas starting at once all sign with one key.
  const written = await settings.setSettingIfAbsent(ISSUER_KEYS_SETTING, JSON.stringify(await generateSigningKeyPair(ISSUER_ALGORITHM)));
  return parseIssuerKeys(written, now());
}

/**
 * Replaces the signing key with a new pair. The old public key keeps verifying for
 * MAX_USER_TOKEN_TTL_SECONDS (no token it signed lives longer), unless `dropOld` (a leaked key):
 * then tokens it signed stop verifying as soon as each relay replica reloads (the change feed,
 * seconds). Resolves with the new key id and the ids still verifying. Two rotations at the same
 * moment may lose one of them (the last write wins); run one at a time.
 */
export async function rotateIssuerKeys(settings: SettingsStore, opts: { dropOld?: boolean; now?: () => number } = {}): Promise<{ kid: string; verifying: string[] }> {
  const nowMs = (opts.now ?? Date.now)();
  const current = await loadOrCreateIssuerKeys(settings, () => nowMs);
  const next = await generateSigningKeyPair(ISSUER_ALGORITHM);
  const retired = opts.dropOld
    ? []
    : [...current.retired, { publicJwk: toPublicJwk(current.publicJwk), verifyUntil: Math.floor(nowMs / 1000) + MAX_USER_TOKEN_TTL_SECONDS }];
  await settings.setSetting(ISSUER_KEYS_SETTING, JSON.stringify({ ...next, retired }));
  return { kid: next.publicJwk.kid as string, verifying: [next.publicJwk.kid as string, ...retired.map((r) => r.publicJwk.kid as string)] };
}

function parseIssuerKeys(stored: string, nowMs: number): IssuerKeys {
  let keys: { privateJwk?: JWK; publicJwk?: JWK; retired?: unknown };
  try {
    keys = JSON.parse(stored);
  } catch (error) {
    throw new Error(`setting ${ISSUER_KEYS_SETTING} is not valid JSON; restore it from a backup or delete it to create new keys (existing tokens stop working)`, { cause: error });
  }
  if (typeof keys?.privateJwk?.d !== "string" || typeof keys.publicJwk?.kid !== "string") {
    throw new Error(`setting ${ISSUER_KEYS_SETTING} does not hold a private and a public JWK`);
  }
  const retired = Array.isArray(keys.retired) ? (keys.retired as { publicJwk?: JWK; verifyUntil?: unknown }[]) : [];
  return {
    privateJwk: keys.privateJwk,
    publicJwk: keys.publicJwk,
    retired: retired
      .filter((r): r is { publicJwk: JWK; verifyUntil: number } => typeof r?.publicJwk?.kid === "string" && typeof r.verifyUntil === "number")
      .filter((r) => r.verifyUntil * 1000 > nowMs),
  };
}

/** `retired`: public keys of earlier pairs that still verify (served in the JWKS beside the current one). */
export function createBuiltinIssuer(opts: { issuer: string; audience: string; privateJwk: JWK; publicJwk: JWK; retired?: { publicJwk: JWK }[] }): BuiltinIssuer {
  const { issuer, audience } = opts;
  checkIssuerUrl(issuer);
  if (!audience) throw new ConfigError("built-in issuer: audience is empty");
  if (typeof opts.publicJwk.kid !== "string") throw new ConfigError("built-in issuer: public JWK has no kid");
  const publicJwk = toPublicJwk(opts.publicJwk);
  const kid = publicJwk.kid as string;
  let signingKey: Promise<CryptoKey> | undefined;

  return {
    issuer,
    audience,
    jwks() {
      return { keys: [{ ...publicJwk }, ...(opts.retired ?? []).map((r) => toPublicJwk(r.publicJwk))] };
    },
    discovery() {
      return {
        issuer,
        jwks_uri: issuer + JWKS_PATH,
        id_token_signing_alg_values_supported: [ISSUER_ALGORITHM],
        subject_types_supported: ["public"],
        response_types_supported: ["id_token"],
        claims_supported: ["iss", "aud", "sub", "groups", "iat", "nbf", "exp", "jti"],
      };
    },
    async signUserToken(input) {
      const user = validateUserName(input.user);
      const groups = (input.groups ?? []).map(validateGroupName);
      const ttl = input.ttlSeconds ?? DEFAULT_USER_TOKEN_TTL_SECONDS;
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_USER_TOKEN_TTL_SECONDS) {
        throw new BadRequest(`invalid token lifetime ${ttl}: use 1 to ${MAX_USER_TOKEN_TTL_SECONDS} seconds (31 days)`);
      }
      signingKey ??= importPrivateJwk({ ...opts.privateJwk, alg: ISSUER_ALGORITHM });
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ groups })
        .setProtectedHeader({ alg: ISSUER_ALGORITHM, kid, typ: "JWT" })
        .setIssuer(issuer)
        .setAudience(input.extraAudiences?.length ? [audience, ...input.extraAudiences] : audience)
        .setSubject(user)
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(now + ttl)
        .setJti(randomBytes(16).toString("base64url"))
        .sign(await signingKey);
    },
  };
}

/** The built-in issuer as one of the verifier's trusted issuers (inline keys, or its JWKS URL for agents). */
export function builtinIssuerTrust(
  issuer: BuiltinIssuer | { issuer: string; audience: string; jwksUrl: string },
): TrustedIssuer {
  return {
    issuer: issuer.issuer,
    audiences: [issuer.audience],
    jwks: "jwksUrl" in issuer ? { url: issuer.jwksUrl } : issuer.jwks(),
    usernameClaim: "sub",
    groupsClaim: "groups",
    algorithms: [ISSUER_ALGORITHM],
  };
}

function checkIssuerUrl(issuer: string): void {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    throw new ConfigError(`built-in issuer: ${JSON.stringify(issuer)} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new ConfigError(`built-in issuer: ${issuer} must be an https URL`);
  // jwks_uri is issuer + path, and `iss` must match verifier config byte for byte.
  if (issuer.endsWith("/")) throw new ConfigError(`built-in issuer: ${issuer} must not end with "/"`);
  if (url.search || url.hash) throw new ConfigError(`built-in issuer: ${issuer} must not have a query or fragment`);
}
