// The error hierarchy every layer throws: a stable `code` per failure (as jose's errors have), and
// the HTTP status and Kubernetes Status reason it is answered with.

export interface ArcErrorOptions {
  cause?: unknown;
  /** When the caller may try again (seconds): sent as `Retry-After`, which client-go honours. */
  retryAfterSeconds?: number;
}

/**
 * Base of every error a user can meet. `message` is safe to show to the caller (no secret, no
 * internal detail); `code` is stable across releases, for programs and tests to branch on.
 */
export class ArcError extends Error {
  /** Stable identifier of the failure, e.g. `ERR_ARC_UNAUTHORIZED`. */
  readonly code: string = "ERR_ARC_INTERNAL";
  readonly status: number = 500;
  readonly reason: string = "InternalError";
  readonly retryAfterSeconds?: number;
  constructor(message: string, options?: ArcErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    if (options?.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/**
 * A flag, a configuration file or an environment variable that cannot work: what the command line
 * prints as one line, and the relay's admin API as a 400.
 */
export class ConfigError extends ArcError {
  override readonly code = "ERR_ARC_CONFIG";
  override readonly status = 400;
  override readonly reason = "BadRequest";
}

export class BadRequest extends ArcError {
  override readonly code = "ERR_ARC_BAD_REQUEST";
  override readonly status = 400;
  override readonly reason = "BadRequest";
}

export class Unauthorized extends ArcError {
  override readonly code = "ERR_ARC_UNAUTHORIZED";
  override readonly status = 401;
  override readonly reason = "Unauthorized";
}

export class Forbidden extends ArcError {
  override readonly code = "ERR_ARC_FORBIDDEN";
  override readonly status = 403;
  override readonly reason = "Forbidden";
}

export class NotFound extends ArcError {
  override readonly code = "ERR_ARC_NOT_FOUND";
  override readonly status = 404;
  override readonly reason = "NotFound";
}

export class Conflict extends ArcError {
  override readonly code = "ERR_ARC_CONFLICT";
  override readonly status = 409;
  override readonly reason = "AlreadyExists";
}

export class PayloadTooLarge extends ArcError {
  override readonly code = "ERR_ARC_PAYLOAD_TOO_LARGE";
  override readonly status = 413;
  override readonly reason = "RequestEntityTooLarge";
}

export class RequestHeaderFieldsTooLarge extends ArcError {
  override readonly code = "ERR_ARC_HEADERS_TOO_LARGE";
  override readonly status = 431;
  override readonly reason = "RequestHeaderFieldsTooLarge";
}

export class TooManyRequests extends ArcError {
  override readonly code: string = "ERR_ARC_TOO_MANY_REQUESTS";
  override readonly status = 429;
  override readonly reason = "TooManyRequests";
}

export class BadGateway extends ArcError {
  override readonly code: string = "ERR_ARC_BAD_GATEWAY";
  override readonly status = 502;
  override readonly reason = "InternalError";
}

/** The cluster's agent has no tunnel to this relay (after the wait for a reconnecting one). */
export class AgentNotConnected extends ArcError {
  override readonly code = "ERR_ARC_AGENT_NOT_CONNECTED";
  override readonly status = 503;
  override readonly reason = "ServiceUnavailable";
}

/** The cluster's API server does not answer the agent (down, restarting, unreachable). */
export class ApiServerUnavailable extends ArcError {
  override readonly code = "ERR_ARC_API_SERVER_UNAVAILABLE";
  override readonly status = 503;
  override readonly reason = "ServiceUnavailable";
}

/**
 * The relay (or arcproxy) is shutting down and takes no new request; the request never reached the
 * cluster, so it is safe to send again (arcproxy and client-go do, after `Retry-After`).
 */
export class ShuttingDown extends ArcError {
  override readonly code = "ERR_ARC_SHUTTING_DOWN";
  override readonly status = 503;
  override readonly reason = "ServiceUnavailable";
}

/** A service on the way answered 503 for a reason of its own (an older relay, a load balancer). */
export class Unavailable extends ArcError {
  override readonly code = "ERR_ARC_UNAVAILABLE";
  override readonly status = 503;
  override readonly reason = "ServiceUnavailable";
}

export class UpstreamTimeout extends ArcError {
  override readonly code = "ERR_ARC_UPSTREAM_TIMEOUT";
  override readonly status = 504;
  override readonly reason = "Timeout";
}

/**
 * The error for an HTTP status a peer answered with, carrying `message`: the inverse of
 * toStatus, for clients of the relay. Codes without a class of their own (and 5xx other than 503
 * and 504) become BadGateway (502): what went wrong was on the other side.
 */
export function errorForStatus(status: number, message: string, options?: ArcErrorOptions): ArcError {
  switch (status) {
    case 400: return new BadRequest(message, options);
    case 401: return new Unauthorized(message, options);
    case 403: return new Forbidden(message, options);
    case 404: return new NotFound(message, options);
    case 409: return new Conflict(message, options);
    case 413: return new PayloadTooLarge(message, options);
    case 429: return new TooManyRequests(message, options);
    case 431: return new RequestHeaderFieldsTooLarge(message, options);
    case 503: return new Unavailable(message, options);
    case 504: return new UpstreamTimeout(message, options);
    default: return new BadGateway(message, options);
  }
}

/** A peer hanging up is normal traffic, not an error worth a log line. */
export function isPeerHangup(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return (
    code === "ECONNRESET" ||
    code === "EPIPE" ||
    code === "ERR_STREAM_PREMATURE_CLOSE" ||
    code === "ERR_HTTP2_STREAM_CANCEL" ||
    code === "ERR_STREAM_DESTROYED"
  );
}
