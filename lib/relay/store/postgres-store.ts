// The relay store on PostgreSQL, for several relay replicas sharing one state (Bun's built-in SQL client).
import { SQL } from "bun";
import { ConfigError, Conflict } from "../../errors/index.ts";
import type { ClusterRecord, EnrollmentTokenRecord, GrantRecord, RelayStore, ReplicaRecord, Role } from "./types.ts";
import { callerPrincipals, clusterNotRegistered, parseAgentKey, toMillis } from "./rows.ts";
import { planSchema, SCHEMA_READABLE_FROM_KEY, SCHEMA_VERSION_KEY } from "./schema-versions.ts";
import { watchPostgresChanges } from "./postgres-feed.ts";

export interface PostgresStoreOptions {
  /** How often the change feed proves its LISTEN connection alive (ms; postgres-feed.ts, FEED_PING_EVERY_MS). */
  feedPingEveryMs?: number;
}

/** pg_advisory_xact_lock key of the migrations: replicas that start at once migrate one after another. */
const MIGRATION_LOCK_KEY = 0x61726372; // "arcr"
/** Connections per relay process; each request needs one only for a moment. */
const POOL_MAX = 10;

/**
 * Migrations a relay that does not know them may ignore (schema-versions.ts): 5 adds the change
 * triggers, which the relay of schema 4 never relied on. Mark one only if that is so.
 */
export const POSTGRES_ADDITIVE_MIGRATIONS: ReadonlySet<number> = new Set([5]);

/**
 * Migration N (1-based) brings the schema from version N-1 to N. Append only. Times are epoch
 * milliseconds (BIGINT) as in the SQLite schema, so both stores compare them the same way.
 */
export const POSTGRES_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
  CREATE TABLE clusters (
    name               TEXT PRIMARY KEY,
    created_at         BIGINT NOT NULL,
    agent_key          TEXT,
    agent_version      TEXT,
    kubernetes_version TEXT,
    last_seen          BIGINT,
    connected          BOOLEAN NOT NULL DEFAULT FALSE
  );
  CREATE TABLE enrollment_tokens (
    secret_hash TEXT PRIMARY KEY,
    cluster     TEXT NOT NULL REFERENCES clusters(name) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL
  );
  CREATE INDEX enrollment_tokens_cluster ON enrollment_tokens(cluster);
  CREATE TABLE grants (
    seq        BIGSERIAL,
    id         TEXT PRIMARY KEY,
    principal  TEXT NOT NULL,
    cluster    TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (principal, cluster, role)
  );
  CREATE INDEX grants_cluster ON grants(cluster);
  `,
  // 2: grants are looked up by principal on every request (listGrantsFor); the ones that only
  // findRole can match (sub: and patterns with *) are flagged, so both lookups use an index.
  `CREATE INDEX grants_principal ON grants(principal);
   ALTER TABLE grants ADD COLUMN wildcard BOOLEAN GENERATED ALWAYS AS (principal LIKE 'sub:%' OR position('*' in principal) > 0) STORED;
   CREATE INDEX grants_wildcard ON grants(wildcard) WHERE wildcard;`,
  // 3: which replica holds which cluster's tunnel (the status page's replica column; routing later).
  `CREATE TABLE presence (
     cluster    TEXT PRIMARY KEY,
     replica_id TEXT NOT NULL,
     expires_at BIGINT NOT NULL
   );`,
  // 4: replicas and their internal endpoints; every change other replicas must know of is sent
  // by a trigger on the table itself (NOTIFY, delivered at commit), so writes from any process
  // (a replica, the admin CLI, psql) reach every replica. Heartbeats (last_seen, expires_at) notify nothing.
  `CREATE TABLE replicas (
     replica_id      TEXT PRIMARY KEY,
     internal_url    TEXT NOT NULL,
     certificate_pem TEXT NOT NULL,
     expires_at      BIGINT NOT NULL
   );
   CREATE INDEX presence_replica ON presence(replica_id);
   CREATE FUNCTION arc_notify_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
   BEGIN
     IF TG_LEVEL = 'STATEMENT' THEN
       PERFORM pg_notify('arc_changes', json_build_object('table', TG_TABLE_NAME)::text);
     ELSE
       PERFORM pg_notify('arc_changes', json_build_object('table', TG_TABLE_NAME, 'key',
         to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END) ->> TG_ARGV[0])::text);
     END IF;
     RETURN NULL;
   END $fn$;
   CREATE TRIGGER clusters_changed AFTER INSERT OR DELETE ON clusters FOR EACH ROW EXECUTE FUNCTION arc_notify_change('name');
   CREATE TRIGGER clusters_key_changed AFTER UPDATE OF agent_key ON clusters FOR EACH ROW
     WHEN (OLD.agent_key IS DISTINCT FROM NEW.agent_key) EXECUTE FUNCTION arc_notify_change('name');
   CREATE TRIGGER grants_changed AFTER INSERT OR UPDATE OR DELETE ON grants FOR EACH STATEMENT EXECUTE FUNCTION arc_notify_change();
   CREATE TRIGGER presence_changed AFTER INSERT OR DELETE ON presence FOR EACH ROW EXECUTE FUNCTION arc_notify_change('cluster');
   CREATE TRIGGER presence_moved AFTER UPDATE OF replica_id ON presence FOR EACH ROW
     WHEN (OLD.replica_id IS DISTINCT FROM NEW.replica_id) EXECUTE FUNCTION arc_notify_change('cluster');
   CREATE TRIGGER settings_changed AFTER INSERT OR UPDATE OR DELETE ON settings FOR EACH ROW EXECUTE FUNCTION arc_notify_change('key');
   CREATE TRIGGER replicas_changed AFTER INSERT OR DELETE ON replicas FOR EACH ROW EXECUTE FUNCTION arc_notify_change('replica_id');`,
  // 5: TRUNCATE fires no row trigger: a statement-level one per table, told without a key ("all of it").
  `CREATE TRIGGER clusters_truncated AFTER TRUNCATE ON clusters FOR EACH STATEMENT EXECUTE FUNCTION arc_notify_change();
   CREATE TRIGGER grants_truncated AFTER TRUNCATE ON grants FOR EACH STATEMENT EXECUTE FUNCTION arc_notify_change();
   CREATE TRIGGER presence_truncated AFTER TRUNCATE ON presence FOR EACH STATEMENT EXECUTE FUNCTION arc_notify_change();
   CREATE TRIGGER settings_truncated AFTER TRUNCATE ON settings FOR EACH STATEMENT EXECUTE FUNCTION arc_notify_change();
   CREATE TRIGGER replicas_truncated AFTER TRUNCATE ON replicas FOR EACH STATEMENT EXECUTE FUNCTION arc_notify_change();`,
];

interface ClusterRow {
  name: string;
  created_at: string | number | bigint;
  agent_key: string | null;
  agent_version: string | null;
  kubernetes_version: string | null;
  last_seen: string | number | bigint | null;
  connected: boolean;
}

interface GrantRow {
  id: string;
  principal: string;
  cluster: string;
  role: string;
  created_at: string | number | bigint;
}

interface TokenRow {
  secret_hash: string;
  cluster: string;
  expires_at: string | number | bigint;
}

/**
 * Connects to `url` (`postgres://user:password@host:port/db`, TLS as the URL's `sslmode` says),
 * runs the migrations under an advisory lock (several replicas starting at once apply them once),
 * and returns the store. Throws ConfigError naming the database (never the password) when it cannot
 * connect or is newer than this relay.
 */
export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<RelayStore> {
  const where = describeUrl(url);
  const sql = new SQL(url, { max: POOL_MAX, idleTimeout: 60, connectionTimeout: 10 });
  try {
    await migrate(sql);
  } catch (error) {
    await sql.close();
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(`opening relay store ${where}: ${(error as Error).message}`, { cause: error });
  }
  return createPostgresStore(sql, url, options);
}

async function migrate(sql: SQL): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
    await tx.unsafe("CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
    const [row] = await tx`SELECT value FROM settings WHERE key = ${SCHEMA_VERSION_KEY}`;
    const current = row ? Number((row as { value: string }).value) : 0;
    if (!Number.isInteger(current) || current < 0) throw new Error(`settings.${SCHEMA_VERSION_KEY} is not a schema version: ${JSON.stringify(row)}`);
    const [readable] = await tx`SELECT value FROM settings WHERE key = ${SCHEMA_READABLE_FROM_KEY}`;
    const plan = planSchema(current, POSTGRES_MIGRATIONS.length, readable ? Number((readable as { value: string }).value) : undefined, POSTGRES_ADDITIVE_MIGRATIONS);
    if (plan.action !== "migrate") return;
    for (let version = current + 1; version <= POSTGRES_MIGRATIONS.length; version++) {
      await tx.unsafe(POSTGRES_MIGRATIONS[version - 1]!).catch((error: Error) => {
        throw new Error(`applying schema migration ${version}: ${error.message}`, { cause: error });
      });
    }
    for (const [key, value] of [[SCHEMA_VERSION_KEY, POSTGRES_MIGRATIONS.length], [SCHEMA_READABLE_FROM_KEY, plan.readableFrom]] as const) {
      await tx`INSERT INTO settings (key, value) VALUES (${key}, ${String(value)}) ON CONFLICT (key) DO UPDATE SET value = excluded.value`;
    }
  });
}

function createPostgresStore(sql: SQL, url: string, options: PostgresStoreOptions): RelayStore {
  const notRegistered = clusterNotRegistered;

  return {
    async addCluster(name) {
      const rows = (await sql`INSERT INTO clusters (name, created_at) VALUES (${name}, ${Date.now()})
                              ON CONFLICT (name) DO NOTHING RETURNING *`) as ClusterRow[];
      if (rows.length === 0) throw new Conflict(`cluster ${JSON.stringify(name)} already exists`);
      return toClusterRecord(rows[0]!);
    },

    async getCluster(name) {
      const [row] = (await sql`SELECT * FROM clusters WHERE name = ${name}`) as ClusterRow[];
      return row ? toClusterRecord(row) : undefined;
    },

    async listClusters() {
      return ((await sql`SELECT * FROM clusters ORDER BY name COLLATE "C"`) as ClusterRow[]).map(toClusterRecord);
    },

    async removeCluster(name) {
      // Grants naming exactly this cluster go too; grants on `*` stay (as in SQLite).
      return sql.begin(async (tx) => {
        await tx`DELETE FROM grants WHERE cluster = ${name}`;
        const removed = await tx`DELETE FROM clusters WHERE name = ${name} RETURNING name`;
        return removed.length > 0;
      });
    },

    async setAgentKey(cluster, key) {
      const agentKey = key === undefined ? null : JSON.stringify(key);
      const updated = await sql`UPDATE clusters SET agent_key = ${agentKey} WHERE name = ${cluster} RETURNING name`;
      if (updated.length === 0) throw notRegistered(cluster);
    },

    async recordAgentSeen(cluster, info) {
      const updated = await sql`UPDATE clusters SET last_seen = ${toMillis(info.at, "recordAgentSeen: at")}, connected = ${info.connected},
          agent_version = coalesce(${info.agentVersion ?? null}, agent_version),
          kubernetes_version = coalesce(${info.kubernetesVersion ?? null}, kubernetes_version)
        WHERE name = ${cluster} RETURNING name`;
      if (updated.length === 0) throw notRegistered(cluster);
    },

    async recordPresence(p) {
      const expiresAt = toMillis(p.expiresAt, "recordPresence: expiresAt");
      await sql`INSERT INTO presence (cluster, replica_id, expires_at) VALUES (${p.cluster}, ${p.replicaId}, ${expiresAt})
                ON CONFLICT (cluster) DO UPDATE SET replica_id = excluded.replica_id, expires_at = excluded.expires_at`;
    },

    async removePresence(cluster, replicaId) {
      await sql`DELETE FROM presence WHERE cluster = ${cluster} AND replica_id = ${replicaId}`;
    },

    async listPresence(now) {
      const rows = (await sql`SELECT * FROM presence WHERE expires_at > ${toMillis(now, "listPresence: now")} ORDER BY cluster COLLATE "C"`) as
        { cluster: string; replica_id: string; expires_at: string | number | bigint }[];
      return rows.map((r) => ({ cluster: r.cluster, replicaId: r.replica_id, expiresAt: new Date(Number(r.expires_at)) }));
    },

    async recordReplica(r) {
      const expiresAt = toMillis(r.expiresAt, "recordReplica: expiresAt");
      await sql`INSERT INTO replicas (replica_id, internal_url, certificate_pem, expires_at)
                VALUES (${r.replicaId}, ${r.internalUrl}, ${r.certificatePem}, ${expiresAt})
                ON CONFLICT (replica_id) DO UPDATE SET internal_url = excluded.internal_url,
                  certificate_pem = excluded.certificate_pem, expires_at = excluded.expires_at`;
    },

    async renewReplica(replicaId, expiresAt, seenAt) {
      const until = toMillis(expiresAt, "renewReplica: expiresAt");
      const seen = toMillis(seenAt, "renewReplica: seenAt");
      // One statement, one round trip, whatever the replica holds (10,000 tunnels: still one).
      await sql`WITH r AS (UPDATE replicas SET expires_at = ${until} WHERE replica_id = ${replicaId}),
                     p AS (UPDATE presence SET expires_at = ${until} WHERE replica_id = ${replicaId} RETURNING cluster)
                UPDATE clusters SET last_seen = ${seen} WHERE name IN (SELECT cluster FROM p)`;
    },

    async removeReplica(replicaId) {
      await sql.begin(async (tx) => {
        await tx`DELETE FROM presence WHERE replica_id = ${replicaId}`;
        await tx`DELETE FROM replicas WHERE replica_id = ${replicaId}`;
      });
    },

    async listReplicas(now) {
      const rows = (await sql`SELECT * FROM replicas WHERE expires_at > ${toMillis(now, "listReplicas: now")} ORDER BY replica_id COLLATE "C"`) as ReplicaRow[];
      return rows.map(toReplicaRecord);
    },

    async findTunnelHolder(cluster, now) {
      const at = toMillis(now, "findTunnelHolder: now");
      const [row] = (await sql`SELECT r.* FROM presence p JOIN replicas r ON r.replica_id = p.replica_id
                               WHERE p.cluster = ${cluster} AND p.expires_at > ${at} AND r.expires_at > ${at}`) as ReplicaRow[];
      return row ? toReplicaRecord(row) : undefined;
    },

    watchChanges(onChange) {
      return watchPostgresChanges(url, sql, onChange, options.feedPingEveryMs);
    },

    async addEnrollmentToken(token) {
      const expiresAt = toMillis(token.expiresAt, "addEnrollmentToken: expiresAt");
      await sql.begin(async (tx) => {
        const [cluster] = await tx`SELECT 1 FROM clusters WHERE name = ${token.cluster} FOR SHARE`;
        if (!cluster) throw notRegistered(token.cluster);
        const inserted = await tx`INSERT INTO enrollment_tokens (secret_hash, cluster, expires_at)
                                  VALUES (${token.secretHash}, ${token.cluster}, ${expiresAt})
                                  ON CONFLICT (secret_hash) DO NOTHING RETURNING secret_hash`;
        if (inserted.length === 0) throw new Conflict("an enrollment token with this secret already exists");
      });
    },

    async consumeEnrollmentToken(secretHash, now) {
      const nowMs = toMillis(now, "consumeEnrollmentToken: now");
      return sql.begin(async (tx) => {
        // DELETE ... RETURNING takes the row lock: of two replicas consuming at once, one gets it.
        const [row] = (await tx`DELETE FROM enrollment_tokens WHERE secret_hash = ${secretHash} RETURNING *`) as TokenRow[];
        await tx`DELETE FROM enrollment_tokens WHERE expires_at <= ${nowMs}`;
        return row && Number(row.expires_at) > nowMs ? toTokenRecord(row) : undefined;
      });
    },

    async findEnrollmentToken(secretHash, now) {
      const nowMs = toMillis(now, "findEnrollmentToken: now");
      const [row] = (await sql`SELECT * FROM enrollment_tokens WHERE secret_hash = ${secretHash}`) as TokenRow[];
      return row && Number(row.expires_at) > nowMs ? toTokenRecord(row) : undefined;
    },

    async addGrant(grant) {
      const { principal, cluster, role } = grant;
      await sql`INSERT INTO grants (id, principal, cluster, role, created_at)
                VALUES (${crypto.randomUUID()}, ${principal}, ${cluster}, ${role}, ${Date.now()})
                ON CONFLICT (principal, cluster, role) DO NOTHING`;
      const [row] = (await sql`SELECT * FROM grants WHERE principal = ${principal} AND cluster = ${cluster} AND role = ${role}`) as GrantRow[];
      return toGrantRecord(row!);
    },

    async listGrants(filter) {
      const cluster = filter?.cluster ?? null;
      return ((await sql`SELECT * FROM grants WHERE ${cluster}::text IS NULL OR cluster = ${cluster}
                         ORDER BY created_at, seq`) as GrantRow[]).map(toGrantRecord);
    },

    async listGrantsFor(caller, cluster) {
      const principals = callerPrincipals(caller);
      const scope = cluster ?? null;
      // Two indexed lookups (the caller's exact principals, the wildcard ones), not one scan.
      return ((await sql`SELECT * FROM (
            SELECT * FROM grants WHERE principal = ANY(${principals}::text[])
            UNION SELECT * FROM grants WHERE wildcard
          ) g
          WHERE ${scope}::text IS NULL OR cluster = ${scope} OR cluster = '*' OR role = 'relay-admin'
          ORDER BY created_at, seq`) as GrantRow[]).map(toGrantRecord);
    },

    async removeGrant(match) {
      const { id = null, principal = null, cluster = null, role = null } = match;
      if (id === null && principal === null && cluster === null && role === null) {
        throw new TypeError("removeGrant: give at least one of id, principal, cluster, role");
      }
      const removed = await sql`DELETE FROM grants WHERE (${id}::text IS NULL OR id = ${id}) AND (${principal}::text IS NULL OR principal = ${principal})
                                AND (${cluster}::text IS NULL OR cluster = ${cluster}) AND (${role}::text IS NULL OR role = ${role}) RETURNING id`;
      return removed.length;
    },

    async getSetting(key) {
      const [row] = (await sql`SELECT value FROM settings WHERE key = ${key}`) as { value: string }[];
      return row?.value;
    },

    async setSetting(key, value) {
      await sql`INSERT INTO settings (key, value) VALUES (${key}, ${value}) ON CONFLICT (key) DO UPDATE SET value = excluded.value`;
    },

    async setSettingIfAbsent(key, value) {
      // The insert's row lock makes a concurrent writer wait, then see the first value.
      await sql`INSERT INTO settings (key, value) VALUES (${key}, ${value}) ON CONFLICT (key) DO NOTHING`;
      const [row] = (await sql`SELECT value FROM settings WHERE key = ${key}`) as { value: string }[];
      return row!.value;
    },

    async close() {
      await sql.close({ timeout: 5 });
    },
  };
}

/** The URL without its password (user info, or libpq's `password` parameter), for messages. */
function describeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.password = "";
    for (const name of [...parsed.searchParams.keys()]) if (/pass/i.test(name)) parsed.searchParams.set(name, "***");
    return parsed.toString();
  } catch {
    return "(an unparsable --database-url)";
  }
}

interface ReplicaRow {
  replica_id: string;
  internal_url: string;
  certificate_pem: string;
  expires_at: string | number | bigint;
}

function toReplicaRecord(row: ReplicaRow): ReplicaRecord {
  return { replicaId: row.replica_id, internalUrl: row.internal_url, certificatePem: row.certificate_pem, expiresAt: new Date(Number(row.expires_at)) };
}

function toClusterRecord(row: ClusterRow): ClusterRecord {
  const record: ClusterRecord = { name: row.name, createdAt: new Date(Number(row.created_at)) };
  if (row.agent_key !== null) record.agentKey = parseAgentKey(row.name, row.agent_key);
  if (row.agent_version !== null) record.agentVersion = row.agent_version;
  if (row.kubernetes_version !== null) record.kubernetesVersion = row.kubernetes_version;
  if (row.last_seen !== null) record.lastSeen = new Date(Number(row.last_seen));
  record.connected = row.connected === true;
  return record;
}

function toGrantRecord(row: GrantRow): GrantRecord {
  return { id: row.id, principal: row.principal, cluster: row.cluster, role: row.role as Role, createdAt: new Date(Number(row.created_at)) };
}

function toTokenRecord(row: TokenRow): EnrollmentTokenRecord {
  return { cluster: row.cluster, secretHash: row.secret_hash, expiresAt: new Date(Number(row.expires_at)) };
}

