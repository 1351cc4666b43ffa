// The relay's half of a request: an HTTP/1.1 request or upgrade carried over one tunnel stream.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { AgentNotConnected, BadGateway, UpstreamTimeout, statusResponse } from "../kube/index.ts";
import { endToEndHeaders, renderResponseHead, type HeaderMap } from "./headers.ts";
import { http2Constants, type TunnelClient, type TunnelHeaders, type TunnelRequestStream } from "./http2-session.ts";
import { REQUEST_ID_HEADER, UPGRADE_HEADER, UPGRADE_STATUS_HEADER } from "./protocol.ts";
import { splice } from "./splice.ts";
import { RESPONSE_HEADERS_TIMEOUT_MS, UPGRADE_TIMEOUT_MS } from "./timeouts.ts";

export interface ForwardTarget {
  tunnel: TunnelClient;
  cluster: string;
  requestId: string;
  /** Path and query as the agent should send it to the API server. */
  path: string;
  /** End-to-end headers to send (already filtered by the caller's policy). */
  headers: HeaderMap;
}

/** Forwards one ordinary request; streams the body both ways and never buffers it. */
export function forwardHttpRequest(target: ForwardTarget, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const hasBody = req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0;
  const stream = openStream(target, req.method ?? "GET", {}, !hasBody);
  if (hasBody) req.pipe(stream);
  res.once("close", () => {
    if (!res.writableFinished && !stream.destroyed) stream.close(http2Constants.NGHTTP2_CANCEL);
  });
  return awaitResponse(target, stream, RESPONSE_HEADERS_TIMEOUT_MS).then(
    (headers) => {
      res.writeHead(Number(headers[":status"]), stripTunnelHeaders(endToEndHeaders(headers)));
      res.flushHeaders();
      stream.pipe(res);
      stream.once("error", () => res.destroy());
      return new Promise<void>((resolve) => res.once("close", () => resolve()));
    },
    (error: unknown) => {
      req.unpipe(stream);
      if (!res.headersSent) {
        const { code, body, headers } = statusResponse(error, target.requestId);
        res.writeHead(code, headers).end(body);
      } else {
        res.destroy();
      }
      throw error;
    },
  );
}

/**
 * Forwards an HTTP/1.1 Upgrade (exec, attach, port-forward). The agent answers 200 with the
 * API server's real status in a header; on 101 the client socket and the stream are spliced.
 */
export function forwardUpgrade(target: ForwardTarget, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const upgrade = String(req.headers["upgrade"] ?? "");
  // After an upgrade the stream carries the protocol's bytes, not a body: a `content-length: 0`
  // (kubectl's SPDY POST sends one) would make HTTP/2 reset the stream at the first byte.
  const { "content-length": _bodyLength, ...headers } = target.headers;
  const stream = openStream({ ...target, headers }, req.method ?? "GET", { [UPGRADE_HEADER]: upgrade }, false);
  if (head.length > 0) stream.write(head);
  socket.once("close", () => {
    if (!stream.destroyed) stream.close(http2Constants.NGHTTP2_CANCEL);
  });
  return awaitResponse(target, stream, UPGRADE_TIMEOUT_MS).then(
    (headers) => {
      const upstreamStatus = Number(headers[UPGRADE_STATUS_HEADER] ?? headers[":status"]);
      const passed = stripTunnelHeaders(endToEndHeaders(headers));
      if (upstreamStatus === 101) {
        socket.write(renderResponseHead(101, "Switching Protocols", { connection: "Upgrade", upgrade, ...passed }));
        return splice(socket, stream);
      }
      // The API server refused the upgrade: relay its answer and close, as it would have.
      socket.write(renderResponseHead(upstreamStatus, "Upgrade Refused", { ...passed, connection: "close" }));
      stream.pipe(socket);
      return new Promise<void>((resolve) => socket.once("close", () => resolve()));
    },
    (error: unknown) => {
      writeStatusToSocket(socket, error, target.requestId);
      throw error;
    },
  );
}

/**
 * Answers a raw (pre-upgrade) socket with a Kubernetes Status and closes it. Does nothing if the
 * socket is already answered (forwardUpgrade writes the Status itself before rethrowing).
 */
export function writeStatusToSocket(socket: Duplex, error: unknown, requestId?: string): void {
  if (socket.destroyed || socket.writableEnded) return;
  const { code, body, headers } = statusResponse(error, requestId);
  const head = renderResponseHead(code, "Error", {
    ...headers,
    "content-length": String(Buffer.byteLength(body)),
    connection: "close",
  });
  socket.end(head + body);
}

function openStream(target: ForwardTarget, method: string, extra: HeaderMap, endStream: boolean): TunnelRequestStream {
  if (target.tunnel.closed) {
    throw new AgentNotConnected(`cluster "${target.cluster}" is offline: its agent is not connected to the relay`);
  }
  const stream = target.tunnel.request(
    { ":method": method, ":path": target.path, ...target.headers, ...extra, [REQUEST_ID_HEADER]: target.requestId },
    { endStream },
  );
  // Failures surface through awaitResponse or the piping that follows; this listener only keeps a
  // late reset (after the caller already answered) from becoming an uncaught exception.
  stream.on("error", () => {});
  return stream;
}

function awaitResponse(target: ForwardTarget, stream: TunnelRequestStream, timeoutMs: number): Promise<TunnelHeaders> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.close(http2Constants.NGHTTP2_CANCEL);
      reject(new UpstreamTimeout(
        `the agent of cluster "${target.cluster}" did not answer within ${timeoutMs / 1000}s (request id ${target.requestId})`,
      ));
    }, timeoutMs);
    const fail = (cause?: unknown) => {
      clearTimeout(timer);
      reject(new BadGateway(
        `the agent of cluster "${target.cluster}" dropped the request before answering (request id ${target.requestId}); retry, and check the agent's log if it persists`,
        { cause },
      ));
    };
    stream.once("response", (headers) => {
      clearTimeout(timer);
      stream.off("error", fail);
      stream.off("close", fail);
      resolve(headers);
    });
    stream.once("error", fail);
    stream.once("close", fail);
  });
}

function stripTunnelHeaders(headers: HeaderMap): HeaderMap {
  const out: HeaderMap = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith("x-arc-")) out[name] = value;
  }
  return out;
}
