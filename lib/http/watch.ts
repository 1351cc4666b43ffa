// Kubernetes watches as a hop sees them: which requests are watches, and how one is ended cleanly.
import type { Readable, Writable } from "node:stream";

/**
 * A watch: GET with `watch=true` or `watch=1` (what kubectl and client-go send), or a legacy
 * `/watch/` path (k8s.io/apiserver: both are served as watches).
 */
export function isWatchRequest(method: string | undefined, target: string): boolean {
  if ((method ?? "GET") !== "GET") return false;
  const [path = "", query = ""] = target.split("?", 2);
  return /(^|&)watch=(true|1)(&|$)/.test(query) || /\/watch\//.test(path);
}

/** JSON watch events come one per line, so a JSON answer can be ended between two events. */
export function isJsonContentType(value: string | string[] | number | undefined): boolean {
  return String(Array.isArray(value) ? value[0] : value ?? "").startsWith("application/json");
}

/** The most of one event still in flight that is passed on before the watch ends (16 MiB). */
const MAX_EVENT_TAIL_BYTES = 16 * 1024 * 1024;

/**
 * When `signal` aborts, ends `dest` cleanly right after the JSON watch event in flight (the API
 * server writes one per line, so a client sees an ordinary end of watch and watches again) and
 * calls `cancelSource`; until then bytes pass through `source.pipe(dest)` untouched. The caller
 * pipes `source` into `dest` itself.
 */
export function endAtEventBoundary(source: Readable, dest: Writable, signal: AbortSignal, cancelSource: () => void): void {
  let atBoundary = true;
  const track = (chunk: Buffer) => {
    if (chunk.length > 0) atBoundary = chunk[chunk.length - 1] === 0x0a;
  };
  source.on("data", track);
  const end = () => {
    cancelSource();
    if (!dest.writableEnded) dest.end();
  };
  const onAbort = () => {
    source.unpipe(dest);
    source.off("data", track);
    if (atBoundary) {
      end();
      return;
    }
    // The rest of the event in flight goes out, up to its newline; nothing after it. Backpressure
    // still holds (the pipe that did it is gone), and an "event" longer than any real one is cut.
    let left = MAX_EVENT_TAIL_BYTES;
    const finishEvent = (chunk: Buffer) => {
      const newline = chunk.indexOf(0x0a);
      if (newline === -1) {
        left -= chunk.length;
        if (left < 0) {
          source.off("data", finishEvent);
          cancelSource();
          dest.destroy();
          return;
        }
        if (!dest.write(chunk)) {
          source.pause();
          dest.once("drain", () => source.resume());
        }
        return;
      }
      source.off("data", finishEvent);
      dest.write(chunk.subarray(0, newline + 1));
      end();
    };
    source.on("data", finishEvent);
    source.resume(); // unpipe() paused it
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  dest.once("close", () => signal.removeEventListener("abort", onAbort));
}
