export {
  ArcError, ConfigError, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, RequestHeaderFieldsTooLarge,
  TooManyRequests, BadGateway, AgentNotConnected, ApiServerUnavailable, ShuttingDown, UpstreamTimeout, isPeerHangup,
} from "./errors.ts";
export type { ArcErrorOptions } from "./errors.ts";
export { toStatus, statusOf, statusResponse, writeStatusResponse, writeStatusToSocket } from "./status.ts";
export type { KubeStatus } from "./status.ts";
