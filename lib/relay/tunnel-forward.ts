// The relay's half of a request: an HTTP/1.1 request or upgrade carried over one tunnel stream.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { AgentNotConnected, BadGateway, UpstreamTimeout, writeStatusResponse, writeStatusToSocket } from "../errors/index.ts";
import { endAtEventBoundary, hasRequestBody, withoutContentLength, isJsonContentType, renderResponseHead, responseHeaders, responseOver, type HeaderMap } from "../http/index.ts";
import {
  cancelStream, endedByPeer, http2Constants, joinLongHeaders, protocol, splice, splitLongHeaders, timeouts, type TunnelClient, type TunnelHeaders, type TunnelRequestStream,
} from "../tunnel/index.ts";
import { markNotForwarded } from "./not-forwarded.ts";

export interface ForwardTarget {
  tunnel: TunnelClient;
  cluster: string;
  requestId: string;
  /** Path and query as the agent should send it to the API server. */
  path: string;
  /** The caller's headers as the header policy passes them to the agent (relayRequestHeaders). */
  headers: HeaderMap;
}

/** Told of a forwarded request's progress, for the relay's metrics. */
export interface ForwardObserver {
  /** The response head was sent with this status. */
  head(status: number): void;
  /** Body bytes from the user (in) and to the user (out). */
  bytesIn(n: number): void;
  bytesOut(n: number): void;
}

export interface ForwardOptions {
  observe?: ForwardObserver;
  /**
   * Aborted when the relay drains: a JSON watch then ends cleanly at the next event boundary, so
   * kubectl and client-go see an ordinary end of watch and watch again (elsewhere).
   */
  endWatch?: AbortSignal;
}

/**
 * Forwards one ordinary request over `target.tunnel`; streams the body both ways and never buffers
 * it. Resolves when the client's response has closed. Rejects (after answering the client with a
 * Status, or cutting a response already begun) when the agent does not answer within
 * RESPONSE_HEADERS_TIMEOUT_MS (504), drops the stream (502) or the tunnel is gone (503).
 */
export function forwardHttpRequest(target: ForwardTarget, req: IncomingMessage, res: ServerResponse, options: ForwardOptions = {}): Promise<void> {
  const hasBody = hasRequestBody(req.headers);
  const stream = openStream(hasBody ? target : { ...target, headers: withoutContentLength(target.headers) }, req.method ?? "GET", {}, !hasBody);
  if (hasBody) {
    req.pipe(stream);
    // After pipe(): the request already flows, so this listener takes no byte from the stream.
    if (options.observe) req.on("data", (chunk: Buffer) => options.observe!.bytesIn(chunk.length));
  }
  // A client gone in the middle of its body cancels the stream without ending it: the agent must
  // not take the part it got for the whole body.
  res.once("close", () => {
    if (!res.writableFinished) cancelStream(stream);
  });
  const method = req.method ?? "GET";
  // Listeners go on inside the 'response' event itself: Bun emits a body-less stream's 'end' and
  // 'close' right after 'response', before any promise continuation could attach them.
  return awaitResponse(target, stream, timeouts.RESPONSE_HEADERS_TIMEOUT_MS, (headers) => {
    const status = Number(headers[":status"]);
    res.writeHead(status, responseHeaders("relay-to-client", headers));
    res.flushHeaders();
    options.observe?.head(status);
    // The end is ours to decide: a stream that "ends" because its tunnel died (Bun ends every
    // stream of a destroyed session with NO_ERROR) must cut the client's response, never finish
    // it as if complete, whatever state its backpressure is in. A response that has no body by
    // definition (RFC 9110 6.4.1: HEAD, 204, 304) is complete whatever its Content-Length says.
    const bodiless = method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200);
    const declared = bodiless ? 0 : Number(headers["content-length"] ?? NaN);
    let forwarded = 0;
    let ended = false;
    const finish = () => {
      // Ended already on purpose (a watch ended at an event boundary, whose own cancel ends the
      // stream after it): a destroy now could cut what is still being flushed.
      if (ended || res.writableEnded) return;
      ended = true;
      // A reset after part of the answer ends the stream too (endedByPeer): cut, not complete.
      // Not `closed`: a tunnel closing gracefully (key rotation, a drain) still ends its streams for
      // real, and its chunked answers (logs, watches, long lists) were cut at their very end.
      const complete = endedByPeer(stream) && (Number.isFinite(declared) ? forwarded === declared : !target.tunnel.lost);
      if (complete) res.end();
      else res.destroy();
    };
    stream.on("data", (chunk: Buffer) => {
      forwarded += chunk.length;
      options.observe?.bytesOut(chunk.length);
    });
    stream.pipe(res, { end: false });
    // Registered after pipe's own listener, so the chunk is written first: once the declared length
    // is all there the response is complete, whenever the agent's END_STREAM (often a frame of its
    // own) is read. Waiting for it kept the request "in flight" after the client had it all and had
    // sent its next one: one user's 64 concurrent requests counted past 100.
    if (Number.isFinite(declared) && declared > 0) {
      stream.on("data", () => {
        if (forwarded !== declared || ended) return;
        stream.unpipe(res);
        finish();
      });
    }
    stream.once("end", finish);
    stream.once("error", () => res.destroy());
    // A reset stream emits only 'close'. (Bun may close a stream that ended cleanly before its
    // last bytes are read, so only a reset code counts here; a clean end comes through 'end'.)
    stream.once("close", () => {
      if (stream.rstCode !== undefined && stream.rstCode !== http2Constants.NGHTTP2_NO_ERROR && !res.writableEnded) res.destroy();
    });
    if (options.endWatch && isJsonContentType(headers["content-type"])) {
      endAtEventBoundary(stream, res, options.endWatch, () => cancelStream(stream));
    }
    return responseOver(res);
  }).catch((error: unknown) => {
    req.unpipe(stream);
    markNotForwarded(res, error);
    writeStatusResponse(res, error, target.requestId);
    throw error;
  });
}

/**
 * Forwards an HTTP/1.1 Upgrade (exec, attach, port-forward). The agent answers 200 with the API
 * server's real status in a header; on 101 the client socket and the stream are spliced, and the
 * promise resolves when both are closed. On a refusal the API server's answer is relayed as is.
 */
export function forwardUpgrade(target: ForwardTarget, req: IncomingMessage, socket: Duplex, head: Buffer, observe?: ForwardObserver): Promise<void> {
  const upgrade = String(req.headers["upgrade"] ?? "");
  // After an upgrade the stream carries the protocol's bytes, not a body: a `content-length: 0`
  // (kubectl's SPDY POST sends one) would make HTTP/2 reset the stream at the first byte.
  const stream = openStream({ ...target, headers: withoutContentLength(target.headers) }, req.method ?? "GET", { [protocol.UPGRADE_HEADER]: upgrade }, false);
  if (head.length > 0) stream.write(head);
  socket.once("close", () => cancelStream(stream));
  return awaitResponse(target, stream, timeouts.UPGRADE_TIMEOUT_MS, (headers) => {
    const upstreamStatus = Number(headers[protocol.UPGRADE_STATUS_HEADER] ?? headers[":status"]);
    // The request id goes back on an upgrade too: a failed exec is reported with it.
    const passed = { ...responseHeaders("relay-to-client", headers), [protocol.REQUEST_ID_HEADER]: target.requestId };
    observe?.head(upstreamStatus);
    if (upstreamStatus === 101) {
      socket.write(renderResponseHead(101, "Switching Protocols", { connection: "Upgrade", upgrade, ...passed }));
      if (observe) {
        // Passive listeners beside the splice's pipes: both sides flow already once spliced.
        const spliced = splice(socket, stream);
        socket.on("data", (chunk: Buffer) => observe.bytesIn(chunk.length));
        stream.on("data", (chunk: Buffer) => observe.bytesOut(chunk.length));
        return spliced;
      }
      return splice(socket, stream);
    }
    // The API server refused the upgrade: relay its answer and close, as it would have.
    socket.write(renderResponseHead(upstreamStatus, "Upgrade Refused", { ...passed, connection: "close" }));
    stream.pipe(socket);
    return new Promise<void>((resolve) => socket.once("close", () => resolve()));
  }).catch((error: unknown) => {
    writeStatusToSocket(socket, error, target.requestId);
    throw error;
  });
}

function openStream(target: ForwardTarget, method: string, extra: HeaderMap, endStream: boolean): TunnelRequestStream {
  if (target.tunnel.closed || target.tunnel.draining) {
    throw new AgentNotConnected(`cluster "${target.cluster}" is offline: its agent's tunnel just closed (request id ${target.requestId}); retry`);
  }
  const stream = target.tunnel.request(
    splitLongHeaders({ ":method": method, ":path": target.path, ...target.headers, ...extra, [protocol.REQUEST_ID_HEADER]: target.requestId }),
    { endStream },
  );
  // Failures surface through awaitResponse or the piping that follows; this listener only keeps a
  // late reset (after the caller already answered) from becoming an uncaught exception.
  stream.on("error", () => {});
  return stream;
}

/**
 * Waits for the agent's response head and hands it to `onResponse` synchronously, in the
 * 'response' event, so that no event of the stream can pass before its listeners exist. Rejects
 * with UpstreamTimeout after `timeoutMs` (ms) and BadGateway when the stream fails first.
 */
function awaitResponse<T>(target: ForwardTarget, stream: TunnelRequestStream, timeoutMs: number, onResponse: (headers: TunnelHeaders) => Promise<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cancelStream(stream);
      reject(new UpstreamTimeout(
        `the agent of cluster "${target.cluster}" did not answer within ${timeoutMs / 1000}s (request id ${target.requestId}); the API server may be overloaded`,
      ));
    }, timeoutMs);
    const fail = (cause?: unknown) => {
      clearTimeout(timer);
      // RFC 9113 8.7: a stream refused (the agent's GOAWAY crossed it) was not processed at all,
      // so it is the same as a tunnel that was not there: 503, safe to send again.
      if (stream.rstCode === http2Constants.NGHTTP2_REFUSED_STREAM) {
        reject(new AgentNotConnected(
          `the agent of cluster "${target.cluster}" is restarting and did not take the request (request id ${target.requestId}); retry`,
          { cause, retryAfterSeconds: 1 },
        ));
        return;
      }
      reject(new BadGateway(
        `the agent of cluster "${target.cluster}" dropped the request before answering (request id ${target.requestId}); retry, and check the agent's log if it persists`,
        { cause },
      ));
    };
    stream.once("response", (headers) => {
      clearTimeout(timer);
      stream.off("error", fail);
      stream.off("close", fail);
      let joined: TunnelHeaders;
      try {
        joined = joinLongHeaders(headers);
      } catch (cause) {
        stream.close(http2Constants.NGHTTP2_PROTOCOL_ERROR);
        reject(new BadGateway(`the agent of cluster "${target.cluster}" sent a malformed response (request id ${target.requestId})`, { cause }));
        return;
      }
      try {
        resolve(onResponse(joined));
      } catch (error) {
        reject(error);
      }
    });
    stream.once("error", fail);
    stream.once("close", fail);
  });
}
