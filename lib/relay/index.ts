export { startRelay } from "./relay-server.ts";
export type { RelayOptions, RunningRelay } from "./relay-server.ts";
export { parseTrustedProxies } from "./client-address.ts";
export type { TrustedProxies } from "./client-address.ts";
export { addCluster, createEnrollmentToken, DEFAULT_ENROLLMENT_TTL_SECONDS } from "./enrollment.ts";
export { loadStoredIssuer } from "./relay-issuer.ts";
export { describeCluster } from "./cluster-status.ts";
export type { ClusterStatus } from "./cluster-status.ts";
export { hasSqliteStore, openPostgresStore, openSqliteStore } from "./store/index.ts";
export type { RelayStore, GrantRecord, ClusterRecord, Role } from "./store/index.ts";
export { ADMIN_API_PATH, createAdminApi } from "./admin-api.ts";
export type { AdminApiDeps } from "./admin-api.ts";
export { createAdminClient } from "./admin-client.ts";
export type { AdminClient, AdminClientOptions, AdminClusterView, AdminGrantView } from "./admin-client.ts";
export {
  openAdminOperations, withAdminOperations, createLocalAdminOperations, createRemoteAdminOperations,
} from "./admin-operations.ts";
export type { AdminOperations, AdminTarget, GrantMatch } from "./admin-operations.ts";
export { clusterAudience } from "./user-access.ts";
export { createRelayMetrics } from "./metrics.ts";
export type { RelayMetrics, DisconnectReason, RequestKind } from "./metrics.ts";
