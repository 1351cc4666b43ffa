// Carries header values longer than Bun's HPACK coder can take (a `:path` with a long label
// selector) across the tunnel in numbered pieces, and puts them back together on the other end.
import type { HeaderMap } from "./headers.ts";
import { MAX_TUNNEL_HEADER_VALUE_BYTES } from "./timeouts.ts";

const PIECE_PREFIX = "x-arc-long-";
/** `:path` has to stay a valid path while its real value travels in pieces. */
const PLACEHOLDER_PATH = "/";

/**
 * Returns `headers` with every value longer than MAX_TUNNEL_HEADER_VALUE_BYTES (32 KiB) replaced
 * by pieces named `x-arc-long-<name>-<i>` (`<name>` without a pseudo-header's colon). Values are
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
    const key = name.replace(/^:/, "");
    for (let i = 0, offset = 0; offset < text.length; i++, offset += MAX_TUNNEL_HEADER_VALUE_BYTES) {
      out[`${PIECE_PREFIX}${key}-${i}`] = text.slice(offset, offset + MAX_TUNNEL_HEADER_VALUE_BYTES);
    }
    if (name === ":path") out[name] = PLACEHOLDER_PATH;
  }
  return out;
}

/**
 * The inverse of splitLongHeaders: pieces are joined in order back into their header (a
 * pseudo-header when `:<name>` is present) and removed. Headers without pieces pass unchanged.
 */
export function joinLongHeaders<T extends Record<string, unknown>>(headers: T): T {
  const pieces = new Map<string, string[]>();
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) {
    const match = /^x-arc-long-(.+)-(\d+)$/.exec(name);
    if (!match) {
      out[name] = value;
      continue;
    }
    const list = pieces.get(match[1]!) ?? [];
    list[Number(match[2])] = String(value);
    pieces.set(match[1]!, list);
  }
  for (const [key, list] of pieces) {
    const name = `:${key}` in out ? `:${key}` : key;
    out[name] = list.join("");
  }
  return out as T;
}
