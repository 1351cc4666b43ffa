// One of kubectl's requests to the cluster's API on the relay.
import type { IncomingMessage } from "node:http";
import type { Readable } from "node:stream";
import { clusterApiPath, openRelayRequest, type RelayConnection } from "../client/index.ts";
import { BadGateway } from "../errors/index.ts";
import type { HeaderMap } from "../http/index.ts";

export interface ClusterRequest {
  method: string;
  /** Kubernetes path and query, starting with "/". */
  kubePath: string;
  /** As the header policy builds them for the relay (arcproxyRequestHeaders). */
  headers: HeaderMap;
  /** A whole body (replayable), a stream (sent once), or none. */
  body?: Buffer | Readable;
}

/**
 * Sends `request` to `cluster`'s API on the relay and resolves with the response head (the body
 * still to be read). Rejects as openRelayRequest does: RelayUnreachable (502) before an answer,
 * UpstreamTimeout (504) after RELAY_RESPONSE_HEAD_TIMEOUT_MS (120 s) without one.
 */
export async function sendToRelay(conn: RelayConnection, cluster: string, request: ClusterRequest, signal: AbortSignal): Promise<IncomingMessage> {
  const answer = await openRelayRequest(conn, {
    method: request.method,
    path: clusterApiPath(cluster, request.kubePath),
    headers: request.headers,
    ...(request.body !== undefined ? { body: request.body } : {}),
  }, signal);
  if (answer.kind === "upgrade") {
    answer.socket.destroy();
    throw new BadGateway(`relay ${conn.url.base} switched protocols on an ordinary request; is --relay the relay's URL?`);
  }
  return answer.response;
}
