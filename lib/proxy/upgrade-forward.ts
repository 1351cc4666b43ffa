// Carries an HTTP Upgrade (kubectl exec/attach/port-forward/cp) to the relay with node:http's
// 'upgrade' event, then splices bytes; a refusal is passed to the client as the relay sent it.
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { clusterApiPath, openRelayRequest } from "../client/index.ts";
import { BadRequest, isPeerHangup, writeStatusToSocket } from "../errors/index.ts";
import { arcproxyRequestHeaders, newRequestId, renderResponseHead, responseHeaders } from "../http/index.ts";
import { splice } from "../tunnel/index.ts";
import { userToken, type ForwardContext } from "./request-forward.ts";
import { RELAY_CONNECT_TIMEOUT_MS, RELAY_RESPONSE_HEAD_TIMEOUT_MS } from "./timeouts.ts";

/**
 * Sends the upgrade request to the cluster's API on the relay, on a connection of its own, with the
 * user token in place of the session secret. On 101 the client socket and the relay socket are
 * spliced and the promise resolves when both are closed; on any other answer that answer is
 * relayed to the client and its connection closed, as the API server would. Failures before an
 * answer are written to the client as a Status (401 without a user token, 502/504 for the relay).
 */
export async function forwardUpgrade(req: IncomingMessage, client: Duplex, head: Buffer, ctx: ForwardContext): Promise<void> {
  client.on("error", (error) => {
    if (!isPeerHangup(error)) ctx.logger.debug("client socket error during upgrade", { error });
  });
  const kubePath = req.url ?? "";
  const upgrade = req.headers.upgrade;
  if (!kubePath.startsWith("/") || !upgrade) {
    writeStatusToSocket(client, new BadRequest("arcproxy expects an upgrade request with a path starting with \"/\""));
    return;
  }
  const gone = new AbortController();
  client.once("close", () => gone.abort());
  const requestId = newRequestId();
  try {
    const headers = arcproxyRequestHeaders(req.rawHeaders, { userToken: await userToken(ctx), upgrade, requestId, ...(ctx.kubeToken ? { kubeToken: ctx.kubeToken } : {}) });
    if (client.destroyed) return;
    const answer = await openRelayRequest(ctx.relay, {
      method: req.method ?? "GET",
      path: clusterApiPath(ctx.cluster, kubePath),
      headers,
      upgrade: true,
      headTimeoutMs: RELAY_CONNECT_TIMEOUT_MS + RELAY_RESPONSE_HEAD_TIMEOUT_MS,
    }, gone.signal);
    const status = answer.response.statusCode ?? 502;
    ctx.logger.debug("upgrade answered", { requestId, path: kubePath.split("?")[0], status, upgrade });
    const passed = responseHeaders("arcproxy-to-client", answer.response.rawHeaders);
    if (answer.kind === "upgrade") {
      client.write(renderResponseHead(101, answer.response.statusMessage || "Switching Protocols", { ...passed, connection: "Upgrade", upgrade: String(answer.response.headers.upgrade ?? upgrade) }));
      if (answer.head.length > 0) client.write(answer.head);
      if (head.length > 0) answer.socket.write(head);
      await splice(client, answer.socket);
      return;
    }
    // Not 101: the relay's answer, body de-chunked, then close (the client expected an upgrade, and
    // the end of the connection delimits the body).
    client.write(renderResponseHead(status, answer.response.statusMessage || "Upgrade Refused", { ...passed, connection: "close" }));
    answer.response.pipe(client);
    await new Promise<void>((resolve) => client.once("close", () => resolve()));
  } catch (error) {
    if (gone.signal.aborted) return;
    if (!isPeerHangup(error)) ctx.logger.warn("relay upgrade failed", { requestId, path: kubePath.split("?")[0], error });
    writeStatusToSocket(client, error, requestId);
  }
}
