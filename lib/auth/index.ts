// Public face of lib/auth: user and agent tokens, the built-in and external issuers, enrollment secrets, grants.
export {
  generateSigningKeyPair, importPrivateJwk, importPublicJwk, toPublicJwk,
} from "./keys.ts";
export type { SigningAlgorithm } from "./keys.ts";
export {
  loadOrCreateIssuerKeys, rotateIssuerKeys, createBuiltinIssuer, builtinIssuerTrust,
  ISSUER_KEYS_SETTING, JWKS_PATH, DEFAULT_USER_TOKEN_TTL_SECONDS, MAX_USER_TOKEN_TTL_SECONDS,
} from "./issuer.ts";
export type { SettingsStore, BuiltinIssuer, IssuerKeys } from "./issuer.ts";
export { createUserTokenVerifier, MAX_TOKEN_BYTES } from "./verifier.ts";
export type { TrustedIssuer, IssuerLogin, Identity, UserTokenVerifier, UserTokenVerifierOptions } from "./verifier.ts";
export { loadIssuerConfig, parseIssuerConfig, resolveTrustedIssuers, ISSUER_ALGORITHMS } from "./issuer-config.ts";
export type { TrustedIssuerConfig } from "./issuer-config.ts";
export { createLazyJwksUrl, DISCOVERY_PATH } from "./discovery.ts";
export type { DiscoveryOptions } from "./discovery.ts";
export {
  signAgentToken, verifyAgentToken, AGENT_TOKEN_ISSUER, MAX_AGENT_TOKEN_TTL_SECONDS,
} from "./agent-token.ts";
export {
  createEnrollmentSecret, hashSecret, ENROLLMENT_SECRET_PREFIX,
} from "./enrollment.ts";
export { parsePrincipal, parseRole, findRole, roleAtLeast } from "./grants.ts";
export type { Role, Grant, GrantIdentity, PrincipalKind } from "./grants.ts";
