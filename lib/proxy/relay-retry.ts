// Sends a request to the relay again while the relay restarts, when that is safe: the request never
// reached the cluster, or sending it twice changes nothing.
import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import type { Logger } from "../observe/index.ts";
import { hasRequestBody } from "../http/index.ts";
import { RelayUnreachable, type RelayConnection } from "../client/index.ts";
import { protocol } from "../tunnel/index.ts";
import { sendToRelay, type ClusterRequest } from "./relay-request.ts";
import { RELAY_RETRY_WINDOW_MS } from "./timeouts.ts";

/** Bodies up to this size are kept in memory so the request can be sent again. */
export const MAX_REPLAY_BODY_BYTES = 3 * 1024 * 1024;
// Sent again after a connection broke mid-request only when doing it twice cannot change the answer:
// a PUT or DELETE that the relay did forward would come back 409 or 404 the second time, turning
// the user's success into a failure (RFC 9110 9.2.1 safe methods, not 9.2.2 idempotent ones).
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);
const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 2_000;

/**
 * Reads the request body into one Buffer when it is at most MAX_REPLAY_BODY_BYTES (replayable),
 * else returns a stream that yields what was read and then the rest (sent once).
 */
export async function readReplayableBody(req: IncomingMessage): Promise<Buffer | Readable | undefined> {
  if (!hasRequestBody(req.headers)) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  const iterator = req[Symbol.asyncIterator]();
  for (;;) {
    const { value, done } = await iterator.next();
    if (done) return Buffer.concat(chunks);
    chunks.push(value as Buffer);
    size += (value as Buffer).length;
    if (size > MAX_REPLAY_BODY_BYTES) {
      return Readable.from((async function* rest() {
        yield* chunks;
        for (;;) {
          const next = await iterator.next();
          if (next.done) return;
          yield next.value as Buffer;
        }
      })());
    }
  }
}

/**
 * What one arcproxy remembers between its requests to one cluster: when a retry window last ran
 * out without an answer. kubectl's commands are strings of requests (discovery, then the call);
 * each waiting the whole window for an offline cluster made one `kubectl get pods` take minutes.
 * While a window ran out less than a window ago, a request is sent once, not retried; an answer
 * that is not the relay's refusal forgets it.
 */
export class RetryMemo {
  private gaveUpAt = Number.NEGATIVE_INFINITY;

  /** Whether to retry now, for a window of `windowMs` (ms). */
  mayRetry(windowMs: number, now = performance.now()): boolean {
    return now - this.gaveUpAt >= windowMs;
  }

  gaveUp(now = performance.now()): void {
    this.gaveUpAt = now;
  }

  answered(): void {
    this.gaveUpAt = Number.NEGATIVE_INFINITY;
  }
}

/**
 * Sends `request` (built anew by `build` for each attempt, so a refreshed token is used) and
 * retries, for up to `retryWindowMs` (default RELAY_RETRY_WINDOW_MS, 30 s: a relay restart), while it is safe:
 * - the relay refused the connection (it cannot have seen the request);
 * - the relay answered 503 with Retry-After and x-arc-not-forwarded (it is draining, or the agent is
 *   reconnecting, and forwarded nothing), after about that delay;
 * - the connection broke before an answer and the method is safe (GET, HEAD, OPTIONS).
 * A body sent as a stream is never retried. With `memo` (one per arcproxy and cluster), a request
 * made soon after another ran out its window is sent once (RetryMemo). Resolves with the final
 * answer; rejects with the last failure once the window is over or the client has gone (`signal`).
 */
export async function sendWithRetry(
  conn: RelayConnection,
  cluster: string,
  build: () => Promise<ClusterRequest>,
  signal: AbortSignal,
  logger: Logger,
  retryWindowMs = RELAY_RETRY_WINDOW_MS,
  memo?: RetryMemo,
): Promise<IncomingMessage> {
  const retrying = memo?.mayRetry(retryWindowMs) ?? true;
  const deadline = retrying ? performance.now() + retryWindowMs : performance.now();
  // Gave up only when there was a window to give up on: a request sent once leaves the memo as it is.
  const gaveUp = () => { if (retrying && retryWindowMs > 0) memo?.gaveUp(); };
  for (let attempt = 0; ; attempt++) {
    const request = await build();
    const replayable = !(request.body instanceof Readable);
    let waitMs: number;
    try {
      const answer = await sendToRelay(conn, cluster, request, signal);
      const retryAfter = Number(answer.headers["retry-after"]);
      // Only the relay's own refusal, which reached nothing beyond it, is sent again: an API
      // server's (or an aggregated API's) 503 may come after the request did something.
      const notForwarded = answer.headers[protocol.NOT_FORWARDED_HEADER] === "true";
      if (answer.statusCode !== 503 || !notForwarded || !Number.isFinite(retryAfter) || !replayable) {
        if (!(answer.statusCode === 503 && notForwarded)) memo?.answered();
        return answer;
      }
      // Jittered, so the arcproxies of a whole team do not come back in the same instant.
      waitMs = Math.max(FIRST_BACKOFF_MS, Math.min(retryAfter * 1000, MAX_BACKOFF_MS * 2)) * (0.75 + Math.random() * 0.5);
      if (performance.now() + waitMs > deadline || signal.aborted) {
        if (!signal.aborted) gaveUp();
        return answer;
      }
      answer.resume(); // this answer is replaced by the retry's
      logger.info("relay is draining; sending the request again", { method: request.method, attempt, waitMs });
    } catch (error) {
      const safe = replayable && error instanceof RelayUnreachable && (error.neverSent || (error.broken && SAFE.has(request.method)));
      waitMs = Math.random() * Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** attempt);
      if (!safe || performance.now() + waitMs > deadline || signal.aborted) {
        if (safe && !signal.aborted) gaveUp();
        throw error;
      }
      logger.info("relay not reachable; sending the request again", { method: request.method, attempt, waitMs: Math.round(waitMs), error });
    }
    await abortableSleep(waitMs, signal);
  }
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
