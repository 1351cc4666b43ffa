// One-time enrollment secrets for agents: creation, hashing for storage, constant-time compare.
import { createHash, randomBytes } from "node:crypto";

export const ENROLLMENT_SECRET_PREFIX = "arcenroll_";

/** A new secret to hand to the operator once, and the hash the relay stores instead of it. */
export function createEnrollmentSecret(): { secret: string; secretHash: string } {
  const secret = ENROLLMENT_SECRET_PREFIX + randomBytes(32).toString("base64url");
  return { secret, secretHash: hashSecret(secret) };
}

/** SHA-256 of the secret, lowercase hex. */
export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}
