import { describe, expect, test } from "bun:test";
import type { OutgoingHttpHeaders } from "node:http";
import { endToEndHeaders, firstHeader, renderResponseHead } from "../../lib/tunnel/index.ts";

describe("endToEndHeaders", () => {
  test.each([
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "http2-settings",
  ])("drops hop-by-hop header %p", (name) => {
    expect(endToEndHeaders({ [name]: "x", accept: "application/json" })).toEqual({ accept: "application/json" });
  });

  test("drops headers named in Connection, whatever their case and spacing", () => {
    const out = endToEndHeaders({
      connection: "Keep-Alive,  X-Per-Hop , x-other",
      "x-per-hop": "1",
      "x-other": "2",
      "x-kept": "3",
    });
    expect(out).toEqual({ "x-kept": "3" });
  });

  test("drops names listed in a repeated Connection header", () => {
    const headers: OutgoingHttpHeaders = { connection: ["x-a", "x-b"], "x-a": "1", "x-b": "2", "x-c": "3" };
    expect(endToEndHeaders(headers)).toEqual({ "x-c": "3" });
  });

  test("drops HTTP/2 pseudo-headers", () => {
    const out = endToEndHeaders({ ":status": 200, ":method": "GET", ":path": "/api", "content-type": "text/plain" });
    expect(out).toEqual({ "content-type": "text/plain" });
  });

  test("lower-cases names and stringifies values", () => {
    expect(endToEndHeaders({ "Content-Type": "application/json", "Content-Length": 12, Authorization: "Bearer t" })).toEqual({
      "content-type": "application/json",
      "content-length": "12",
      authorization: "Bearer t",
    });
  });

  test("keeps repeated values as arrays, in order", () => {
    const headers: OutgoingHttpHeaders = { "set-cookie": ["a=1", "b=2"], "x-many": ["one", "two"] };
    const out = endToEndHeaders(headers);
    expect(out["set-cookie"]).toEqual(["a=1", "b=2"]);
    expect(out["x-many"]).toEqual(["one", "two"]);
  });

  test("skips undefined values", () => {
    expect(endToEndHeaders({ accept: undefined, "x-a": "1" })).toEqual({ "x-a": "1" });
  });
});

describe("firstHeader", () => {
  test.each<[string | string[] | undefined, string | undefined]>([
    ["v", "v"],
    [["a", "b"], "a"],
    [[], undefined],
    [undefined, undefined],
  ])("%p -> %p", (value, expected) => {
    expect(firstHeader(value)).toBe(expected);
  });
});

describe("renderResponseHead", () => {
  test("renders a status line, one line per value, and a blank line", () => {
    const head = renderResponseHead(101, "Switching Protocols", { upgrade: "websocket", "set-cookie": ["a=1", "b=2"] });
    expect(head).toBe("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n\r\n");
  });

  test.each(["evil\r\nSet-Cookie: stolen=1", "evil\nx-injected: 1", "evil\r"])(
    "drops a value with CR/LF (response splitting): %p",
    (value) => {
      const head = renderResponseHead(403, "Forbidden", { "x-bad": value, "x-good": "ok" });
      expect(head).toBe("HTTP/1.1 403 Forbidden\r\nx-good: ok\r\n\r\n");
      expect(head).not.toContain("stolen");
      expect(head).not.toContain("injected");
    },
  );

  test("drops only the bad value of a repeated header", () => {
    const head = renderResponseHead(200, "OK", { "set-cookie": ["a=1", "b=2\r\nx-injected: 1"] });
    expect(head).toBe("HTTP/1.1 200 OK\r\nset-cookie: a=1\r\n\r\n");
  });

  test("drops a header whose name contains CR/LF", () => {
    const head = renderResponseHead(200, "OK", { "x-a\r\nx-injected": "1" });
    expect(head).toBe("HTTP/1.1 200 OK\r\n\r\n");
  });
});
