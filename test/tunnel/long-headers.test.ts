// Header values over Bun's HPACK limit cross the tunnel in pieces and come back whole, and no
// caller's header can come out of the join as a pseudo-header.
import { describe, expect, test } from "bun:test";
import { LongHeaderError, MAX_LONG_HEADER_PIECES, joinLongHeaders, splitLongHeaders } from "../../lib/tunnel/index.ts";
import { MAX_TUNNEL_HEADER_VALUE_BYTES } from "../../lib/tunnel/timeouts.ts";

const LONG = "x".repeat(MAX_TUNNEL_HEADER_VALUE_BYTES * 2 + 7);

describe("splitLongHeaders / joinLongHeaders", () => {
  test("short values pass untouched", () => {
    const headers = { ":path": "/api", accept: "application/json", "set-cookie": ["a=1", "b=2"] };
    expect(splitLongHeaders(headers)).toEqual(headers);
    expect(joinLongHeaders(headers)).toEqual(headers);
  });

  test("a long :path travels in pieces behind a placeholder and comes back whole", () => {
    const path = `/api/v1/pods?labelSelector=${LONG}`;
    const split = splitLongHeaders({ ":path": path, accept: "a" });
    expect(split[":path"]).toBe("/");
    for (const value of Object.values(split)) expect(String(value).length).toBeLessThanOrEqual(MAX_TUNNEL_HEADER_VALUE_BYTES);
    expect(joinLongHeaders(split)).toEqual({ ":path": path, accept: "a" });
  });

  test("a long ordinary header (a response's Audit-Id echo, a large cookie) comes back whole", () => {
    expect(joinLongHeaders(splitLongHeaders({ "audit-id": LONG }))).toEqual({ "audit-id": LONG });
  });

  test("a caller's header named like a pseudo-header never becomes one", () => {
    const split = splitLongHeaders({ ":path": "/api/v1/namespaces/default/configmaps", path: `/api/v1/secrets?${LONG}`, method: LONG });
    const joined = joinLongHeaders(split);
    expect(joined[":path"]).toBe("/api/v1/namespaces/default/configmaps");
    expect(joined["path"]).toBe(`/api/v1/secrets?${LONG}`);
    expect(joined).not.toHaveProperty(":method");
  });

  test.each([
    ["an index far beyond any real header (a sparse join would stall the process)", { "x-arc-long-h-x-250000000": "a" }],
    [`an index of ${MAX_LONG_HEADER_PIECES}`, { [`x-arc-long-h-x-${MAX_LONG_HEADER_PIECES}`]: "a" }],
    ["a missing piece", { "x-arc-long-h-x-0": "a", "x-arc-long-h-x-2": "c" }],
  ])("pieces no splitter makes are refused: %s", (_what, headers) => {
    expect(() => joinLongHeaders(headers)).toThrow(LongHeaderError);
  });
});
