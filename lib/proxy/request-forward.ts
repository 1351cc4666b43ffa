// Forwards one ordinary HTTP request to the relay and streams both bodies, never buffering one whole.
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import { BadGateway, BadRequest, Unauthorized, UpstreamTimeout, isPeerHangup } from "../kube/index.ts";
import type { Logger } from "../observe/index.ts";
import { buildRelayRequestHeaders, stripHopByHop, toHeaderObject } from "./forward-headers.ts";
import { buildClusterApiPath, type RelayEndpoint } from "./relay-endpoint.ts";
import { writeStatusResponse } from "./status-reply.ts";
import { RELAY_RESPONSE_HEAD_TIMEOUT_MS } from "./timeouts.ts";

/** What every forwarded request or upgrade needs to know. */
export interface ForwardContext {
  endpoint: RelayEndpoint;
  cluster: string;
  getToken: () => Promise<string>;
  /** Token mode: the caller's own Kubernetes bearer token, sent beside the user token. */
  kubeToken?: string;
  logger: Logger;
}

/** Sends `req` to the cluster's API on the relay and pipes the answer into `res`. */
export async function forwardRequest(req: IncomingMessage, res: ServerResponse, ctx: ForwardContext): Promise<void> {
  const kubePath = req.url ?? "";
  if (!kubePath.startsWith("/")) {
    writeStatusResponse(res, new BadRequest(`arcproxy expects a path starting with "/", got ${JSON.stringify(kubePath.slice(0, 100))}`));
    return;
  }
  const token = await fetchUserToken(ctx);
  if (token instanceof Error) {
    writeStatusResponse(res, token);
    return;
  }
  const { endpoint } = ctx;
  const transport = endpoint.secure ? https : http;
  const upstream = transport.request({
    method: req.method,
    host: endpoint.hostname,
    port: endpoint.port,
    path: buildClusterApiPath(endpoint, ctx.cluster, kubePath),
    agent: endpoint.agent,
    ...endpoint.tlsOptions,
    headers: toHeaderObject(buildRelayRequestHeaders(req.rawHeaders, token, undefined, ctx.kubeToken)),
  });

  // Only the wait for the response head is bounded: a watch may then stay quiet for minutes.
  const headTimer = setTimeout(() => {
    upstream.destroy(new UpstreamTimeout(`relay ${endpoint.url} sent no response within ${RELAY_RESPONSE_HEAD_TIMEOUT_MS / 1000}s`));
  }, RELAY_RESPONSE_HEAD_TIMEOUT_MS);

  upstream.on("response", (answer) => {
    clearTimeout(headTimer);
    ctx.logger.debug("forwarded", { method: req.method, path: pathOnly(kubePath), status: answer.statusCode });
    res.writeHead(answer.statusCode ?? 502, answer.statusMessage, toHeaderObject(stripHopByHop(answer.rawHeaders)));
    // Send the head now: a watch's first event may be minutes away and kubectl waits for it.
    res.flushHeaders();
    answer.pipe(res);
    answer.on("error", () => res.destroy());
    answer.on("aborted", () => res.destroy());
    answer.on("close", () => {
      if (!answer.complete) res.destroy();
    });
  });

  upstream.on("error", (error) => {
    clearTimeout(headTimer);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (res.destroyed) return;
    const failure = error instanceof UpstreamTimeout ? error : new BadGateway(`cannot reach relay ${endpoint.url}: ${error.message}`, { cause: error });
    if (!isPeerHangup(error)) ctx.logger.warn("relay request failed", { method: req.method, path: pathOnly(kubePath), error });
    writeStatusResponse(res, failure);
  });

  // The client going away (Ctrl-C on kubectl logs -f) ends the upstream stream too.
  res.on("close", () => {
    clearTimeout(headTimer);
    if (!res.writableFinished) upstream.destroy();
  });
  req.on("error", () => upstream.destroy());
  req.pipe(upstream);
}

async function fetchUserToken(ctx: ForwardContext): Promise<string | Error> {
  try {
    return await ctx.getToken();
  } catch (error) {
    ctx.logger.warn("token source failed", { error });
    return new Unauthorized(`arcproxy could not get a user token: ${(error as Error).message}`, { cause: error });
  }
}

// The query may carry label selectors and such; the log keeps the path only.
function pathOnly(url: string): string {
  const q = url.indexOf("?");
  return q === -1 ? url : url.slice(0, q);
}
