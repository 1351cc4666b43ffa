export type { RelayStore, ClusterRecord, GrantRecord, EnrollmentTokenRecord, PresenceRecord, ReplicaRecord, StoreChange, Role } from "./types.ts";
export { hasSqliteStore, openSqliteStore } from "./sqlite-store.ts";
export { openPostgresStore } from "./postgres-store.ts";
