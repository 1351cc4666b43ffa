// Joins two byte streams both ways until either side closes, then closes the other.
import type { Duplex } from "node:stream";

/**
 * Pipes `a` into `b` and `b` into `a` with backpressure. A clean end of one direction ends the
 * other side's writable half (exec's stdin EOF); an error or close on either side destroys both,
 * so no socket is left hanging. Resolves when both are closed.
 */
export function splice(a: Duplex, b: Duplex): Promise<void> {
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
  a.once("close", () => b.destroy());
  b.once("close", () => a.destroy());
  return Promise.all([closed(a), closed(b)]).then(() => undefined);
}
