export type { RelayStore, ClusterRecord, GrantRecord, EnrollmentTokenRecord, PresenceRecord, Role } from "./types.ts";
export { openSqliteStore } from "./sqlite-store.ts";
export { openPostgresStore } from "./postgres-store.ts";
