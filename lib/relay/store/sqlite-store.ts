// The embedded relay store: one SQLite file in the data dir, shared by `arcrelay serve` and the CLI.
import { Database } from "bun:sqlite";
import { mkdir, open } from "node:fs/promises";
import { statSync } from "node:fs";
import { join } from "node:path";
import { Conflict } from "../../errors/index.ts";
import { migrateSqliteSchema } from "./schema-sqlite.ts";
import type { ClusterRecord, EnrollmentTokenRecord, GrantRecord, RelayStore, ReplicaRecord, Role, StoreChange } from "./types.ts";
import { callerPrincipals, clusterNotRegistered, parseAgentKey, toMillis } from "./rows.ts";

/** The database file inside `--data-dir`. */
export const SQLITE_FILE_NAME = "relay.db";

/**
 * How long a statement waits for another connection's write lock before failing with
 * SQLITE_BUSY: the CLI writing while a relay serves, or two relays starting at once.
 */
const BUSY_TIMEOUT_MS = 5_000;
/** How often watchChanges asks whether another connection committed (PRAGMA data_version). */
const DATA_VERSION_POLL_MS = 1_000;

interface ClusterRow {
  name: string;
  created_at: number;
  agent_key: string | null;
  agent_version: string | null;
  kubernetes_version: string | null;
  last_seen: number | null;
  connected: number;
}

interface GrantRow {
  id: string;
  principal: string;
  cluster: string;
  role: string;
  created_at: number;
}

interface TokenRow {
  secret_hash: string;
  cluster: string;
  expires_at: number;
}

/**
 * Whether `dataDir` holds a relay store already (made by the first `openSqliteStore`, as `arcrelay
 * serve` does). Throws, naming the path, when it cannot tell: a directory this user may not read
 * (the data dir is 0700, its owner the relay's user) is not a missing store.
 */
export function hasSqliteStore(dataDir: string): boolean {
  const path = join(dataDir, SQLITE_FILE_NAME);
  try {
    statSync(path);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return false;
    throw new Error(
      `cannot look at ${path}: ${(error as Error).message}${code === "EACCES" || code === "EPERM" ? "; run this as the user arcrelay serve runs as (the data dir is private to it)" : ""}`,
      { cause: error },
    );
  }
}

/**
 * Opens (creating if needed) `<dataDir>/relay.db`: the directory is created 0700 and the file
 * 0600, since it holds agent keys and the built-in issuer's signing keys.
 */
export async function openSqliteStore(dataDir: string): Promise<RelayStore> {
  const path = join(dataDir, SQLITE_FILE_NAME);
  let db: Database;
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    // SQLite would create the file with the umask's mode (often 0644); create it private first.
    // Its -wal and -shm files copy the database file's permissions.
    await (await open(path, "a", 0o600)).close();
    db = new Database(path, { strict: true });
  } catch (error) {
    throw new Error(`opening relay store ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    await configureConnection(db);
    migrateSqliteSchema(db);
  } catch (error) {
    db.close();
    throw new Error(`opening relay store ${path}: ${(error as Error).message}`, { cause: error });
  }
  return createSqliteStore(db);
}

async function configureConnection(db: Database): Promise<void> {
  // busy_timeout first: switching to WAL needs a lock another process may hold.
  db.run(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
  const mode = await switchToWal(db);
  if (mode?.journal_mode !== "wal") {
    throw new Error(`the file system refused WAL journal mode (got ${JSON.stringify(mode?.journal_mode)})`);
  }
  // NORMAL is durable across application crashes in WAL mode; only a power loss may drop the last commits.
  db.run("PRAGMA synchronous = NORMAL");
  db.run("PRAGMA foreign_keys = ON");
}

/**
 * `PRAGMA journal_mode = WAL`, tried again for up to BUSY_TIMEOUT_MS while another process holds
 * the lock: SQLite returns SQLITE_BUSY at once, without calling the busy handler, when the switch
 * would otherwise deadlock (several relays, or the relay and an admin command, creating the same
 * fresh database at once; seen about once in eight such starts).
 */
async function switchToWal(db: Database): Promise<{ journal_mode: string } | null> {
  const deadline = performance.now() + BUSY_TIMEOUT_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      return db.query<{ journal_mode: string }, []>("PRAGMA journal_mode = WAL").get();
    } catch (error) {
      const busy = (error as { code?: string }).code === "SQLITE_BUSY" || /database is locked/.test((error as Error).message);
      if (!busy || performance.now() >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.min(100, 5 * 2 ** attempt) * Math.random() + 1));
    }
  }
}

function createSqliteStore(db: Database): RelayStore {
  // Read-then-write transactions start IMMEDIATE: a deferred one that upgrades to a writer after
  // another connection committed fails with SQLITE_BUSY at once instead of waiting.
  const notRegistered = clusterNotRegistered;
  const watchers = new Set<(change: StoreChange) => void>();
  // This connection's own writes do not move PRAGMA data_version, so they are told directly.
  const emit = (change: StoreChange) => {
    for (const watcher of watchers) watcher(change);
  };

  return {
    async addCluster(name) {
      const row = db
        .query<ClusterRow, { name: string; now: number }>(
          "INSERT INTO clusters (name, created_at) VALUES ($name, $now) ON CONFLICT (name) DO NOTHING RETURNING *",
        )
        .get({ name, now: Date.now() });
      if (!row) throw new Conflict(`cluster ${JSON.stringify(name)} already exists`);
      emit({ table: "clusters", key: name });
      return toClusterRecord(row);
    },

    async getCluster(name) {
      const row = db.query<ClusterRow, { name: string }>("SELECT * FROM clusters WHERE name = $name").get({ name });
      return row ? toClusterRecord(row) : undefined;
    },

    async listClusters() {
      return db.query<ClusterRow, []>("SELECT * FROM clusters ORDER BY name").all().map(toClusterRecord);
    },

    async removeCluster(name) {
      // Grants naming exactly this cluster go too: a cluster registered later under the same name
      // must not inherit them. Grants on `*` stay.
      const removed = db.transaction(() => {
        db.query("DELETE FROM grants WHERE cluster = $name").run({ name });
        return db.query("DELETE FROM clusters WHERE name = $name").run({ name }).changes > 0;
      }).immediate();
      emit({ table: "clusters", key: name });
      emit({ table: "grants" });
      return removed;
    },

    async setAgentKey(cluster, key) {
      const agentKey = key === undefined ? null : JSON.stringify(key);
      const { changes } = db
        .query("UPDATE clusters SET agent_key = $agentKey WHERE name = $cluster")
        .run({ agentKey, cluster });
      if (changes === 0) throw notRegistered(cluster);
      emit({ table: "clusters", key: cluster });
    },

    async recordAgentSeen(cluster, info) {
      // A heartbeat may omit the versions: keep what the agent reported last.
      const { changes } = db
        .query(
          `UPDATE clusters SET last_seen = $at, connected = $connected,
             agent_version = coalesce($agentVersion, agent_version),
             kubernetes_version = coalesce($kubernetesVersion, kubernetes_version)
           WHERE name = $cluster`,
        )
        .run({
          cluster,
          at: toMillis(info.at, "recordAgentSeen: at"),
          connected: info.connected ? 1 : 0,
          agentVersion: info.agentVersion ?? null,
          kubernetesVersion: info.kubernetesVersion ?? null,
        });
      if (changes === 0) throw notRegistered(cluster);
    },

    async recordPresence(p) {
      db.query(
        `INSERT INTO presence (cluster, replica_id, expires_at) VALUES ($cluster, $replicaId, $expiresAt)
         ON CONFLICT (cluster) DO UPDATE SET replica_id = excluded.replica_id, expires_at = excluded.expires_at`,
      ).run({ cluster: p.cluster, replicaId: p.replicaId, expiresAt: toMillis(p.expiresAt, "recordPresence: expiresAt") });
      emit({ table: "presence", key: p.cluster });
    },

    async removePresence(cluster, replicaId) {
      if (db.query("DELETE FROM presence WHERE cluster = $cluster AND replica_id = $replicaId").run({ cluster, replicaId }).changes > 0) {
        emit({ table: "presence", key: cluster });
      }
    },

    async recordReplica(r) {
      db.query(
        `INSERT INTO replicas (replica_id, internal_url, certificate_pem, expires_at) VALUES ($id, $url, $pem, $expiresAt)
         ON CONFLICT (replica_id) DO UPDATE SET internal_url = excluded.internal_url, certificate_pem = excluded.certificate_pem, expires_at = excluded.expires_at`,
      ).run({ id: r.replicaId, url: r.internalUrl, pem: r.certificatePem, expiresAt: toMillis(r.expiresAt, "recordReplica: expiresAt") });
      emit({ table: "replicas", key: r.replicaId });
    },

    async renewReplica(replicaId, expiresAt, seenAt) {
      const params = { id: replicaId, expiresAt: toMillis(expiresAt, "renewReplica: expiresAt"), seenAt: toMillis(seenAt, "renewReplica: seenAt") };
      db.transaction(() => {
        db.query("UPDATE replicas SET expires_at = $expiresAt WHERE replica_id = $id").run(params);
        db.query("UPDATE presence SET expires_at = $expiresAt WHERE replica_id = $id").run(params);
        db.query("UPDATE clusters SET last_seen = $seenAt WHERE name IN (SELECT cluster FROM presence WHERE replica_id = $id)").run(params);
      }).immediate();
    },

    async removeReplica(replicaId) {
      db.transaction(() => {
        db.query("DELETE FROM presence WHERE replica_id = $id").run({ id: replicaId });
        db.query("DELETE FROM replicas WHERE replica_id = $id").run({ id: replicaId });
      }).immediate();
      emit({ table: "replicas", key: replicaId });
      emit({ table: "presence" });
    },

    async listReplicas(now) {
      return db
        .query<ReplicaRow, { now: number }>("SELECT * FROM replicas WHERE expires_at > $now ORDER BY replica_id")
        .all({ now: toMillis(now, "listReplicas: now") })
        .map(toReplicaRecord);
    },

    async findTunnelHolder(cluster, now) {
      const row = db
        .query<ReplicaRow, { cluster: string; now: number }>(
          `SELECT r.* FROM presence p JOIN replicas r ON r.replica_id = p.replica_id
           WHERE p.cluster = $cluster AND p.expires_at > $now AND r.expires_at > $now`,
        )
        .get({ cluster, now: toMillis(now, "findTunnelHolder: now") });
      return row ? toReplicaRecord(row) : undefined;
    },

    async watchChanges(onChange) {
      watchers.add(onChange);
      // Other processes (the admin CLI, a second relay on the same file) show only as a new data_version.
      const version = () => db.query<{ data_version: number }, []>("PRAGMA data_version").get()?.data_version;
      let seen = version();
      const timer = setInterval(() => {
        try {
          const now = version();
          if (now !== seen) {
            seen = now;
            onChange({ table: "*" });
          }
        } catch {
          clearInterval(timer); // the store was closed
        }
      }, DATA_VERSION_POLL_MS);
      timer.unref?.();
      return async () => {
        clearInterval(timer);
        watchers.delete(onChange);
      };
    },

    async listPresence(now) {
      return db
        .query<{ cluster: string; replica_id: string; expires_at: number }, { now: number }>("SELECT * FROM presence WHERE expires_at > $now ORDER BY cluster")
        .all({ now: toMillis(now, "listPresence: now") })
        .map((r) => ({ cluster: r.cluster, replicaId: r.replica_id, expiresAt: new Date(r.expires_at) }));
    },

    async addEnrollmentToken(token) {
      const expiresAt = toMillis(token.expiresAt, "addEnrollmentToken: expiresAt");
      db.transaction(() => {
        if (!db.query("SELECT 1 FROM clusters WHERE name = $cluster").get({ cluster: token.cluster })) {
          throw notRegistered(token.cluster);
        }
        const inserted = db
          .query(
            `INSERT INTO enrollment_tokens (secret_hash, cluster, expires_at) VALUES ($secretHash, $cluster, $expiresAt)
             ON CONFLICT (secret_hash) DO NOTHING`,
          )
          .run({ secretHash: token.secretHash, cluster: token.cluster, expiresAt });
        if (inserted.changes === 0) throw new Conflict("an enrollment token with this secret already exists");
      }).immediate();
    },

    async consumeEnrollmentToken(secretHash, now) {
      const nowMs = toMillis(now, "consumeEnrollmentToken: now");
      return db.transaction(() => {
        // Deleted whether or not it has expired: an expired token is garbage either way.
        const row = db
          .query<TokenRow, { secretHash: string }>("DELETE FROM enrollment_tokens WHERE secret_hash = $secretHash RETURNING *")
          .get({ secretHash });
        db.query("DELETE FROM enrollment_tokens WHERE expires_at <= $now").run({ now: nowMs });
        return row && row.expires_at > nowMs ? toTokenRecord(row) : undefined;
      }).immediate();
    },

    async findEnrollmentToken(secretHash, now) {
      const nowMs = toMillis(now, "findEnrollmentToken: now");
      const row = db.query<TokenRow, { secretHash: string }>("SELECT * FROM enrollment_tokens WHERE secret_hash = $secretHash").get({ secretHash });
      return row && row.expires_at > nowMs ? toTokenRecord(row) : undefined;
    },

    async addGrant(grant) {
      const { principal, cluster, role } = grant;
      return db.transaction(() => {
        db.query(
          `INSERT INTO grants (id, principal, cluster, role, created_at) VALUES ($id, $principal, $cluster, $role, $now)
           ON CONFLICT (principal, cluster, role) DO NOTHING`,
        ).run({ id: crypto.randomUUID(), principal, cluster, role, now: Date.now() });
        emit({ table: "grants" });
        const row = db
          .query<GrantRow, { principal: string; cluster: string; role: string }>(
            "SELECT * FROM grants WHERE principal = $principal AND cluster = $cluster AND role = $role",
          )
          .get({ principal, cluster, role });
        return toGrantRecord(row!);
      }).immediate();
    },

    async listGrants(filter) {
      const cluster = filter?.cluster ?? null;
      return db
        .query<GrantRow, { cluster: string | null }>(
          "SELECT * FROM grants WHERE $cluster IS NULL OR cluster = $cluster ORDER BY created_at, rowid",
        )
        .all({ cluster })
        .map(toGrantRecord);
    },

    async listGrantsFor(caller, cluster) {
      return db
        .query<GrantRow, { principals: string; cluster: string | null }>(
          // Two indexed lookups (the caller's exact principals, the wildcard ones), not one scan. The
          // partial index is named: without ANALYZE statistics SQLite scans the table instead (100x slower).
          `SELECT id, principal, cluster, role, created_at FROM (
             SELECT rowid AS seq, * FROM grants WHERE principal IN (SELECT value FROM json_each($principals))
             UNION SELECT rowid AS seq, * FROM grants INDEXED BY grants_wildcard WHERE wildcard
           )
           WHERE $cluster IS NULL OR cluster = $cluster OR cluster = '*' OR role = 'relay-admin'
           ORDER BY created_at, seq`,
        )
        .all({ principals: JSON.stringify(callerPrincipals(caller)), cluster: cluster ?? null })
        .map(toGrantRecord);
    },

    async removeGrant(match) {
      const { id = null, principal = null, cluster = null, role = null } = match;
      if (id === null && principal === null && cluster === null && role === null) {
        throw new TypeError("removeGrant: give at least one of id, principal, cluster, role");
      }
      const removed = db
        .query(
          `DELETE FROM grants WHERE ($id IS NULL OR id = $id) AND ($principal IS NULL OR principal = $principal)
             AND ($cluster IS NULL OR cluster = $cluster) AND ($role IS NULL OR role = $role)`,
        )
        .run({ id, principal, cluster, role }).changes;
      if (removed > 0) emit({ table: "grants" });
      return removed;
    },

    async getSetting(key) {
      const row = db.query<{ value: string }, { key: string }>("SELECT value FROM settings WHERE key = $key").get({ key });
      return row?.value;
    },

    async setSetting(key, value) {
      db.query(
        "INSERT INTO settings (key, value) VALUES ($key, $value) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      ).run({ key, value });
      emit({ table: "settings", key });
    },

    async setSettingIfAbsent(key, value) {
      const stored = db.transaction(() => {
        db.query("INSERT INTO settings (key, value) VALUES ($key, $value) ON CONFLICT (key) DO NOTHING").run({ key, value });
        return db.query<{ value: string }, { key: string }>("SELECT value FROM settings WHERE key = $key").get({ key })!.value;
      }).immediate();
      if (stored === value) emit({ table: "settings", key });
      return stored;
    },

    async close() {
      watchers.clear();
      db.close();
    },
  };
}

interface ReplicaRow {
  replica_id: string;
  internal_url: string;
  certificate_pem: string;
  expires_at: number;
}

function toReplicaRecord(row: ReplicaRow): ReplicaRecord {
  return { replicaId: row.replica_id, internalUrl: row.internal_url, certificatePem: row.certificate_pem, expiresAt: new Date(row.expires_at) };
}

function toClusterRecord(row: ClusterRow): ClusterRecord {
  const record: ClusterRecord = { name: row.name, createdAt: new Date(row.created_at) };
  if (row.agent_key !== null) record.agentKey = parseAgentKey(row.name, row.agent_key);
  if (row.agent_version !== null) record.agentVersion = row.agent_version;
  if (row.kubernetes_version !== null) record.kubernetesVersion = row.kubernetes_version;
  if (row.last_seen !== null) record.lastSeen = new Date(row.last_seen);
  record.connected = row.connected === 1;
  return record;
}


function toGrantRecord(row: GrantRow): GrantRecord {
  return {
    id: row.id,
    principal: row.principal,
    cluster: row.cluster,
    role: row.role as Role,
    createdAt: new Date(row.created_at),
  };
}

function toTokenRecord(row: TokenRow): EnrollmentTokenRecord {
  return { cluster: row.cluster, secretHash: row.secret_hash, expiresAt: new Date(row.expires_at) };
}

