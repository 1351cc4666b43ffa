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

/** A relay replica that takes forwarded requests, until `expiresAt` (renewed by its heartbeat). */
export interface ReplicaRecord {
  replicaId: string;
  /** Where other replicas reach its internal endpoint (`--internal-url`), https. */
  internalUrl: string;
  /** PEM of its internal endpoint's self-signed certificate: the only certificate a caller accepts from it. */
  certificatePem: string;
  expiresAt: Date;
}

/**
 * Something another process (or this one) changed, as the store's change feed tells it: a table,
 * and for `clusters`, `presence` and `settings` the row's key. `table: "*"` means anything may
 * have changed (SQLite sees only that another connection committed; a lost PostgreSQL connection):
 * drop every cache.
 */
export interface StoreChange {
  table: "clusters" | "grants" | "presence" | "settings" | "replicas" | "*";
  key?: string;
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

  /** Records (or replaces) a replica's internal endpoint and expiry. */
  recordReplica(replica: ReplicaRecord): Promise<void>;
  /**
   * The replica's heartbeat, one round trip whatever it holds: extends its own expiry and that of
   * every presence it holds to `expiresAt`, and marks those clusters seen at `seenAt`.
   */
  renewReplica(replicaId: string, expiresAt: Date, seenAt: Date): Promise<void>;
  /** A replica that stops cleanly: forgets it and every presence it held. */
  removeReplica(replicaId: string): Promise<void>;
  /** Replicas not expired at `now`, sorted by id. */
  listReplicas(now: Date): Promise<ReplicaRecord[]>;
  /** The live replica holding `cluster`'s tunnel at `now` (presence and replica both unexpired). */
  findTunnelHolder(cluster: string, now: Date): Promise<ReplicaRecord | undefined>;
  /**
   * Calls `onChange` for every change to the shared state, whichever process made it, until the
   * returned function is called. PostgreSQL: LISTEN/NOTIFY fed by triggers. SQLite: this
   * process's own writes, and `{ table: "*" }` when another connection committed (PRAGMA
   * data_version, read once a second). Callers keep a slow resync as a safety net either way.
   */
  watchChanges(onChange: (change: StoreChange) => void): Promise<() => Promise<void>>;

  addEnrollmentToken(token: EnrollmentTokenRecord): Promise<void>;
  /**
   * Atomically deletes and returns the token with this hash if it exists and has not expired:
   * a token can be consumed once, even by two concurrent callers.
   */
  consumeEnrollmentToken(secretHash: string, now: Date): Promise<EnrollmentTokenRecord | undefined>;
  /**
   * The token with this hash if it exists and has not expired, left as it is: lets enrollment say
   * which cluster a token is for before it spends it (a mistyped --cluster must not burn it).
   */
  findEnrollmentToken(secretHash: string, now: Date): Promise<EnrollmentTokenRecord | undefined>;

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
