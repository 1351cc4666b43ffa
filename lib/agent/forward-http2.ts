// One tunnel stream sent to the API server over HTTP/2 (an ordinary request: not an upgrade, not
// token mode), its answer streamed back.
import type { ClientHttp2Stream } from "node:http2";
import { ApiServerUnavailable, ArcError, UpstreamTimeout } from "../errors/index.ts";
import { endAtEventBoundary, isJsonContentType, isWatchRequest, responseHeaders, type HeaderMap } from "../http/index.ts";
import { cancelStream, endedByPeer, http2Constants, splitLongHeaders, timeouts, type TunnelServerStream } from "../tunnel/index.ts";
import { Http2Unavailable, type ApiServerSessions, type SessionTls } from "./api-server-sessions.ts";

export interface Http2ForwardTarget {
  cluster: string;
  requestId: string;
  method: string;
  path: string;
  /** apiServerRequestHeaders' output: lower-case, no hop-by-hop field. */
  headers: HeaderMap;
  /** The agent's TLS material for the API server, as read for this request. */
  tls: SessionTls;
  /** Aborted when the agent stops: a JSON watch then ends at its next event boundary. */
  watchEnd?: AbortSignal;
}

const { NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2Constants;

/**
 * How much of a request body the agent keeps until the API server answers (bytes), so a request
 * the API server refused can be sent again: past most objects kubectl applies (a Deployment is a
 * few KiB), and at most this much more per request in flight.
 */
export const REPLAYABLE_BODY_BYTES = 64 * 1024;

/**
 * The most the agent keeps of all bodies together for sending again (bytes): 256 full copies.
 * Without it 2,000 requests in flight, each holding back a 64 KiB copy, would add 125 MiB to an
 * agent sized at 256 MiB (the attacker's review); past it a body is not kept, and is answered as
 * a larger one is if the API server refuses it (a 503 with Retry-After, which client-go resends).
 */
export const REPLAY_BUDGET_BYTES = 16 * 1024 * 1024;

/** Bytes of bodies kept for sending again, shared by every request of one agent. */
export class ReplayBudget {
  private used = 0;

  /** `limitBytes`: see REPLAY_BUDGET_BYTES. Throws TypeError for a negative or fractional size. */
  constructor(readonly limitBytes: number = REPLAY_BUDGET_BYTES) {
    if (!Number.isInteger(limitBytes) || limitBytes < 0) throw new TypeError(`the replay budget must be a whole number of bytes, not ${limitBytes}`);
  }

  /** Bytes kept right now, by all requests. */
  get usedBytes(): number {
    return this.used;
  }

  /** Takes `bytes` if they fit; false (and nothing taken) if they do not. */
  take(bytes: number): boolean {
    if (this.used + bytes > this.limitBytes) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}

/** What the agent reads and drops of a body the API server answered without reading (bytes), as Go's server does (256 KiB). */
const DISCARDED_BODY_BYTES = 256 * 1024;

/**
 * Sends `target` to the API server on a stream of `sessions` and streams the answer back on
 * `stream`. Resolves when the answer has ended, or was cut: a response the API server (or its
 * connection) cut is cut on the tunnel too (the relay then cuts it for the client), never ended as
 * if complete. A request the API server refused unprocessed (REFUSED_STREAM, as a GOAWAY refuses
 * the streams past its last one, RFC 9113 6.8 and 8.7) is sent once more on another session, its
 * body from the copy kept of its first REPLAYABLE_BODY_BYTES. Rejects before anything was written
 * to `stream`: Http2Unavailable (the API server speaks no HTTP/2; send it over HTTP/1.1; only before
 * any body byte was read), ApiServerUnavailable (503; with `Retry-After: 1` when the API server
 * refused the request unprocessed, so client-go sends it again), UpstreamTimeout (504, no response
 * head within RESPONSE_HEADERS_TIMEOUT_MS), or a peer hang-up of the tunnel stream.
 */
export async function forwardOverHttp2(
  sessions: ApiServerSessions, stream: TunnelServerStream, target: Http2ForwardTarget, budget: ReplayBudget = new ReplayBudget(),
): Promise<void> {
  // END_STREAM on the tunnel's HEADERS: no body, so none is announced to the API server either.
  const body = stream.endAfterHeaders === true ? undefined : new ReplayableBody(stream, REPLAYABLE_BODY_BYTES, budget);
  try {
    if ((await sendOnce(sessions, stream, target, body)) === "done") return;
    if (body && !body.replayable) {
      throw refused(target, body.overBudget
        ? "the agent is keeping as much of other requests' bodies as it may, to send them again"
        : `its body is over ${REPLAYABLE_BODY_BYTES / 1024} KiB, more than the agent keeps to send it again`);
    }
    try {
      if ((await sendOnce(sessions, stream, target, body)) === "done") return;
    } catch (error) {
      // The body's first bytes were read for the first try: HTTP/1.1 has nothing left to send.
      if (error instanceof Http2Unavailable && body) throw refused(target, error.message);
      throw error;
    }
    throw refused(target, "it was refused twice");
  } finally {
    body?.release();
  }
}

function unavailable(target: Http2ForwardTarget, error: unknown): ApiServerUnavailable {
  return new ApiServerUnavailable(
    `the API server of cluster "${target.cluster}" could not be reached by the agent (request id ${target.requestId}): ` +
      `${(error as Error).message}; check that the API server is up, and the agent's --kubeconfig or in-cluster address`,
    { cause: error },
  );
}

/** A 503 for a request the API server did not process: safe to send again, which `Retry-After` tells client-go. */
function refused(target: Http2ForwardTarget, why: string): ApiServerUnavailable {
  return new ApiServerUnavailable(
    `the API server of cluster "${target.cluster}" refused the request without processing it (HTTP/2 REFUSED_STREAM, as when it is ` +
      `going away; request id ${target.requestId}) and the agent could not send it again: ${why}; send it again`,
    { retryAfterSeconds: 1 },
  );
}

/**
 * A tunnel stream's request body on its way to the API server, with a copy of its first `limit`
 * bytes kept until the API server answers, so a refused request can be sent again whole. Reads the
 * tunnel stream once, from the first `sendTo`; backpressure follows the current API server stream.
 */
class ReplayableBody {
  private chunks: Buffer[] = [];
  private bytes = 0;
  /** Of `bytes`, what the budget gave: returned when the copy is dropped. */
  private taken = 0;
  private kept = true;
  /** The copy was dropped because the agent-wide budget was spent, not because of this body's size. */
  overBudget = false;
  private ended = false;
  private sink: ClientHttp2Stream | undefined;
  private reading = false;
  private discarding = false;
  private discarded = 0;
  private awaitingDrain = false;

  constructor(private readonly source: TunnelServerStream, private readonly limit: number, private readonly budget: ReplayBudget) {}

  /** Whether all of the body read so far is kept (false once past the limit, or once answered). */
  get replayable(): boolean {
    return this.kept;
  }

  /** Sends the body to `sink`: what was kept first, then the rest as it arrives; ends it at the body's end. */
  sendTo(sink: ClientHttp2Stream): void {
    this.sink = sink;
    this.awaitingDrain = false;
    for (const chunk of this.chunks) sink.write(chunk);
    if (this.ended) sink.end();
    if (!this.reading) {
      this.reading = true;
      this.source.on("data", (chunk: Buffer) => this.received(chunk));
      if (this.source.readableEnded) {
        // An empty body (a chunked request with nothing in it) can end while the first session
        // is still being dialled, before any listener was here to hear it.
        this.bodyEnded(sink);
      } else {
        this.source.once("end", () => this.bodyEnded(this.sink));
      }
    }
    this.source.resume();
  }

  /**
   * The tunnel stream's readable side ended. A caller that went away mid-body ends it too (after a
   * reset): the API server's stream is then cancelled when the tunnel stream closes, never ended.
   */
  private bodyEnded(sink: ClientHttp2Stream | undefined): void {
    if (!endedByPeer(this.source)) return;
    this.ended = true;
    sink?.end();
  }

  /**
   * The API server stream is over: nothing more goes to it, and nothing more is read until the
   * next one (sendTo). Reading on between a refusal and the next stream could pass the limit and
   * drop the copy, and the next stream would then get the body without its start.
   */
  detach(sink: ClientHttp2Stream): void {
    if (this.sink !== sink) return;
    this.sink = undefined;
    this.source.pause();
  }

  /**
   * The API server is done with the request: up to DISCARDED_BODY_BYTES more of the body is read
   * and dropped (a small remainder ends the stream cleanly); past that the tunnel stream is closed
   * with NO_ERROR, which after a complete answer asks the caller to stop sending (RFC 9113 8.1).
   */
  discardRest(): void {
    this.release();
    this.sink = undefined;
    this.discarding = true;
    this.source.resume();
  }

  /** The API server answered (or the request is over): the copy is not needed any more. Idempotent. */
  release(): void {
    this.kept = false;
    this.chunks = [];
    this.budget.give(this.taken);
    this.taken = 0;
  }

  private received(chunk: Buffer): void {
    if (this.discarding) {
      this.discarded += chunk.length;
      if (this.discarded > DISCARDED_BODY_BYTES && !this.source.closed) this.source.close(NGHTTP2_NO_ERROR);
      return;
    }
    if (this.kept) {
      this.bytes += chunk.length;
      if (this.bytes > this.limit) this.release();
      else if (!this.budget.take(chunk.length)) {
        this.overBudget = true;
        this.release();
      } else {
        this.taken += chunk.length;
        this.chunks.push(chunk);
      }
    }
    const sink = this.sink;
    if (!sink) {
      // A chunk emitted as the stream was detached: kept above if it fit (else the copy is gone and
      // the request is not sent again); nothing more is read until sendTo.
      this.source.pause();
      return;
    }
    if (!sink.write(chunk) && !this.awaitingDrain) {
      // One 'drain' wait at a time: chunks already emitted may still arrive after pause().
      this.awaitingDrain = true;
      this.source.pause();
      sink.once("drain", () => {
        this.awaitingDrain = false;
        if (this.sink === sink) this.source.resume();
      });
    }
  }
}

/** Cancels a stream to the API server (RST_STREAM CANCEL; a body not yet sent whole is never ended first). */
function cancelUpstream(upstream: ClientHttp2Stream): void {
  if (!upstream.closed) cancelStream(upstream);
}

/** Resolves "refused" when the API server refused the request before answering; rejects as forwardOverHttp2. */
async function sendOnce(sessions: ApiServerSessions, stream: TunnelServerStream, target: Http2ForwardTarget, body: ReplayableBody | undefined): Promise<"done" | "refused"> {
  // The caller may have gone while a refused request waited for its next try.
  if (stream.destroyed || stream.closed) return "done";
  let upstream: ClientHttp2Stream;
  try {
    upstream = await sessions.request({ ...target.headers, ":method": target.method, ":path": target.path }, { endStream: body === undefined, tls: target.tls });
  } catch (error) {
    throw error instanceof ArcError || error instanceof Http2Unavailable ? error : unavailable(target, error);
  }
  if (stream.destroyed || stream.closed) {
    cancelUpstream(upstream);
    return "done";
  }
  return new Promise<"done" | "refused">((resolve, reject) => {
    let answered = false;
    const timer = setTimeout(() => {
      cancelUpstream(upstream);
      reject(new UpstreamTimeout(
        `the API server of cluster "${target.cluster}" did not answer within ${timeouts.RESPONSE_HEADERS_TIMEOUT_MS / 1000}s (request id ${target.requestId})`,
      ));
    }, timeouts.RESPONSE_HEADERS_TIMEOUT_MS);
    const cancel = () => cancelUpstream(upstream);
    stream.once("close", cancel);
    upstream.once("error", (error) => {
      clearTimeout(timer);
      // A refusal, or a caller already gone: 'close', which follows, decides.
      if (answered || upstream.rstCode === NGHTTP2_REFUSED_STREAM || stream.destroyed || stream.closed) return;
      // The caller being gone returned above: any error left is the API server's (a reset, a dead session).
      reject(unavailable(target, error));
    });
    upstream.once("close", () => {
      clearTimeout(timer);
      body?.detach(upstream);
      stream.off("close", cancel);
      if (!answered) {
        // The caller went away first (its cancel closed this stream): there is no one to answer.
        if (stream.destroyed || stream.closed) resolve("done");
        else if (upstream.rstCode === NGHTTP2_REFUSED_STREAM) resolve("refused");
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
      if (upstream.readableEnded && (upstream.rstCode ?? NGHTTP2_NO_ERROR) === NGHTTP2_NO_ERROR) {
        stream.end();
        // Answered before the whole body was read (a 413, a 403): the rest is read and dropped, so
        // the tunnel stream finishes instead of holding a stream slot until the caller gives up.
        body?.discardRest();
      }
      // destroy(error), not close(code): Bun 1.4.5 sends END_STREAM for a close() after the head,
      // and the relay would end the user's response as if complete.
      else stream.destroy(new Error(`the API server cut the answer (HTTP/2 code ${upstream.rstCode}, request id ${target.requestId})`));
      resolve("done");
    });
    upstream.once("response", (headers) => {
      clearTimeout(timer);
      answered = true;
      body?.release();
      // Long values (an echoed Audit-ID) go in pieces: one over Bun's HPACK limit would end the session.
      stream.respond(splitLongHeaders({ ":status": String(headers[":status"] ?? 502), ...responseHeaders("api-server-to-agent", headers) }));
      upstream.pipe(stream, { end: false });
      if (target.watchEnd && isWatchRequest(target.method, target.path) && isJsonContentType(headers["content-type"])) {
        endAtEventBoundary(upstream, stream, target.watchEnd, cancel);
      }
    });
    body?.sendTo(upstream);
  });
}
