// Keeps a JSON watch going for kubectl when the relay ends it (a drain, a restart, the API server's
// own watch timeout): arcproxy watches again from the last resourceVersion it passed on, so the
// client sees one unbroken watch and misses no event.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../observe/index.ts";
import { responseHeaders } from "../http/index.ts";

/** A GET with `watch=true` or `watch=1`, the form kubectl and client-go use. */
export function isWatchRequest(method: string | undefined, url: string): boolean {
  if (method !== "GET") return false;
  const query = url.split("?", 2)[1] ?? "";
  return /(^|&)watch=(true|1)(&|$)/.test(query);
}

/** `url` with its resourceVersion query parameter set to `resourceVersion`. */
export function withResourceVersion(url: string, resourceVersion: string): string {
  const [path, query = ""] = url.split("?", 2) as [string, string?];
  const params = new URLSearchParams(query);
  params.set("resourceVersion", resourceVersion);
  return `${path}?${params.toString()}`;
}

/**
 * The resourceVersion an event carries: the object's, or for a server-side printed Table (what
 * `kubectl get -w` asks for) its row's object. Undefined when the line is not such an event.
 */
export function eventResourceVersion(line: string): { type?: string; resourceVersion?: string } {
  try {
    const event = JSON.parse(line) as { type?: string; object?: { metadata?: { resourceVersion?: string }; rows?: { object?: { metadata?: { resourceVersion?: string } } }[] } };
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

/**
 * Streams a watch into `res`, line by line (each line one event), and opens it again from the last
 * event's resourceVersion when the relay ends it or the connection breaks. It stops, and ends
 * `res`, when the client goes away, the answer is not a JSON watch, an ERROR event was passed on
 * (the client decides what comes next, as client-go relists on 410 Gone), or no resourceVersion
 * is known to resume from. The first answer's status and headers are the client's.
 */
export async function streamResumableWatch(kubePath: string, res: ServerResponse, relay: WatchRelay, clientGone: AbortSignal): Promise<void> {
  let resourceVersion = new URLSearchParams(kubePath.split("?", 2)[1] ?? "").get("resourceVersion") || undefined;
  let path = kubePath;
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
    const outcome = await forwardEvents(answer, res, clientGone, (line) => {
      const event = eventResourceVersion(line);
      if (event.resourceVersion) resourceVersion = event.resourceVersion;
      return event.type;
    });
    if (outcome === "client-gone" || outcome === "error-event") break;
    if (!resourceVersion) {
      relay.logger.warn("the watch ended before any event told its resourceVersion; ending it for the client");
      break;
    }
    relay.logger.info("the relay ended the watch; watching again from the last event", { resourceVersion });
    path = withResourceVersion(kubePath, resourceVersion);
  }
  if (!res.writableEnded && !res.destroyed) res.end();
}

/**
 * Writes complete lines of `answer` to `res` with backpressure. A partial last line is written at a
 * clean end and dropped when the connection breaks (the resumed watch sends that event again).
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
      // A clean end: whatever the server sent last goes through, newline or not.
      if (pending) {
        if (onEvent(pending) === "ERROR") sawError = true;
        res.write(pending);
        pending = "";
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
