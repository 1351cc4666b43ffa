// Carries an HTTP Upgrade (kubectl exec/attach/port-forward/cp) to the relay on its own socket and splices bytes.
import type { IncomingMessage } from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { BadGateway, BadRequest, Unauthorized, UpstreamTimeout, isPeerHangup } from "../errors/index.ts";
import { buildRelayRequestHeaders } from "./forward-headers.ts";
import { buildClusterApiPath } from "./relay-endpoint.ts";
import type { ForwardContext } from "./request-forward.ts";
import { writeStatusToSocket } from "../errors/index.ts";
import { RELAY_CONNECT_TIMEOUT_MS, RELAY_RESPONSE_HEAD_TIMEOUT_MS } from "./timeouts.ts";

const HEAD_END = Buffer.from("\r\n\r\n");
// A response head larger than this is not a relay talking HTTP/1.1.
const MAX_HEAD_BYTES = 64 * 1024;

/**
 * Opens a fresh connection to the relay, sends the upgrade request with the path rewritten and
 * the user token in place of the session token, then either splices both sockets after a 101 or
 * relays the refusal to the client and closes.
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
  let token: string;
  try {
    token = await ctx.getToken();
  } catch (error) {
    writeStatusToSocket(client, new Unauthorized(`arcproxy could not get a user token: ${(error as Error).message}`, { cause: error }));
    return;
  }
  if (client.destroyed) return;

  const { endpoint } = ctx;
  const relay = endpoint.secure
    ? tls.connect({ host: endpoint.hostname, port: endpoint.port, ...endpoint.tlsOptions })
    : net.connect({ host: endpoint.hostname, port: endpoint.port });
  relay.setTimeout(RELAY_CONNECT_TIMEOUT_MS + RELAY_RESPONSE_HEAD_TIMEOUT_MS, () => {
    relay.destroy(new UpstreamTimeout(`relay ${endpoint.url} did not answer the upgrade in time`));
  });
  client.on("close", () => relay.destroy());

  relay.once(endpoint.secure ? "secureConnect" : "connect", () => {
    const lines = [`${req.method} ${buildClusterApiPath(endpoint, ctx.cluster, kubePath)} HTTP/1.1`, `Host: ${hostHeader(endpoint.hostname, endpoint.port)}`];
    for (const [name, value] of buildRelayRequestHeaders(req.rawHeaders, token, upgrade, ctx.kubeToken)) lines.push(`${name}: ${value}`);
    relay.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (head.length > 0) relay.write(head);
  });

  let received = Buffer.alloc(0);
  const onHeadData = (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    const end = received.indexOf(HEAD_END);
    if (end === -1) {
      if (received.length > MAX_HEAD_BYTES) relay.destroy(new BadGateway(`relay ${endpoint.url} sent an oversized response head`));
      return;
    }
    relay.off("data", onHeadData);
    relay.off("error", onDialError);
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(received.subarray(0, end).toString("latin1"))?.[1] ?? 0);
    ctx.logger.debug("upgrade answered", { path: kubePath.split("?")[0], status, upgrade });
    if (status === 101) spliceSockets(client, relay, received, ctx);
    else relayRefusal(client, relay, received, end + HEAD_END.length);
  };
  const onDialError = (error: Error) => {
    if (!isPeerHangup(error)) ctx.logger.warn("relay upgrade failed", { path: kubePath.split("?")[0], error });
    const failure = error instanceof UpstreamTimeout ? error : new BadGateway(`cannot reach relay ${endpoint.url}: ${error.message}`, { cause: error });
    writeStatusToSocket(client, failure);
  };
  relay.on("data", onHeadData);
  relay.on("error", onDialError);
  relay.on("close", () => {
    if (received.indexOf(HEAD_END) === -1) writeStatusToSocket(client, new BadGateway(`relay ${endpoint.url} closed the connection before answering the upgrade`));
  });
}

// From here on bytes flow untouched; either side closing closes the other.
function spliceSockets(client: Duplex, relay: net.Socket, received: Buffer, ctx: ForwardContext): void {
  relay.setTimeout(0);
  relay.on("error", (error) => {
    if (!isPeerHangup(error)) ctx.logger.debug("relay socket error in upgraded stream", { error });
    client.destroy();
  });
  client.on("error", () => relay.destroy());
  client.write(received);
  relay.pipe(client);
  client.pipe(relay);
  relay.on("close", () => client.destroy());
  client.on("close", () => relay.destroy());
}

// Not 101: pass the relay's answer through as it is, then close (the client expected an upgrade).
function relayRefusal(client: Duplex, relay: net.Socket, received: Buffer, bodyStart: number): void {
  const headText = received.subarray(0, bodyStart).toString("latin1");
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(headText)?.[1];
  const chunked = /\r\ntransfer-encoding:\s*chunked/i.test(headText);
  let remaining = length === undefined ? Infinity : Number(length) - (received.length - bodyStart);
  let tail = received.subarray(bodyStart);
  const finish = () => {
    client.end();
    relay.destroy();
  };
  client.write(received);
  if (remaining <= 0 || (chunked && endsChunked(tail))) return finish();
  relay.on("data", (chunk: Buffer) => {
    client.write(chunk);
    remaining -= chunk.length;
    tail = Buffer.concat([tail.subarray(-8), chunk]);
    if (remaining <= 0 || (chunked && endsChunked(tail))) finish();
  });
  relay.on("end", finish);
  relay.on("error", finish);
}

function endsChunked(tail: Buffer): boolean {
  return tail.subarray(-5).toString("latin1") === "0\r\n\r\n";
}

function hostHeader(hostname: string, port: number): string {
  return `${net.isIPv6(hostname) ? `[${hostname}]` : hostname}:${port}`;
}
