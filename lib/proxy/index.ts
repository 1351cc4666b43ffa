// Public face of the user-side proxy.
export { startProxySession } from "./proxy-session.ts";
export type { ProxySession, ProxySessionOptions, KubeconfigTarget } from "./proxy-session.ts";
export { startLocalProxy } from "./local-proxy.ts";
export type { LocalProxy, LocalProxyOptions } from "./local-proxy.ts";
export { fetchClusterInfo, listClusters, suggestClusterNames } from "./relay-client.ts";
export { readUserConfig, writeUserConfig, resolveRelayUrl, userConfigDir } from "./user-config.ts";
export type { UserConfig } from "./user-config.ts";
export type { ClusterInfo } from "./relay-client.ts";
export { runChildCommand } from "./child-command.ts";
export { createSessionCertificate } from "./session-cert.ts";
export type { SessionCertificate } from "./session-cert.ts";
export { createTokenSource } from "./token-source.ts";
export type { TokenSource, TokenSourceSpec, TokenSourceOptions, TokenCredential } from "./token-source.ts";
export { resolveTokenSourceSpec, buildTokenSourceArgs, DEFAULT_AUDIENCE } from "./token-source-flags.ts";
export type { TokenSourceFlags, TokenSourceEnv } from "./token-source-flags.ts";
export { buildExecCredential, buildCredentialKubeconfig, resolveSelfCommand, EXEC_CREDENTIAL_API_VERSION } from "./exec-credential.ts";
export type { SelfCommand, CredentialKubeconfigOptions } from "./exec-credential.ts";
