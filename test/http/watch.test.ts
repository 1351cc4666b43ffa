// Ending a JSON watch between two events, and what a hop holds while it waits for the boundary.
import { describe, expect, test } from "bun:test";
import { PassThrough, Writable } from "node:stream";
import { endAtEventBoundary, isWatchRequest } from "../../lib/http/index.ts";

describe("isWatchRequest", () => {
  test.each([
    ["GET", "/api/v1/pods?watch=true", true],
    ["GET", "/api/v1/pods?labelSelector=a&watch=1", true],
    ["GET", "/api/v1/watch/pods", true],
    ["GET", "/api/v1/pods?watch=false", false],
    ["POST", "/api/v1/pods?watch=true", false],
    ["GET", "/api/v1/pods", false],
  ] as const)("%s %s: %p", (method, target, expected) => {
    expect(isWatchRequest(method, target)).toBe(expected);
  });
});

/** A destination that takes what it is given and records it. */
function sink(highWaterMark = 16 * 1024) {
  const chunks: Buffer[] = [];
  const dest = new Writable({ highWaterMark, write(chunk: Buffer, _enc, done) { chunks.push(chunk); done(); } });
  return { dest, text: () => Buffer.concat(chunks).toString() };
}

describe("endAtEventBoundary", () => {
  test("between two events: the watch ends at once, the source is cancelled", async () => {
    const source = new PassThrough();
    const { dest, text } = sink();
    const stop = new AbortController();
    let cancelled = false;
    source.pipe(dest);
    endAtEventBoundary(source, dest, stop.signal, () => { cancelled = true; });
    source.write('{"type":"ADDED"}\n');
    await new Promise((resolve) => setImmediate(resolve));
    stop.abort();
    await new Promise((resolve) => dest.once("finish", resolve));
    expect(text()).toBe('{"type":"ADDED"}\n');
    expect(cancelled).toBe(true);
  });

  test("inside an event: the rest of it goes out, up to its newline, and nothing after", async () => {
    const source = new PassThrough();
    const { dest, text } = sink();
    const stop = new AbortController();
    source.pipe(dest);
    endAtEventBoundary(source, dest, stop.signal, () => source.destroy());
    source.write('{"type":"ADD');
    await new Promise((resolve) => setImmediate(resolve));
    stop.abort();
    source.write('ED"}\n{"type":"MODIFIED"}\n');
    await new Promise((resolve) => dest.once("finish", resolve));
    expect(text()).toBe('{"type":"ADDED"}\n');
  });

  test("an 'event' that never ends is cut after 16 MiB, never buffered without bound", async () => {
    const source = new PassThrough();
    const { dest } = sink();
    const stop = new AbortController();
    source.pipe(dest);
    endAtEventBoundary(source, dest, stop.signal, () => source.destroy());
    source.write("{");
    await new Promise((resolve) => setImmediate(resolve));
    stop.abort();
    const closed = new Promise((resolve) => dest.once("close", resolve));
    const piece = Buffer.alloc(1024 * 1024, 0x61);
    for (let i = 0; i < 20 && !source.destroyed; i++) {
      source.write(piece);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await closed;
    expect(dest.destroyed).toBe(true);
    expect(source.destroyed).toBe(true);
  });
});
