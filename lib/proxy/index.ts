// Public face of the user-side proxy.
export { startProxySession } from "./proxy-session.ts";
export type { ProxySession, ProxySessionOptions } from "./proxy-session.ts";
export { startLocalProxy } from "./local-proxy.ts";
export type { LocalProxy, LocalProxyOptions } from "./local-proxy.ts";
export { fetchClusterInfo } from "./relay-client.ts";
export type { ClusterInfo, FetchClusterInfoOptions } from "./relay-client.ts";
export type { RelayTls } from "./relay-endpoint.ts";
export { runChildCommand } from "./child-command.ts";
export { createSessionCertificate } from "./session-cert.ts";
export type { SessionCertificate } from "./session-cert.ts";
