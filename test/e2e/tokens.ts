// Tokens a user should never get through: signed with the relay's real key but expired, or forged.
import { SignJWT, type JWK } from "jose";
import { generateSigningKeyPair, importPrivateJwk, loadOrCreateIssuerKeys } from "../../lib/auth/index.ts";
import { openSqliteStore } from "../../lib/relay/index.ts";

async function signWith(privateJwk: JWK, kid: string, claims: { iss: string; sub: string; exp: number; iat: number }) {
  return new SignJWT({ groups: [] })
    .setProtectedHeader({ alg: "ES256", kid, typ: "JWT" })
    .setIssuer(claims.iss).setAudience("cluster-connect").setSubject(claims.sub)
    .setIssuedAt(claims.iat).setExpirationTime(claims.exp)
    .sign(await importPrivateJwk({ ...privateJwk, alg: "ES256" }));
}

/** A token from the relay's own issuer key that expired ten minutes ago (beyond any clock skew). */
export async function expiredToken(dataDir: string, issuer: string, user: string): Promise<string> {
  const store = await openSqliteStore(dataDir);
  try {
    const { privateJwk, publicJwk } = await loadOrCreateIssuerKeys(store);
    const now = Math.floor(Date.now() / 1000);
    return await signWith(privateJwk, publicJwk.kid!, { iss: issuer, sub: user, iat: now - 4200, exp: now - 600 });
  } finally {
    await store.close();
  }
}

/** A token that claims the relay's issuer and key id but is signed by an attacker's key. */
export async function forgedToken(dataDir: string, issuer: string, user: string): Promise<string> {
  const store = await openSqliteStore(dataDir);
  try {
    const { publicJwk } = await loadOrCreateIssuerKeys(store);
    const attacker = await generateSigningKeyPair("ES256");
    const now = Math.floor(Date.now() / 1000);
    return await signWith(attacker.privateJwk, publicJwk.kid!, { iss: issuer, sub: user, iat: now, exp: now + 600 });
  } finally {
    await store.close();
  }
}
