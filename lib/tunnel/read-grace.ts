// A closed tunnel's byte stream, destroyed once HTTP/2 has read what arrived last.
import type { Duplex } from "node:stream";
import { CLOSE_READ_GRACE_MS } from "./timeouts.ts";

/**
 * For a stream whose socket closed and whose readable side is ended (null pushed): destroys it
 * now if nothing is left to read, else once its reader has taken the rest ('end'), or after
 * CLOSE_READ_GRACE_MS. HTTP/2 (Bun's node:http2) waits for the stream's 'close', so without this a
 * dead tunnel never ends; with it, a response's final frames are not lost.
 */
export function destroyOnceRead(stream: Duplex): void {
  if (stream.readableLength === 0) {
    stream.destroy();
    return;
  }
  const grace = setTimeout(() => stream.destroy(), CLOSE_READ_GRACE_MS);
  grace.unref?.();
  stream.once("end", () => {
    clearTimeout(grace);
    stream.destroy();
  });
}
