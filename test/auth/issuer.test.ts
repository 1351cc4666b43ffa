import { describe, expect, test } from "bun:test";
import { decodeJwt, decodeProtectedHeader } from "jose";
import {
  builtinIssuerTrust, createBuiltinIssuer, createUserTokenVerifier, loadOrCreateIssuerKeys, MAX_USER_TOKEN_TTL_SECONDS, rotateIssuerKeys, type SettingsStore,
} from "../../lib/auth/index.ts";
import { BadRequest, ConfigError } from "../../lib/errors/index.ts";

function memorySettings(): SettingsStore & { values: Map<string, string>; writes: number } {
  const values = new Map<string, string>();
  return {
    values,
    writes: 0,
    async getSetting(k) {
      return values.get(k);
    },
    async setSetting(k, v) {
      this.writes++;
      values.set(k, v);
    },
    async setSettingIfAbsent(k, v) {
      if (!values.has(k)) {
        this.writes++;
        values.set(k, v);
      }
      return values.get(k)!;
    },
  };
}

const ISSUER = "https://relay.example.com";
const AUDIENCE = "cluster-connect";

async function newIssuer() {
  const keys = await loadOrCreateIssuerKeys(memorySettings());
  return createBuiltinIssuer({ issuer: ISSUER, audience: AUDIENCE, ...keys });
}

describe("loadOrCreateIssuerKeys", () => {
  test("creates an ES256 pair once and returns the same pair afterwards", async () => {
    const settings = memorySettings();
    const first = await loadOrCreateIssuerKeys(settings);
    const second = await loadOrCreateIssuerKeys(settings);
    expect(settings.writes).toBe(1);
    expect(second).toEqual(first);
    expect(first.publicJwk).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", use: "sig" });
    expect(JSON.parse(settings.values.get("issuer.keys")!)).toEqual({ privateJwk: first.privateJwk, publicJwk: first.publicJwk });
    expect(first.retired).toEqual([]);
  });

  test("rotateIssuerKeys signs with a new pair; the old public key verifies for 31 days, then leaves the JWKS", async () => {
    const settings = memorySettings();
    const t0 = 1_800_000_000_000;
    const old = await loadOrCreateIssuerKeys(settings, () => t0);
    const rotated = await rotateIssuerKeys(settings, { now: () => t0 });
    const after = await loadOrCreateIssuerKeys(settings, () => t0 + 1000);
    expect(rotated.kid).toBe(after.publicJwk.kid as string);
    expect(rotated.kid).not.toBe(old.publicJwk.kid as string);
    expect(rotated.verifying).toEqual([rotated.kid, old.publicJwk.kid as string]);
    expect(after.retired.map((r) => r.publicJwk.kid)).toEqual([old.publicJwk.kid]);
    expect(after.retired[0]!.publicJwk).not.toHaveProperty("d");
    const issuer = createBuiltinIssuer({ issuer: ISSUER, audience: AUDIENCE, ...after });
    expect(issuer.jwks().keys.map((k) => k.kid)).toEqual([rotated.kid, old.publicJwk.kid]);
    // A token of the old key lives at most MAX_USER_TOKEN_TTL_SECONDS: after that its key is gone.
    const later = await loadOrCreateIssuerKeys(settings, () => t0 + MAX_USER_TOKEN_TTL_SECONDS * 1000 + 1);
    expect(later.retired).toEqual([]);
  });

  test("rotateIssuerKeys with dropOld (a leaked key) keeps no old key at all", async () => {
    const settings = memorySettings();
    await loadOrCreateIssuerKeys(settings);
    await rotateIssuerKeys(settings);
    const dropped = await rotateIssuerKeys(settings, { dropOld: true });
    expect(dropped.verifying).toEqual([dropped.kid]);
    expect((await loadOrCreateIssuerKeys(settings)).retired).toEqual([]);
  });

  test("a corrupt setting is reported, not silently replaced (that would invalidate every token)", async () => {
    const settings = memorySettings();
    settings.values.set("issuer.keys", "{not json");
    await expect(loadOrCreateIssuerKeys(settings)).rejects.toThrow(/issuer.keys is not valid JSON/);
    expect(settings.writes).toBe(0);
  });
});

describe("createBuiltinIssuer", () => {
  test("publishes only the public key in its JWKS", async () => {
    const issuer = await newIssuer();
    const { keys } = issuer.jwks();
    expect(keys).toHaveLength(1);
    expect(keys[0]!.d).toBeUndefined();
    expect(keys[0]).toMatchObject({ kty: "EC", alg: "ES256", use: "sig" });
  });

  test("serves an OIDC discovery document pointing at its JWKS", async () => {
    expect((await newIssuer()).discovery()).toMatchObject({
      issuer: ISSUER,
      jwks_uri: "https://relay.example.com/.well-known/jwks.json",
      id_token_signing_alg_values_supported: ["ES256"],
      subject_types_supported: ["public"],
      response_types_supported: ["id_token"],
    });
  });

  test("signs user tokens with the documented header and claims", async () => {
    const issuer = await newIssuer();
    const before = Math.floor(Date.now() / 1000);
    const token = await issuer.signUserToken({ user: "alice", groups: ["devs"] });
    expect(decodeProtectedHeader(token)).toEqual({ alg: "ES256", kid: issuer.jwks().keys[0]!.kid, typ: "JWT" });
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({ iss: ISSUER, aud: AUDIENCE, sub: "alice", groups: ["devs"] });
    expect(claims.iat).toBeGreaterThanOrEqual(before);
    expect(claims.nbf).toBe(claims.iat!);
    expect(claims.exp! - claims.iat!).toBe(3600);
    expect(claims.jti).toMatch(/^[A-Za-z0-9_-]{16,}$/);
    expect(decodeJwt(await issuer.signUserToken({ user: "alice" })).jti).not.toBe(claims.jti);
  });

  test("groups default to an empty array", async () => {
    expect(decodeJwt(await (await newIssuer()).signUserToken({ user: "bob" })).groups).toEqual([]);
  });

  test("a token bound to clusters carries their audiences beside the issuer's", async () => {
    const issuer = await newIssuer();
    const bound = decodeJwt(await issuer.signUserToken({ user: "alice", extraAudiences: ["cluster-connect:prod"] }));
    expect(bound.aud).toEqual([issuer.audience, "cluster-connect:prod"]);
    expect(decodeJwt(await issuer.signUserToken({ user: "alice" })).aud).toBe(issuer.audience);
  });

  test.each([0, -1, 1.5, 31 * 24 * 3600 + 1])("refuses a lifetime of %p seconds", async (ttlSeconds) => {
    const issuer = await newIssuer();
    const attempt = issuer.signUserToken({ user: "alice", ttlSeconds });
    await expect(attempt).rejects.toThrow(BadRequest);
    await expect(issuer.signUserToken({ user: "alice", ttlSeconds })).rejects.toThrow(/use 1 to 2678400 seconds \(31 days\)/);
  });

  test("accepts the 31-day maximum", async () => {
    const claims = decodeJwt(await (await newIssuer()).signUserToken({ user: "alice", ttlSeconds: 31 * 24 * 3600 }));
    expect(claims.exp! - claims.iat!).toBe(31 * 24 * 3600);
  });

  test.each([["", /invalid user name/], ["a\nb", /invalid user name/]])("refuses user %p", async (user, message) => {
    await expect((await newIssuer()).signUserToken({ user })).rejects.toThrow(message);
  });

  test("refuses an empty group name", async () => {
    await expect((await newIssuer()).signUserToken({ user: "alice", groups: [""] })).rejects.toThrow(/invalid group name/);
  });

  test.each(["https://relay.example.com/", "not a url", "ftp://relay.example.com"])("refuses issuer URL %p", async (url) => {
    const keys = await loadOrCreateIssuerKeys(memorySettings());
    expect(() => createBuiltinIssuer({ issuer: url, audience: AUDIENCE, ...keys })).toThrow(ConfigError);
  });
});

describe("builtinIssuerTrust", () => {
  test("tokens of the built-in issuer verify with its trust entry", async () => {
    const issuer = await newIssuer();
    const verifier = createUserTokenVerifier({ issuers: [builtinIssuerTrust(issuer)] });
    const token = await issuer.signUserToken({ user: "alice", groups: ["devs", "ops"] });
    expect(await verifier.verifyUserToken(token)).toEqual({
      user: "alice", groups: ["devs", "ops"], subject: "alice", issuer: ISSUER, audiences: [AUDIENCE],
    });
  });

  test("the URL form points the verifier at the JWKS URL", () => {
    expect(builtinIssuerTrust({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: `${ISSUER}/.well-known/jwks.json` })).toEqual({
      issuer: ISSUER,
      audiences: [AUDIENCE],
      jwks: { url: `${ISSUER}/.well-known/jwks.json` },
      usernameClaim: "sub",
      groupsClaim: "groups",
      algorithms: ["ES256"],
    });
  });

  test("a token from another relay's issuer with the same URL does not verify", async () => {
    const ours = await newIssuer();
    const theirs = await newIssuer();
    const verifier = createUserTokenVerifier({ issuers: [builtinIssuerTrust(ours)] });
    await expect(verifier.verifyUserToken(await theirs.signUserToken({ user: "mallory" }))).rejects.toThrow(/does not publish/);
  });
});
