import { beforeAll, describe, expect, test } from "bun:test";
import { base64url, decodeJwt, decodeProtectedHeader, SignJWT, type JWK, type JWTPayload } from "jose";
import { generateSigningKeyPair, importPrivateJwk, signAgentToken, verifyAgentToken } from "../../lib/auth/index.ts";
import { Unauthorized } from "../../lib/errors/index.ts";

const AUD = "https://relay.example.com";
let clusterA: { privateJwk: JWK; publicJwk: JWK };
let clusterB: { privateJwk: JWK; publicJwk: JWK };
let enrolled: Map<string, JWK>;

beforeAll(async () => {
  clusterA = await generateSigningKeyPair("EdDSA");
  clusterB = await generateSigningKeyPair("EdDSA");
  enrolled = new Map([["cluster-a", clusterA.publicJwk], ["cluster-b", clusterB.publicJwk]]);
});

const lookup = { audience: AUD, publicKeyOf: async (cluster: string) => enrolled.get(cluster) };
const now = () => Math.floor(Date.now() / 1000);

async function refusal(token: string, opts = lookup): Promise<string> {
  const error = await verifyAgentToken(token, opts).then(() => { throw new Error("token was accepted"); }, (e: unknown) => e);
  expect(error).toBeInstanceOf(Unauthorized);
  return (error as Error).message;
}

/** A token with hand-picked claims, signed with an agent key. */
async function craft(claims: JWTPayload, privateJwk: JWK = clusterA.privateJwk, alg = "EdDSA"): Promise<string> {
  return new SignJWT({ iss: "arcagent", sub: "cluster-a", aud: AUD, iat: now(), exp: now() + 60, jti: "j1", ...claims })
    .setProtectedHeader({ alg })
    .sign(await importPrivateJwk({ ...privateJwk, alg }));
}

describe("signAgentToken", () => {
  test("signs a 60 s EdDSA token naming the cluster", async () => {
    const token = await signAgentToken({ privateJwk: clusterA.privateJwk, cluster: "cluster-a", audience: AUD });
    expect(decodeProtectedHeader(token)).toMatchObject({ alg: "EdDSA", kid: clusterA.publicJwk.kid });
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({ iss: "arcagent", sub: "cluster-a", aud: AUD });
    expect(claims.exp! - claims.iat!).toBe(60);
    expect(typeof claims.jti).toBe("string");
  });

  test.each([0, 301, 3600])("refuses a lifetime of %p s", async (ttlSeconds) => {
    await expect(signAgentToken({ privateJwk: clusterA.privateJwk, cluster: "cluster-a", audience: AUD, ttlSeconds }))
      .rejects.toThrow(/lifetime must be 1-300 seconds/);
  });
});

describe("verifyAgentToken", () => {
  test("accepts the cluster's own token and returns cluster and jti", async () => {
    const token = await signAgentToken({ privateJwk: clusterA.privateJwk, cluster: "cluster-a", audience: AUD });
    const result = await verifyAgentToken(token, lookup);
    expect(result).toEqual({ cluster: "cluster-a", jti: decodeJwt(token).jti as string });
  });

  test("an agent of cluster A cannot present itself as cluster B", async () => {
    const token = await signAgentToken({ privateJwk: clusterA.privateJwk, cluster: "cluster-b", audience: AUD });
    expect(await refusal(token)).toMatch(/not signed by the enrolled key of cluster cluster-b/);
  });

  test("a cluster without an enrolled agent", async () => {
    const token = await signAgentToken({ privateJwk: clusterA.privateJwk, cluster: "cluster-c", audience: AUD });
    expect(await refusal(token)).toBe("cluster cluster-c has no enrolled agent: enroll with arcagent --enroll-token");
  });

  test.each(["../cluster-a", "Cluster-A", "cluster-a/x", "%2e%2e", ""])("a sub that is no cluster name (%p) is refused before any lookup", async (sub) => {
    let looked = false;
    const token = await craft({ sub });
    const message = await refusal(token, { audience: AUD, publicKeyOf: async () => { looked = true; return clusterA.publicJwk; } });
    expect(message).toMatch(/does not name a valid cluster/);
    expect(looked).toBe(false);
  });

  test("wrong audience (a token meant for another relay)", async () => {
    const token = await signAgentToken({ privateJwk: clusterA.privateJwk, cluster: "cluster-a", audience: "https://other-relay" });
    expect(await refusal(token)).toMatch(/invalid aud claim/);
  });

  test("expired", async () => {
    expect(await refusal(await craft({ iat: now() - 200, exp: now() - 100 }))).toMatch(/expired/);
  });

  test.each([
    ["lifetime over 300 s", { iat: now(), exp: now() + 301 }, /lives 301 s, longer than 300 s/],
    ["issued in the future", { iat: now() + 3600, exp: now() + 3660 }, /invalid iat claim/],
    ["wrong issuer", { iss: "someone" }, /invalid iss claim/],
    ["no jti", { jti: undefined }, /invalid jti claim/],
    ["no iat", { iat: undefined }, /invalid iat claim/],
  ] as const)("%s", async (_label, claims, message) => {
    expect(await refusal(await craft(claims as JWTPayload))).toMatch(message);
  });

  test("alg none", async () => {
    const enc = (o: object) => base64url.encode(JSON.stringify(o));
    const token = `${enc({ alg: "none" })}.${enc({ iss: "arcagent", sub: "cluster-a", aud: AUD, iat: now(), exp: now() + 60, jti: "x" })}.`;
    expect(await refusal(token)).toMatch(/not signed by the enrolled key/);
  });

  test("tampered payload", async () => {
    const [header, , sig] = (await signAgentToken({ privateJwk: clusterA.privateJwk, cluster: "cluster-a", audience: AUD })).split(".");
    const payload = base64url.encode(JSON.stringify({ iss: "arcagent", sub: "cluster-a", aud: AUD, iat: now(), exp: now() + 290, jti: "y" }));
    expect(await refusal(`${header}.${payload}.${sig}`)).toMatch(/not signed by the enrolled key/);
  });

  test("an enrolled key that is not Ed25519 is refused", async () => {
    const ec = await generateSigningKeyPair("ES256");
    const token = await signAgentToken({ privateJwk: clusterA.privateJwk, cluster: "cluster-a", audience: AUD });
    const message = await refusal(token, { audience: AUD, publicKeyOf: async () => ec.publicJwk });
    expect(message).toMatch(/is not an Ed25519 key/);
  });

  test("a token over 16 KiB", async () => {
    expect(await refusal(await craft({ pad: "x".repeat(17 * 1024) }))).toMatch(/too large/);
  });
});
