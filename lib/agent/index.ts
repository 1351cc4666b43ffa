export { runAgent } from "./run-agent.ts";
export type { AgentOptions } from "./run-agent.ts";
export { createFileKeyStore } from "./agent-state.ts";
export type { AgentKeys, AgentKeyStore } from "./agent-state.ts";
export { loadUpstream } from "./upstream.ts";
export type { Upstream } from "./upstream.ts";
export { parseRelayEndpoint } from "./relay-endpoint.ts";
export type { RelayEndpoint } from "./relay-endpoint.ts";
export { createSecretKeyStore } from "./secret-key-store.ts";
