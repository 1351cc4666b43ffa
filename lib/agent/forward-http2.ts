// One tunnel stream sent to the API server over HTTP/2 (an ordinary request: not an upgrade, not
// token mode), its answer streamed back.
import type { ClientHttp2Stream } from "node:http2";
import { ApiServerUnavailable, ArcError, UpstreamTimeout, isPeerHangup } from "../errors/index.ts";
import { endAtEventBoundary, isJsonContentType, isWatchRequest, responseHeaders, type HeaderMap } from "../http/index.ts";
import { http2Constants, splitLongHeaders, timeouts, type TunnelServerStream } from "../tunnel/index.ts";
import { Http2Unavailable, type ApiServerSessions } from "./api-server-sessions.ts";

export interface Http2ForwardTarget {
  cluster: string;
  requestId: string;
  method: string;
  path: string;
  /** apiServerRequestHeaders' output: lower-case, no hop-by-hop field. */
  headers: HeaderMap;
  /** Aborted when the agent stops: a JSON watch then ends at its next event boundary. */
  watchEnd?: AbortSignal;
}

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2Constants;

/**
 * Sends `target` to the API server on a stream of `sessions` and streams the answer back on
 * `stream`. Resolves when the answer has ended, or was cut: a response the API server (or its
 * connection) cut is cut on the tunnel too (the relay then cuts it for the client), never ended as
 * if complete. Rejects before anything was written to `stream`: Http2Unavailable (the API server
 * speaks no HTTP/2; send it over HTTP/1.1), ApiServerUnavailable (503), UpstreamTimeout (504, no
 * response head within RESPONSE_HEADERS_TIMEOUT_MS), or a peer hang-up of the tunnel stream.
 */
export async function forwardOverHttp2(sessions: ApiServerSessions, stream: TunnelServerStream, target: Http2ForwardTarget): Promise<void> {
  // REFUSED_STREAM says the API server did not process it at all (RFC 9113 8.7): a request
  // without a body, none of whose bytes were taken from the tunnel, is sent once more.
  if ((await sendOnce(sessions, stream, target)) === "done") return;
  if ((await sendOnce(sessions, stream, target)) === "done") return;
  throw unavailable(target, new Error("the API server refused the stream twice"));
}

function unavailable(target: Http2ForwardTarget, error: unknown): ApiServerUnavailable {
  return new ApiServerUnavailable(
    `the API server of cluster "${target.cluster}" could not be reached by the agent (request id ${target.requestId}): ` +
      `${(error as Error).message}; check that the API server is up, and the agent's --kubeconfig or in-cluster address`,
    { cause: error },
  );
}

/** Resolves "refused" when the API server refused a body-less request before answering; rejects as forwardOverHttp2. */
async function sendOnce(sessions: ApiServerSessions, stream: TunnelServerStream, target: Http2ForwardTarget): Promise<"done" | "refused"> {
  // END_STREAM on the tunnel's HEADERS: no body, so none is announced to the API server either.
  const endStream = stream.endAfterHeaders === true;
  let upstream: ClientHttp2Stream;
  try {
    upstream = await sessions.request({ ...target.headers, ":method": target.method, ":path": target.path }, { endStream });
  } catch (error) {
    throw error instanceof ArcError || error instanceof Http2Unavailable ? error : unavailable(target, error);
  }
  if (stream.destroyed || stream.closed) {
    upstream.close(NGHTTP2_CANCEL);
    return "done";
  }
  return new Promise<"done" | "refused">((resolve, reject) => {
    let answered = false;
    const timer = setTimeout(() => {
      upstream.close(NGHTTP2_CANCEL);
      reject(new UpstreamTimeout(
        `the API server of cluster "${target.cluster}" did not answer within ${timeouts.RESPONSE_HEADERS_TIMEOUT_MS / 1000}s (request id ${target.requestId})`,
      ));
    }, timeouts.RESPONSE_HEADERS_TIMEOUT_MS);
    const cancel = () => {
      if (!upstream.closed && !upstream.destroyed) upstream.close(NGHTTP2_CANCEL);
    };
    stream.once("close", cancel);
    upstream.once("error", (error) => {
      clearTimeout(timer);
      // A refusal, or a caller already gone: 'close', which follows, decides.
      if (answered || upstream.rstCode === NGHTTP2_REFUSED_STREAM || stream.destroyed || stream.closed) return;
      reject(isPeerHangup(error) ? error : unavailable(target, error));
    });
    upstream.once("close", () => {
      clearTimeout(timer);
      stream.off("close", cancel);
      if (!answered) {
        // The caller went away first (its cancel closed this stream): there is no one to answer.
        if (stream.destroyed || stream.closed) resolve("done");
        else if (upstream.rstCode === NGHTTP2_REFUSED_STREAM && endStream) resolve("refused");
        else reject(unavailable(target, new Error(`the stream closed before an answer (HTTP/2 code ${upstream.rstCode})`)));
        return;
      }
      // Ended already: a watch ended at an event boundary when the agent began to stop.
      if (stream.writableEnded) {
        resolve("done");
        return;
      }
      // A connection that died ends its streams with 'end' on Bun, but with a reset code: only a
      // stream read to its end without one is complete.
      if (upstream.readableEnded && (upstream.rstCode ?? NGHTTP2_NO_ERROR) === NGHTTP2_NO_ERROR) stream.end();
      // destroy(error), not close(code): Bun 1.4.5 sends END_STREAM for a close() after the head,
      // and the relay would end the user's response as if complete.
      else stream.destroy(new Error(`the API server cut the answer (HTTP/2 code ${upstream.rstCode}, request id ${target.requestId})`));
      resolve("done");
    });
    upstream.once("response", (headers) => {
      clearTimeout(timer);
      answered = true;
      // Long values (an echoed Audit-ID) go in pieces: one over Bun's HPACK limit would end the session.
      stream.respond(splitLongHeaders({ ":status": String(headers[":status"] ?? 502), ...responseHeaders("api-server-to-agent", headers) }));
      upstream.pipe(stream, { end: false });
      if (target.watchEnd && isWatchRequest(target.method, target.path) && isJsonContentType(headers["content-type"])) {
        endAtEventBoundary(upstream, stream, target.watchEnd, cancel);
      }
    });
    if (!endStream) stream.pipe(upstream);
  });
}
