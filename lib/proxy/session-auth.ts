// The per-session secret that keeps other local users and processes off the arcproxy listener.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { Unauthorized } from "../errors/index.ts";

/** A fresh random 32-byte secret, base64url. */
export function createSessionToken(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * True when `authorization` is exactly `Bearer <sessionToken>`. Both sides are hashed first so
 * the constant-time compare also hides the length of what was sent.
 */
export function isSessionAuthorized(authorization: string | undefined, sessionToken: string): boolean {
  const match = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization ?? "");
  const presented = createHash("sha256").update(match?.[1] ?? "").digest();
  const expected = createHash("sha256").update(sessionToken).digest();
  return timingSafeEqual(presented, expected) && match !== null;
}

/** What a caller without the session token is told. */
export function createSessionUnauthorized(): Unauthorized {
  return new Unauthorized("this endpoint belongs to an arcproxy session; use the kubeconfig it wrote");
}
