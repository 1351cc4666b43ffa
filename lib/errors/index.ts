export {
  ArcError, ConfigError, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, RequestHeaderFieldsTooLarge, PayloadTooLarge, Unavailable,
  TooManyRequests, BadGateway, AgentNotConnected, ApiServerUnavailable, ShuttingDown, UpstreamTimeout, isPeerHangup, errorForStatus,
} from "./errors.ts";
export type { ArcErrorOptions } from "./errors.ts";
export { toStatus, statusResponse, writeStatusResponse, writeStatusToSocket, renderStatusHttp, statusMessageOf } from "./status.ts";
export type { KubeStatus } from "./status.ts";
