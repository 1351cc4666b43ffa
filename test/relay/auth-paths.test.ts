// Every route that authenticates (users, admin, agent routes, enrollment) spends one budget per address, and none refuses valid credentials.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import type { Hono } from "hono";
import type { JWK } from "jose";
import {
  builtinIssuerTrust, createUserTokenVerifier, generateSigningKeyPair, signAgentToken, type BuiltinIssuer,
} from "../../lib/auth/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { createRelayApp } from "../../lib/relay/app.ts";
import { createAuthRateLimiter } from "../../lib/relay/auth-rate-limit.ts";
import { createEnrollmentToken } from "../../lib/relay/enrollment.ts";
import type { RelayStore } from "../../lib/relay/store/index.ts";
import { createTunnelRegistry } from "../../lib/relay/tunnel-registry.ts";
import { createUserAccess } from "../../lib/relay/user-access.ts";
import { openRelayFixture, type RelayFixture } from "./relay-fixture.ts";

const ISSUER_URL = "https://relay.test";
const BUDGET = 3;
/** Where a request came from, as @hono/node-server hands it to the app. */
const fromAddress = (remoteAddress: string) => ({ incoming: { socket: { remoteAddress } } });

let fixture: RelayFixture;
let dir: string;
let store: RelayStore;
let issuer: BuiltinIssuer;
let app: Hono;
let alice: string;
let agent: { privateJwk: JWK; publicJwk: JWK };
let forger: { privateJwk: JWK; publicJwk: JWK };

beforeAll(async () => {
  fixture = await openRelayFixture("auth-paths");
  ({ dir, store, issuer } = fixture);
  alice = await issuer.signUserToken({ user: "alice" });
  forger = await generateSigningKeyPair("EdDSA");
});

afterAll(() => fixture.close());

beforeEach(async () => {
  await fixture.reset();
  await store.addCluster("prod");
  await store.addGrant({ principal: "user:alice", cluster: "*", role: "relay-admin" });
  agent = await generateSigningKeyPair("EdDSA");
  await store.setAgentKey("prod", agent.publicJwk);
  // One limiter for the whole relay, as relay-server.ts wires it: UserAccess and the app share it.
  const rateLimiter = createAuthRateLimiter({ logger: silentLogger, maxFailures: BUDGET });
  const access = createUserAccess({ store, verifyUserToken: createUserTokenVerifier({ issuers: [builtinIssuerTrust(issuer)] }).verifyUserToken, rateLimiter });
  app = createRelayApp({ store, registry: createTunnelRegistry(), access, issuer, logger: silentLogger, rateLimiter });
});

const agentToken = (key: { privateJwk: JWK }) => signAgentToken({ privateJwk: key.privateJwk, cluster: "prod", audience: ISSUER_URL });

/** One route that authenticates: a request with bad credentials, and one with valid credentials. */
interface Route {
  send(credentials: "good" | "bad", address: string): Promise<Response>;
  /** What valid credentials get here: past authentication, the route's own answer to the test's thin input. */
  passes: number;
}

const routes: Record<string, Route> = {
  "GET /v1/clusters/NAME (user token)": {
    passes: 200,
    send: async (c, address) =>
      app.request("/v1/clusters/prod", { headers: { authorization: `Bearer ${c === "good" ? alice : `${alice}x`}` } }, fromAddress(address)),
  },
  "GET /v1/admin/clusters (user token)": {
    passes: 200,
    send: async (c, address) =>
      app.request("/v1/admin/clusters", { headers: { authorization: `Bearer ${c === "good" ? alice : `${alice}x`}` } }, fromAddress(address)),
  },
  "GET /v1/agent/issuer-keys (agent token)": {
    passes: 404, // this relay trusts no external issuer
    send: async (c, address) =>
      app.request("/v1/agent/issuer-keys?issuer=https://issuer.test", {
        headers: { authorization: `Bearer ${await agentToken(c === "good" ? agent : forger)}` },
      }, fromAddress(address)),
  },
  "POST /v1/agent/rotate-key (agent token)": {
    passes: 400, // `{}` names no new key
    send: async (c, address) =>
      app.request("/v1/agent/rotate-key", {
        method: "POST", headers: { authorization: `Bearer ${await agentToken(c === "good" ? agent : forger)}`, "content-type": "application/json" }, body: "{}",
      }, fromAddress(address)),
  },
  "POST /v1/agent/enroll (enrollment secret)": {
    passes: 201,
    send: async (c, address) => {
      const token = c === "good" ? (await createEnrollmentToken(store, "prod")).token : "arcenroll_guessed";
      const body = JSON.stringify({ cluster: "prod", token, publicKey: (await generateSigningKeyPair("EdDSA")).publicJwk });
      return app.request("/v1/agent/enroll", { method: "POST", headers: { "content-type": "application/json" }, body }, fromAddress(address));
    },
  },
};
const names = Object.keys(routes);

describe.each(names)("%s", (name) => {
  const route = routes[name]!;
  const others = names.filter((n) => n !== name).map((n) => routes[n]!);

  test("failures on the other routes spend its budget: its next failure is 429 with Retry-After", async () => {
    for (let i = 0; i < BUDGET; i++) expect((await others[i % others.length]!.send("bad", "198.51.100.7")).status).toBe(401);
    const limited = await route.send("bad", "198.51.100.7");
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(await limited.json()).toMatchObject({ reason: "TooManyRequests", message: expect.stringContaining("too many failed authentications") });
  });

  test("its failures spend the budget the other routes use", async () => {
    for (let i = 0; i < BUDGET; i++) expect((await route.send("bad", "198.51.100.8")).status).toBe(401);
    for (const other of others) expect((await other.send("bad", "198.51.100.8")).status).toBe(429);
  });

  test("valid credentials from the blocked address still pass authentication", async () => {
    for (let i = 0; i < BUDGET + 2; i++) await others[i % others.length]!.send("bad", "198.51.100.9");
    expect((await route.send("good", "198.51.100.9")).status).toBe(route.passes);
    expect((await route.send("bad", "198.51.100.9")).status).toBe(429);
  });

  test("another address is not affected", async () => {
    for (let i = 0; i < BUDGET + 2; i++) await others[i % others.length]!.send("bad", "198.51.100.10");
    expect((await route.send("bad", "198.51.100.11")).status).toBe(401);
  });
});
