export {
  ArcError, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooManyRequests,
  BadGateway, AgentNotConnected, ApiServerUnavailable, ShuttingDown, RequestHeaderFieldsTooLarge, UpstreamTimeout, isPeerHangup,
} from "./errors.ts";
export { toStatus, statusOf, statusResponse, writeStatusResponse, writeStatusToSocket } from "./status.ts";
export type { KubeStatus } from "./status.ts";
export type { ArcErrorOptions } from "./errors.ts";
export { validateClusterName, validateUserName, validateGroupName } from "./names.ts";
export { buildKubeconfig, writeKubeconfig } from "./kubeconfig.ts";
export type { KubeconfigOptions, KubeconfigExec } from "./kubeconfig.ts";
export { isLoopbackHost } from "./loopback.ts";
export { MAX_REQUEST_HEADER_BYTES, renderParseErrorResponse } from "./http-limits.ts";
