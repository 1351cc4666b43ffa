// The admin API (/v1/admin) through app.request: each route for relay-admin, cluster-admin, cluster-user, no token, bad input.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Hono } from "hono";
import {
  builtinIssuerTrust, createUserTokenVerifier, ENROLLMENT_SECRET_PREFIX, generateSigningKeyPair, hashSecret, type BuiltinIssuer,
} from "../../lib/auth/index.ts";
import { createLogger } from "../../lib/observe/index.ts";
import { createRelayApp } from "../../lib/relay/app.ts";
import { type GrantRecord, type RelayStore } from "../../lib/relay/store/index.ts";
import { createTunnelRegistry, type TunnelRegistry } from "../../lib/relay/tunnel-registry.ts";
import { createUserAccess } from "../../lib/relay/user-access.ts";
import type { TunnelClient } from "../../lib/tunnel/index.ts";
import { openRelayFixture, type RelayFixture } from "./relay-fixture.ts";


let fixture: RelayFixture;
let dir: string;
let store: RelayStore;
let issuer: BuiltinIssuer;
let registry: TunnelRegistry;
let app: Hono;
let logLines: string[];
const tokens = new Map<string, string>();

beforeAll(async () => {
  fixture = await openRelayFixture("admin-api");
  ({ dir, store, issuer } = fixture);
  for (const user of ["root", "alice", "bob", "nobody"]) tokens.set(user, await issuer.signUserToken({ user, groups: [] }));
});

afterAll(() => fixture.close());

// root: relay-admin; alice: cluster-admin on prod; bob: cluster-user on prod; nobody: no grant.
beforeEach(async () => {
  await fixture.reset();
  await store.addCluster("prod");
  await store.addCluster("staging");
  await store.addGrant({ principal: "user:root", cluster: "*", role: "relay-admin" });
  await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-admin" });
  await store.addGrant({ principal: "user:bob", cluster: "prod", role: "cluster-user" });
  await store.addGrant({ principal: "group:ops", cluster: "staging", role: "cluster-user" });
  logLines = [];
  registry = createTunnelRegistry();
  const verifier = createUserTokenVerifier({ issuers: [builtinIssuerTrust(issuer)] });
  const access = createUserAccess({ store, verifyUserToken: verifier.verifyUserToken });
  const logger = createLogger({ component: "relay-test", level: "debug", write: (line) => void logLines.push(line) });
  app = createRelayApp({ store, registry, access, issuer, logger });
});

/** A request as an HTTP client sends it: bearer token of `as`, JSON body with its Content-Length. */
async function call(method: string, path: string, opts: { as?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<Response> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.as) headers.authorization = `Bearer ${tokens.get(opts.as)}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
    headers["content-type"] = "application/json";
    headers["content-length"] ??= String(Buffer.byteLength(body));
  }
  return app.request(`/v1/admin${path}`, { method, headers, body });
}

async function expectStatus(response: Response, code: number, reason: string): Promise<string> {
  expect(response.status).toBe(code);
  const body = (await response.json()) as Record<string, unknown>;
  expect(body).toMatchObject({ kind: "Status", apiVersion: "v1", status: "Failure", code, reason });
  return body.message as string;
}

function fakeTunnel(): TunnelClient & { closeCalls: number } {
  const tunnel = {
    closed: false,
    closeCalls: 0,
    done: new Promise<void>(() => {}),
    request: () => { throw new Error("not used"); },
    close: async () => { tunnel.closeCalls++; tunnel.closed = true; },
  };
  return tunnel as unknown as TunnelClient & { closeCalls: number };
}

describe("authentication", () => {
  test.each([
    ["GET", "/clusters"], ["POST", "/clusters"], ["DELETE", "/clusters/prod"], ["POST", "/clusters/prod/enrollment-tokens"],
    ["POST", "/clusters/prod/revoke-agent"], ["GET", "/grants"], ["POST", "/grants"], ["DELETE", "/grants/abc"],
  ])("%s %s without a token: 401 that says how to get one", async (method, path) => {
    const message = await expectStatus(await call(method, path, { body: method === "POST" ? {} : undefined }), 401, "Unauthorized");
    expect(message).toContain("arcrelay token create");
  });

  test("a token that does not verify: 401", async () => {
    await expectStatus(await call("GET", "/clusters", { headers: { authorization: "Bearer not.a.jwt" } }), 401, "Unauthorized");
  });
});

describe("GET /v1/admin/clusters", () => {
  test("relay-admin sees every cluster, with live tunnel state", async () => {
    registry.register({ cluster: "prod", tunnel: fakeTunnel(), agentVersion: "1.2.3", kubernetesVersion: "v1.33.0", connectedAt: new Date() });
    const response = await call("GET", "/clusters", { as: "root" });
    expect(response.status).toBe(200);
    const rows = (await response.json()) as { name: string; state: string; agentVersion?: string; enrolled: boolean }[];
    expect(rows.map((r) => r.name)).toEqual(["prod", "staging"]);
    expect(rows[0]).toMatchObject({ name: "prod", state: "connected", agentVersion: "1.2.3", kubernetesVersion: "v1.33.0", enrolled: false });
    expect(rows[1]).toMatchObject({ name: "staging", state: "never-connected", enrolled: false });
  });

  test("a cluster-admin sees only the clusters they admin", async () => {
    const rows = (await (await call("GET", "/clusters", { as: "alice" })).json()) as { name: string }[];
    expect(rows.map((r) => r.name)).toEqual(["prod"]);
  });

  test.each(["bob", "nobody"])("%s (no admin role): 403 naming cluster-admin", async (user) => {
    expect(await expectStatus(await call("GET", "/clusters", { as: user }), 403, "Forbidden")).toContain("cluster-admin");
  });
});

describe("POST /v1/admin/clusters", () => {
  test("relay-admin registers a cluster and gets its enrollment token; the log names who, never the token", async () => {
    const response = await call("POST", "/clusters", { as: "root", body: { name: "edge", enrollmentTtlSeconds: 600 } });
    expect(response.status).toBe(201);
    const created = (await response.json()) as { name: string; enrollmentToken: string; expiresAt: string };
    expect(created.name).toBe("edge");
    expect(created.enrollmentToken.startsWith(ENROLLMENT_SECRET_PREFIX)).toBe(true);
    expect(Math.abs(Date.parse(created.expiresAt) - Date.now() - 600_000)).toBeLessThan(5_000);
    expect(await store.getCluster("edge")).toBeDefined();
    const log = logLines.join("");
    expect(log).toContain("admin: cluster registered");
    expect(log).toContain('"user":"root"');
    expect(log).not.toContain(created.enrollmentToken);
    expect(log).not.toContain(tokens.get("root")!);
  });

  test("a cluster-admin may not: 403 naming relay-admin", async () => {
    const message = await expectStatus(await call("POST", "/clusters", { as: "alice", body: { name: "edge" } }), 403, "Forbidden");
    expect(message).toContain("relay-admin");
    expect(await store.getCluster("edge")).toBeUndefined();
  });

  test("a cluster-user may not: 403", async () => {
    await expectStatus(await call("POST", "/clusters", { as: "bob", body: { name: "edge" } }), 403, "Forbidden");
  });

  test("an existing name: 409", async () => {
    await expectStatus(await call("POST", "/clusters", { as: "root", body: { name: "prod" } }), 409, "AlreadyExists");
  });

  test.each([
    ["an invalid name", { name: "Prod_1" }, "invalid cluster name"],
    ["no name", {}, '"name" is required'],
    ["a lifetime that is not a number", { name: "edge", enrollmentTtlSeconds: "1h" }, "whole number of seconds"],
    ["a lifetime out of range", { name: "edge", enrollmentTtlSeconds: 5 }, "60s to 7 days"],
    ["a JSON array", [], "JSON object"],
    ["text that is not JSON", "{name:", "must be JSON"],
  ])("%s: 400", async (_what, body, expected) => {
    expect(await expectStatus(await call("POST", "/clusters", { as: "root", body }), 400, "BadRequest")).toContain(expected);
  });

  test("a body without Content-Length (chunked) is read like any other: 201", async () => {
    const response = await app.request("/v1/admin/clusters", {
      method: "POST",
      headers: { authorization: `Bearer ${tokens.get("root")}`, "content-type": "application/json" },
      body: new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('{"name":"edge"}')); c.close(); } }),
    });
    expect(response.status).toBe(201);
    expect(await store.getCluster("edge")).toBeDefined();
  });

  test("a body over 16 KiB: 413 naming the limit", async () => {
    const body = JSON.stringify({ name: "edge", pad: "x".repeat(17 * 1024) });
    expect(await expectStatus(await call("POST", "/clusters", { as: "root", body }), 413, "RequestEntityTooLarge")).toContain("at most 16384");
    expect(await store.getCluster("edge")).toBeUndefined();
  });
});

describe("DELETE /v1/admin/clusters/:name", () => {
  test("relay-admin removes a cluster and its open tunnel closes", async () => {
    const tunnel = fakeTunnel();
    registry.register({ cluster: "prod", tunnel, connectedAt: new Date() });
    const response = await call("DELETE", "/clusters/prod", { as: "root" });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ name: "prod", removed: true });
    expect(await store.getCluster("prod")).toBeUndefined();
    expect(tunnel.closeCalls).toBe(1);
  });

  test("a cluster-admin may not remove their cluster: 403 naming relay-admin", async () => {
    expect(await expectStatus(await call("DELETE", "/clusters/prod", { as: "alice" }), 403, "Forbidden")).toContain("relay-admin");
    expect(await store.getCluster("prod")).toBeDefined();
  });

  test("a cluster-user: 403", async () => {
    await expectStatus(await call("DELETE", "/clusters/prod", { as: "bob" }), 403, "Forbidden");
  });

  test("an unknown cluster: 404; an invalid name: 400", async () => {
    await expectStatus(await call("DELETE", "/clusters/ghost", { as: "root" }), 404, "NotFound");
    await expectStatus(await call("DELETE", "/clusters/Not_A_Name", { as: "root" }), 400, "BadRequest");
  });
});

describe("POST /v1/admin/clusters/:name/enrollment-tokens", () => {
  test("a cluster-admin gets a working token for their cluster", async () => {
    const response = await call("POST", "/clusters/prod/enrollment-tokens", { as: "alice", body: { ttlSeconds: 120 } });
    expect(response.status).toBe(201);
    const { token, expiresAt } = (await response.json()) as { token: string; expiresAt: string };
    expect(Math.abs(Date.parse(expiresAt) - Date.now() - 120_000)).toBeLessThan(5_000);
    expect((await store.consumeEnrollmentToken(hashSecret(token), new Date()))?.cluster).toBe("prod");
  });

  test("relay-admin, with an empty body (default lifetime)", async () => {
    const response = await call("POST", "/clusters/staging/enrollment-tokens", { as: "root", headers: { "content-length": "0" } });
    expect(response.status).toBe(201);
  });

  test("a cluster-admin of another cluster: 403 naming cluster-admin", async () => {
    const message = await expectStatus(await call("POST", "/clusters/staging/enrollment-tokens", { as: "alice", body: {} }), 403, "Forbidden");
    expect(message).toContain("cluster-admin");
  });

  test("a cluster-user: 403", async () => {
    await expectStatus(await call("POST", "/clusters/prod/enrollment-tokens", { as: "bob", body: {} }), 403, "Forbidden");
  });

  test("bad input: 400; an unknown cluster: 404", async () => {
    await expectStatus(await call("POST", "/clusters/prod/enrollment-tokens", { as: "alice", body: { ttlSeconds: 1.5 } }), 400, "BadRequest");
    await expectStatus(await call("POST", "/clusters/prod/enrollment-tokens", { as: "alice", body: { ttlSeconds: 10 } }), 400, "BadRequest");
    await expectStatus(await call("POST", "/clusters/ghost/enrollment-tokens", { as: "root", body: {} }), 404, "NotFound");
  });
});

describe("POST /v1/admin/clusters/:name/revoke-agent", () => {
  test("a cluster-admin clears the agent key and the open tunnel closes at once", async () => {
    await store.setAgentKey("prod", (await generateSigningKeyPair("EdDSA")).publicJwk);
    const tunnel = fakeTunnel();
    registry.register({ cluster: "prod", tunnel, connectedAt: new Date() });
    const response = await call("POST", "/clusters/prod/revoke-agent", { as: "alice" });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ name: "prod", revoked: true, tunnelClosed: true });
    expect((await store.getCluster("prod"))?.agentKey).toBeUndefined();
    expect(tunnel.closeCalls).toBe(1);
    expect(logLines.join("")).toContain("admin: agent key revoked");
  });

  test("relay-admin, without a tunnel", async () => {
    const response = await call("POST", "/clusters/staging/revoke-agent", { as: "root" });
    expect(await response.json()).toEqual({ name: "staging", revoked: true, tunnelClosed: false });
  });

  test("a cluster-user: 403 naming cluster-admin, and the key stays", async () => {
    const key = (await generateSigningKeyPair("EdDSA")).publicJwk;
    await store.setAgentKey("prod", key);
    expect(await expectStatus(await call("POST", "/clusters/prod/revoke-agent", { as: "bob" }), 403, "Forbidden")).toContain("cluster-admin");
    expect((await store.getCluster("prod"))?.agentKey).toEqual(key);
  });

  test("an invalid name: 400", async () => {
    await expectStatus(await call("POST", "/clusters/-bad-/revoke-agent", { as: "root" }), 400, "BadRequest");
  });
});

describe("GET /v1/admin/grants", () => {
  const principals = async (response: Response) => ((await response.json()) as GrantRecord[]).map((g) => `${g.principal} ${g.cluster} ${g.role}`);

  test("relay-admin sees every grant, or one cluster's with ?cluster=", async () => {
    expect(await principals(await call("GET", "/grants", { as: "root" }))).toEqual([
      "user:root * relay-admin", "user:alice prod cluster-admin", "user:bob prod cluster-user", "group:ops staging cluster-user",
    ]);
    expect(await principals(await call("GET", "/grants?cluster=staging", { as: "root" }))).toEqual(["group:ops staging cluster-user"]);
  });

  test("a cluster-admin sees the grants of the clusters they admin", async () => {
    expect(await principals(await call("GET", "/grants", { as: "alice" }))).toEqual(["user:alice prod cluster-admin", "user:bob prod cluster-user"]);
    expect(await expectStatus(await call("GET", "/grants?cluster=staging", { as: "alice" }), 403, "Forbidden")).toContain("cluster-admin");
  });

  test("a cluster-user: 403", async () => {
    await expectStatus(await call("GET", "/grants", { as: "bob" }), 403, "Forbidden");
  });

  test("an invalid ?cluster: 400", async () => {
    await expectStatus(await call("GET", "/grants?cluster=NOPE!", { as: "root" }), 400, "BadRequest");
  });
});

describe("POST /v1/admin/grants", () => {
  test("a cluster-admin grants cluster-user and cluster-admin on their cluster", async () => {
    for (const role of ["cluster-user", "cluster-admin"]) {
      const response = await call("POST", "/grants", { as: "alice", body: { principal: "user:carol", cluster: "prod", role } });
      expect(response.status).toBe(201);
      expect(await response.json()).toMatchObject({ principal: "user:carol", cluster: "prod", role });
    }
    expect(logLines.join("")).toContain("admin: grant added");
  });

  test.each([
    ["relay-admin", "prod", "relay-admin"],
    ["cluster-user", "*", "relay-admin"],
    ["cluster-user", "staging", "cluster-admin"],
  ])("a cluster-admin may not grant %s on %s: 403 naming %s", async (role, cluster, needed) => {
    const message = await expectStatus(await call("POST", "/grants", { as: "alice", body: { principal: "user:carol", cluster, role } }), 403, "Forbidden");
    expect(message).toContain(needed);
  });

  test("relay-admin grants relay-admin", async () => {
    const response = await call("POST", "/grants", { as: "root", body: { principal: "group:admins", cluster: "*", role: "relay-admin" } });
    expect(response.status).toBe(201);
  });

  test("a cluster-user: 403", async () => {
    await expectStatus(await call("POST", "/grants", { as: "bob", body: { principal: "user:bob", cluster: "prod", role: "cluster-admin" } }), 403, "Forbidden");
  });

  test("a grant on a cluster that is not registered (a typo): 404 with the nearest names, and nothing is granted", async () => {
    const message = await expectStatus(await call("POST", "/grants", { as: "root", body: { principal: "user:carol", cluster: "prdo", role: "cluster-user" } }), 404, "NotFound");
    expect(message).toBe(
      `cluster "prdo" is not registered (did you mean prod?): grant on a registered cluster (arcrelay cluster list), register it first (arcrelay cluster add prdo), or grant on '*'`,
    );
    expect((await store.listGrants()).filter((g) => g.principal === "user:carol")).toEqual([]);
  });

  test.each([
    ["a bad principal", { principal: "carol", cluster: "prod", role: "cluster-user" }, "invalid principal"],
    ["a bad role", { principal: "user:carol", cluster: "prod", role: "owner" }, "invalid role"],
    ["a bad cluster", { principal: "user:carol", cluster: "Prod", role: "cluster-user" }, "invalid cluster name"],
    ["no cluster", { principal: "user:carol", role: "cluster-user" }, '"cluster" is required'],
  ])("%s: 400", async (_what, body, expected) => {
    expect(await expectStatus(await call("POST", "/grants", { as: "root", body }), 400, "BadRequest")).toContain(expected);
  });
});

describe("DELETE /v1/admin/grants/:id", () => {
  const grantOf = async (principal: string) => (await store.listGrants()).find((g) => g.principal === principal)!;

  test("a cluster-admin removes a grant on their cluster", async () => {
    const bob = await grantOf("user:bob");
    const response = await call("DELETE", `/grants/${bob.id}`, { as: "alice" });
    expect(response.status).toBe(200);
    expect(await grantOf("user:bob")).toBeUndefined();
    expect(logLines.join("")).toContain("admin: grant removed");
  });

  test("a cluster-admin may not remove a relay-admin grant or another cluster's: 403", async () => {
    expect(await expectStatus(await call("DELETE", `/grants/${(await grantOf("user:root")).id}`, { as: "alice" }), 403, "Forbidden")).toContain("relay-admin");
    expect(await expectStatus(await call("DELETE", `/grants/${(await grantOf("group:ops")).id}`, { as: "alice" }), 403, "Forbidden")).toContain("cluster-admin");
  });

  test("relay-admin removes any grant", async () => {
    expect((await call("DELETE", `/grants/${(await grantOf("group:ops")).id}`, { as: "root" })).status).toBe(200);
  });

  test("a cluster-user: 403", async () => {
    await expectStatus(await call("DELETE", `/grants/${(await grantOf("user:bob")).id}`, { as: "bob" }), 403, "Forbidden");
  });

  test("an unknown id: 404; a malformed id: 400", async () => {
    await expectStatus(await call("DELETE", `/grants/${crypto.randomUUID()}`, { as: "root" }), 404, "NotFound");
    await expectStatus(await call("DELETE", "/grants/x.y", { as: "root" }), 400, "BadRequest");
  });
});
