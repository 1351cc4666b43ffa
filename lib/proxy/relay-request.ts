// One HTTP request from arcproxy to the relay's cluster API, and whether its failure may be retried.
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import type { Readable } from "node:stream";
import { BadGateway, UpstreamTimeout } from "../errors/index.ts";
import { toHeaderObject, type HeaderPair } from "./forward-headers.ts";
import { buildClusterApiPath, type RelayEndpoint } from "./relay-endpoint.ts";
import { RELAY_RESPONSE_HEAD_TIMEOUT_MS } from "./timeouts.ts";

export interface RelayRequest {
  method: string;
  /** Kubernetes path and query, starting with "/". */
  kubePath: string;
  headers: HeaderPair[];
  /** A whole body (replayable), a stream (sent once), or none. */
  body?: Buffer | Readable;
}

/**
 * A failure before the relay answered. `neverSent`: the relay cannot have seen the request (it
 * refused the connection), so any request may be sent again. `broken`: the connection broke (a
 * relay that restarts), so an idempotent request may. Neither holds for a TLS failure, which
 * sending again cannot fix.
 */
export class RelayUnreachable extends BadGateway {
  override readonly code = "ERR_ARC_RELAY_UNREACHABLE";
  constructor(message: string, readonly neverSent: boolean, readonly broken: boolean, options?: { cause?: unknown }) {
    super(message, options);
  }
}

const NOT_CONNECTED = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN"]);
const BROKEN = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED"]);

/**
 * Sends `request` to the cluster `cluster` on the relay and resolves with the response head
 * (the body still to be read). Rejects with RelayUnreachable (502) when the connection fails
 * before an answer, and UpstreamTimeout (504) after RELAY_RESPONSE_HEAD_TIMEOUT_MS without one.
 * `signal` aborts the request (the client went away).
 */
export function sendToRelay(endpoint: RelayEndpoint, cluster: string, request: RelayRequest, signal: AbortSignal): Promise<IncomingMessage> {
  const transport = endpoint.secure ? https : http;
  return new Promise((resolve, reject) => {
    const upstream = transport.request({
      method: request.method,
      host: endpoint.hostname,
      port: endpoint.port,
      path: buildClusterApiPath(endpoint, cluster, request.kubePath),
      agent: endpoint.agent,
      ...endpoint.tlsOptions,
      headers: toHeaderObject(request.headers),
    });
    let connected = false;
    upstream.once("socket", (socket) => {
      // A tunnel of ours through a NAT or load balancer must not look idle; a reused socket is connected already.
      socket.setKeepAlive?.(true, 30_000);
      if (!socket.connecting) connected = true;
      else socket.once("connect", () => { connected = true; });
    });
    // Only the wait for the response head is bounded: a watch may then stay quiet for minutes.
    const headTimer = setTimeout(() => {
      upstream.destroy(new UpstreamTimeout(`relay ${endpoint.url} sent no response within ${RELAY_RESPONSE_HEAD_TIMEOUT_MS / 1000}s`));
    }, RELAY_RESPONSE_HEAD_TIMEOUT_MS);
    const onAbort = () => upstream.destroy();
    signal.addEventListener("abort", onAbort, { once: true });
    upstream.once("response", (answer) => {
      clearTimeout(headTimer);
      answer.once("close", () => signal.removeEventListener("abort", onAbort));
      resolve(answer);
    });
    upstream.once("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(headTimer);
      signal.removeEventListener("abort", onAbort);
      if (error instanceof UpstreamTimeout) {
        reject(error);
        return;
      }
      const neverSent = !connected && NOT_CONNECTED.has(error.code ?? "");
      reject(new RelayUnreachable(`cannot reach relay ${endpoint.url}: ${error.message}`, neverSent, BROKEN.has(error.code ?? ""), { cause: error }));
    });
    if (request.body === undefined) upstream.end();
    else if (Buffer.isBuffer(request.body)) upstream.end(request.body);
    else {
      request.body.once("error", () => upstream.destroy());
      request.body.pipe(upstream);
    }
  });
}
