// Serves one tunnel stream: verify the caller again, then call the API server as that caller.
import http from "node:http";
import https from "node:https";
import type { Identity } from "../auth/index.ts";
import { ApiServerUnavailable, ArcError, BadRequest, TooManyRequests, UpstreamTimeout, isPeerHangup, statusResponse } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";
import { MAX_REQUEST_HEADER_BYTES, apiServerRequestHeaders, bearerTokenOf, endAtEventBoundary, firstHeader, isJsonContentType, isWatchRequest, responseHeaders, toHeaderMap, type HeaderMap } from "../http/index.ts";
import { endedByPeer, joinLongHeaders, protocol, splice, splitLongHeaders, timeouts, type TunnelHeaders, type TunnelServerStream } from "../tunnel/index.ts";
import { createImpersonationReviewer, type ImpersonationReviewer } from "./impersonation-review.ts";
import { resolveApiServerIdentity } from "./impersonation.ts";
import type { Upstream } from "./upstream.ts";
import { Http2Unavailable, fitsHttp2Head } from "./api-server-sessions.ts";
import { forwardOverHttp2, ReplayBudget } from "./forward-http2.ts";
import { measureStream, type AgentMetrics } from "./metrics.ts";

export interface StreamHandlerDeps {
  cluster: string;
  upstream: Upstream;
  verifyUserToken(token: string): Promise<Identity>;
  logger: Logger;
  /**
   * Aborted when the agent stops: JSON watches then end cleanly at their next event boundary, so
   * clients watch again (through the agent's next tunnel) instead of holding the drain open.
   */
  watchEnd?: AbortSignal;
  metrics?: AgentMetrics;
  /**
   * Requests (watches and upgrades included) served at once; beyond it a request is answered 429
   * at once. Default DEFAULT_MAX_REQUESTS_IN_FLIGHT (`arcagent --max-requests-in-flight`).
   */
  maxRequestsInFlight?: number;
  /** The bytes of request bodies kept for sending again, shared by every request (default: REPLAY_BUDGET_BYTES). */
  replayBudget?: ReplayBudget;
}

/**
 * Requests one agent serves at once by default. Each holds an HTTP/2 stream to the API server,
 * about 10 KiB of the agent's memory, or a connection of its own (26 KiB) where HTTP/1.1 is used:
 * through an egress proxy, or to an API server without HTTP/2 (bench/BENCHMARKS.md, watches).
 * 2,000 take at most about 50 MiB above the agent's 100 MiB at rest, inside the chart's 256 MiB
 * limit, where 10,000 (the tunnel's own bound) over HTTP/1.1 would get the agent killed for memory
 * and cut the cluster off for everyone.
 */
export const DEFAULT_MAX_REQUESTS_IN_FLIGHT = 2_000;
const BUSY_LOG_EVERY_MS = 10_000;

/**
 * Serves one tunnel stream (one user request the relay forwarded): verifies the caller's token
 * again with the agent's own issuers, decides who the request runs as (resolveApiServerIdentity:
 * the caller, the target of an allowed `kubectl --as`, or token mode), and sends it to the API
 * server with the header policy's headers; the response (or the upgraded byte stream, for exec and
 * port-forward) is streamed back. Bounds: response headers within 60 s (upgrades 30 s), then no
 * limit (watches). Every failure is answered on the stream as a Kubernetes Status with the request
 * id: 401 bad token, 403 refused impersonation, 400 malformed, 429 more than `maxRequestsInFlight`
 * at once, 503 API server unreachable, 504 no answer. Never throws.
 */
export interface StreamHandler {
  (stream: TunnelServerStream, received: TunnelHeaders): void;
  /** The requests being served now (method, path without query, request id, age in ms): what a drain waits for. */
  inFlight(): { requestId: string; method: string; path: string; ageMs: number }[];
}

export function createStreamHandler(deps: StreamHandlerDeps): StreamHandler {
  const reviewer = createImpersonationReviewer(deps.upstream, deps.cluster);
  const serving = new Map<TunnelServerStream, { requestId: string; method: string; path: string; since: number }>();
  const maxInFlight = deps.maxRequestsInFlight ?? DEFAULT_MAX_REQUESTS_IN_FLIGHT;
  // One budget for every request this handler serves.
  deps = { ...deps, replayBudget: deps.replayBudget ?? new ReplayBudget() };
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1) throw new TypeError(`maxRequestsInFlight must be a positive integer, not ${maxInFlight}`);
  let refusedBusy = 0;
  let lastBusyLog = 0;
  const handleTunnelStream = function handleTunnelStream(stream: TunnelServerStream, received: TunnelHeaders): void {
    let headers: TunnelHeaders;
    try {
      headers = joinLongHeaders(received);
    } catch (error) {
      const requestId = firstHeader(received[protocol.REQUEST_ID_HEADER]) ?? "unknown";
      deps.logger.warn("refusing a stream whose long headers cannot be put together", { requestId, error });
      respondWithStatus(stream, new BadRequest(`the relay sent a malformed request (request id ${requestId}): ${(error as Error).message}`), requestId);
      return;
    }
    const requestId = firstHeader(headers[protocol.REQUEST_ID_HEADER]) ?? "unknown";
    const kind = headers[protocol.UPGRADE_HEADER] ? "upgrade" : isWatchRequest(String(headers[":method"]), String(headers[":path"])) ? "watch" : "request";
    measureStream(deps.metrics, stream, String(headers[":method"]), kind);
    if (serving.size >= maxInFlight) {
      refusedBusy += 1;
      // One line per 10 s at most: an overload must not become a flood of log lines too.
      if (performance.now() - lastBusyLog >= BUSY_LOG_EVERY_MS) {
        lastBusyLog = performance.now();
        deps.logger.warn("refusing requests: the agent serves the most requests it takes (429)", { requestId, refusedSinceLastLine: refusedBusy, maxRequestsInFlight: maxInFlight });
        refusedBusy = 0;
      }
      respondWithStatus(stream, new TooManyRequests(
        `the agent of cluster "${deps.cluster}" is serving ${serving.size} requests, the most it takes (request id ${requestId}); ` +
          "retry in a moment, or ask the cluster's admin to raise arcagent --max-requests-in-flight (chart value maxRequestsInFlight) " +
          "with the agent's memory (about 10 KiB a request in flight, 26 KiB over HTTP/1.1)",
        { retryAfterSeconds: 1 },
      ), requestId);
      return;
    }
    serving.set(stream, { requestId, method: String(headers[":method"]), path: String(headers[":path"]).split("?")[0]!, since: performance.now() });
    stream.once("close", () => serving.delete(stream));
    const log = deps.logger.child({ requestId });
    log.debug("request", { method: String(headers[":method"]), path: String(headers[":path"]).split("?")[0] });
    stream.on("error", (error) => {
      if (!isPeerHangup(error)) log.debug("tunnel stream error", { error });
    });
    serveStream(deps, reviewer, stream, headers, requestId).catch((error: unknown) => {
      if (error instanceof ArcError && error.status < 500) log.info("request refused", { error });
      else if (!isPeerHangup(error)) log.warn("request failed", { error, path: String(headers[":path"]).split("?")[0] });
      respondWithStatus(stream, error, requestId);
    });
  };
  return Object.assign(handleTunnelStream, {
    inFlight: () => [...serving.values()].map(({ since, ...rest }) => ({ ...rest, ageMs: performance.now() - since })),
  });
}

async function serveStream(deps: StreamHandlerDeps, reviewer: ImpersonationReviewer, stream: TunnelServerStream, received: TunnelHeaders, requestId: string): Promise<void> {
  const headers = toHeaderMap(received);
  const caller = await deps.verifyUserToken(bearerOf(headers));
  const options = await deps.upstream.requestOptions();
  const identity = await resolveApiServerIdentity(headers, caller, {
    reviewer, requestId, credentials: (options.headers ?? {}) as Record<string, string>,
  });
  const tokenMode = identity.kind === "token";
  if (tokenMode) {
    // Nothing of the agent's own identity may ride along: not its token, and not a client
    // certificate, which the API server would authenticate before the caller's bearer token.
    delete options.headers;
    delete options.cert;
    delete options.key;
    delete options.pfx;
  }
  const upgrade = firstHeader(headers[protocol.UPGRADE_HEADER]);
  const method = String(headers[":method"]);
  const path = String(headers[":path"]);
  // Ordinary requests share HTTP/2 sessions; upgrades need HTTP/1.1, and token mode a connection
  // of its own, without the agent's client certificate.
  const sessions = deps.upstream.http2;
  if (!upgrade && identity.kind !== "token" && sessions?.available) {
    const h2Headers = apiServerRequestHeaders(headers, identity);
    if (fitsHttp2Head(path, h2Headers)) {
      deps.logger.debug("forwarding", { requestId, user: caller.user, as: identity.user !== caller.user ? identity.user : undefined, method, path: path.split("?")[0], protocol: "h2" });
      try {
        const tls = { ca: options.ca as string | undefined, cert: options.cert as string | undefined, key: options.key as string | undefined, rejectUnauthorized: options.rejectUnauthorized, servername: options.servername };
        await forwardOverHttp2(sessions, stream, { cluster: deps.cluster, requestId, method, path, headers: h2Headers, tls, watchEnd: deps.watchEnd }, deps.replayBudget);
        return;
      } catch (error) {
        if (!(error instanceof Http2Unavailable)) throw error;
      }
    }
  }
  const request: https.RequestOptions = {
    ...options,
    // URL.hostname keeps an IPv6 literal's brackets, which the resolver does not take.
    hostname: deps.upstream.server.hostname.replace(/^\[|\]$/g, ""),
    port: deps.upstream.server.port,
    method,
    path,
    headers: apiServerRequestHeaders(headers, identity, upgrade),
    // The API server's answer may carry headers as long as the request's (it echoes Audit-ID):
    // node's 16 KiB default would turn a request that ran into an "unreachable" 503.
    maxHeaderSize: MAX_REQUEST_HEADER_BYTES,
    // Token mode never shares a pooled connection that may carry the agent's client certificate.
    agent: upgrade || tokenMode ? deps.upstream.dedicatedAgent() : deps.upstream.agent,
  };
  deps.logger.debug("forwarding", { requestId, user: caller.user, as: identity.kind === "impersonate" && identity.user !== caller.user ? identity.user : undefined, tokenMode, method: request.method, path: request.path?.split("?")[0], upgrade });
  // A body-less GET, HEAD or OPTIONS that met a pooled connection the API server had just closed
  // (it closes idle ones) is sent once more on a new one, as Go's client does (net/http
  // transport.go, isReplayable): nothing of it was answered, and it changes nothing if it ran.
  const replayable = !upgrade && stream.readableEnded && REPLAYABLE_METHODS.has(method);
  await sendOverHttp1(deps, stream, request, requestId, upgrade, replayable ? MAX_STALE_CONNECTION_RETRIES : 0);
}

/** Methods sent again after a stale pooled connection (RFC 9110 9.2.2: idempotent and safe, as Go's client picks). */
const REPLAYABLE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);
/**
 * Times such a request is sent again, each on the next connection the pool gives: the idle
 * connections of one burst reach the API server's idle timeout together, so the next pooled one
 * may be closed too; each failure uses one up (Go's client retries while the connection was reused).
 */
const MAX_STALE_CONNECTION_RETRIES = 3;

/**
 * One request to the API server over HTTP/1.1 (`request`, node:http options), its answer streamed
 * back on `stream` (an upgrade spliced). When the pooled connection it was sent on turns out closed
 * before any answer (ECONNRESET, EPIPE), it is sent again, at most `retries` more times. Rejects as
 * serveStream does.
 */
function sendOverHttp1(
  deps: StreamHandlerDeps, stream: TunnelServerStream, request: https.RequestOptions, requestId: string, upgrade: string | undefined, retries: number,
): Promise<void> {
  const client = deps.upstream.server.protocol === "https:" ? https : http;
  const upstreamReq = client.request(request);
  upstreamReq.setTimeout(upgrade ? timeouts.UPGRADE_TIMEOUT_MS : timeouts.RESPONSE_HEADERS_TIMEOUT_MS);

  return new Promise<void>((resolve, reject) => {
    let answered = false;
    const fail = (error: unknown) => {
      if (retries > 0 && !answered && upstreamReq.reusedSocket && isStaleConnection(error) && !stream.destroyed && !stream.closed) {
        deps.logger.debug("the pooled connection to the API server was closed; sending the request again", { requestId });
        sendOverHttp1(deps, stream, request, requestId, upgrade, retries - 1).then(resolve, reject);
        return;
      }
      // A hang-up is the caller's only when the tunnel stream is gone; the API server's reset is a 503.
      const callerGone = isPeerHangup(error) && (stream.destroyed || stream.closed);
      reject(callerGone || error instanceof ArcError ? error : new ApiServerUnavailable(
        `the API server of cluster "${deps.cluster}" could not be reached by the agent (request id ${requestId}): ` +
          `${(error as Error).message}; check that the API server is up, and the agent's --kubeconfig or in-cluster address`,
        { cause: error },
      ));
    };
    upstreamReq.once("error", fail);
    upstreamReq.once("timeout", () => upstreamReq.destroy(new UpstreamTimeout(
      `the API server of cluster "${deps.cluster}" did not answer within ${(upgrade ? timeouts.UPGRADE_TIMEOUT_MS : timeouts.RESPONSE_HEADERS_TIMEOUT_MS) / 1000}s (request id ${requestId})`,
    )));
    stream.once("close", () => upstreamReq.destroy());

    upstreamReq.once("upgrade", (res: http.IncomingMessage, socket, head: Buffer) => {
      answered = true;
      upstreamReq.setTimeout(0);
      socket.setTimeout(0);
      stream.respond(splitLongHeaders({ ":status": "200", [protocol.UPGRADE_STATUS_HEADER]: "101", ...responseHeaders("api-server-to-agent", res.rawHeaders) }));
      if (head.length > 0) stream.write(head);
      splice(stream, socket).then(resolve, resolve);
    });
    upstreamReq.once("response", (res: http.IncomingMessage) => {
      answered = true;
      upstreamReq.setTimeout(0);
      const status = res.statusCode ?? 502;
      // Long values (an echoed Audit-ID) go in pieces: one over Bun's HPACK limit would end the session.
      stream.respond(splitLongHeaders({
        ":status": String(status),
        ...(upgrade ? { [protocol.UPGRADE_STATUS_HEADER]: String(status) } : {}),
        ...responseHeaders("api-server-to-agent", res.rawHeaders),
      }));
      res.pipe(stream);
      res.once("error", (error) => stream.destroy(error));
      res.once("end", resolve);
      res.once("close", resolve);
      if (deps.watchEnd && isWatchRequest(request.method, request.path ?? "") && isJsonContentType(res.headers["content-type"])) {
        endAtEventBoundary(res, stream, deps.watchEnd, () => res.destroy());
      }
      stream.once("close", () => res.destroy());
    });

    // Ended only by the relay's END_STREAM: a caller gone mid-body ends the tunnel stream too
    // (after a reset), and a chunked body ended then would reach the API server as complete.
    const bodyEnded = () => {
      if (endedByPeer(stream)) upstreamReq.end();
      else upstreamReq.destroy();
    };
    if (upgrade) upstreamReq.end();
    else if (stream.readableEnded) bodyEnded();
    else {
      stream.pipe(upstreamReq, { end: false });
      stream.once("end", bodyEnded);
    }
    if (upgrade) upstreamReq.flushHeaders();
  });
}

/** A pooled connection the server had closed: the request met its reset or its end before any answer. */
function isStaleConnection(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === "ECONNRESET" || code === "EPIPE";
}

function bearerOf(headers: HeaderMap): string {
  return bearerTokenOf(headers["authorization"]) ?? "";
}

function respondWithStatus(stream: TunnelServerStream, error: unknown, requestId: string): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    // With an error: Bun 1.4.5 ends a stream destroyed without one with END_STREAM, and the relay
    // would finish the caller's response as if the cut answer were complete.
    stream.destroy(new Error(`the answer was cut after it began (request id ${requestId})`));
    return;
  }
  const { code, body, headers } = statusResponse(error, requestId);
  stream.respond({ ":status": code, ...headers });
  stream.end(body);
}
