// When a server response is over, for counting what is in flight.
import type { ServerResponse } from "node:http";

/**
 * Calls `fn` once, when `res` has been completely handed to the socket ('finish') or was cut
 * ('close'), whichever comes first. Bun 1.4.5 emits a keep-alive response's 'close' late, after
 * the client's next request on that connection has begun: counted on 'close' alone, a relay saw 86
 * requests in flight from a client that had 64 (and refused the user with 429 at 100).
 */
export function onResponseOver(res: ServerResponse, fn: () => void): void {
  let called = false;
  const once = () => {
    if (called) return;
    called = true;
    res.off("finish", once);
    res.off("close", once);
    fn();
  };
  if (res.writableFinished || res.closed) return once();
  res.once("finish", once);
  res.once("close", once);
}

/** onResponseOver as a promise. */
export function responseOver(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => onResponseOver(res, resolve));
}
