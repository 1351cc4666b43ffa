// The behaviour every RelayStore must show, as a suite any implementation (SQLite, PostgreSQL) runs.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { JWK } from "jose";
import { Conflict, NotFound } from "../../../lib/errors/index.ts";
import type { RelayStore, ReplicaRecord, Role, StoreChange } from "../../../lib/relay/store/index.ts";
import { within } from "../../support/wait-for.ts";

export interface OpenedStore {
  store: RelayStore;
  /** A second store on the same database, as another process (a replica, the admin CLI) opens it; closed by cleanup. */
  openAnother(): Promise<RelayStore>;
  cleanup(): Promise<void>;
}

const AGENT_KEY: JWK = { kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" };
const HOUR = 3_600_000;

function replica0(replicaId: string, expiresAt: Date): ReplicaRecord {
  return { replicaId, internalUrl: "https://10.0.0.1:8444", certificatePem: "pem", expiresAt };
}

/** Runs the RelayStore contract against `open`, which returns a fresh, empty store per test. */
export function describeStoreContract(name: string, open: () => Promise<OpenedStore>): void {
  describe(`${name}: RelayStore contract`, () => {
    let opened: OpenedStore;
    let store: RelayStore;
    beforeEach(async () => {
      opened = await open();
      store = opened.store;
    });
    afterEach(async () => {
      await opened.cleanup();
    });

    describe("clusters", () => {
      test("addCluster returns the new record, which getCluster then finds", async () => {
        const before = Date.now();
        const added = await store.addCluster("prod");
        expect(added.name).toBe("prod");
        expect(added.createdAt).toBeInstanceOf(Date);
        expect(added.createdAt.getTime()).toBeGreaterThanOrEqual(before - 1000);
        expect(added.createdAt.getTime()).toBeLessThanOrEqual(Date.now() + 1000);
        expect(added.agentKey).toBeUndefined();
        expect(added.lastSeen).toBeUndefined();
        expect(await store.getCluster("prod")).toEqual(added);
      });

      test("addCluster on an existing name throws Conflict and leaves the cluster as it was", async () => {
        await store.addCluster("prod");
        await store.setAgentKey("prod", AGENT_KEY);
        const error = await rejectionOf(store.addCluster("prod"));
        expect(error).toBeInstanceOf(Conflict);
        expect((error as Error).message).toBe('cluster "prod" already exists');
        expect((await store.getCluster("prod"))?.agentKey).toEqual(AGENT_KEY);
      });

      test("getCluster of an unknown name is undefined", async () => {
        expect(await store.getCluster("nope")).toBeUndefined();
      });

      test("listClusters returns every cluster, sorted by name", async () => {
        expect(await store.listClusters()).toEqual([]);
        for (const n of ["staging", "dev", "prod"]) await store.addCluster(n);
        expect((await store.listClusters()).map((c) => c.name)).toEqual(["dev", "prod", "staging"]);
      });

      test("removeCluster drops the grants naming that cluster, not those on '*' or other clusters", async () => {
        await store.addCluster("prod");
        await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-user" });
        await store.addGrant({ principal: "user:alice", cluster: "*", role: "cluster-user" });
        await store.addGrant({ principal: "user:alice", cluster: "dev", role: "cluster-user" });
        await store.removeCluster("prod");
        expect((await store.listGrants()).map((g) => g.cluster).sort()).toEqual(["*", "dev"]);
      });

      test("removeCluster says whether there was a cluster to remove", async () => {
        await store.addCluster("prod");
        expect(await store.removeCluster("prod")).toBe(true);
        expect(await store.getCluster("prod")).toBeUndefined();
        expect(await store.removeCluster("prod")).toBe(false);
      });

      test("setAgentKey stores the JWK as given, and undefined clears it", async () => {
        await store.addCluster("prod");
        await store.setAgentKey("prod", AGENT_KEY);
        expect((await store.getCluster("prod"))?.agentKey).toEqual(AGENT_KEY);
        expect((await store.listClusters())[0]?.agentKey).toEqual(AGENT_KEY);
        await store.setAgentKey("prod", undefined);
        expect((await store.getCluster("prod"))?.agentKey).toBeUndefined();
      });

      test("recordAgentSeen stores versions and time; omitted versions keep the last ones", async () => {
        await store.addCluster("prod");
        const first = new Date("2030-01-02T03:04:05.678Z");
        await store.recordAgentSeen("prod", { agentVersion: "0.1.0", kubernetesVersion: "v1.33.1", at: first, connected: true });
        let cluster = await store.getCluster("prod");
        expect(cluster?.connected).toBe(true);
        expect(cluster?.agentVersion).toBe("0.1.0");
        expect(cluster?.kubernetesVersion).toBe("v1.33.1");
        expect(cluster?.lastSeen).toEqual(first);

        const heartbeat = new Date(first.getTime() + 30_000);
        await store.recordAgentSeen("prod", { at: heartbeat, connected: false });
        cluster = await store.getCluster("prod");
        expect(cluster?.connected).toBe(false);
        expect(cluster?.agentVersion).toBe("0.1.0");
        expect(cluster?.kubernetesVersion).toBe("v1.33.1");
        expect(cluster?.lastSeen).toEqual(heartbeat);
      });

      test.each([
        ["setAgentKey", (s: RelayStore) => s.setAgentKey("ghost", AGENT_KEY)],
        ["recordAgentSeen", (s: RelayStore) => s.recordAgentSeen("ghost", { at: new Date(), connected: true })],
        [
          "addEnrollmentToken",
          (s: RelayStore) => s.addEnrollmentToken({ cluster: "ghost", secretHash: "ab", expiresAt: new Date() }),
        ],
      ] as const)("%s on an unregistered cluster throws NotFound telling how to register it", async (_, call) => {
        const error = await rejectionOf(call(store));
        expect(error).toBeInstanceOf(NotFound);
        expect((error as Error).message).toBe('cluster "ghost" is not registered: arcrelay cluster add ghost');
        expect(await store.getCluster("ghost")).toBeUndefined();
      });
    });

    describe("enrollment tokens", () => {
      const now = new Date("2030-06-01T12:00:00.000Z");
      const later = (ms: number) => new Date(now.getTime() + ms);

      beforeEach(async () => {
        await store.addCluster("prod");
      });

      test("a token is consumed once and returned with its cluster and expiry", async () => {
        const token = { cluster: "prod", secretHash: "a".repeat(64), expiresAt: later(HOUR) };
        await store.addEnrollmentToken(token);
        expect(await store.consumeEnrollmentToken(token.secretHash, now)).toEqual(token);
        expect(await store.consumeEnrollmentToken(token.secretHash, now)).toBeUndefined();
      });

      test("a token is found without being consumed; an expired or unknown one is not found", async () => {
        const token = { cluster: "prod", secretHash: "c".repeat(64), expiresAt: later(HOUR) };
        await store.addEnrollmentToken(token);
        expect(await store.findEnrollmentToken(token.secretHash, now)).toEqual(token);
        expect(await store.findEnrollmentToken(token.secretHash, now)).toEqual(token);
        expect(await store.findEnrollmentToken(token.secretHash, later(HOUR))).toBeUndefined();
        expect(await store.findEnrollmentToken("f".repeat(64), now)).toBeUndefined();
        expect(await store.consumeEnrollmentToken(token.secretHash, now)).toEqual(token);
        expect(await store.findEnrollmentToken(token.secretHash, now)).toBeUndefined();
      });

      test("an unknown token is not consumed", async () => {
        expect(await store.consumeEnrollmentToken("f".repeat(64), now)).toBeUndefined();
      });

      test("an expired token is refused and deleted", async () => {
        await store.addEnrollmentToken({ cluster: "prod", secretHash: "b1", expiresAt: later(-1) });
        expect(await store.consumeEnrollmentToken("b1", now)).toBeUndefined();
        // Gone, not merely refused: even a clock before its expiry no longer finds it.
        expect(await store.consumeEnrollmentToken("b1", later(-HOUR))).toBeUndefined();
      });

      test("a token expiring exactly now is expired", async () => {
        await store.addEnrollmentToken({ cluster: "prod", secretHash: "b2", expiresAt: now });
        expect(await store.consumeEnrollmentToken("b2", now)).toBeUndefined();
      });

      test("concurrent consumers of one token: exactly one wins", async () => {
        await store.addEnrollmentToken({ cluster: "prod", secretHash: "c1", expiresAt: later(HOUR) });
        const results = await Promise.all(Array.from({ length: 8 }, () => store.consumeEnrollmentToken("c1", now)));
        expect(results.filter((r) => r !== undefined)).toHaveLength(1);
      });

      test("tokens are separate: consuming one leaves the others", async () => {
        await store.addEnrollmentToken({ cluster: "prod", secretHash: "d1", expiresAt: later(HOUR) });
        await store.addEnrollmentToken({ cluster: "prod", secretHash: "d2", expiresAt: later(HOUR) });
        expect((await store.consumeEnrollmentToken("d1", now))?.secretHash).toBe("d1");
        expect((await store.consumeEnrollmentToken("d2", now))?.secretHash).toBe("d2");
      });

      test("removing a cluster removes its tokens", async () => {
        await store.addEnrollmentToken({ cluster: "prod", secretHash: "e1", expiresAt: later(HOUR) });
        await store.removeCluster("prod");
        await store.addCluster("prod");
        expect(await store.consumeEnrollmentToken("e1", now)).toBeUndefined();
      });
    });

    describe("grants", () => {
      test("addGrant returns the grant with a fresh id and creation time", async () => {
        const grant = await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-user" });
        expect(grant).toMatchObject({ principal: "user:alice", cluster: "prod", role: "cluster-user" });
        expect(grant.id).toMatch(/^[0-9a-f-]{36}$/);
        expect(grant.createdAt).toBeInstanceOf(Date);
        expect(await store.listGrants()).toEqual([grant]);
      });

      test("addGrant of an existing (principal, cluster, role) returns the existing grant", async () => {
        const first = await store.addGrant({ principal: "group:ops", cluster: "*", role: "cluster-admin" });
        const again = await store.addGrant({ principal: "group:ops", cluster: "*", role: "cluster-admin" });
        expect(again).toEqual(first);
        expect(await store.listGrants()).toHaveLength(1);
      });

      test("grants need no registered cluster (a grant may name `*` or precede the cluster)", async () => {
        await store.addGrant({ principal: "user:alice", cluster: "later", role: "cluster-user" });
        expect(await store.listGrants({ cluster: "later" })).toHaveLength(1);
      });

      test("listGrants filters by cluster, literally", async () => {
        const a = await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-user" });
        const b = await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-admin" });
        const c = await store.addGrant({ principal: "user:bob", cluster: "dev", role: "cluster-user" });
        const d = await store.addGrant({ principal: "group:admins", cluster: "*", role: "relay-admin" });
        expect(sortById(await store.listGrants({ cluster: "prod" }))).toEqual(sortById([a, b]));
        expect(await store.listGrants({ cluster: "*" })).toEqual([d]);
        expect(sortById(await store.listGrants())).toEqual(sortById([a, b, c, d]));
        expect(sortById(await store.listGrants({}))).toEqual(sortById([a, b, c, d]));
      });

      test("removeGrant by id removes that grant only", async () => {
        const a = await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-user" });
        const b = await store.addGrant({ principal: "user:bob", cluster: "prod", role: "cluster-user" });
        expect(await store.removeGrant({ id: a.id })).toBe(1);
        expect(await store.listGrants()).toEqual([b]);
        expect(await store.removeGrant({ id: a.id })).toBe(0);
      });

      test("removeGrant matches every field given and counts what it removed", async () => {
        await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-user" });
        await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-admin" });
        await store.addGrant({ principal: "user:alice", cluster: "dev", role: "cluster-user" });
        const bob = await store.addGrant({ principal: "user:bob", cluster: "prod", role: "cluster-user" });
        expect(await store.removeGrant({ principal: "user:alice", cluster: "prod", role: "relay-admin" })).toBe(0);
        expect(await store.removeGrant({ principal: "user:alice", cluster: "prod" })).toBe(2);
        expect(await store.removeGrant({ principal: "user:alice" })).toBe(1);
        expect(await store.listGrants()).toEqual([bob]);
        expect(await store.removeGrant({ role: "cluster-user" })).toBe(1);
        expect(await store.listGrants()).toEqual([]);
      });

      test.each([[{}], [{ id: undefined, principal: undefined }]])(
        "removeGrant(%j) throws TypeError instead of removing every grant",
        async (match) => {
          await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-user" });
          const error = await rejectionOf(store.removeGrant(match));
          expect(error).toBeInstanceOf(TypeError);
          expect(await store.listGrants()).toHaveLength(1);
        },
      );
    });

    describe("presence", () => {
      test("the latest replica to record a cluster holds it until it expires; only the holder removes it", async () => {
        const now = Date.now();
        await store.recordPresence({ cluster: "prod", replicaId: "r1", expiresAt: new Date(now + 60_000) });
        await store.recordPresence({ cluster: "dev", replicaId: "r1", expiresAt: new Date(now + 1_000) });
        await store.recordPresence({ cluster: "prod", replicaId: "r2", expiresAt: new Date(now + 60_000) });
        expect((await store.listPresence(new Date(now))).map((p) => `${p.cluster}@${p.replicaId}`)).toEqual(["dev@r1", "prod@r2"]);
        expect((await store.listPresence(new Date(now + 2_000))).map((p) => p.cluster)).toEqual(["prod"]);
        await store.removePresence("prod", "r1");
        expect((await store.listPresence(new Date(now))).map((p) => p.cluster)).toEqual(["dev", "prod"]);
        await store.removePresence("prod", "r2");
        expect((await store.listPresence(new Date(now))).map((p) => p.cluster)).toEqual(["dev"]);
      });
    });

    describe("replicas", () => {
      const replica = (replicaId: string, expiresAt: Date): ReplicaRecord => ({
        replicaId, internalUrl: `https://10.0.0.${replicaId.length}:8444`, certificatePem: `-----BEGIN CERTIFICATE-----\n${replicaId}\n-----END CERTIFICATE-----\n`, expiresAt,
      });

      test("a replica is listed until it expires; recording it again replaces its endpoint", async () => {
        const now = Date.now();
        await store.recordReplica(replica("r1", new Date(now + 60_000)));
        await store.recordReplica(replica("r2", new Date(now + 1_000)));
        expect((await store.listReplicas(new Date(now))).map((r) => r.replicaId)).toEqual(["r1", "r2"]);
        expect((await store.listReplicas(new Date(now + 2_000))).map((r) => r.replicaId)).toEqual(["r1"]);
        await store.recordReplica({ ...replica("r1", new Date(now + 60_000)), internalUrl: "https://10.0.0.9:8444" });
        expect((await store.listReplicas(new Date(now)))[0]).toEqual({ ...replica("r1", new Date(now + 60_000)), internalUrl: "https://10.0.0.9:8444" });
      });

      test("findTunnelHolder names the live replica holding a cluster, never one whose presence or own record expired", async () => {
        const now = Date.now();
        await store.addCluster("prod");
        await store.recordReplica(replica("r1", new Date(now + 60_000)));
        await store.recordReplica(replica("r2", new Date(now + 1_000)));
        await store.recordPresence({ cluster: "prod", replicaId: "r1", expiresAt: new Date(now + 60_000) });
        await store.recordPresence({ cluster: "dev", replicaId: "r2", expiresAt: new Date(now + 60_000) });
        expect((await store.findTunnelHolder("prod", new Date(now)))?.replicaId).toBe("r1");
        expect((await store.findTunnelHolder("dev", new Date(now)))?.replicaId).toBe("r2");
        // r2 died: its record expired, so its presence no longer routes anything.
        expect(await store.findTunnelHolder("dev", new Date(now + 2_000))).toBeUndefined();
        expect(await store.findTunnelHolder("prod", new Date(now + 61_000))).toBeUndefined();
        expect(await store.findTunnelHolder("nowhere", new Date(now))).toBeUndefined();
      });

      test("renewReplica extends the replica and everything it holds in one call, and marks its clusters seen", async () => {
        const now = Date.now();
        await store.addCluster("prod");
        await store.addCluster("dev");
        await store.recordReplica(replica("r1", new Date(now + 1_000)));
        await store.recordPresence({ cluster: "prod", replicaId: "r1", expiresAt: new Date(now + 1_000) });
        await store.recordPresence({ cluster: "dev", replicaId: "r2", expiresAt: new Date(now + 1_000) });
        await store.renewReplica("r1", new Date(now + 60_000), new Date(now + 500));
        expect((await store.findTunnelHolder("prod", new Date(now + 30_000)))?.replicaId).toBe("r1");
        expect((await store.listPresence(new Date(now + 30_000))).map((p) => p.cluster)).toEqual(["prod"]);
        expect((await store.getCluster("prod"))?.lastSeen?.getTime()).toBe(now + 500);
        expect((await store.getCluster("dev"))?.lastSeen).toBeUndefined();
      });

      test("removeReplica forgets the replica and every presence it held, not others'", async () => {
        const now = Date.now();
        await store.recordReplica(replica("r1", new Date(now + 60_000)));
        await store.recordReplica(replica("r2", new Date(now + 60_000)));
        await store.recordPresence({ cluster: "prod", replicaId: "r1", expiresAt: new Date(now + 60_000) });
        await store.recordPresence({ cluster: "dev", replicaId: "r2", expiresAt: new Date(now + 60_000) });
        await store.removeReplica("r1");
        expect((await store.listReplicas(new Date(now))).map((r) => r.replicaId)).toEqual(["r2"]);
        expect((await store.listPresence(new Date(now))).map((p) => p.cluster)).toEqual(["dev"]);
      });
    });

    describe("change feed", () => {
      /** Collects changes; `next(match)` resolves with the first (past or future) change that matches. */
      async function watch(target: RelayStore) {
        const seen: StoreChange[] = [];
        const wakes = new Set<() => void>();
        const stop = await target.watchChanges((change) => {
          seen.push(change);
          for (const wake of wakes) wake();
        });
        const next = (what: string, match: (c: StoreChange) => boolean) =>
          within(`a change: ${what}`, new Promise<StoreChange>((resolve) => {
            const check = () => {
              const found = seen.find(match);
              if (found) {
                wakes.delete(check);
                resolve(found);
              }
            };
            wakes.add(check);
            check();
          }), 5_000);
        return { seen, next, stop };
      }
      // A change may be told precisely or as "anything may have changed" (SQLite, from another connection).
      const about = (table: StoreChange["table"], key?: string) => (c: StoreChange) => c.table === "*" || (c.table === table && (key === undefined || c.key === key));

      test("a store hears its own writes: agent key, grants, presence, settings", async () => {
        const feed = await watch(store);
        try {
          await store.addCluster("prod");
          await store.setAgentKey("prod", AGENT_KEY);
          await feed.next("agent key of prod", (c) => c.table === "clusters" && c.key === "prod");
          await store.addGrant({ principal: "user:alice", cluster: "prod", role: "cluster-user" });
          await feed.next("grants", (c) => c.table === "grants");
          await store.recordPresence({ cluster: "prod", replicaId: "r1", expiresAt: new Date(Date.now() + 60_000) });
          await feed.next("presence of prod", (c) => c.table === "presence" && c.key === "prod");
          await store.setSetting("issuer.keys", "{}");
          await feed.next("setting issuer.keys", (c) => c.table === "settings" && c.key === "issuer.keys");
        } finally {
          await feed.stop();
        }
      });

      test("another process's revocation, grant and presence reach a watching store", async () => {
        const other = await opened.openAnother();
        await store.addCluster("prod");
        await store.setAgentKey("prod", AGENT_KEY);
        const feed = await watch(store);
        try {
          await other.setAgentKey("prod", undefined);
          await feed.next("revoked key of prod", about("clusters", "prod"));
          feed.seen.length = 0;
          await other.removeGrant({ principal: "user:nobody" }); // removes nothing: no change need be told
          await other.addGrant({ principal: "user:bob", cluster: "prod", role: "cluster-user" });
          await feed.next("bob's grant", about("grants"));
          feed.seen.length = 0;
          await other.recordPresence({ cluster: "prod", replicaId: "r2", expiresAt: new Date(Date.now() + 60_000) });
          await feed.next("prod moved to r2", about("presence", "prod"));
        } finally {
          await feed.stop();
        }
      });

      test("heartbeats tell nobody: renewing a replica and marking clusters seen is not a change", async () => {
        const now = Date.now();
        await store.addCluster("prod");
        await store.recordReplica(replica0("r1", new Date(now + 60_000)));
        await store.recordPresence({ cluster: "prod", replicaId: "r1", expiresAt: new Date(now + 60_000) });
        const other = await opened.openAnother();
        const feed = await watch(store);
        try {
          await other.renewReplica("r1", new Date(now + 120_000), new Date(now));
          await other.recordAgentSeen("prod", { at: new Date(now), connected: true });
          // A marker written after them: once it arrives, anything the heartbeat sent has arrived too.
          await other.setSetting("marker", "1");
          await feed.next("the marker", about("settings", "marker"));
          expect(feed.seen.filter((c) => c.table !== "settings" && c.table !== "*")).toEqual([]);
        } finally {
          await feed.stop();
        }
      });

      test("after stop, nothing more is told", async () => {
        const feed = await watch(store);
        await feed.stop();
        await store.addCluster("quiet");
        await store.setSetting("marker", "1");
        expect(feed.seen).toEqual([]);
      });
    });

    describe("grants for one caller", () => {
      test("listGrantsFor returns exactly the grants findRole could use: own user and groups, patterns, sub:, '*' and relay-admin", async () => {
        const add = (principal: string, cluster: string, role: Role = "cluster-user") => store.addGrant({ principal, cluster, role });
        await add("user:alice", "prod");
        await add("user:alice", "dev");
        await add("group:dev", "prod");
        await add("group:ops", "prod");
        await add("user:bob", "prod");
        await add("user:al*", "prod");
        await add("sub:repo:acme/*", "prod");
        await add("user:alice", "*");
        await add("user:root", "staging", "relay-admin");
        const caller = { user: "alice", groups: ["dev"] };
        const names = (grants: { principal: string; cluster: string }[]) => grants.map((g) => `${g.principal}@${g.cluster}`).sort();
        expect(names(await store.listGrantsFor(caller, "prod"))).toEqual(
          ["group:dev@prod", "sub:repo:acme/*@prod", "user:al*@prod", "user:alice@*", "user:alice@prod"].sort(),
        );
        expect(names(await store.listGrantsFor(caller))).toEqual(
          ["group:dev@prod", "sub:repo:acme/*@prod", "user:al*@prod", "user:alice@*", "user:alice@dev", "user:alice@prod"].sort(),
        );
        // A relay-admin grant applies on every cluster, whichever it names.
        expect(names(await store.listGrantsFor({ user: "root", groups: [] }, "prod"))).toEqual(["sub:repo:acme/*@prod", "user:al*@prod", "user:root@staging"].sort());
      });
    });

    describe("settings", () => {
      test("an unset key is undefined", async () => {
        expect(await store.getSetting("issuer.url")).toBeUndefined();
      });

      test("setSetting stores and overwrites a value", async () => {
        await store.setSetting("issuer.url", "https://relay.example");
        expect(await store.getSetting("issuer.url")).toBe("https://relay.example");
        await store.setSetting("issuer.url", "https://relay2.example");
        expect(await store.getSetting("issuer.url")).toBe("https://relay2.example");
      });

      test("setSettingIfAbsent keeps the first value, also when several writers race", async () => {
        expect(await store.setSettingIfAbsent("issuer.keys", "first")).toBe("first");
        expect(await store.setSettingIfAbsent("issuer.keys", "second")).toBe("first");
        const raced = await Promise.all(["a", "b", "c", "d"].map((v) => store.setSettingIfAbsent("raced", v)));
        expect(new Set(raced).size).toBe(1);
        expect(await store.getSetting("raced")).toBe(raced[0]);
      });

      test("values are stored verbatim, including multi-line JSON", async () => {
        const value = JSON.stringify({ keys: [AGENT_KEY] }, null, 2);
        await store.setSetting("issuer.jwks", value);
        expect(await store.getSetting("issuer.jwks")).toBe(value);
      });
    });
  });
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

function sortById<T extends { id: string }>(grants: T[]): T[] {
  return [...grants].sort((a, b) => a.id.localeCompare(b.id));
}
