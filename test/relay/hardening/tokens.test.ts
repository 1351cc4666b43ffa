// Attacks on user tokens at a real relay: each is a 401 Status that says why, never a stack, never a crash.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHmac, createPublicKey } from "node:crypto";
import { SignJWT, type JWK } from "jose";
import { generateSigningKeyPair, importPrivateJwk, loadOrCreateIssuerKeys } from "../../../lib/auth/index.ts";
import { CLUSTER, completeResponses, expectNoStack, rawExchange, startHarness, statusCodes, type Harness } from "./harness.ts";

setDefaultTimeout(30_000);
let h: Harness;
let keys: { privateJwk: JWK; publicJwk: JWK };

beforeAll(async () => {
  // Every case fails from 127.0.0.1: the failure limit has its own test (brute-force.test.ts).
  h = await startHarness({ relayOptions: { authRateLimit: false } });
  keys = await loadOrCreateIssuerKeys(h.relay.store);
});
afterAll(() => h?.stop());

const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

function claims(extra: Record<string, unknown> = {}) {
  return { iss: h.relay.url, aud: "cluster-connect", sub: "alice", groups: [], iat: now(), exp: now() + 600, ...extra };
}

async function signed(payload: Record<string, unknown>, header: Record<string, unknown> = {}, privateJwk = keys.privateJwk) {
  return new SignJWT(payload)
    .setProtectedHeader({ alg: "ES256", kid: keys.publicJwk.kid!, typ: "JWT", ...header } as { alg: string })
    .sign(await importPrivateJwk({ ...privateJwk, alg: "ES256" }));
}

function hmacToken(secret: string | Buffer): string {
  const input = `${b64({ alg: "HS256", kid: keys.publicJwk.kid, typ: "JWT" })}.${b64(claims())}`;
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
}

async function get(token: string, path = "/version") {
  const res = await fetch(`${h.base}/v1/clusters/${CLUSTER}/k8s${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

const cases: [string, () => Promise<string> | string, RegExp][] = [
  ["alg none", () => `${b64({ alg: "none", typ: "JWT" })}.${b64(claims())}.`, /algorithm "none" is not accepted|token is invalid/],
  ["alg none with a signature part", () => `${b64({ alg: "none" })}.${b64(claims())}.${b64("x")}`, /algorithm "none" is not accepted|token is invalid/],
  ["HS256 keyed with the issuer's public JWK", () => hmacToken(JSON.stringify(keys.publicJwk)), /algorithm "HS256" is not accepted/],
  ["HS256 keyed with the issuer's public key PEM", () => hmacToken(createPublicKey({ key: { ...keys.publicJwk }, format: "jwk" }).export({ type: "spki", format: "pem" }) as string), /algorithm "HS256" is not accepted/],
  ["a real signature but another issuer", () => signed(claims({ iss: "https://evil.example" })), /issuer "https:\/\/evil.example" is not trusted/],
  ["a real signature but no issuer", () => signed(claims({ iss: undefined })), /no issuer \(iss\) claim/],
  ["a real signature but the wrong audience", () => signed(claims({ aud: "kubernetes" })), /audience does not match/],
  ["expired", () => signed(claims({ iat: now() - 7200, exp: now() - 600 })), /token expired/],
  ["no expiry", () => signed(claims({ exp: undefined })), /expiry|exp/],
  ["nbf in the future", () => signed(claims({ nbf: now() + 600 })), /not valid yet \(nbf is in the future\)/],
  ["an unknown kid", () => signed(claims(), { kid: "rotated-away" }), /signed with key "rotated-away", which issuer .* does not publish/],
  ["the issuer's kid, an attacker's key", async () => signed(claims(), {}, (await generateSigningKeyPair("ES256")).privateJwk), /signature is invalid/],
  ["an attacker's key embedded in the header (jwk)", async () => {
    const attacker = await generateSigningKeyPair("ES256");
    return signed(claims(), { jwk: attacker.publicJwk }, attacker.privateJwk);
  }, /signature is invalid|token is invalid/],
  ["an attacker's JWKS URL in the header (jku)", async () => {
    const attacker = await generateSigningKeyPair("ES256");
    return signed(claims(), { jku: "http://127.0.0.1:1/jwks.json" }, attacker.privateJwk);
  }, /signature is invalid|token is invalid/],
  ["a tampered payload (sub changed, signature kept)", () => {
    const [head, , sig] = h.alice.split(".");
    return `${head}.${b64({ ...JSON.parse(Buffer.from(h.alice.split(".")[1]!, "base64url").toString()), sub: "admin" })}.${sig}`;
  }, /signature is invalid/],
  ["a tampered header (alg changed to ES384)", () => {
    const [, payload, sig] = h.alice.split(".");
    return `${b64({ alg: "ES384", kid: keys.publicJwk.kid, typ: "JWT" })}.${payload}.${sig}`;
  }, /algorithm "ES384" is not accepted|token is invalid/],
  ["an unknown critical header", async () => {
    const input = `${b64({ alg: "ES256", kid: keys.publicJwk.kid, crit: ["exp-bound"], "exp-bound": true })}.${b64(claims())}`;
    const key = await importPrivateJwk({ ...keys.privateJwk, alg: "ES256" });
    const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, new TextEncoder().encode(input));
    return `${input}.${Buffer.from(sig).toString("base64url")}`;
  }, /token is invalid/],
  ["not a JWT", () => "a.b.c", /not a valid JWT/],
  ["many dots", () => ".".repeat(5000), /not a valid JWT/],
  ["a payload that is not JSON", () => `${b64({ alg: "ES256" })}.${b64("not json")}.${b64("x")}`, /not a valid JWT/],
];

describe("forged and broken tokens get 401 with a clear reason", () => {
  test.each(cases)("%s", async (_what, make, reason) => {
    const token = await make();
    const seen = h.requests.length;
    const { status, text } = await get(token);
    expect(status).toBe(401);
    const body = JSON.parse(text) as { kind: string; reason: string; message: string; code: number };
    expect(body).toMatchObject({ kind: "Status", reason: "Unauthorized", code: 401 });
    expect(body.message).toMatch(reason);
    expectNoStack(text);
    if (token.length > 20) expect(text).not.toContain(token);
    expect(h.requests.length).toBe(seen); // nothing reached the API server
    // The relay still serves the next request.
    expect((await get(h.alice)).status).toBe(200);
  });

  test("the same tokens on an upgrade (exec) are refused on the raw socket with 401", async () => {
    for (const [, make] of cases.slice(0, 12)) {
      const raw = await rawExchange(h.port, [
        `GET /v1/clusters/${CLUSTER}/k8s/api/v1/namespaces/default/pods/demo/exec?command=sh HTTP/1.1`,
        "Host: relay", "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol: v5.channel.k8s.io",
        `Authorization: Bearer ${await make()}`, "", "",
      ].join("\r\n"));
      expect(statusCodes(raw)).toEqual([401]);
      expect(raw).toContain('"reason":"Unauthorized"');
      expectNoStack(raw);
    }
    expect(h.requests.filter((r) => r.url.includes("/exec"))).toEqual([]);
  });
});

describe("oversized input never crashes the relay", () => {
  test("a token over 16 KiB is refused with 401 saying why (the relay's parser takes 64 KiB of headers)", async () => {
    const big = `${b64({ alg: "ES256", kid: keys.publicJwk.kid })}.${b64({ ...claims(), pad: "x".repeat(17 * 1024) })}.${b64("sig")}`;
    const { status, text } = await get(big);
    expect(status).toBe(401);
    expect(JSON.parse(text).message).toContain("larger than 16 KiB");
    expectNoStack(text);
    expect((await get(h.alice)).status).toBe(200);
  });

  test("80 KiB of headers get 431 or 400, and the relay keeps serving", async () => {
    const lines = Array.from({ length: 80 }, (_, i) => `X-Filler-${i}: ${"y".repeat(1000)}`);
    const raw = await rawExchange(h.port, [
      `GET /v1/clusters/${CLUSTER}/k8s/version HTTP/1.1`, "Host: relay", `Authorization: Bearer ${h.alice}`, ...lines, "", "",
    ].join("\r\n"), { until: (received) => completeResponses(received) === 1 });
    const codes = statusCodes(raw);
    expect(codes.length === 0 || [400, 431].includes(codes[0]!)).toBe(true);
    expect(codes).not.toContain(200);
    expectNoStack(raw);
    expect((await get(h.alice)).status).toBe(200);
  });

  test("one 80 KiB header value gets 431 or 400", async () => {
    const raw = await rawExchange(h.port, [
      `GET /v1/clusters/${CLUSTER}/k8s/version HTTP/1.1`, "Host: relay", `Authorization: Bearer ${h.alice}`, `X-Big: ${"z".repeat(80 * 1024)}`, "", "",
    ].join("\r\n"), { until: (received) => completeResponses(received) === 1 });
    const codes = statusCodes(raw);
    expect(codes.length === 0 || [400, 431].includes(codes[0]!)).toBe(true);
    expect((await get(h.alice)).status).toBe(200);
  });
});
