// The relay's hono API through app.request: discovery, cluster details, enrollment, errors as Status.
import { fakeTunnel } from "./fake-tunnel.ts";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Hono } from "hono";
import type { JWK } from "jose";
import {
  builtinIssuerTrust, createUserTokenVerifier, generateSigningKeyPair, type BuiltinIssuer,
} from "../../lib/auth/index.ts";
import { createLogger } from "../../lib/observe/index.ts";
import { createRelayApp } from "../../lib/relay/app.ts";
import { addCluster } from "../../lib/relay/enrollment.ts";
import type { RelayStore } from "../../lib/relay/store/index.ts";
import { createTunnelRegistry, type TunnelRegistry } from "../../lib/relay/tunnel-registry.ts";
import { createUserAccess } from "../../lib/relay/user-access.ts";
import type { TunnelClient } from "../../lib/tunnel/index.ts";
import { openRelayFixture, type RelayFixture } from "./relay-fixture.ts";

const ISSUER_URL = "https://relay.test";
const ENROLL = "/v1/agent/enroll";

let fixture: RelayFixture;
let dir: string;
let store: RelayStore;
let issuer: BuiltinIssuer;
let registry: TunnelRegistry;
let app: Hono;
let logLines: string[];

function buildApp(withStore: RelayStore): Hono {
  const verifier = createUserTokenVerifier({ issuers: [builtinIssuerTrust(issuer)] });
  const access = createUserAccess({ store: withStore, verifyUserToken: verifier.verifyUserToken });
  const logger = createLogger({ component: "relay-test", level: "debug", write: (line) => void logLines.push(line) });
  return createRelayApp({ store: withStore, registry, access, issuer, logger });
}

beforeAll(async () => {
  fixture = await openRelayFixture("relay-app");
  ({ dir, store, issuer } = fixture);
});

afterAll(() => fixture.close());

beforeEach(async () => {
  await fixture.reset();
  logLines = [];
  registry = createTunnelRegistry();
  app = buildApp(store);
});

async function bearer(user: string, groups: string[] = []): Promise<Record<string, string>> {
  return { authorization: `Bearer ${await issuer.signUserToken({ user, groups })}` };
}

/** A POST as an HTTP client would send it: JSON text with its Content-Length. */
function postEnroll(body: unknown, target: Hono = app): Promise<Response> {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return Promise.resolve(target.request(ENROLL, {
    method: "POST",
    headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) },
    body: text,
  }));
}

/** `text` as a stream without a length, as a chunked HTTP/1.1 body reaches the app. */
function chunked(text: string): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  return new ReadableStream({ start(c) { c.enqueue(bytes.subarray(0, 10)); c.enqueue(bytes.subarray(10)); c.close(); } });
}

async function expectStatus(response: Response, code: number, reason: string): Promise<{ message: string }> {
  expect(response.status).toBe(code);
  expect(response.headers.get("content-type")).toContain("application/json");
  const body = (await response.json()) as Record<string, unknown>;
  expect(body).toMatchObject({ kind: "Status", apiVersion: "v1", status: "Failure", code, reason });
  expect(typeof body.message).toBe("string");
  return body as { message: string };
}


describe("health and discovery", () => {
  test("GET /healthz answers 200 ok", async () => {
    const response = await app.request("/healthz");
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("ok");
  });

  test("OIDC discovery names the issuer and its JWKS URL", async () => {
    const response = await app.request("/.well-known/openid-configuration");
    expect(response.status).toBe(200);
    const doc = (await response.json()) as Record<string, unknown>;
    expect(doc.issuer).toBe(ISSUER_URL);
    expect(doc.jwks_uri).toBe(`${ISSUER_URL}/.well-known/jwks.json`);
  });

  test("the JWKS has exactly one public key and no private members", async () => {
    const response = await app.request("/.well-known/jwks.json");
    expect(response.status).toBe(200);
    const { keys } = (await response.json()) as { keys: JWK[] };
    expect(keys).toHaveLength(1);
    const key = keys[0]!;
    expect(key.kty).toBe("EC");
    expect(typeof key.kid).toBe("string");
    for (const member of ["d", "p", "q", "dp", "dq", "qi", "k"]) expect(key).not.toHaveProperty(member);
  });
});

describe("GET /.well-known/cluster-connect", () => {
  test("without a configured document: the relay's URL, no login issuers", async () => {
    const response = await app.request("/.well-known/cluster-connect");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ relay: ISSUER_URL, version: "dev", loginIssuers: [] });
  });
});

describe("GET /v1/clusters", () => {
  test("lists only the clusters the caller may reach, by name, with their status", async () => {
    for (const name of ["prod", "staging", "secret"]) await store.addCluster(name);
    await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-user" });
    await store.addGrant({ principal: "group:ops", cluster: "staging", role: "cluster-admin" });
    registry.register({ cluster: "prod", tunnel: fakeTunnel(), agentVersion: "0.2.0", kubernetesVersion: "v1.32.1", connectedAt: new Date() });
    const response = await app.request("/v1/clusters", { headers: await bearer("alice", ["ops"]) });
    expect(response.status).toBe(200);
    const listed = (await response.json()) as { name: string; connected: boolean }[];
    expect(listed.map((c) => [c.name, c.connected])).toEqual([["prod", true], ["staging", false]]);
  });

  test("without a token: 401", async () => {
    await expectStatus(await app.request("/v1/clusters"), 401, "Unauthorized");
  });
});

describe("GET /v1/clusters/:name", () => {
  test("without a token: 401 Status that says how to get one", async () => {
    await store.addCluster("prod");
    const { message } = await expectStatus(await app.request("/v1/clusters/prod"), 401, "Unauthorized");
    expect(message).toContain("arcrelay token create");
  });

  test("with a token but no grant: 403 Status naming the grant command", async () => {
    await store.addCluster("prod");
    const response = await app.request("/v1/clusters/prod", { headers: await bearer("alice") });
    const { message } = await expectStatus(response, 403, "Forbidden");
    expect(message).toContain("arcrelay grant add");
  });

  test("granted but not registered: 404 Status", async () => {
    await store.addGrant({ principal: "user:alice", cluster: "*", role: "cluster-user" });
    const response = await app.request("/v1/clusters/ghost", { headers: await bearer("alice") });
    await expectStatus(response, 404, "NotFound");
  });

  test("an invalid cluster name: 400 Status", async () => {
    const response = await app.request("/v1/clusters/PROD", { headers: await bearer("alice") });
    await expectStatus(response, 400, "BadRequest");
  });

  test("enrolled but offline: 200 with connected false and the stored versions", async () => {
    await store.addCluster("prod");
    await store.setAgentKey("prod", (await generateSigningKeyPair("EdDSA")).publicJwk);
    const seen = new Date("2030-01-02T03:04:05.000Z");
    await store.recordAgentSeen("prod", { agentVersion: "0.1.0", kubernetesVersion: "v1.31.0", at: seen, connected: false });
    await store.addGrant({ principal: "group:ops", cluster: "prod", role: "cluster-user" });
    const response = await app.request("/v1/clusters/prod", { headers: await bearer("bob", ["ops"]) });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      name: "prod", connected: false, enrolled: true, agentVersion: "0.1.0", kubernetesVersion: "v1.31.0", lastSeen: seen.toISOString(),
    });
  });

  test("registered, no agent enrolled yet: enrolled false, which arcproxy clusters shows as awaiting-enrollment", async () => {
    await store.addCluster("fresh");
    await store.addGrant({ principal: "user:alice", cluster: "fresh", role: "cluster-user" });
    const response = await app.request("/v1/clusters/fresh", { headers: await bearer("alice") });
    const view = (await response.json()) as { name: string; connected: boolean; enrolled: boolean };
    expect(view).toMatchObject({ name: "fresh", connected: false, enrolled: false });
    const { formatReachableClusters } = await import("../../cmd/tables.ts");
    expect(formatReachableClusters([view])).toBe("NAME   STATUS               KUBERNETES  LAST SEEN\nfresh  awaiting-enrollment  -           never");
  });

  test("with a live tunnel in the registry: connected true and the tunnel's versions", async () => {
    await store.addCluster("prod");
    await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-user" });
    registry.register({ cluster: "prod", tunnel: fakeTunnel(), agentVersion: "0.2.0", kubernetesVersion: "v1.32.1", connectedAt: new Date() });
    const response = await app.request("/v1/clusters/prod", { headers: await bearer("alice") });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ name: "prod", connected: true, agentVersion: "0.2.0", kubernetesVersion: "v1.32.1" });
  });
});

describe("POST /v1/agent/enroll", () => {
  async function agentPublicKey(): Promise<JWK> {
    return (await generateSigningKeyPair("EdDSA")).publicJwk;
  }

  test("a valid token and Ed25519 public key: 201, and the key is stored for the cluster", async () => {
    const { token } = await addCluster(store, "prod");
    const publicKey = await agentPublicKey();
    const response = await postEnroll({ cluster: "prod", token, publicKey });
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ enrolled: true, cluster: "prod" });
    const stored = (await store.getCluster("prod"))?.agentKey;
    expect(stored).toMatchObject({ kty: "OKP", crv: "Ed25519", x: publicKey.x });
    expect(stored).not.toHaveProperty("d");
    expect(logLines.some((l) => l.includes("agent enrolled"))).toBe(true);
    expect(logLines.join("\n")).not.toContain(token);
  });

  test("the same token a second time: 401 and the first key stays", async () => {
    const { token } = await addCluster(store, "prod");
    const first = await agentPublicKey();
    expect((await postEnroll({ cluster: "prod", token, publicKey: first })).status).toBe(201);
    const { message } = await expectStatus(await postEnroll({ cluster: "prod", token, publicKey: await agentPublicKey() }), 401, "Unauthorized");
    expect(message).toContain("arcrelay cluster enroll-token prod");
    expect((await store.getCluster("prod"))?.agentKey?.x).toBe(first.x);
  });

  test("a token made for cluster A presented for B (a mistyped --cluster): 400 naming A, B gets no key, and the token still enrolls A", async () => {
    const { token } = await addCluster(store, "cluster-a");
    await addCluster(store, "cluster-b");
    const { message } = await expectStatus(await postEnroll({ cluster: "cluster-b", token, publicKey: await agentPublicKey() }), 400, "BadRequest");
    expect(message).toContain('this enrollment token is for cluster "cluster-a", not "cluster-b": run the agent with --cluster cluster-a');
    expect((await store.getCluster("cluster-b"))?.agentKey).toBeUndefined();
    const key = await agentPublicKey();
    expect((await postEnroll({ cluster: "cluster-a", token, publicKey: key })).status).toBe(201);
    expect((await store.getCluster("cluster-a"))?.agentKey?.x).toBe(key.x);
  });

  test("an unknown token: 401", async () => {
    await addCluster(store, "prod");
    await expectStatus(await postEnroll({ cluster: "prod", token: "arcenroll_nope", publicKey: await agentPublicKey() }), 401, "Unauthorized");
  });

  test("a body larger than the limit: 413 naming the limit, and the token is not consumed", async () => {
    const { token } = await addCluster(store, "prod");
    const padded = { cluster: "prod", token, publicKey: await agentPublicKey(), pad: "x".repeat(17 * 1024) };
    const { message } = await expectStatus(await postEnroll(padded), 413, "RequestEntityTooLarge");
    expect(message).toContain("at most 16384 bytes");
    expect(message).not.toContain(token);
    expect((await postEnroll({ cluster: "prod", token, publicKey: await agentPublicKey() })).status).toBe(201);
  });

  test("a Content-Length over the limit is refused even if the body is small: 413", async () => {
    const response = await app.request(ENROLL, {
      method: "POST", headers: { "content-type": "application/json", "content-length": String(16 * 1024 + 1) }, body: "{}",
    });
    await expectStatus(response, 413, "RequestEntityTooLarge");
  });

  test("no Content-Length (a streamed, chunked body) is read like any other", async () => {
    const { token } = await addCluster(store, "prod");
    const text = JSON.stringify({ cluster: "prod", token, publicKey: await agentPublicKey() });
    const response = await app.request(ENROLL, { method: "POST", headers: { "content-type": "application/json" }, body: chunked(text) });
    expect(response.status).toBe(201);
    expect(await response.json()).toEqual({ enrolled: true, cluster: "prod" });
  });

  test.each([
    ["not JSON", "cluster=prod"],
    ["truncated JSON", "{\"cluster\":"],
    ["empty body", ""],
  ])("%s: 400 Status", async (_what, text) => {
    await expectStatus(await postEnroll(text), 400, "BadRequest");
  });

  test.each([
    ["null", "null"],
    ["a number", "5"],
    ["an array", "[]"],
    ["no token", JSON.stringify({ cluster: "prod" })],
    ["a token that is not a string", JSON.stringify({ cluster: "prod", token: 5 })],
    ["an invalid cluster name", JSON.stringify({ cluster: "../prod", token: "arcenroll_x" })],
  ])("a JSON body with %s: 400 Status", async (_what, text) => {
    await addCluster(store, "prod");
    await expectStatus(await postEnroll(text), 400, "BadRequest");
  });

  test.each<[string, () => Promise<unknown>]>([
    ["a private Ed25519 key (has d)", async () => (await generateSigningKeyPair("EdDSA")).privateJwk],
    ["an ES256 (P-256) key", async () => (await generateSigningKeyPair("ES256")).publicJwk],
    ["an X25519 key", async () => ({ kty: "OKP", crv: "X25519", x: (await generateSigningKeyPair("EdDSA")).publicJwk.x })],
    ["an RSA-shaped key", async () => ({ kty: "RSA", n: "AQAB", e: "AQAB" })],
    ["an oct (symmetric) key", async () => ({ kty: "oct", k: "c2VjcmV0" })],
    ["an Ed25519 key with a bad x", async () => ({ kty: "OKP", crv: "Ed25519", x: "AAAA" })],
    ["an Ed25519 key marked for ES256", async () => ({ ...(await generateSigningKeyPair("EdDSA")).publicJwk, alg: "ES256" })],
    ["no key", async () => undefined],
    ["a string", async () => "ssh-ed25519 AAAA"],
  ])("%s: 400, and the token stays usable", async (_what, makeKey) => {
    const { token } = await addCluster(store, "prod");
    const { message } = await expectStatus(await postEnroll({ cluster: "prod", token, publicKey: await makeKey() }), 400, "BadRequest");
    expect(message).toContain("Ed25519");
    expect((await store.getCluster("prod"))?.agentKey).toBeUndefined();
    expect((await postEnroll({ cluster: "prod", token, publicKey: await agentPublicKey() })).status).toBe(201);
  });
});

describe("errors", () => {
  test("an unknown route: 404 Status naming the method and path", async () => {
    const { message } = await expectStatus(await app.request("/v2/nothing", { method: "DELETE" }), 404, "NotFound");
    expect(message).toContain("DELETE /v2/nothing");
  });

  test("GET on the enroll path (POST only): 404 Status", async () => {
    await expectStatus(await app.request(ENROLL), 404, "NotFound");
  });

  test("an internal failure: 500 Status with a request id, the detail only in the log", async () => {
    const secret = "SQLITE_CORRUPT: database disk image is malformed at /var/lib/secret-path";
    const broken: RelayStore = { ...store, listGrants: async () => { throw new Error(secret); }, listGrantsFor: async () => { throw new Error(secret); } };
    await store.addCluster("prod");
    const response = await buildApp(broken).request("/v1/clusters/prod", { headers: await bearer("alice") });
    const { message } = await expectStatus(response, 500, "InternalError");
    const requestId = /request id ([0-9a-f-]{36})/.exec(message)?.[1];
    expect(requestId).toBeDefined();
    expect(message).not.toContain("SQLITE");
    expect(message).not.toContain("secret-path");
    const logged = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "request failed");
    expect(logged).toMatchObject({ level: "error", requestId });
    expect(JSON.stringify(logged)).toContain("SQLITE_CORRUPT");
  });

  test("refusals (4xx) log at info, not error", async () => {
    await app.request("/v1/clusters/prod");
    const lines = logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.some((l) => l.msg === "request refused" && l.level === "info")).toBe(true);
    expect(lines.some((l) => l.level === "error")).toBe(false);
  });
});
