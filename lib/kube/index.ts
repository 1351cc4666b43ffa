export {
  ArcError, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooManyRequests,
  BadGateway, AgentNotConnected, UpstreamTimeout, isPeerHangup,
} from "./errors.ts";
export { toStatus, statusOf, statusResponse } from "./status.ts";
export type { KubeStatus } from "./status.ts";
export { validateClusterName, validateUserName, validateGroupName } from "./names.ts";
export { buildKubeconfig, writeKubeconfig } from "./kubeconfig.ts";
export type { KubeconfigOptions, KubeconfigExec } from "./kubeconfig.ts";
export { isLoopbackHost } from "./loopback.ts";
