// Generates and imports the JWK signing keys of the built-in issuer and of agents.
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";

export type SigningAlgorithm = "ES256" | "EdDSA";

/** JWK members that hold private key material; a public JWK must carry none of them. */
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] as const;

/**
 * A fresh, extractable key pair as JWKs. Both halves carry `kid` (the RFC 7638 thumbprint of
 * the public key) and `alg`; the public half also `use: "sig"`.
 */
export async function generateSigningKeyPair(alg: SigningAlgorithm): Promise<{ privateJwk: JWK; publicJwk: JWK }> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const publicRaw = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicRaw, "sha256");
  return {
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg },
    publicJwk: { ...publicRaw, kid, alg, use: "sig" },
  };
}

/** Imports a private JWK for signing, with the algorithm named by its `alg`. */
export async function importPrivateJwk(jwk: JWK): Promise<CryptoKey> {
  if (typeof jwk?.d !== "string") throw new TypeError("importPrivateJwk: the JWK holds no private key (no \"d\")");
  return importWith(jwk, requireAlg(jwk, "importPrivateJwk"));
}

/**
 * Imports a public JWK for verification. `alg` pins the algorithm: a JWK whose own `alg`
 * names another one is refused.
 */
export async function importPublicJwk(jwk: JWK, alg?: string): Promise<CryptoKey> {
  if (PRIVATE_MEMBERS.some((member) => jwk?.[member] !== undefined)) {
    throw new TypeError("importPublicJwk: the JWK holds private key material; pass the public key only");
  }
  if (alg !== undefined && jwk.alg !== undefined && jwk.alg !== alg) {
    throw new TypeError(`importPublicJwk: the key is for ${jwk.alg}, not ${alg}`);
  }
  return importWith(jwk, alg ?? requireAlg(jwk, "importPublicJwk"));
}

/** The public half of a JWK: every private member removed. */
export function toPublicJwk(jwk: JWK): JWK {
  const copy: JWK = { ...jwk };
  for (const member of PRIVATE_MEMBERS) delete copy[member];
  delete copy.key_ops;
  return copy;
}

function requireAlg(jwk: JWK, caller: string): string {
  if (typeof jwk?.alg !== "string") throw new TypeError(`${caller}: the JWK has no "alg"`);
  return jwk.alg;
}

async function importWith(jwk: JWK, alg: string): Promise<CryptoKey> {
  const key = await importJWK(jwk, alg);
  if (key instanceof Uint8Array) throw new TypeError(`symmetric keys are not accepted (alg ${alg})`);
  return key;
}
