// The relay's state behind one interface: SQLite now, PostgreSQL for replicas later.
import type { JWK } from "jose";

export type Role = "cluster-user" | "cluster-admin" | "relay-admin";

export interface ClusterRecord {
  name: string;
  createdAt: Date;
  /** Public key of the enrolled agent; absent until the agent enrolls. */
  agentKey?: JWK;
  agentVersion?: string;
  kubernetesVersion?: string;
  /** Last time an agent tunnel was seen alive (connect, heartbeat or disconnect). */
  lastSeen?: Date;
  /** A relay holds this cluster's tunnel (as of lastSeen; stale when lastSeen is old). */
  connected?: boolean;
}

/** Which relay replica holds a cluster's tunnel, until when (a replica that dies stops being named at `expiresAt`). */
export interface PresenceRecord {
  cluster: string;
  replicaId: string;
  expiresAt: Date;
}

export interface GrantRecord {
  id: string;
  /** `user:NAME`, `group:NAME` or `sub:PATTERN` (glob). */
  principal: string;
  /** A cluster name or `*`. */
  cluster: string;
  role: Role;
  createdAt: Date;
}

export interface EnrollmentTokenRecord {
  cluster: string;
  /** SHA-256 of the secret, hex; the secret itself is never stored. */
  secretHash: string;
  expiresAt: Date;
}

/**
 * Every method is async so a networked store (PostgreSQL) implements the same interface.
 * Names are validated by callers before they reach the store.
 */
export interface RelayStore {
  addCluster(name: string): Promise<ClusterRecord>;
  getCluster(name: string): Promise<ClusterRecord | undefined>;
  listClusters(): Promise<ClusterRecord[]>;
  /** Removes the cluster, its enrollment tokens and the grants that name it exactly. */
  removeCluster(name: string): Promise<boolean>;
  setAgentKey(cluster: string, key: JWK | undefined): Promise<void>;
  /** Presence: called on connect, on a heartbeat while connected, and on disconnect. */
  recordAgentSeen(cluster: string, info: { agentVersion?: string; kubernetesVersion?: string; at: Date; connected: boolean }): Promise<void>;

  /** This replica holds the cluster's tunnel until `expiresAt` (renewed by its heartbeat); the latest holder wins. */
  recordPresence(presence: PresenceRecord): Promise<void>;
  /** The tunnel is gone: forgets the cluster's presence if `replicaId` still holds it. */
  removePresence(cluster: string, replicaId: string): Promise<void>;
  /** Presence not expired at `now`, sorted by cluster. */
  listPresence(now: Date): Promise<PresenceRecord[]>;

  addEnrollmentToken(token: EnrollmentTokenRecord): Promise<void>;
  /**
   * Atomically deletes and returns the token with this hash if it exists and has not expired:
   * a token can be consumed once, even by two concurrent callers.
   */
  consumeEnrollmentToken(secretHash: string, now: Date): Promise<EnrollmentTokenRecord | undefined>;

  addGrant(grant: Omit<GrantRecord, "id" | "createdAt">): Promise<GrantRecord>;
  listGrants(filter?: { cluster?: string }): Promise<GrantRecord[]>;
  /**
   * Only the grants that can apply to this caller (its exact `user:` and `group:` principals, and
   * every `sub:` principal and every pattern with `*`, which findRole tests) on `cluster` (the cluster, `*`, and
   * relay-admin grants; every cluster when omitted). A request reads a handful of rows, not all
   * grants; `findRole` still decides. Same order as listGrants.
   */
  listGrantsFor(caller: { user: string; groups: readonly string[] }, cluster?: string): Promise<GrantRecord[]>;
  removeGrant(match: { id?: string; principal?: string; cluster?: string; role?: Role }): Promise<number>;

  /** Small named values: the built-in issuer's keys and URL, schema version. */
  getSetting(key: string): Promise<string | undefined>;
  setSetting(key: string, value: string): Promise<void>;
  /** Stores `value` only if `key` is unset, atomically across processes and replicas; resolves with the stored value. */
  setSettingIfAbsent(key: string, value: string): Promise<string>;

  close(): Promise<void>;
}
