// External OIDC issuers shaped like Entra ID, Keycloak, Dex and GitHub Actions, served on 127.0.0.1.
import { afterAll, afterEach, beforeAll, describe, expect, setSystemTime, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from "jose";
import {
  createUserTokenVerifier, parseIssuerConfig, resolveTrustedIssuers, type TrustedIssuer, type UserTokenVerifierOptions,
} from "../../lib/auth/index.ts";
import { Unauthorized } from "../../lib/errors/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { startRelay, type RunningRelay } from "../../lib/relay/index.ts";

type Alg = "RS256" | "ES256";

interface TestIssuer {
  issuer: string;
  hits: { discovery: number; jwks: number };
  /** What the discovery document says; the issuer's own URL unless a test changes it. */
  publishedIssuer: string;
  /** Status the discovery endpoint answers with (200 serves the document). */
  discoveryStatus: number;
  sign(claims: JWTPayload): Promise<string>;
  /** Replaces the signing key; only the new key is published from now on. */
  rotate(): Promise<void>;
  stop(): void;
}

/** An OIDC issuer at `http://127.0.0.1:PORT{path}` with a discovery document and a JWKS. */
async function startTestIssuer(path: string, alg: Alg, jwksPath = "/keys"): Promise<TestIssuer> {
  let key = await newKey(alg);
  // node:http rather than Bun.serve: the relay's HTTP adapter replaces the global Response in this process.
  const server = createServer((req, res) => {
    const pathname = new URL(req.url ?? "/", "http://x").pathname;
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    };
    if (pathname === `${path}/.well-known/openid-configuration`) {
      issuer.hits.discovery++;
      if (issuer.discoveryStatus !== 200) return reply(issuer.discoveryStatus, { error: "unavailable" });
      return reply(200, {
        issuer: issuer.publishedIssuer,
        jwks_uri: `${origin}${path}${jwksPath}`,
        id_token_signing_alg_values_supported: [alg],
      });
    }
    if (pathname === `${path}${jwksPath}`) {
      issuer.hits.jwks++;
      return reply(200, { keys: [key.publicJwk] });
    }
    reply(404, { error: "not found" });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const issuer: TestIssuer = {
    issuer: origin + path,
    hits: { discovery: 0, jwks: 0 },
    publishedIssuer: origin + path,
    discoveryStatus: 200,
    async sign(claims) {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: issuer.issuer, iat: now, nbf: now, exp: now + 300, ...claims })
        .setProtectedHeader({ alg, kid: key.publicJwk.kid!, typ: "JWT" })
        .sign(key.privateKey);
    },
    async rotate() {
      key = await newKey(alg);
    },
    stop() {
      server.close();
      server.closeAllConnections();
    },
  };
  return issuer;
}

async function newKey(alg: Alg): Promise<{ privateKey: CryptoKey; publicJwk: JWK }> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid: crypto.randomUUID(), alg, use: "sig" };
  return { privateKey, publicJwk };
}

/** The `issuers:` entry of the config file for one test issuer. */
function configEntry(issuer: string, fields: string): string {
  return `  - issuer: ${issuer}\n${fields.trim().split("\n").map((line) => `    ${line.trim()}`).join("\n")}\n`;
}

function verifierFor(yaml: string, extra: Partial<UserTokenVerifierOptions> = {}, retryAfterMs?: number) {
  const issuers = resolveTrustedIssuers(parseIssuerConfig(`issuers:\n${yaml}`, "test.yaml"), { timeoutMs: 2_000, retryAfterMs });
  return createUserTokenVerifier({ issuers, ...extra });
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(() => { throw new Error("token was accepted"); }, (e: unknown) => e);
  expect(error).toBeInstanceOf(Unauthorized);
  return (error as Error).message;
}

const TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OID = "00000000-0000-0000-66f3-3332eca7ea81";
const GROUP_GUIDS = ["3f8a2c1e-5b7d-4e9a-8c6f-1d2e3f4a5b6c", "9b1c7d3e-2f4a-4b6c-8d0e-1f2a3b4c5d6e"];

interface Provider {
  name: string;
  path: string;
  alg: Alg;
  audience: string;
  config: string;
  claims: JWTPayload;
  expected: { user: string; groups: string[]; subject: string; audiences: string[] };
}

const providers: Provider[] = [
  {
    name: "Entra ID v2",
    path: `/${TENANT}/v2.0`,
    alg: "RS256",
    audience: "api://cluster-connect",
    config: `audiences: [api://cluster-connect]
      usernameClaim: oid
      usernamePrefix: "entra:"
      groupsClaim: groups
      groupsPrefix: "entra:"
      algorithms: [RS256]`,
    claims: {
      aud: "api://cluster-connect", sub: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", oid: OID, tid: TENANT,
      preferred_username: "alice@contoso.com", name: "Alice", groups: GROUP_GUIDS, ver: "2.0",
    },
    expected: { user: `entra:${OID}`, groups: GROUP_GUIDS.map((g) => `entra:${g}`), subject: "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", audiences: ["api://cluster-connect"] },
  },
  {
    name: "Keycloak",
    path: "/realms/acme",
    alg: "RS256",
    audience: "cluster-connect",
    config: `audiences: [cluster-connect]
      usernameClaim: preferred_username
      usernamePrefix: "keycloak:"
      groupsClaim: groups
      groupsPrefix: "keycloak:"`,
    claims: {
      aud: ["cluster-connect", "account"], sub: "f1b2c3d4-0000-4000-8000-000000000001", azp: "arcproxy",
      preferred_username: "bob", email: "bob@acme.example", groups: ["/platform", "/platform/oncall"],
    },
    expected: { user: "keycloak:bob", groups: ["keycloak:/platform", "keycloak:/platform/oncall"], subject: "f1b2c3d4-0000-4000-8000-000000000001", audiences: ["cluster-connect", "account"] },
  },
  {
    name: "Dex",
    path: "/dex",
    alg: "ES256",
    audience: "arc-dex",
    config: `audiences: [arc-dex]
      usernameClaim: email
      usernamePrefix: "dex:"
      groupsClaim: groups
      groupsPrefix: "dex:"
      algorithms: [ES256]`,
    claims: { aud: "arc-dex", sub: "CiQwOGE4Njg0Yi1kYjg4LTRiNzMtOTBhOS0zY2QxNjYxZjU0NjYSBWxvY2Fs", email: "carol@acme.example", email_verified: true, groups: ["devs"] },
    expected: { user: "dex:carol@acme.example", groups: ["dex:devs"], subject: "CiQwOGE4Njg0Yi1kYjg4LTRiNzMtOTBhOS0zY2QxNjYxZjU0NjYSBWxvY2Fs", audiences: ["arc-dex"] },
  },
  {
    name: "GitHub Actions",
    path: "",
    alg: "RS256",
    audience: "cluster-connect",
    config: `audiences: [cluster-connect]
      usernameClaim: sub
      usernamePrefix: "github:"
      algorithms: [RS256]`,
    claims: {
      aud: "cluster-connect", sub: "repo:acme/app:ref:refs/heads/main", repository: "acme/app", repository_owner: "acme",
      ref: "refs/heads/main", workflow: "deploy", actor: "octocat", event_name: "push", jti: crypto.randomUUID(),
    },
    expected: { user: "github:repo:acme/app:ref:refs/heads/main", groups: [], subject: "repo:acme/app:ref:refs/heads/main", audiences: ["cluster-connect"] },
  },
];

const running: TestIssuer[] = [];
async function issuerFor(p: Pick<Provider, "path" | "alg">): Promise<TestIssuer> {
  const issuer = await startTestIssuer(p.path, p.alg);
  running.push(issuer);
  return issuer;
}
afterAll(() => {
  for (const issuer of running) issuer.stop();
});
// The JWKS cooldown (jose's) and the discovery retry read Date.now(), so tests move that clock.
afterEach(() => {
  setSystemTime();
});

describe.each(providers)("$name", (provider) => {
  let idp: TestIssuer;
  let stranger: TestIssuer;
  let verifier: ReturnType<typeof verifierFor>;

  beforeAll(async () => {
    idp = await issuerFor(provider);
    // Same shape, same claims, but not in the config.
    stranger = await issuerFor(provider);
    verifier = verifierFor(configEntry(idp.issuer, provider.config));
  });

  test("a valid token maps to the prefixed Kubernetes user and groups", async () => {
    expect(await verifier.verifyUserToken(await idp.sign(provider.claims))).toEqual({ ...provider.expected, issuer: idp.issuer });
    // Discovery and keys are fetched once and cached.
    await verifier.verifyUserToken(await idp.sign(provider.claims));
    expect(idp.hits).toEqual({ discovery: 1, jwks: 1 });
  });

  test("a token for another audience is refused", async () => {
    const message = await refusal(verifier.verifyUserToken(await idp.sign({ ...provider.claims, aud: "https://management.example.com" })));
    expect(message).toBe(`token audience does not match: request a token for audience ${provider.audience}`);
  });

  test("a token from an issuer that is not configured is refused without contacting it", async () => {
    const message = await refusal(verifier.verifyUserToken(await stranger.sign(provider.claims)));
    expect(message).toContain(`token issuer "${stranger.issuer}" is not trusted`);
    expect(stranger.hits).toEqual({ discovery: 0, jwks: 0 });
  });
});

describe("key rotation", () => {
  test("a token with the issuer's new kid verifies after a refetch, and refetches are rate-limited", async () => {
    const entra = providers[0]!;
    const idp = await issuerFor(entra);
    const cooldownMs = 30_000;
    const startedAt = Date.now();
    setSystemTime(startedAt);
    const verifier = verifierFor(configEntry(idp.issuer, entra.config), { jwksCooldownMs: cooldownMs });
    await verifier.verifyUserToken(await idp.sign(entra.claims));
    expect(idp.hits.jwks).toBe(1);

    await idp.rotate();
    const rotated = await idp.sign(entra.claims);
    // Within the cooldown, unknown kids do not make the relay hammer the issuer.
    setSystemTime(startedAt + cooldownMs - 1);
    for (let i = 0; i < 5; i++) expect(await refusal(verifier.verifyUserToken(rotated))).toMatch(/which issuer .* does not publish/);
    expect(idp.hits.jwks).toBe(1);

    setSystemTime(startedAt + cooldownMs);
    expect((await verifier.verifyUserToken(rotated)).user).toBe(entra.expected.user);
    expect(idp.hits).toEqual({ discovery: 1, jwks: 2 });
  });
});

describe("an issuer that is down", () => {
  let up: TestIssuer;
  let down: TestIssuer;
  let unavailable: TestIssuer;
  const github = providers[3]!;

  beforeAll(async () => {
    up = await issuerFor(github);
    down = await issuerFor({ path: "/down", alg: "RS256" });
    unavailable = await issuerFor({ path: "/unavailable", alg: "RS256" });
    unavailable.discoveryStatus = 503;
  });

  test("fails only its own tokens with 'could not fetch signing keys'", async () => {
    const config = configEntry(down.issuer, github.config) + configEntry(up.issuer, github.config)
      + configEntry(`${down.issuer}-pinned`, `${github.config}\njwksUrl: ${down.issuer}/keys`);
    const token = await down.sign({ ...github.claims });
    const pinnedToken = await down.sign({ ...github.claims, iss: `${down.issuer}-pinned` });
    down.stop();
    const verifier = verifierFor(config);

    expect(await refusal(verifier.verifyUserToken(token))).toMatch(
      new RegExp(`^could not fetch signing keys of issuer ${down.issuer}: discovery at ${down.issuer}/.well-known/openid-configuration failed: `),
    );
    expect(await refusal(verifier.verifyUserToken(pinnedToken))).toMatch(
      new RegExp(`^could not fetch signing keys of issuer ${down.issuer}-pinned: `),
    );
    expect(await verifier.verifyUserToken(await up.sign(github.claims))).toEqual({ ...github.expected, issuer: up.issuer });
  });

  test("a failed discovery is not retried on every token, and is retried later", async () => {
    const retryAfterMs = 300;
    const failedAt = Date.now();
    setSystemTime(failedAt);
    const verifier = verifierFor(configEntry(unavailable.issuer, github.config), {}, retryAfterMs);
    const token = await unavailable.sign(github.claims);
    for (let i = 0; i < 3; i++) {
      expect(await refusal(verifier.verifyUserToken(token))).toBe(
        `could not fetch signing keys of issuer ${unavailable.issuer}: discovery at ${unavailable.issuer}/.well-known/openid-configuration answered HTTP 503`,
      );
    }
    expect(unavailable.hits.discovery).toBe(1);

    unavailable.discoveryStatus = 200;
    setSystemTime(failedAt + retryAfterMs - 1);
    expect(await refusal(verifier.verifyUserToken(token))).toContain("answered HTTP 503");
    expect(unavailable.hits.discovery).toBe(1);
    setSystemTime(failedAt + retryAfterMs);
    expect((await verifier.verifyUserToken(token)).subject).toBe(github.expected.subject);
    expect(unavailable.hits).toEqual({ discovery: 2, jwks: 1 });
  });
});

test("a discovery document that names another issuer is refused, and its keys are never fetched", async () => {
  const keycloak = providers[1]!;
  const idp = await issuerFor(keycloak);
  idp.publishedIssuer = idp.issuer.replace("/realms/acme", "/realms/evil");
  const verifier = verifierFor(configEntry(idp.issuer, keycloak.config));
  const message = await refusal(verifier.verifyUserToken(await idp.sign(keycloak.claims)));
  expect(message).toContain(`could not fetch signing keys of issuer ${idp.issuer}: `);
  expect(message).toContain(`names issuer "${idp.publishedIssuer}", not "${idp.issuer}"`);
  expect(idp.hits.jwks).toBe(0);
});

describe("relay with a GitHub Actions issuer", () => {
  const github = providers[3]!;
  let dataDir: string;
  let relay: RunningRelay;
  let idp: TestIssuer;
  // The relay's HTTP adapter (@hono/node-server) replaces the global Request and Response; later
  // test files that serve Response objects from Bun.serve must get the real ones back.
  const { Request: GlobalRequest, Response: GlobalResponse } = globalThis;

  beforeAll(async () => {
    idp = await issuerFor(github);
    const trustedIssuers: TrustedIssuer[] = resolveTrustedIssuers(
      parseIssuerConfig(`issuers:\n${configEntry(idp.issuer, github.config)}`, "relay.yaml"),
    );
    dataDir = await mkdtemp(join(tmpdir(), "arc-oidc-relay-"));
    relay = await startRelay({ host: "127.0.0.1", port: 0, dataDir, logger: silentLogger, trustedIssuers });
    await relay.store.addCluster("prod");
  });

  afterAll(async () => {
    await relay?.close();
    Object.assign(globalThis, { Request: GlobalRequest, Response: GlobalResponse });
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const getCluster = (bearer: string) => fetch(`${relay.url}/v1/clusters/prod`, { headers: { authorization: `Bearer ${bearer}` } });

  test("the workflow's token is 403 without a grant and 200 with sub:repo:acme/app:*", async () => {
    const token = await idp.sign(github.claims);
    const denied = await getCluster(token);
    expect(denied.status).toBe(403);
    expect(await denied.json()).toMatchObject({ kind: "Status", reason: "Forbidden", code: 403 });

    await relay.store.addGrant({ principal: "sub:repo:acme/app:*", cluster: "prod", role: "cluster-user" });
    const allowed = await getCluster(token);
    expect(allowed.status).toBe(200);
    expect(await allowed.json()).toMatchObject({ name: "prod", connected: false });

    // Another repository's workflow matches no grant.
    const other = await getCluster(await idp.sign({ ...github.claims, sub: "repo:acme/other:ref:refs/heads/main" }));
    expect(other.status).toBe(403);
  });

  test("a workflow token for another audience is 401 and says which audience to request", async () => {
    const response = await getCluster(await idp.sign({ ...github.claims, aud: "sigstore" }));
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({
      kind: "Status", reason: "Unauthorized", message: "token audience does not match: request a token for audience cluster-connect",
    });
  });
});
