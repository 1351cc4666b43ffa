// Joins two byte streams both ways until either side closes, then closes the other.
import type { Duplex } from "node:stream";
import { SPLICE_FLUSH_TIMEOUT_MS } from "./timeouts.ts";

/**
 * Pipes `a` into `b` and `b` into `a` with backpressure, and resolves when both are closed.
 *
 * - A clean end of one direction ends the other side's writable half (exec's stdin EOF), and the
 *   other direction goes on.
 * - A side that closes after a clean end (the API server writes the last of a tar and hangs up)
 *   leaves the other side to flush what it still buffers, then closes it; a reader that never
 *   takes those bytes is cut after `flushTimeoutMs` (default SPLICE_FLUSH_TIMEOUT_MS).
 * - An error, or a close without a clean end, destroys both at once, so no socket is left hanging.
 */
export function splice(a: Duplex, b: Duplex, flushTimeoutMs = SPLICE_FLUSH_TIMEOUT_MS): Promise<void> {
  a.pipe(b);
  b.pipe(a);
  const closed = (s: Duplex) => new Promise<void>((resolve) => {
    if (s.destroyed) resolve();
    else s.once("close", () => resolve());
  });
  const destroyBoth = () => {
    a.destroy();
    b.destroy();
  };
  a.once("error", destroyBoth);
  b.once("error", destroyBoth);
  a.once("close", () => closeAfter(a, b, flushTimeoutMs));
  b.once("close", () => closeAfter(b, a, flushTimeoutMs));
  return Promise.all([closed(a), closed(b)]).then(() => undefined);
}

/** `gone` closed: close `other` now, or once it has written what `gone` sent before a clean end. */
function closeAfter(gone: Duplex, other: Duplex, flushTimeoutMs: number): void {
  if (other.destroyed) return;
  if (!gone.readableEnded || other.writableFinished) {
    other.destroy();
    return;
  }
  // pipe() has called other.end(): 'finish' means the last byte left for the reader.
  const timer = setTimeout(() => other.destroy(), flushTimeoutMs);
  timer.unref?.();
  other.once("finish", () => {
    clearTimeout(timer);
    other.destroy();
  });
  other.once("close", () => clearTimeout(timer));
}
