// Short-lived JWTs with which an agent proves, per tunnel connection, which cluster it serves.
import { randomBytes } from "node:crypto";
import { decodeJwt, errors, jwtVerify, SignJWT, type JWK, type JWTPayload } from "jose";
import { Unauthorized } from "../errors/index.ts";
import { validateClusterName } from "../kube/index.ts";
import { importPrivateJwk, importPublicJwk } from "./keys.ts";

export const AGENT_TOKEN_ISSUER = "arcagent";
export const AGENT_TOKEN_ALGORITHM = "EdDSA";
export const DEFAULT_AGENT_TOKEN_TTL_SECONDS = 60;
/** Longest lifetime (exp - iat) the relay accepts: a leaked token is useless within minutes. */
export const MAX_AGENT_TOKEN_TTL_SECONDS = 300;
const CLOCK_TOLERANCE_SECONDS = 30;
const MAX_TOKEN_BYTES = 16 * 1024;
const ENROLL_HINT = "enroll with arcagent --enroll-token";

export async function signAgentToken(opts: {
  privateJwk: JWK;
  cluster: string;
  audience: string;
  ttlSeconds?: number;
}): Promise<string> {
  const cluster = validateClusterName(opts.cluster);
  const ttl = opts.ttlSeconds ?? DEFAULT_AGENT_TOKEN_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_AGENT_TOKEN_TTL_SECONDS) {
    throw new TypeError(`agent token lifetime must be 1-${MAX_AGENT_TOKEN_TTL_SECONDS} seconds, got ${ttl}`);
  }
  const key = await importPrivateJwk({ ...opts.privateJwk, alg: AGENT_TOKEN_ALGORITHM });
  const now = Math.floor(Date.now() / 1000);
  const header: { alg: string; kid?: string; typ: string } = { alg: AGENT_TOKEN_ALGORITHM, typ: "JWT" };
  if (typeof opts.privateJwk.kid === "string") header.kid = opts.privateJwk.kid;
  return new SignJWT({})
    .setProtectedHeader(header)
    .setIssuer(AGENT_TOKEN_ISSUER)
    .setSubject(cluster)
    .setAudience(opts.audience)
    .setIssuedAt(now)
    .setExpirationTime(now + ttl)
    .setJti(randomBytes(16).toString("base64url"))
    .sign(key);
}

/**
 * Verifies an agent's token against the key enrolled for the cluster the token names, so a key
 * of cluster A can never authenticate as cluster B. The caller may use `jti` to refuse replays.
 */
export async function verifyAgentToken(
  token: string,
  opts: { audience: string; publicKeyOf(cluster: string): Promise<JWK | undefined> },
): Promise<{ cluster: string; jti: string }> {
  const cluster = claimedCluster(token);
  const jwk = await opts.publicKeyOf(cluster);
  if (!jwk) throw new Unauthorized(`cluster ${cluster} has no enrolled agent: ${ENROLL_HINT}`);
  let key: CryptoKey;
  try {
    key = await importPublicJwk(jwk, AGENT_TOKEN_ALGORITHM);
  } catch (error) {
    throw new Unauthorized(`the enrolled key of cluster ${cluster} is not an Ed25519 key: enroll again with arcagent --enroll-token`, { cause: error });
  }
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, key, {
      issuer: AGENT_TOKEN_ISSUER,
      subject: cluster,
      audience: opts.audience,
      algorithms: [AGENT_TOKEN_ALGORITHM],
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      maxTokenAge: MAX_AGENT_TOKEN_TTL_SECONDS,
      requiredClaims: ["exp", "iat", "jti"],
    }));
  } catch (error) {
    throw new Unauthorized(explain(error, cluster), { cause: error });
  }
  const { exp, iat, jti } = payload as { exp: number; iat: number; jti: unknown };
  if (exp - iat > MAX_AGENT_TOKEN_TTL_SECONDS) {
    throw new Unauthorized(`agent token for cluster ${cluster} lives ${exp - iat} s, longer than ${MAX_AGENT_TOKEN_TTL_SECONDS} s: sign tokens with a shorter lifetime`);
  }
  if (typeof jti !== "string" || jti.length === 0) throw new Unauthorized(`agent token for cluster ${cluster} has no jti`);
  return { cluster, jti };
}

/** The unverified `sub`, only to choose whose key verifies the token. */
function claimedCluster(token: string): string {
  if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN_BYTES) {
    throw new Unauthorized("agent token missing or too large: the agent must send a signed token");
  }
  let sub: unknown;
  try {
    sub = decodeJwt(token).sub;
  } catch (error) {
    throw new Unauthorized("agent token is not a valid JWT", { cause: error });
  }
  try {
    return validateClusterName(sub as string);
  } catch (error) {
    throw new Unauthorized("agent token does not name a valid cluster in sub", { cause: error });
  }
}

function explain(error: unknown, cluster: string): string {
  if (error instanceof errors.JWTExpired) {
    return `agent token for cluster ${cluster} expired: check the clock of the agent's node`;
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    return `agent token for cluster ${cluster} has an invalid ${error.claim} claim (${error.reason})`;
  }
  if (error instanceof errors.JWSSignatureVerificationFailed || error instanceof errors.JOSEAlgNotAllowed) {
    return `agent token is not signed by the enrolled key of cluster ${cluster}: ${ENROLL_HINT} if the agent lost its key`;
  }
  return `agent token for cluster ${cluster} is invalid`;
}
