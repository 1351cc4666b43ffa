// Who may reach which cluster through the relay: a real SQLite store, the built-in issuer, real tokens.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import {
  builtinIssuerTrust, createBuiltinIssuer, createUserTokenVerifier, loadOrCreateIssuerKeys, type BuiltinIssuer, type Identity,
} from "../../lib/auth/index.ts";
import { ArcError, Forbidden, NotFound, Unauthorized } from "../../lib/errors/index.ts";
import type { RelayStore } from "../../lib/relay/store/index.ts";
import { bearerToken, createUserAccess, type UserAccess } from "../../lib/relay/user-access.ts";
import { openRelayFixture, type RelayFixture } from "./relay-fixture.ts";

const ISSUER_URL = "https://relay.test";

let fixture: RelayFixture;
let dir: string;
let store: RelayStore;
let issuer: BuiltinIssuer;
let access: UserAccess;
/** alice, with no groups: most cases only vary the grants. */
let alice: Identity;

beforeAll(async () => {
  fixture = await openRelayFixture("user-access");
  ({ dir, store, issuer } = fixture);
  const verifier = createUserTokenVerifier({ issuers: [builtinIssuerTrust(issuer)] });
  access = createUserAccess({ store, verifyUserToken: verifier.verifyUserToken });
  alice = await identityFor("alice");
});

afterAll(() => fixture.close());

beforeEach(async () => {
  await fixture.reset();
});

/** Runs `fn` and returns what it threw (fails the test if it did not throw). */
async function thrown(fn: () => Promise<unknown>): Promise<ArcError> {
  try {
    await fn();
  } catch (error) {
    return error as ArcError;
  }
  throw new Error("expected a throw, got none");
}

async function identityFor(user: string, groups: string[] = []): Promise<Identity> {
  const token = await issuer.signUserToken({ user, groups });
  return access.authenticate(new Headers({ authorization: `Bearer ${token}` }));
}

describe("authenticate", () => {
  test("no Authorization header: 401 that says how to get a token", async () => {
    const error = await thrown(() => access.authenticate(new Headers()));
    expect(error).toBeInstanceOf(Unauthorized);
    expect(error.status).toBe(401);
    expect(error.message).toContain("arcrelay token create");
  });

  test.each([
    ["Basic credentials", "Basic x"],
    ["Basic with user:pass", "Basic YWxpY2U6c2VjcmV0"],
    ["bare token", "eyJhbGciOi.x.y"],
    ["Bearer without a token", "Bearer "],
    ["two tokens", "Bearer a b"],
  ])("%s is refused as Unauthorized", async (_what, header) => {
    const error = await thrown(() => access.authenticate(new Headers({ authorization: header })));
    expect(error).toBeInstanceOf(Unauthorized);
    expect(error.status).toBe(401);
  });

  test("a token that is not a JWT is Unauthorized", async () => {
    const error = await thrown(() => access.authenticate(new Headers({ authorization: "Bearer not-a-jwt" })));
    expect(error).toBeInstanceOf(Unauthorized);
  });

  test("a token from another issuer is Unauthorized", async () => {
    const settings = new Map<string, string>();
    const foreign = createBuiltinIssuer({
      issuer: "https://other.test",
      audience: "cluster-connect",
      ...(await loadOrCreateIssuerKeys({ getSetting: async (k) => settings.get(k), setSetting: async (k, v) => void settings.set(k, v), setSettingIfAbsent: async (k, v) => { if (!settings.has(k)) settings.set(k, v); return settings.get(k)!; } })),
    });
    const token = await foreign.signUserToken({ user: "alice" });
    const error = await thrown(() => access.authenticate(new Headers({ authorization: `Bearer ${token}` })));
    expect(error).toBeInstanceOf(Unauthorized);
    expect(error.message).toContain("not trusted");
  });

  test("a valid token gives the user and groups; Node-style header objects work too", async () => {
    const token = await issuer.signUserToken({ user: "alice", groups: ["dev", "ops"] });
    const viaHeaders = await access.authenticate(new Headers({ authorization: `Bearer ${token}` }));
    const viaNode = await access.authenticate({ authorization: `bearer ${token}` });
    for (const identity of [viaHeaders, viaNode]) {
      expect(identity).toMatchObject({ user: "alice", groups: ["dev", "ops"], subject: "alice", issuer: ISSUER_URL });
    }
  });

  test("bearerToken reads the token from either header shape", () => {
    expect(bearerToken(new Headers({ authorization: "Bearer abc" }))).toBe("abc");
    expect(bearerToken({ authorization: "Bearer   abc  " })).toBe("abc");
  });
});

describe("authorize", () => {
  test("valid token without any grant: 403 naming the arcrelay grant add command", async () => {
    await store.addCluster("prod");
    const error = await thrown(() => access.authorize(alice, "prod", "cluster-user"));
    expect(error).toBeInstanceOf(Forbidden);
    expect(error.status).toBe(403);
    expect(error.message).toContain("arcrelay grant add --principal user:alice --cluster prod --role cluster-user");
  });

  test("a grant for the user on the cluster lets them through", async () => {
    await store.addCluster("prod");
    expect(await thrown(() => access.authorize(alice, "prod", "cluster-user"))).toBeInstanceOf(Forbidden);
    await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-user" });
    await expect(access.authorize(alice, "prod", "cluster-user")).resolves.toMatchObject({ name: "prod" });
  });

  test("a grant for another cluster does not", async () => {
    await store.addCluster("prod");
    await store.addCluster("dev");
    await store.addGrant({ principal: "user:alice", cluster: "dev", role: "cluster-admin" });
    expect(await thrown(() => access.authorize(alice, "prod", "cluster-user"))).toBeInstanceOf(Forbidden);
  });

  test("a grant to one of the user's groups lets them through", async () => {
    await store.addCluster("prod");
    await store.addGrant({ principal: "group:ops", cluster: "prod", role: "cluster-user" });
    await access.authorize(await identityFor("bob", ["dev", "ops"]), "prod", "cluster-user");
    expect(await thrown(() => access.authorize(alice, "prod", "cluster-user"))).toBeInstanceOf(Forbidden);
  });

  test("a grant on cluster * covers every cluster", async () => {
    await store.addCluster("prod");
    await store.addCluster("staging");
    await store.addGrant({ principal: "user:alice", cluster: "*", role: "cluster-user" });
    await expect(access.authorize(alice, "prod", "cluster-user")).resolves.toMatchObject({ name: "prod" });
    await expect(access.authorize(alice, "staging", "cluster-user")).resolves.toMatchObject({ name: "staging" });
    // It covers names not registered yet too, so alice is told the cluster does not exist (404), not 403.
    expect(await thrown(() => access.authorize(alice, "ghost", "cluster-user"))).toBeInstanceOf(NotFound);
  });

  test("a principal glob (group:*) matches any user with a group", async () => {
    await store.addCluster("prod");
    await store.addGrant({ principal: "group:*", cluster: "prod", role: "cluster-user" });
    await access.authorize(await identityFor("carol", ["anything"]), "prod", "cluster-user");
    // A user with no group at all matches no group grant.
    expect(await thrown(async () => access.authorize(await identityFor("dave"), "prod", "cluster-user"))).toBeInstanceOf(Forbidden);
  });

  test("cluster-user is not enough for cluster-admin", async () => {
    await store.addCluster("prod");
    await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-user" });
    const error = await thrown(() => access.authorize(alice, "prod", "cluster-admin"));
    expect(error).toBeInstanceOf(Forbidden);
    expect(error.message).toContain("--role cluster-admin");
  });

  test("grant present but the cluster is not registered: 404", async () => {
    await store.addGrant({ principal: "user:alice", cluster: "ghost", role: "cluster-user" });
    const error = await thrown(() => access.authorize(alice, "ghost", "cluster-user"));
    expect(error).toBeInstanceOf(NotFound);
    expect(error.status).toBe(404);
    expect(error.message).toContain("arcrelay cluster list");
  });

  test("no grant and an unknown cluster: 403, not 404, so names cannot be probed", async () => {
    await store.addCluster("prod");
    const unknown = await thrown(() => access.authorize(alice, "ghost", "cluster-user"));
    const known = await thrown(() => access.authorize(alice, "prod", "cluster-user"));
    expect(unknown).toBeInstanceOf(Forbidden);
    expect(known).toBeInstanceOf(Forbidden);
    // The two answers differ only in the cluster name they echo back.
    expect(unknown.message.replaceAll("ghost", "X")).toBe(known.message.replaceAll("prod", "X"));
  });
});
