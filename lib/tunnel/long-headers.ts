// Carries header values longer than Bun's HPACK coder can take (a `:path` with a long label
// selector) across the tunnel in numbered pieces, and puts them back together on the other end.
import { MAX_TUNNEL_HEADER_VALUE_BYTES } from "./timeouts.ts";

/** Header name to value(s); the same shape as lib/http's HeaderMap, which sits above this folder. */
type HeaderMap = Record<string, string | string[]>;

// Pieces of a pseudo-header and of an ordinary header are named apart, so that no header a caller
// sends (an ordinary "path" of 40 KB) can come out of the join as a pseudo-header (":path").
const PSEUDO_PIECE_PREFIX = "x-arc-long-p-";
const HEADER_PIECE_PREFIX = "x-arc-long-h-";
/** `:path` has to stay a valid path while its real value travels in pieces. */
const PLACEHOLDER_PATH = "/";

/**
 * Returns `headers` with every value longer than MAX_TUNNEL_HEADER_VALUE_BYTES (32 KiB) replaced
 * by pieces named `x-arc-long-p-<name>-<i>` for a pseudo-header (`<name>` without its colon) and
 * `x-arc-long-h-<name>-<i>` for any other header. Values are
 * measured in UTF-16 code units, which never undercounts the bytes of Latin-1 header text.
 */
export function splitLongHeaders(headers: HeaderMap): HeaderMap {
  const out: HeaderMap = {};
  for (const [name, value] of Object.entries(headers)) {
    const text = Array.isArray(value) ? value.join(", ") : value;
    if (text.length <= MAX_TUNNEL_HEADER_VALUE_BYTES) {
      out[name] = value;
      continue;
    }
    const prefix = name.startsWith(":") ? PSEUDO_PIECE_PREFIX + name.slice(1) : HEADER_PIECE_PREFIX + name;
    for (let i = 0, offset = 0; offset < text.length; i++, offset += MAX_TUNNEL_HEADER_VALUE_BYTES) {
      out[`${prefix}-${i}`] = text.slice(offset, offset + MAX_TUNNEL_HEADER_VALUE_BYTES);
    }
    if (name === ":path") out[name] = PLACEHOLDER_PATH;
  }
  return out;
}

/**
 * A header list as many pieces of MAX_TUNNEL_HEADER_VALUE_BYTES as fill the tunnel's header-list
 * limit (2 MiB / 32 KiB); no honest peer sends more.
 */
export const MAX_LONG_HEADER_PIECES = 64;

/** Pieces that splitLongHeaders cannot have made (an index out of range, a gap): the stream is refused. */
export class LongHeaderError extends Error {
  override readonly name = "LongHeaderError";
}

/**
 * The inverse of splitLongHeaders: pieces are joined in order back into their header and removed;
 * only `x-arc-long-p-` pieces become a pseudo-header. Headers without pieces pass unchanged.
 * Throws LongHeaderError for an index of MAX_LONG_HEADER_PIECES or more, or a missing piece.
 */
export function joinLongHeaders<T extends Record<string, unknown>>(headers: T): T {
  const pieces = new Map<string, string[]>();
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) {
    const match = /^x-arc-long-([ph])-(.+)-(\d+)$/.exec(name);
    if (!match) {
      out[name] = value;
      continue;
    }
    const target = match[1] === "p" ? `:${match[2]}` : match[2]!;
    const index = Number(match[3]);
    // The peer chooses the index: a huge one would make a sparse array whose join stalls the process.
    if (!(index < MAX_LONG_HEADER_PIECES)) throw new LongHeaderError(`piece ${match[3]} of header ${target} is beyond the ${MAX_LONG_HEADER_PIECES} allowed`);
    const list = pieces.get(target) ?? [];
    list[index] = String(value);
    pieces.set(target, list);
  }
  for (const [name, list] of pieces) {
    for (let i = 0; i < list.length; i++) {
      if (list[i] === undefined) throw new LongHeaderError(`header ${name} is missing piece ${i} of ${list.length}`);
    }
    out[name] = list.join("");
  }
  return out as T;
}
