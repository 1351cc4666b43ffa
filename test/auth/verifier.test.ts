import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { base64url, errors, exportSPKI, SignJWT, type JWK, type JWTPayload } from "jose";
import {
  createUserTokenVerifier, generateSigningKeyPair, importPrivateJwk, importPublicJwk, type TrustedIssuer,
} from "../../lib/auth/index.ts";
import { Unauthorized } from "../../lib/errors/index.ts";
import { generatePki } from "../cluster/pki.ts";

const ISS = "https://idp.example.com";
const AUD = "cluster-connect";

let keys: { privateJwk: JWK; publicJwk: JWK };
let otherKeys: { privateJwk: JWK; publicJwk: JWK };

beforeAll(async () => {
  keys = await generateSigningKeyPair("ES256");
  otherKeys = await generateSigningKeyPair("ES256");
});

function trusted(overrides: Partial<TrustedIssuer> = {}): TrustedIssuer {
  return {
    issuer: ISS,
    audiences: [AUD],
    jwks: { keys: [keys.publicJwk] },
    usernameClaim: "sub",
    groupsClaim: "groups",
    algorithms: ["ES256"],
    ...overrides,
  };
}

const now = () => Math.floor(Date.now() / 1000);

async function sign(
  claims: JWTPayload = {},
  opts: { signWith?: JWK; kid?: string; omit?: string[] } = {},
): Promise<string> {
  const signWith = opts.signWith ?? keys.privateJwk;
  const payload: JWTPayload = { iss: ISS, aud: AUD, sub: "alice", groups: ["devs"], iat: now(), exp: now() + 600, ...claims };
  for (const claim of opts.omit ?? []) delete payload[claim];
  return new SignJWT(payload)
    .setProtectedHeader({ alg: "ES256", kid: opts.kid ?? (signWith.kid as string), typ: "JWT" })
    .sign(await importPrivateJwk(signWith));
}

/** Verifies and returns the thrown error, failing the test if verification succeeds. */
async function rejection(token: string, issuers: TrustedIssuer[] = [trusted()], extra: object = {}): Promise<Unauthorized> {
  const verifier = createUserTokenVerifier({ issuers, ...extra });
  const error = await verifier.verifyUserToken(token).then(
    () => { throw new Error("token was accepted"); },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(Unauthorized);
  // The message reaches logs and terminals: it must never carry the token or its signature.
  for (const secret of [token, token.split(".")[2] ?? ""].filter((part) => part.length > 8)) {
    expect((error as Error).message).not.toContain(secret);
  }
  return error as Unauthorized;
}

const unsignedToken = (header: object, payload: object, signature = "") =>
  `${base64url.encode(JSON.stringify(header))}.${base64url.encode(JSON.stringify(payload))}.${signature}`;

describe("valid tokens", () => {
  test("map claims to user, groups and subject", async () => {
    const verifier = createUserTokenVerifier({ issuers: [trusted()] });
    expect(await verifier.verifyUserToken(await sign())).toEqual({ user: "alice", groups: ["devs"], subject: "alice", issuer: ISS, audiences: [AUD] });
  });

  test("use the configured claims and prefixes", async () => {
    const verifier = createUserTokenVerifier({
      issuers: [trusted({ usernameClaim: "email", usernamePrefix: "oidc:", groupsClaim: "roles", groupsPrefix: "oidc:" })],
    });
    const token = await sign({ sub: "0f3a", email: "alice@example.com", roles: ["admins", 7, "", "ops"] });
    expect(await verifier.verifyUserToken(token)).toEqual({
      user: "oidc:alice@example.com", groups: ["oidc:admins", "oidc:ops"], subject: "0f3a", issuer: ISS, audiences: [AUD],
    });
  });

  test.each<[string, unknown, string[]]>([
    ["missing groups claim", undefined, []],
    ["single string", "devs", ["devs"]],
    ["not a list", { a: 1 }, []],
  ])("groups: %s", async (_label, groups, expected) => {
    const verifier = createUserTokenVerifier({ issuers: [trusted()] });
    const token = groups === undefined ? await sign({}, { omit: ["groups"] }) : await sign({ groups: groups as string });
    expect((await verifier.verifyUserToken(token)).groups).toEqual(expected);
  });

  test("any one of several audiences is enough", async () => {
    const verifier = createUserTokenVerifier({ issuers: [trusted({ audiences: ["other", AUD] })] });
    expect((await verifier.verifyUserToken(await sign({ aud: [AUD, "x"] }))).user).toBe("alice");
  });

  test("picks the issuer by iss among several", async () => {
    const second: TrustedIssuer = trusted({ issuer: "https://other.example.com", jwks: { keys: [otherKeys.publicJwk] } });
    const verifier = createUserTokenVerifier({ issuers: [trusted(), second] });
    const token = await sign({ iss: "https://other.example.com" }, { signWith: otherKeys.privateJwk });
    expect((await verifier.verifyUserToken(token)).issuer).toBe("https://other.example.com");
  });

  test("expiry within the clock tolerance is still accepted", async () => {
    const verifier = createUserTokenVerifier({ issuers: [trusted()], clockToleranceSeconds: 30 });
    expect((await verifier.verifyUserToken(await sign({ iat: now() - 100, exp: now() - 10 }))).user).toBe("alice");
  });

  test("a token that verified is refused once it expires, though it was remembered", async () => {
    const issuedAt = now();
    let clockMs = issuedAt * 1000;
    const verifier = createUserTokenVerifier({ issuers: [trusted()], clockToleranceSeconds: 30, now: () => clockMs });
    const token = await sign({ iat: issuedAt, exp: issuedAt + 20 });
    expect((await verifier.verifyUserToken(token)).user).toBe("alice");

    clockMs = (issuedAt + 20 + 30 - 1) * 1000;
    expect((await verifier.verifyUserToken(token)).user).toBe("alice");
    clockMs = (issuedAt + 20 + 30) * 1000;
    await expect(verifier.verifyUserToken(token)).rejects.toThrow(
      "token expired: get a new token (arcrelay token create, or your identity provider)",
    );
  });

  test("a token that is not valid yet verifies once the clock reaches its nbf", async () => {
    const issuedAt = now();
    let clockMs = issuedAt * 1000;
    const verifier = createUserTokenVerifier({ issuers: [trusted()], clockToleranceSeconds: 0, now: () => clockMs });
    const token = await sign({ iat: issuedAt, nbf: issuedAt + 60 });
    await expect(verifier.verifyUserToken(token)).rejects.toThrow(/^token is not valid yet \(nbf is in the future\)/);
    clockMs = (issuedAt + 60) * 1000;
    expect((await verifier.verifyUserToken(token)).user).toBe("alice");
  });
});

describe("attacks and mistakes are refused with Unauthorized", () => {
  test("alg none", async () => {
    const token = unsignedToken({ alg: "none", typ: "JWT" }, { iss: ISS, aud: AUD, sub: "admin", exp: now() + 600 });
    const error = await rejection(token);
    expect(error.message).toMatch(/algorithm "none" is not accepted from issuer https:\/\/idp.example.com \(allowed: ES256\)/);
  });

  test("HS256 signed with the issuer's public key (key confusion)", async () => {
    const payload = { iss: ISS, aud: AUD, sub: "admin", exp: now() + 600 };
    const pem = await exportSPKI(await importPublicJwk(keys.publicJwk));
    for (const secret of [new TextEncoder().encode(pem), new TextEncoder().encode(JSON.stringify(keys.publicJwk))]) {
      const token = await new SignJWT(payload).setProtectedHeader({ alg: "HS256", kid: keys.publicJwk.kid as string }).sign(secret);
      expect((await rejection(token)).message).toMatch(/algorithm "HS256" is not accepted/);
    }
  });

  test("an issuer that is not trusted", async () => {
    const error = await rejection(await sign({ iss: "https://evil.example.com" }));
    expect(error.message).toBe('token issuer "https://evil.example.com" is not trusted: use a token from an issuer the relay trusts');
  });

  test("a trusted iss on a token signed by someone else's key with the same kid", async () => {
    const error = await rejection(await sign({}, { signWith: otherKeys.privateJwk, kid: keys.publicJwk.kid as string }));
    expect(error.message).toMatch(/^token signature is invalid: get a new token/);
  });

  test("wrong audience", async () => {
    const error = await rejection(await sign({ aud: "some-other-app" }));
    expect(error.message).toBe("token audience does not match: request a token for audience cluster-connect");
    expect(error.cause).toBeInstanceOf(errors.JWTClaimValidationFailed);
  });

  test.each([
    ["a user name", { sub: "system:admin" }, {}, 'user "system:admin"'],
    ["a group", { groups: ["devs", "system:masters"] }, {}, 'group "system:masters"'],
    ["a group in other casing", { groups: ["SYSTEM:masters"] }, {}, 'group "SYSTEM:masters"'],
    ["a prefix that makes one", { groups: ["masters"] }, { groupsPrefix: "system:" }, 'group "system:masters"'],
  ] as const)("Kubernetes' reserved names: %s starting with system:", async (_what, claims, overrides, named) => {
    const error = await rejection(await sign(claims), [trusted(overrides)]);
    expect(error.message).toContain(named);
    expect(error.message).toContain("are Kubernetes' own");
  });

  test.each([
    ["a group with a leading space (Go trims it to system:masters)", { groups: [" system:masters"] }],
    ["a user with a leading tab", { sub: "\tsystem:admin" }],
    ["a user with a trailing space", { sub: "alice " }],
  ] as const)("names a header would change: %s", async (_what, claims) => {
    const error = await rejection(await sign(claims));
    expect(error.message).toMatch(/white space|control characters/);
  });

  test("expired", async () => {
    const error = await rejection(await sign({ iat: now() - 7200, exp: now() - 3600 }));
    expect(error.message).toBe("token expired: get a new token (arcrelay token create, or your identity provider)");
    expect(error.cause).toBeInstanceOf(errors.JWTExpired);
  });

  test("nbf in the future", async () => {
    const error = await rejection(await sign({ nbf: now() + 3600 }));
    expect(error.message).toMatch(/^token is not valid yet \(nbf is in the future\)/);
  });

  test("no exp at all", async () => {
    const error = await rejection(await sign({}, { omit: ["exp"] }));
    expect(error.message).toMatch(/^token has no valid expiry \(exp\)/);
  });

  test("unknown kid", async () => {
    const error = await rejection(await sign({}, { signWith: otherKeys.privateJwk }));
    expect(error.message).toMatch(new RegExp(`^token is signed with key "${otherKeys.publicJwk.kid}", which issuer ${ISS} does not publish`));
    expect(error.cause).toBeInstanceOf(errors.JWKSNoMatchingKey);
  });

  test("tampered payload", async () => {
    const [header, , signature] = (await sign({ sub: "alice" })).split(".");
    const forged = base64url.encode(JSON.stringify({ iss: ISS, aud: AUD, sub: "admin", groups: ["system:masters"], exp: now() + 600 }));
    const error = await rejection(`${header}.${forged}.${signature}`);
    expect(error.message).toMatch(/^token signature is invalid/);
    expect(error.cause).toBeInstanceOf(errors.JWSSignatureVerificationFailed);
  });

  test("a token over 16 KiB is refused before parsing", async () => {
    const error = await rejection(await sign({ padding: "x".repeat(17 * 1024) }));
    expect(error.message).toMatch(/^token is larger than 16 KiB/);
    expect(error.cause).toBeUndefined();
  });

  test.each(["not-a-jwt", "a.b.c", "....", "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.sig"])("garbage %p", async (token) => {
    expect((await rejection(token)).message).toMatch(/^token is not a valid JWT/);
  });

  test("empty token", async () => {
    expect((await rejection("")).message).toMatch(/^no token given/);
  });

  test.each<[string, JWTPayload]>([
    ["empty user name", { email: "" }],
    ["missing user name", {}],
    ["non-string user name", { email: ["alice"] }],
  ])("%s", async (_label, claims) => {
    const error = await rejection(await sign(claims), [trusted({ usernameClaim: "email" })]);
    expect(error.message).toMatch(/has no usable user name: claim "email" must be a non-empty string/);
  });

  test("missing sub", async () => {
    const error = await rejection(await sign({ email: "a@b" }, { omit: ["sub"] }), [trusted({ usernameClaim: "email" })]);
    expect(error.message).toMatch(/has no subject \(sub\) claim/);
  });
});

describe("configuration mistakes are caught at creation", () => {
  test.each([["HS256"], ["none"], ["hs512"]])("algorithm %p", (alg) => {
    expect(() => createUserTokenVerifier({ issuers: [trusted({ algorithms: [alg] })] })).toThrow(/is not allowed; use an asymmetric one/);
  });
  test("the same issuer twice", () => {
    expect(() => createUserTokenVerifier({ issuers: [trusted(), trusted()] })).toThrow(/configured twice/);
  });
  test("no audiences", () => {
    expect(() => createUserTokenVerifier({ issuers: [trusted({ audiences: [] })] })).toThrow(/no audiences/);
  });
});

describe("remote JWKS", () => {
  const JWKS_URL = "https://idp.example.com/keys";

  function fakeFetch(respond: () => Response | Promise<Response>) {
    const calls: string[] = [];
    const impl = async (url: string | URL | Request) => {
      calls.push(String(url));
      return respond();
    };
    return { calls, fetch: impl as unknown as typeof fetch };
  }

  test("fetches lazily, once, and caches across verifications", async () => {
    const remote = fakeFetch(() => Response.json({ keys: [keys.publicJwk] }));
    const verifier = createUserTokenVerifier({ issuers: [trusted({ jwks: { url: JWKS_URL } })], fetch: remote.fetch });
    expect(remote.calls).toHaveLength(0);
    for (let i = 0; i < 5; i++) expect((await verifier.verifyUserToken(await sign())).user).toBe("alice");
    expect(remote.calls).toEqual([JWKS_URL]);
  });

  test("picks up a rotated key once the cooldown has passed", async () => {
    let published = [keys.publicJwk];
    const remote = fakeFetch(() => Response.json({ keys: published }));
    const verifier = createUserTokenVerifier({
      issuers: [trusted({ jwks: { url: JWKS_URL } })], fetch: remote.fetch, jwksCooldownMs: 0,
    });
    await verifier.verifyUserToken(await sign());
    published = [keys.publicJwk, otherKeys.publicJwk];
    expect((await verifier.verifyUserToken(await sign({}, { signWith: otherKeys.privateJwk }))).user).toBe("alice");
    expect(remote.calls).toHaveLength(2);
  });

  test("an unknown kid does not refetch during the cooldown", async () => {
    const remote = fakeFetch(() => Response.json({ keys: [keys.publicJwk] }));
    const verifier = createUserTokenVerifier({ issuers: [trusted({ jwks: { url: JWKS_URL } })], fetch: remote.fetch });
    await verifier.verifyUserToken(await sign());
    for (let i = 0; i < 3; i++) {
      await expect(verifier.verifyUserToken(await sign({}, { signWith: otherKeys.privateJwk }))).rejects.toThrow(/does not publish/);
    }
    expect(remote.calls).toHaveLength(1);
  });

  test.each<[string, () => Response | Promise<Response>, RegExp]>([
    ["network error", () => Promise.reject(new TypeError("connection refused")), /keys: connection refused/],
    ["HTTP 500", () => new Response("oops", { status: 500 }), /answered HTTP 500/],
    ["redirect", () => new Response(null, { status: 302, headers: { location: "https://evil.example.com" } }), /answered HTTP 302/],
    ["not JSON", () => new Response("<html>"), /did not return JSON/],
    ["not a JWKS", () => Response.json({ hello: "world" }), /did not return a JSON Web Key Set/],
  ])("fetch failure (%s) says it could not fetch the issuer's keys", async (_label, respond, detail) => {
    const error = await rejection(await sign(), [trusted({ jwks: { url: JWKS_URL } })], { fetch: fakeFetch(respond).fetch });
    expect(error.message).toMatch(new RegExp(`^could not fetch signing keys of issuer ${ISS}: `));
    expect(error.message).toMatch(detail);
  });

  test("a JWKS endpoint that does not answer times out", async () => {
    const hang = (async (_url: string, init: { signal: AbortSignal }) =>
      new Promise<Response>((_, reject) => init.signal.addEventListener("abort", () => reject(init.signal.reason)))) as unknown as typeof fetch;
    const started = Date.now();
    const error = await rejection(await sign(), [trusted({ jwks: { url: JWKS_URL } })], { fetch: hang, fetchTimeoutMs: 100 });
    expect(error.message).toMatch(/^could not fetch signing keys of issuer .*: no answer from .* within 100 ms/);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  describe("over TLS with a private CA", () => {
    let dir: string;
    let server: ReturnType<typeof Bun.serve>;
    let caPem: string;
    let url: string;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), "arc-verifier-"));
      const pki = await generatePki(dir);
      caPem = await readFile(pki.caCert, "utf8");
      server = Bun.serve({
        port: 0,
        hostname: "127.0.0.1",
        tls: { cert: await readFile(pki.serverCert, "utf8"), key: await readFile(pki.serverKey, "utf8") },
        fetch: () => Response.json({ keys: [keys.publicJwk] }),
      });
      url = `https://127.0.0.1:${server.port}/keys`;
    }, 30_000);

    afterAll(async () => {
      server?.stop(true);
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    test("verifies when tlsCa names the CA", async () => {
      const verifier = createUserTokenVerifier({ issuers: [trusted({ jwks: { url } })], tlsCa: caPem });
      expect((await verifier.verifyUserToken(await sign())).user).toBe("alice");
    });

    test("refuses to trust the server without tlsCa", async () => {
      const error = await rejection(await sign(), [trusted({ jwks: { url } })]);
      expect(error.message).toMatch(/^could not fetch signing keys of issuer/);
    });
  });
});
