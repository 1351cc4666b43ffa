// Forwards one ordinary HTTP request to the relay and streams both bodies, never buffering a
// response whole; sends it again while the relay restarts when that is safe, and keeps watches going.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import { BadRequest, Unauthorized, isPeerHangup, writeStatusResponse } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";
import type { RelayConnection } from "../client/index.ts";
import { arcproxyRequestHeaders, isWatchRequest, newRequestId, responseHeaders, type HeaderMap } from "../http/index.ts";
import { protocol } from "../tunnel/index.ts";
import type { ClusterRequest } from "./relay-request.ts";
import { readReplayableBody, sendWithRetry, type RetryMemo } from "./relay-retry.ts";
import { streamResumableWatch } from "./watch-resume.ts";

/** What every forwarded request or upgrade needs to know. */
export interface ForwardContext {
  relay: RelayConnection;
  cluster: string;
  getToken: () => Promise<string>;
  /** Token mode: the caller's own Kubernetes bearer token, sent beside the user token. */
  kubeToken?: string;
  /** How long to keep sending a request again while the relay restarts (ms); default 30,000 (`--relay-retry`). */
  relayRetryMs?: number;
  /** When a retry window last ran out, shared by the requests of one arcproxy (relay-retry.ts). */
  retryMemo?: RetryMemo;
  logger: Logger;
}

/**
 * Sends `req` to the cluster's API on the relay and pipes the answer into `res`. Failures before
 * an answer become a Kubernetes Status (401 when no token can be had, 502/504 for the relay);
 * a response cut after its head cuts `res` too. The client going away aborts the relay request,
 * so the agent and the API server stop as well.
 */
export async function forwardRequest(req: IncomingMessage, res: ServerResponse, ctx: ForwardContext): Promise<void> {
  const kubePath = req.url ?? "";
  if (!kubePath.startsWith("/")) {
    writeStatusResponse(res, new BadRequest(`arcproxy expects a path starting with "/", got ${JSON.stringify(kubePath.slice(0, 100))}`));
    return;
  }
  const clientGone = new AbortController();
  res.once("close", () => { if (!res.writableFinished) clientGone.abort(); });
  const method = req.method ?? "GET";
  // One id for the request, its retries and a resumed watch: what a bug report quotes.
  const requestId = newRequestId();
  const logger = ctx.logger.child({ requestId });
  const build = async (path: string, body?: Buffer | Readable): Promise<ClusterRequest> => ({
    method,
    kubePath: path,
    headers: arcproxyRequestHeaders(req.rawHeaders, { userToken: await userToken(ctx), requestId, ...(ctx.kubeToken ? { kubeToken: ctx.kubeToken } : {}) }),
    ...(body !== undefined ? { body } : {}),
  });
  try {
    if (isWatchRequest(method, kubePath)) {
      req.resume();
      await streamResumableWatch(kubePath, res, {
        open: (path) => sendWithRetry(ctx.relay, ctx.cluster, () => build(path), clientGone.signal, logger, ctx.relayRetryMs, ctx.retryMemo),
        logger,
      }, clientGone.signal);
      return;
    }
    const body = await readReplayableBody(req);
    const answer = await sendWithRetry(ctx.relay, ctx.cluster, () => build(kubePath, body), clientGone.signal, logger, ctx.relayRetryMs, ctx.retryMemo);
    logger.debug("forwarded", { method, path: pathOnly(kubePath), status: answer.statusCode });
    res.writeHead(answer.statusCode ?? 502, answer.statusMessage, clientHeaders(answer));
    // Send the head now: a stream's first bytes may be minutes away and kubectl waits for them.
    res.flushHeaders();
    answer.pipe(res);
    answer.once("error", () => res.destroy());
    answer.once("aborted", () => res.destroy());
    answer.once("close", () => { if (!answer.complete) res.destroy(); });
  } catch (error) {
    if (clientGone.signal.aborted) return;
    if (!isPeerHangup(error)) logger.warn("relay request failed", { method, path: pathOnly(kubePath), error });
    writeStatusResponse(res, error, requestId);
  }
}

/** The user token for one attempt; a token source that fails is the caller's 401. */
export async function userToken(ctx: ForwardContext): Promise<string> {
  try {
    return await ctx.getToken();
  } catch (error) {
    ctx.logger.warn("token source failed", { error });
    throw new Unauthorized(`arcproxy could not get a user token: ${(error as Error).message}`, { cause: error });
  }
}

// The query may carry label selectors and such; the log keeps the path only.
function pathOnly(url: string): string {
  const q = url.indexOf("?");
  return q === -1 ? url : url.slice(0, q);
}

/**
 * The answer's headers for kubectl. A relay refusal that arcproxy already sent again for as long as
 * --relay-retry allows loses its Retry-After: client-go would otherwise start the same wait over,
 * ten times (its retry limit), and a user would wait minutes for an agent that is not coming back.
 */
function clientHeaders(answer: IncomingMessage): HeaderMap {
  const headers = responseHeaders("arcproxy-to-client", answer.rawHeaders);
  if (answer.statusCode === 503 && answer.headers[protocol.NOT_FORWARDED_HEADER] === "true") delete headers["retry-after"];
  return headers;
}
