// The SQLite schema as an ordered list of migrations, and the one function that applies them.
import type { Database } from "bun:sqlite";
import { planSchema, SCHEMA_READABLE_FROM_KEY, SCHEMA_VERSION_KEY } from "./schema-versions.ts";

/** Migrations a relay that does not know them may ignore (schema-versions.ts); none so far. */
export const SQLITE_ADDITIVE_MIGRATIONS: ReadonlySet<number> = new Set();

/**
 * Migration N (1-based) brings the schema from version N-1 to N. Append only: never edit a
 * migration that has shipped, since existing databases already ran it.
 * Times are epoch milliseconds (INTEGER) so comparisons like `expires_at > now` are numeric.
 */
export const SQLITE_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  ) STRICT;
  CREATE TABLE clusters (
    name               TEXT PRIMARY KEY,
    created_at         INTEGER NOT NULL,
    agent_key          TEXT,
    agent_version      TEXT,
    kubernetes_version TEXT,
    last_seen          INTEGER,
    connected          INTEGER NOT NULL DEFAULT 0
  ) STRICT;
  CREATE TABLE enrollment_tokens (
    secret_hash TEXT PRIMARY KEY,
    cluster     TEXT NOT NULL REFERENCES clusters(name) ON DELETE CASCADE,
    expires_at  INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX enrollment_tokens_cluster ON enrollment_tokens(cluster);
  CREATE TABLE grants (
    id         TEXT PRIMARY KEY,
    principal  TEXT NOT NULL,
    cluster    TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (principal, cluster, role)
  ) STRICT;
  CREATE INDEX grants_cluster ON grants(cluster);
  `,
  // 2: grants are looked up by principal on every request (listGrantsFor); the ones that only
  // findRole can match (sub: and patterns with *) are flagged, so both lookups use an index.
  `CREATE INDEX grants_principal ON grants(principal);
   ALTER TABLE grants ADD COLUMN wildcard INTEGER GENERATED ALWAYS AS (principal LIKE 'sub:%' OR instr(principal, '*') > 0) VIRTUAL;
   CREATE INDEX grants_wildcard ON grants(wildcard) WHERE wildcard;`,
  // 3: which replica holds which cluster's tunnel (the status page's replica column; routing later).
  `CREATE TABLE presence (
     cluster    TEXT PRIMARY KEY,
     replica_id TEXT NOT NULL,
     expires_at INTEGER NOT NULL
   ) STRICT;`,
  // 4: replicas and their internal endpoints (the same schema as PostgreSQL; one replica on SQLite).
  `CREATE TABLE replicas (
     replica_id      TEXT PRIMARY KEY,
     internal_url    TEXT NOT NULL,
     certificate_pem TEXT NOT NULL,
     expires_at      INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX presence_replica ON presence(replica_id);`,
];

/**
 * Brings the database up to the latest schema version inside one write transaction
 * (BEGIN IMMEDIATE), so two processes opening a fresh file at once migrate it once.
 * Refuses a database written by a newer relay rather than guessing at its schema.
 */
export function migrateSqliteSchema(db: Database, migrations: readonly string[] = SQLITE_MIGRATIONS, additive = SQLITE_ADDITIVE_MIGRATIONS): number {
  const migrate = db.transaction(() => {
    const current = readSchemaVersion(db);
    const plan = planSchema(current, migrations.length, readSetting(db, SCHEMA_READABLE_FROM_KEY), additive);
    if (plan.action !== "migrate") return current;
    for (let version = current + 1; version <= migrations.length; version++) {
      try {
        db.run(migrations[version - 1]!);
      } catch (error) {
        throw new Error(`applying schema migration ${version}: ${(error as Error).message}`, { cause: error });
      }
    }
    const write = db.query("INSERT INTO settings (key, value) VALUES ($key, $value) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    write.run({ key: SCHEMA_VERSION_KEY, value: String(migrations.length) });
    write.run({ key: SCHEMA_READABLE_FROM_KEY, value: String(plan.readableFrom) });
    return migrations.length;
  });
  return migrate.immediate();
}

/** A number in the settings table, undefined when absent (or no settings table yet). */
function readSetting(db: Database, key: string): number | undefined {
  const hasSettings = db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'settings'").get();
  if (!hasSettings) return undefined;
  const row = db.query<{ value: string }, { key: string }>("SELECT value FROM settings WHERE key = $key").get({ key });
  return row ? Number(row.value) : undefined;
}

/** 0 for an empty database (no settings table yet). */
function readSchemaVersion(db: Database): number {
  const version = readSetting(db, SCHEMA_VERSION_KEY) ?? 0;
  if (!Number.isInteger(version) || version < 0) throw new Error(`settings.${SCHEMA_VERSION_KEY} is not a schema version: ${JSON.stringify(version)}`);
  return version;
}
