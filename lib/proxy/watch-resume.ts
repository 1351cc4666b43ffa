// Keeps a JSON watch going for kubectl when the relay ends it (a drain, a restart, the API server's
// own watch timeout): arcproxy watches again from the last resourceVersion it passed on, so the
// client sees one unbroken watch and misses no event.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../observe/index.ts";
import { responseHeaders } from "../http/index.ts";

/**
 * The query of a watch sent again from `resourceVersion`: the initial-events options are dropped
 * (the client has had its initial state) and `timeoutSeconds` carries only what is left of the
 * client's own (undefined when none is left: the watch ends as the client asked).
 */
export function resumeQuery(url: string, resourceVersion: string, secondsLeft?: number): string | undefined {
  const [path, query = ""] = url.split("?", 2) as [string, string?];
  const params = new URLSearchParams(query);
  params.set("resourceVersion", resourceVersion);
  params.delete("sendInitialEvents");
  params.delete("resourceVersionMatch");
  if (secondsLeft !== undefined) {
    if (secondsLeft < 1) return undefined;
    params.set("timeoutSeconds", String(Math.floor(secondsLeft)));
  }
  return `${path}?${params.toString()}`;
}

interface WatchEvent {
  type?: string;
  resourceVersion?: string;
}

/**
 * The type and resourceVersion of an event line: the object's, or for a server-side printed Table
 * (what `kubectl get -w` asks for) its row's object. Empty when the line is not such an event.
 */
export function parseWatchEvent(line: string): WatchEvent {
  try {
    const event = JSON.parse(line) as {
      type?: string;
      object?: { metadata?: { resourceVersion?: string }; rows?: { object?: { metadata?: { resourceVersion?: string } } }[] };
    };
    const fromRow = event.object?.rows?.at(-1)?.object?.metadata?.resourceVersion;
    return { type: event.type, resourceVersion: fromRow ?? event.object?.metadata?.resourceVersion };
  } catch {
    return {};
  }
}

export interface WatchRelay {
  /** Sends the watch (path and query as given) and resolves with the relay's answer. */
  open(kubePath: string): Promise<IncomingMessage>;
  logger: Logger;
}

/** Waits between resumes: the first at once, then full jitter up to 250 ms, doubling to 5 s. */
const RESUME_BACKOFF_FIRST_MS = 250;
const RESUME_BACKOFF_MAX_MS = 5_000;
/** A watch that ends this many times in a row without passing on an event is ended for the client. */
const MAX_RESUMES_WITHOUT_EVENTS = 3;

/**
 * Streams a watch into `res`, line by line (each line one event), and opens it again when the relay
 * ends it or the connection breaks, from the last resourceVersion known to be safe to resume from:
 * - with a non-"0" resourceVersion asked by the client (kubectl get -w), the last event's;
 * - otherwise (initial events of resourceVersion "" or "0", or sendInitialEvents=true, which come
 *   in any order) only once a BOOKMARK has marked a point in the stream.
 * It backs off between resumes (up to 5 s) and gives up after MAX_RESUMES_WITHOUT_EVENTS in a row
 * without an event; a client's `timeoutSeconds` is kept as a deadline over all resumes. It stops,
 * and ends `res`, when the client goes away, the answer is not a JSON watch, an ERROR event was
 * passed on (the client decides what comes next, as client-go relists on 410 Gone), or no safe
 * resourceVersion is known. The first answer's status and headers are the client's.
 */
export async function streamResumableWatch(kubePath: string, res: ServerResponse, relay: WatchRelay, clientGone: AbortSignal): Promise<void> {
  const params = new URLSearchParams(kubePath.split("?", 2)[1] ?? "");
  const asked = params.get("resourceVersion") ?? "";
  const timeoutSeconds = Number(params.get("timeoutSeconds") ?? NaN);
  const deadline = Number.isFinite(timeoutSeconds) && timeoutSeconds > 0 ? Date.now() + timeoutSeconds * 1000 : undefined;
  // Events before a bookmark may arrive in any resourceVersion order: not a point to resume from.
  let ordered = asked !== "" && asked !== "0" && params.get("sendInitialEvents") !== "true";
  let resumeFrom = ordered ? asked : undefined;
  let path = kubePath;
  let idleResumes = 0;
  for (let opened = 0; !clientGone.aborted; opened++) {
    let answer: IncomingMessage;
    try {
      answer = await relay.open(path);
    } catch (error) {
      if (opened === 0) throw error;
      relay.logger.warn("could not resume the watch; ending it for the client", { error });
      break;
    }
    if (opened === 0) {
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, responseHeaders("arcproxy-to-client", answer.rawHeaders));
      res.flushHeaders();
    }
    if (answer.statusCode !== 200 || !String(answer.headers["content-type"] ?? "").startsWith("application/json")) {
      // Not a JSON watch (an error, or protobuf): passed through as is, and not resumed.
      if (opened === 0) await pipeWhole(answer, res);
      else answer.resume();
      break;
    }
    let events = 0;
    const outcome = await forwardEvents(answer, res, clientGone, (line) => {
      const event = parseWatchEvent(line);
      events++;
      // A bookmark marks a point in the stream (after sendInitialEvents, the end of the initial
      // events, KEP-3157); every event after it comes in resourceVersion order.
      if (event.type === "BOOKMARK") ordered = true;
      if (ordered && event.resourceVersion) resumeFrom = event.resourceVersion;
      return event.type;
    });
    if (outcome === "client-gone" || outcome === "error-event") break;
    idleResumes = events > 0 ? 0 : idleResumes + 1;
    if (idleResumes >= MAX_RESUMES_WITHOUT_EVENTS) {
      relay.logger.warn("the watch keeps ending without events; ending it for the client", { resumes: idleResumes });
      break;
    }
    if (!resumeFrom) {
      relay.logger.warn("the watch ended before a resourceVersion safe to resume from was known; ending it for the client");
      break;
    }
    const next = resumeQuery(kubePath, resumeFrom, deadline === undefined ? undefined : (deadline - Date.now()) / 1000);
    if (!next) break; // the client's own timeoutSeconds is over
    path = next;
    const waitMs = idleResumes === 0 ? 0 : Math.random() * Math.min(RESUME_BACKOFF_MAX_MS, RESUME_BACKOFF_FIRST_MS * 2 ** (idleResumes - 1));
    relay.logger.info("the relay ended the watch; watching again from the last event", { resourceVersion: resumeFrom, waitMs: Math.round(waitMs) });
    if (waitMs > 0 && !(await abortableWait(waitMs, clientGone))) break;
  }
  if (!res.writableEnded && !res.destroyed) res.end();
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function abortableWait(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { signal.removeEventListener("abort", onAbort); resolve(true); }, ms);
    const onAbort = () => { clearTimeout(timer); resolve(false); };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Writes complete lines of `answer` to `res` with backpressure. A last line without its newline
 * is written only if it is a whole JSON value: half an event is never passed on.
 */
function forwardEvents(
  answer: IncomingMessage,
  res: ServerResponse,
  clientGone: AbortSignal,
  onEvent: (line: string) => string | undefined,
): Promise<"ended" | "client-gone" | "error-event"> {
  return new Promise((resolve) => {
    let pending = "";
    let sawError = false;
    const finish = (how: "ended" | "client-gone" | "error-event") => {
      answer.removeAllListeners("data");
      clientGone.removeEventListener("abort", onGone);
      resolve(how);
    };
    const onGone = () => {
      answer.destroy();
      finish("client-gone");
    };
    clientGone.addEventListener("abort", onGone, { once: true });
    answer.setEncoding("utf8");
    answer.on("data", (chunk: string) => {
      pending += chunk;
      let newline: number;
      let out = "";
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline + 1);
        pending = pending.slice(newline + 1);
        if (onEvent(line) === "ERROR") sawError = true;
        out += line;
      }
      if (out && !res.write(out)) {
        answer.pause();
        res.once("drain", () => answer.resume());
      }
    });
    answer.once("end", () => {
      // A clean end after a whole event without its newline passes it on; half an event (the
      // connection was cut inside it) never does: the resumed watch sends that event again.
      if (pending && isWholeJson(pending)) {
        if (onEvent(pending) === "ERROR") sawError = true;
        res.write(pending);
      }
      finish(sawError ? "error-event" : "ended");
    });
    answer.once("error", () => finish(sawError ? "error-event" : "ended"));
    answer.once("aborted", () => finish(sawError ? "error-event" : "ended"));
  });
}

function pipeWhole(answer: IncomingMessage, res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    answer.pipe(res);
    answer.once("end", () => resolve());
    answer.once("error", () => { res.destroy(); resolve(); });
    res.once("close", () => resolve());
  });
}

function isWholeJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
