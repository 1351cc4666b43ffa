import { describe, expect, test } from "bun:test";
import { calculateJwkThumbprint, jwtVerify, SignJWT } from "jose";
import { generateSigningKeyPair, importPrivateJwk, importPublicJwk } from "../../lib/auth/index.ts";

describe("generateSigningKeyPair", () => {
  test.each([
    ["ES256", "EC", "P-256"],
    ["EdDSA", "OKP", "Ed25519"],
  ] as const)("%s: a pair that signs and verifies, with kid = RFC 7638 thumbprint", async (alg, kty, crv) => {
    const { privateJwk, publicJwk } = await generateSigningKeyPair(alg);
    expect(publicJwk).toMatchObject({ kty, crv, alg, use: "sig" });
    expect(publicJwk.d).toBeUndefined();
    expect(typeof privateJwk.d).toBe("string");
    expect(publicJwk.kid).toBe(await calculateJwkThumbprint(publicJwk, "sha256"));
    expect(privateJwk.kid).toBe(publicJwk.kid);
    expect(privateJwk.alg).toBe(alg);

    const token = await new SignJWT({ sub: "x" }).setProtectedHeader({ alg }).sign(await importPrivateJwk(privateJwk));
    const { payload } = await jwtVerify(token, await importPublicJwk(publicJwk));
    expect(payload.sub).toBe("x");
  });

  test("two calls give different keys", async () => {
    const [a, b] = await Promise.all([generateSigningKeyPair("EdDSA"), generateSigningKeyPair("EdDSA")]);
    expect(a.publicJwk.kid).not.toBe(b.publicJwk.kid);
  });
});

describe("importing", () => {
  test("a private JWK passed as public is refused, so it cannot leak into a JWKS", async () => {
    const { privateJwk } = await generateSigningKeyPair("ES256");
    await expect(importPublicJwk(privateJwk)).rejects.toThrow(/private key material/);
  });

  test("a public JWK passed as private is refused", async () => {
    const { publicJwk } = await generateSigningKeyPair("ES256");
    await expect(importPrivateJwk(publicJwk)).rejects.toThrow(/no private key/);
  });

  test("a JWK without alg needs the caller to name one", async () => {
    const { publicJwk } = await generateSigningKeyPair("EdDSA");
    const { alg: _alg, ...bare } = publicJwk;
    await expect(importPublicJwk(bare)).rejects.toThrow(/no "alg"/);
    expect(await importPublicJwk(bare, "EdDSA")).toBeDefined();
  });

  test("a key made for one algorithm is not imported for another", async () => {
    const { publicJwk } = await generateSigningKeyPair("ES256");
    await expect(importPublicJwk(publicJwk, "EdDSA")).rejects.toThrow(/for ES256, not EdDSA/);
  });
});
