// What `arcrelay cluster|grant ...` do, on the data dir directly (local) or through the admin API (remote).
import { readCaFile } from "../client/index.ts";
import { NotFound } from "../errors/index.ts";
import { createAdminClient, type AdminClient } from "./admin-client.ts";
import { describeCluster, type ClusterStatus } from "./cluster-status.ts";
import { addCluster, createEnrollmentToken, DEFAULT_ENROLLMENT_TTL_SECONDS } from "./enrollment.ts";
import { addGrantToRegistered } from "./grant-add.ts";
import { openPostgresStore, openSqliteStore, type GrantRecord, type RelayStore, type Role } from "./store/index.ts";

export interface AdminOperations {
  addCluster(name: string, ttlSeconds?: number): Promise<{ cluster: string; token: string; expiresAt: Date }>;
  createEnrollmentToken(name: string, ttlSeconds?: number): Promise<{ token: string; expiresAt: Date }>;
  listClusters(): Promise<ClusterStatus[]>;
  /** Throws NotFound if the cluster is not registered. */
  removeCluster(name: string): Promise<void>;
  /**
   * Forgets the cluster's agent key, so its agent must enroll again. Through the relay its open
   * tunnel closes at once; on the data dir the running relay notices the key change by itself.
   */
  revokeAgent(name: string): Promise<{ tunnelClosed?: boolean }>;
  addGrant(grant: { principal: string; cluster: string; role: Role }): Promise<GrantRecord>;
  listGrants(cluster?: string): Promise<GrantRecord[]>;
  /** Removes the grants matching every given field; returns how many went. */
  removeGrants(match: GrantMatch): Promise<number>;
  close(): Promise<void>;
}

export interface GrantMatch {
  id?: string;
  principal?: string;
  cluster?: string;
  role?: Role;
}

/** The relay's data dir on this host, or a relay reached over HTTPS with a user token. */
export type AdminTarget = { dataDir: string } | { databaseUrl: string } | { relayUrl: string; token: string; caFile?: string };

export async function openAdminOperations(target: AdminTarget): Promise<AdminOperations> {
  if ("dataDir" in target) return createLocalAdminOperations(await openSqliteStore(target.dataDir));
  if ("databaseUrl" in target) return createLocalAdminOperations(await openPostgresStore(target.databaseUrl));
  const ca = target.caFile ? await readCaFile(target.caFile, "--relay-ca") : undefined;
  return createRemoteAdminOperations(createAdminClient({ relayUrl: target.relayUrl, token: target.token, ca }));
}

/** Opens the target, runs `fn`, and closes it whatever happens. */
export async function withAdminOperations<T>(target: AdminTarget, fn: (ops: AdminOperations) => Promise<T>): Promise<T> {
  const ops = await openAdminOperations(target);
  try {
    return await fn(ops);
  } finally {
    await ops.close();
  }
}

export function createLocalAdminOperations(store: RelayStore): AdminOperations {
  return {
    addCluster: (name, ttlSeconds) => addCluster(store, name, ttlSeconds),
    createEnrollmentToken: (name, ttlSeconds) => createEnrollmentToken(store, name, ttlSeconds),
    listClusters: async () => (await store.listClusters()).map((r) => describeCluster(r)),
    async removeCluster(name) {
      if (!(await store.removeCluster(name))) throw new NotFound(`cluster "${name}" is not registered`);
    },
    async revokeAgent(name) {
      await store.setAgentKey(name, undefined);
      return {};
    },
    addGrant: (grant) => addGrantToRegistered(store, grant),
    listGrants: (cluster) => store.listGrants(cluster ? { cluster } : undefined),
    removeGrants: (match) => store.removeGrant(match),
    close: () => store.close(),
  };
}

export function createRemoteAdminOperations(client: AdminClient): AdminOperations {
  const toGrantRecord = (g: { id: string; principal: string; cluster: string; role: Role; createdAt: string }): GrantRecord =>
    ({ ...g, createdAt: new Date(g.createdAt) });
  return {
    async addCluster(name, ttlSeconds = DEFAULT_ENROLLMENT_TTL_SECONDS) {
      const created = await client.addCluster(name, ttlSeconds);
      return { cluster: created.name, token: created.enrollmentToken, expiresAt: new Date(created.expiresAt) };
    },
    async createEnrollmentToken(name, ttlSeconds = DEFAULT_ENROLLMENT_TTL_SECONDS) {
      const created = await client.createEnrollmentToken(name, ttlSeconds);
      return { token: created.token, expiresAt: new Date(created.expiresAt) };
    },
    async listClusters() {
      return (await client.listClusters()).map((c) => ({ ...c, lastSeen: c.lastSeen ? new Date(c.lastSeen) : undefined }));
    },
    removeCluster: (name) => client.removeCluster(name),
    async revokeAgent(name) {
      return { tunnelClosed: (await client.revokeAgent(name)).tunnelClosed };
    },
    addGrant: async (grant) => toGrantRecord(await client.addGrant(grant)),
    listGrants: async (cluster) => (await client.listGrants(cluster)).map(toGrantRecord),
    async removeGrants(match) {
      if (match.id && !match.principal && !match.cluster && !match.role) return removeGrantById(client, match.id);
      // The API removes by id: find the matching grants among those this caller may see.
      const grants = await client.listGrants(match.cluster);
      const doomed = grants.filter((g) =>
        (!match.id || g.id === match.id) && (!match.principal || g.principal === match.principal) && (!match.role || g.role === match.role));
      let removed = 0;
      for (const grant of doomed) removed += await removeGrantById(client, grant.id);
      return removed;
    },
    close: async () => client.close(),
  };
}

/** Removing a grant that is already gone counts 0, as on the data dir. */
async function removeGrantById(client: AdminClient, id: string): Promise<number> {
  try {
    await client.removeGrant(id);
    return 1;
  } catch (error) {
    if (error instanceof NotFound) return 0;
    throw error;
  }
}
