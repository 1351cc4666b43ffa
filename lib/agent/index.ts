export { runAgent } from "./run-agent.ts";
export type { AgentOptions } from "./run-agent.ts";
export { rotateAgentKey } from "./rotate-key.ts";
export type { RotatedKey } from "./rotate-key.ts";
export { createFileKeyStore } from "./agent-state.ts";
export type { AgentKeys, AgentKeyStore } from "./agent-state.ts";
export { loadUpstream } from "./upstream.ts";
export type { Upstream } from "./upstream.ts";
export { createSecretKeyStore } from "./secret-key-store.ts";
