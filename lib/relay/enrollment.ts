// Registers clusters with single-use enrollment tokens, and exchanges a token for an agent key.
import type { JWK } from "jose";
import { createEnrollmentSecret, hashSecret, importPublicJwk, toPublicJwk } from "../auth/index.ts";
import { BadRequest, Unauthorized } from "../errors/index.ts";
import { validateClusterName } from "../kube/index.ts";
import type { RelayStore } from "./store/index.ts";

export const DEFAULT_ENROLLMENT_TTL_SECONDS = 3600;
const MAX_ENROLLMENT_TTL_SECONDS = 7 * 24 * 3600;

/** Registers `name` and returns a one-time enrollment token for its agent. */
export async function addCluster(store: RelayStore, name: string, ttlSeconds = DEFAULT_ENROLLMENT_TTL_SECONDS) {
  validateClusterName(name);
  checkEnrollmentTtl(ttlSeconds);
  await store.addCluster(name);
  return createEnrollmentToken(store, name, ttlSeconds);
}

/** A new one-time token for a registered cluster (re-enrolling an agent that lost its key). */
export async function createEnrollmentToken(store: RelayStore, cluster: string, ttlSeconds = DEFAULT_ENROLLMENT_TTL_SECONDS) {
  checkEnrollmentTtl(ttlSeconds);
  const { secret, secretHash } = createEnrollmentSecret();
  const expiresAt = new Date(Date.now() + ttlSeconds * 1000);
  await store.addEnrollmentToken({ cluster, secretHash, expiresAt });
  return { cluster, token: secret, expiresAt };
}

function checkEnrollmentTtl(ttlSeconds: number): void {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 60 || ttlSeconds > MAX_ENROLLMENT_TTL_SECONDS) {
    throw new BadRequest(`invalid enrollment token lifetime ${ttlSeconds}s: use 60s to 7 days`);
  }
}

/**
 * Consumes the enrollment token and stores the agent's public key; returns the cluster's name. The
 * token names the cluster it was made for; presented for another cluster (a mistyped --cluster) it
 * is refused with the cluster it is for, and left valid: whoever holds it may enroll that cluster
 * anyway, so naming it tells them nothing they could not do.
 * Throws BadRequest for malformed input or a token made for another cluster, Unauthorized for a
 * token that is invalid, expired or spent (the relay runs this through limitAuthentication, so only
 * that counts as a failed login).
 */
export async function enrollAgent(store: RelayStore, input: { cluster?: unknown; token?: unknown; publicKey?: unknown }): Promise<string> {
  const cluster = validateClusterName(String(input.cluster ?? ""));
  if (typeof input.token !== "string" || input.token.length > 512) throw new BadRequest("enrollment needs the token printed by arcrelay cluster add");
  const publicKey = await validateAgentPublicKey(input.publicKey);
  const secretHash = hashSecret(input.token);
  const found = await store.findEnrollmentToken(secretHash, new Date());
  if (found && found.cluster !== cluster) {
    // 400, not 401: the token is good, the request names the wrong cluster. An agent that kept a
    // key for an enrollment that did not finish takes a 401 for "maybe spent by my earlier start".
    throw new BadRequest(
      `this enrollment token is for cluster "${found.cluster}", not "${cluster}": run the agent with --cluster ${found.cluster}; the token was not used and is still valid`,
    );
  }
  const record = await store.consumeEnrollmentToken(secretHash, new Date());
  if (!record || record.cluster !== cluster) {
    throw new Unauthorized(
      `enrollment token for cluster "${cluster}" is invalid, expired or already used: create a new one with arcrelay cluster enroll-token ${cluster}`,
    );
  }
  await store.setAgentKey(cluster, publicKey);
  return cluster;
}

/** An agent's public key as sent at enrollment or rotation: an Ed25519 public JWK, nothing private. */
export async function validateAgentPublicKey(key: unknown): Promise<JWK> {
  const jwk = key as JWK | undefined;
  if (!jwk || typeof jwk !== "object" || jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string" || "d" in jwk) {
    throw new BadRequest("the agent public key must be an Ed25519 public JWK");
  }
  if (jwk.alg !== undefined && jwk.alg !== "EdDSA") throw new BadRequest(`the agent public key must be an Ed25519 key for EdDSA, not ${jwk.alg}`);
  const publicJwk = toPublicJwk(jwk);
  await importPublicJwk(publicJwk, "EdDSA").catch((cause: unknown) => {
    throw new BadRequest("the agent public key is not a valid Ed25519 key", { cause });
  });
  return publicJwk;
}
