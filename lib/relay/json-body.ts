// The one reader of JSON request bodies: a byte cap on the stream itself, then exactly one JSON object.
import type { Context } from "hono";
import { BadRequest, PayloadTooLarge } from "../errors/index.ts";

/** Every JSON body the relay takes (enrollment, key rotation, admin) is a few hundred bytes. */
export const DEFAULT_MAX_JSON_BODY_BYTES = 16 * 1024;

export interface JsonBodyOptions {
  /** The request, for messages: e.g. "the enrollment request (POST /v1/agent/enroll)". */
  what: string;
  /** The object the route expects, for messages: e.g. `{"cluster", "token", "publicKey"}`. */
  expected: string;
  /** Cap in bytes (default DEFAULT_MAX_JSON_BODY_BYTES); reading stops at the first byte past it. */
  maxBytes?: number;
  /** An empty body reads as `{}`, for routes whose fields are all optional (default: refused). */
  emptyIsObject?: boolean;
}

/**
 * Reads the body of `source` (a hono Context or a Request) as a JSON object.
 *
 * Throws PayloadTooLarge (413, RequestEntityTooLarge) when Content-Length declares more than
 * `maxBytes` or the stream brings more (a chunked body has no Content-Length, and a declared
 * length is not trusted alone); BadRequest (400) naming `what` and `expected` when the body is
 * empty, not UTF-8, not JSON, or JSON but not an object; TypeError when the body was already read
 * (a caller mistake).
 */
export async function readJsonBody(source: Context | Request, opts: JsonBodyOptions): Promise<Record<string, unknown>> {
  const request = "req" in source ? source.req.raw : source;
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_JSON_BODY_BYTES;
  const tooLarge = () =>
    new PayloadTooLarge(`the body of ${opts.what} is larger than ${maxBytes} bytes; send at most ${maxBytes} bytes of JSON, ${opts.expected}`);
  const declared = request.headers.get("content-length")?.trim();
  if (declared && /^\d+$/.test(declared) && Number(declared) > maxBytes) throw tooLarge();
  if (request.bodyUsed) throw new TypeError(`readJsonBody: the body of ${opts.what} was already read`);

  const bytes = await readCapped(request.body, maxBytes, tooLarge, opts.what);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (cause) {
    throw new BadRequest(`the body of ${opts.what} must be JSON in UTF-8: ${opts.expected}`, { cause });
  }
  if (text.trim() === "") {
    if (opts.emptyIsObject) return {};
    throw new BadRequest(`the body of ${opts.what} is empty: send a JSON object, ${opts.expected}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    // The parser's message quotes the body, which may hold a secret (an enrollment token): not repeated.
    throw new BadRequest(`the body of ${opts.what} must be JSON: a JSON object, ${opts.expected}`, { cause });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    const kind = value === null ? "null" : Array.isArray(value) ? "an array" : `a ${typeof value}`;
    throw new BadRequest(`the body of ${opts.what} must be a JSON object, ${opts.expected}, not ${kind}`);
  }
  return value as Record<string, unknown>;
}

async function readCapped(body: ReadableStream<Uint8Array> | null, maxBytes: number, tooLarge: () => Error, what: string): Promise<Uint8Array> {
  if (!body) return new Uint8Array();
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const next = await reader.read().catch((cause: unknown) => {
        throw new BadRequest(`the body of ${what} could not be read to its end`, { cause });
      });
      if (next.done) break;
      size += next.value.byteLength;
      if (size > maxBytes) {
        // Stop pulling: the rest of an oversized body is the server's to discard, not ours to buffer.
        reader.cancel().catch(() => {});
        throw tooLarge();
      }
      chunks.push(next.value);
    }
  } finally {
    reader.releaseLock();
  }
  return Buffer.concat(chunks, size);
}
