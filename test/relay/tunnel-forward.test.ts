import { afterEach, describe, expect, test } from "bun:test";
import http from "node:http";
import net from "node:net";
import { cancelStream, endedByPeer, http2Constants, joinLongHeaders, splitLongHeaders, type TunnelHeaders, type TunnelServerStream } from "../../lib/tunnel/index.ts";
import { waitFor, within } from "../support/wait-for.ts";
import { collect, httpRequest, rawConnect, readAll, startTunnelPair, type StreamHandler, type TunnelPair } from "../tunnel/tunnel-pair.ts";
import { startFrontServer, type FrontServer } from "./front-server.ts";

const pairs: TunnelPair[] = [];
let front: FrontServer | undefined;
afterEach(async () => {
  await front?.close();
  front = undefined;
  await Promise.all(pairs.splice(0).map((p) => p.close()));
});

/** A front server forwarding over a fresh tunnel whose agent answers with `handler`. */
async function setup(handler: StreamHandler): Promise<{ pair: TunnelPair; front: FrontServer }> {
  const pair = await startTunnelPair(handler);
  pairs.push(pair);
  front = await startFrontServer(() => pair.client);
  return { pair, front };
}

function parseStatus(body: Buffer): { kind: string; code: number; reason: string; message: string } {
  return JSON.parse(body.toString());
}

describe("forwardHttpRequest", () => {
  test("a response header longer than HPACK takes (the API server echoing a 40 KB Audit-ID) arrives whole", async () => {
    const auditId = "a".repeat(40_000);
    const { front } = await setup((stream) => {
      stream.respond(splitLongHeaders({ ":status": "200", "audit-id": auditId, "content-type": "text/plain" }));
      stream.end("ok");
    });
    const res = await within("the answer", httpRequest(front.port, { path: "/api" }));
    expect(res.status).toBe(200);
    expect(res.headers["audit-id"]).toBe(auditId);
    expect(Object.keys(res.headers).some((n) => n.startsWith("x-arc-"))).toBe(false);
    expect(res.body.toString()).toBe("ok");
  });

  // kubectl's discovery cache revalidates with 304; logs of an empty container are Content-Length: 0.
  test.each([
    ["304 Not Modified", "GET", 304, { etag: '"x"' }],
    ["204 No Content", "GET", 204, {}],
    ["an empty 200 without Content-Length", "GET", 200, {}],
    ["an empty 200 with Content-Length: 0", "GET", 200, { "content-length": "0" }],
    ["HEAD, whose Content-Length describes a body never sent", "HEAD", 200, { "content-length": "2" }],
  ] as const)("a response without a body (%s) is complete, and the connection serves the next request", async (_what, method, status, extra) => {
    const { front } = await setup((stream) => {
      stream.respond({ ":status": status, ...extra });
      stream.end();
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const one = () => new Promise<number>((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port: front.port, method, path: "/api", agent }, (res) => {
          res.resume();
          res.once("end", () => resolve(res.statusCode ?? 0));
          res.once("error", reject);
        });
        req.once("error", reject);
        req.end();
      });
      expect(await within("the first answer", one())).toBe(status);
      expect(await within("the second answer on the same connection", one())).toBe(status);
      await waitFor("both forwards to finish", () => front.outcomes.length === 2);
      expect(front.outcomes).toEqual([{ kind: "request" }, { kind: "request" }]);
    } finally {
      agent.destroy();
    }
  });

  // Bun's fetch, and other clients, send `Content-Length: 0` on every body-less DELETE; Bun's
  // HTTP/2 server resets such a GET, HEAD or DELETE stream, and the user got a 502.
  test.each(["GET", "HEAD", "DELETE", "OPTIONS", "POST", "PUT", "PATCH"])("%s with Content-Length: 0 reaches the agent and is answered", async (method) => {
    const seen: TunnelHeaders[] = [];
    const { front } = await setup((stream, headers) => {
      seen.push(headers);
      void readAll(stream).then((body) => {
        stream.respond({ ":status": 200, "x-body-bytes": String(body.length) });
        stream.end();
      });
    });
    const res = await within("the answer", httpRequest(front.port, { method, path: "/api/v1/namespaces/x/configmaps/y", headers: { "content-length": "0" } }));
    expect(res.status).toBe(200);
    expect(res.headers["x-body-bytes"]).toBe("0");
    expect(seen.map((h) => h[":method"])).toEqual([method]);
  });

  test("passes status, end-to-end headers and body through, both ways", async () => {
    const seen: Array<{ headers: TunnelHeaders; body: string }> = [];
    const { front } = await setup((stream, headers) => {
      void readAll(stream).then((body) => {
        seen.push({ headers, body: body.toString() });
        stream.respond({
          ":status": 201,
          "content-type": "application/json",
          "set-cookie": ["a=1", "b=2"],
          "x-kubernetes-pf-flowschema-uid": "abc",
        });
        stream.end(JSON.stringify({ kind: "Pod", metadata: { name: "web" } }));
      });
    });
    const res = await within("the forwarded POST", httpRequest(front.port, {
      method: "POST",
      path: "/api/v1/namespaces/default/pods?dryRun=All",
      headers: { "content-type": "application/json", authorization: "Bearer user-token" },
      body: JSON.stringify({ kind: "Pod" }),
    }));
    expect(res.status).toBe(201);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(res.headers["set-cookie"]).toEqual(["a=1", "b=2"]);
    expect(res.headers["x-kubernetes-pf-flowschema-uid"]).toBe("abc");
    expect(JSON.parse(res.body.toString())).toEqual({ kind: "Pod", metadata: { name: "web" } });

    expect(seen).toHaveLength(1);
    const agentSaw = seen[0]!;
    expect(agentSaw.headers[":method"]).toBe("POST");
    expect(agentSaw.headers[":path"]).toBe("/api/v1/namespaces/default/pods?dryRun=All");
    expect(agentSaw.headers["authorization"]).toBe("Bearer user-token");
    expect(agentSaw.headers["x-arc-request-id"]).toBe("req-1");
    expect(agentSaw.body).toBe(JSON.stringify({ kind: "Pod" }));
  });

  test("x-arc-* headers from the agent never reach the client", async () => {
    const { front } = await setup((stream) => {
      stream.respond({
        ":status": 200,
        "x-arc-upgrade-status": "101",
        "x-arc-agent-version": "1.2.3",
        "x-arc-internal": "secret",
        "x-visible": "yes",
      });
      stream.end("ok");
    });
    const res = await within("the forwarded GET", httpRequest(front.port, { path: "/version" }));
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("ok");
    expect(res.headers["x-visible"]).toBe("yes");
    expect(Object.keys(res.headers).filter((name) => name.startsWith("x-arc-"))).toEqual([]);
  });

  test.each([400, 403, 404, 409, 500, 503])("the API server's %p reaches the client with its body", async (code) => {
    const status = { kind: "Status", apiVersion: "v1", status: "Failure", reason: "Whatever", code, message: `it said ${code}` };
    const { front } = await setup((stream) => {
      stream.respond({ ":status": code, "content-type": "application/json" });
      stream.end(JSON.stringify(status));
    });
    const res = await within("the forwarded GET", httpRequest(front.port, { path: "/api/v1/pods" }));
    expect(res.status).toBe(code);
    expect(JSON.parse(res.body.toString())).toEqual(status);
  });

  test("a streamed response body larger than the HTTP/2 windows arrives whole", async () => {
    const size = 6 * 1024 * 1024;
    const { front } = await setup((stream) => {
      stream.respond({ ":status": 200, "content-type": "application/octet-stream" });
      stream.end(Buffer.alloc(size, 0x5a));
    });
    const res = await within("a 6 MiB download", httpRequest(front.port, { path: "/logs" }), 4000);
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(size);
    expect(res.body.equals(Buffer.alloc(size, 0x5a))).toBe(true);
  });

  test("a closed tunnel answers 503 ServiceUnavailable as a Kubernetes Status", async () => {
    const { pair, front } = await setup(() => { throw new Error("the agent must not be reached"); });
    await pair.close();
    expect(pair.client.closed).toBe(true);
    const res = await within("the GET on a closed tunnel", httpRequest(front.port, { path: "/api/v1/pods" }));
    expect(res.status).toBe(503);
    expect(res.headers["content-type"]).toBe("application/json");
    const status = parseStatus(res.body);
    expect(status).toMatchObject({ kind: "Status", code: 503, reason: "ServiceUnavailable" });
    expect(status.message).toContain(`cluster "prod" is offline`);
  });

  test("an agent that resets the stream before answering gives 502 naming the cluster and request id", async () => {
    const { front } = await setup((stream) => {
      // On Bun the resetting side's own stream also emits the error.
      stream.on("error", () => {});
      stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR);
    });
    const res = await within("the GET the agent reset", httpRequest(front.port, {
      path: "/api/v1/pods",
      headers: { "x-test-request-id": "req-42" },
    }));
    expect(res.status).toBe(502);
    expect(res.headers["content-type"]).toBe("application/json");
    const status = parseStatus(res.body);
    expect(status).toMatchObject({ kind: "Status", code: 502 });
    expect(status.message).toContain(`cluster "prod"`);
    expect(status.message).toContain("req-42");
  });

  test.each([
    ["closes gracefully (a key rotation, a drain): the answer ends for real, complete", "close", true],
    ["is terminated (a revoked key): the answer is cut", "terminate", false],
  ] as const)("a chunked answer under way when its tunnel %s", async (_what, how, complete) => {
    let agentSide: TunnelServerStream | undefined;
    const { pair, front } = await setup((stream) => {
      agentSide = stream;
      stream.respond({ ":status": 200, "content-type": "text/plain" });
      stream.write("first line\n");
    });
    const outcome = new Promise<{ body: string; complete: boolean }>((resolve) => {
      const req = http.request({ host: "127.0.0.1", port: front.port, path: "/api/v1/namespaces/a/pods/p/log?follow=true", agent: false }, (res) => {
        let body = "";
        res.on("data", (chunk: Buffer) => { body += chunk.toString(); });
        res.on("error", () => {});
        res.once("close", () => resolve({ body, complete: res.complete }));
      });
      req.on("error", () => resolve({ body: "", complete: false }));
      req.end();
    });
    await waitFor("the answer under way", () => agentSide !== undefined);
    const closing = pair.client[how]();
    agentSide!.end("last line\n");
    const result = await within("the client to see the answer end", outcome);
    expect(result.complete).toBe(complete);
    if (complete) expect(result.body).toBe("first line\nlast line\n");
    await within("the tunnel to be done", closing);
  });

  test("the agent's WebSocket dying mid-response cuts the response short, and a new tunnel serves the next request", async () => {
    let current: TunnelPair | undefined;
    const first = await startTunnelPair((stream) => {
      stream.respond({ ":status": 200, "content-length": "100000" });
      stream.write(Buffer.alloc(1000, 0x61));
    });
    pairs.push(first);
    current = first;
    front = await startFrontServer(() => current!.client);

    const outcome = await within("the client to see the response end", new Promise<{ status: number; received: number; complete: boolean }>((resolve) => {
      const req = http.request({ host: "127.0.0.1", port: front!.port, path: "/api/v1/pods/log", agent: false }, (res) => {
        let received = 0;
        res.on("data", (chunk: Buffer) => {
          // The tunnel dies once the response is under way.
          if (received === 0) first.agentWs.terminate();
          received += chunk.length;
        });
        res.on("error", () => {});
        res.once("close", () => resolve({ status: res.statusCode ?? 0, received, complete: res.complete }));
      });
      req.on("error", () => resolve({ status: 0, received: 0, complete: false }));
      req.end();
    }));
    expect(outcome.status).toBe(200);
    expect(outcome.complete).toBe(false);
    expect(outcome.received).toBeLessThan(100000);
    await within("the old tunnel to be done", first.client.done);

    const second = await startTunnelPair((stream) => {
      stream.respond({ ":status": 200 });
      stream.end("fresh tunnel");
    });
    pairs.push(second);
    current = second;
    const res = await within("the next request on the new tunnel", httpRequest(front.port, { path: "/healthz" }));
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("fresh tunnel");
  });

  test("a client that hangs up mid-stream cancels the agent's stream within a second", async () => {
    let agentStream: TunnelServerStream | undefined;
    let agentClosedAt = 0;
    const { front } = await setup((stream) => {
      agentStream = stream;
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.once("close", () => { agentClosedAt = Date.now(); });
      stream.on("error", () => {});
      const timer = setInterval(() => {
        if (stream.destroyed) clearInterval(timer);
        else stream.write(`{"type":"MODIFIED"}\n`);
      }, 50);
    });
    const firstChunk = new Promise<http.ClientRequest>((resolve) => {
      const req = http.request({ host: "127.0.0.1", port: front.port, path: "/api/v1/pods?watch=1", agent: false }, (res) => {
        res.once("data", () => resolve(req));
        res.on("error", () => {});
      });
      req.on("error", () => {});
      req.end();
    });
    const req = await within("the first watch event", firstChunk);
    const abortedAt = Date.now();
    req.destroy();
    await waitFor("the agent's stream to close", () => agentClosedAt > 0, 1000);
    expect(agentClosedAt - abortedAt).toBeLessThan(1000);
    expect(agentStream?.rstCode).toBe(http2Constants.NGHTTP2_CANCEL);
  });
});

describe("an answer the agent cancels after it began", () => {
  test.each([
    ["without Content-Length", {}],
    ["with Content-Length", { "content-length": "1000000" }],
  ])("(%s) is cut for the client, never ended as if complete", async (_what, extra) => {
    const { front } = await setup((stream) => {
      stream.on("error", () => {});
      stream.respond({ ":status": 200, "content-type": "application/json", ...extra });
      stream.write('{"kind":"PodList","items":[');
      setImmediate(() => cancelStream(stream));
    });
    const outcome = await within("the client's response to end", new Promise<string>((resolve) => {
      const req = http.request({ host: "127.0.0.1", port: front.port, path: "/api/v1/pods", agent: false }, (res) => {
        res.resume();
        res.once("end", () => resolve(res.complete ? "complete" : "cut"));
        res.once("error", () => resolve("cut"));
        res.once("close", () => resolve(res.complete ? "complete" : "cut"));
      });
      req.once("error", () => resolve("cut"));
      req.end();
    }));
    expect(outcome).toBe("cut");
  });
});

describe("a client gone in the middle of its request body", () => {
  test.each([
    ["chunked", "Transfer-Encoding: chunked\r\n\r\n4000\r\n" + "x".repeat(0x4000) + "\r\n"],
    ["with Content-Length", "Content-Length: 1000000\r\n\r\n" + "x".repeat(0x4000)],
  ])("(%s): the agent's stream is cancelled, never ended as if the body were complete", async (_framing, rest) => {
    let received = 0;
    const outcome = new Promise<{ endedByPeer: boolean; rstCode: number | undefined }>((resolve) => {
      void setup((stream) => {
        let ended = false;
        stream.on("error", () => {});
        stream.on("data", (chunk: Buffer) => { received += chunk.length; });
        stream.on("end", () => { ended = endedByPeer(stream); });
        stream.once("close", () => resolve({ endedByPeer: ended, rstCode: stream.rstCode }));
      }).then(async ({ front }) => {
        const client = await rawConnect(front.port, `POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n${rest}`);
        await waitFor("the agent to read the first part", () => received > 0);
        client.destroy();
      });
    });
    expect(await within("the agent's stream to close", outcome)).toEqual({ endedByPeer: false, rstCode: http2Constants.NGHTTP2_CANCEL });
  });
});

describe("one tunnel, many readers", () => {
  // A relay's users share one tunnel per cluster: a user piping a big LIST into a paused pager
  // must not slow anyone else down, nor cut their responses short.
  test.each([
    [4 * 1024 * 1024, 64 * 1024],
    [32 * 1024 * 1024, 1024 * 1024],
    [256 * 1024 * 1024, 8 * 1024 * 1024],
  ])("a reader stalled on a %d-byte response leaves a %d-byte response and small ones beside it at full speed", async (stalledSize, otherSize) => {
    const chunk = Buffer.alloc(64 * 1024, 0x2a);
    const { front } = await setup((stream, headers) => {
      const size = Number(new URL(String(headers[":path"]), "http://x").searchParams.get("size"));
      stream.respond({ ":status": 200, "content-length": String(size) });
      // Paced like a real upstream: each write waits for the previous one to drain.
      let sent = 0;
      const pump = () => {
        while (sent < size) {
          const part = chunk.subarray(0, Math.min(chunk.length, size - sent));
          sent += part.length;
          if (!stream.write(part)) {
            stream.once("drain", () => setImmediate(pump));
            return;
          }
        }
        stream.end();
      };
      setImmediate(pump);
      stream.on("error", () => {});
    });
    const stalled = await rawConnect(front.port, `GET /big?size=${stalledSize} HTTP/1.1\r\nHost: relay\r\n\r\n`);
    stalled.pause(); // never reads: the pager that was never scrolled
    await within("the stalled response to start", new Promise((resolve) => stalled.once("readable", resolve)));
    const other = await within("the other large response", httpRequest(front.port, { path: `/other?size=${otherSize}` }), 10_000);
    expect(other.status).toBe(200);
    expect(other.body.length).toBe(otherSize);
    const smalls = await within("20 small requests", Promise.all(Array.from({ length: 20 }, (_, i) => httpRequest(front.port, { path: `/small?size=${100 + i}` }))), 5_000);
    smalls.forEach((res, i) => expect(res.body.length).toBe(100 + i));
    stalled.destroy();
  }, 30_000);

  // The kill -9 of an agent process (the kernel's RST) is in test/e2e/faults.e2e.test.ts: Bun cannot send an RST itself.
  test("a dead tunnel cuts a response whose reader had stopped reading, at once", async () => {
    const { pair, front } = await setup((stream) => {
      stream.respond({ ":status": 200, "content-length": String(64 * 1024 * 1024) });
      stream.write(Buffer.alloc(8 * 1024 * 1024, 1));
      stream.on("error", () => {});
    });
    const slow = await rawConnect(front.port, "GET /list HTTP/1.1\r\nHost: relay\r\n\r\n");
    slow.pause();
    const closed = new Promise<void>((resolve) => slow.once("close", () => resolve()));
    await within("the response to start", new Promise((resolve) => slow.once("readable", resolve)));
    pair.agentWs.terminate(); // the agent's side of the tunnel is gone
    let received = 0;
    slow.on("data", (chunk: Buffer) => { received += chunk.length; });
    slow.resume(); // drain what the relay already had; then the socket must end, not hang
    await within("the client's connection to be cut", closed, 5_000);
    // kubectl sees a response cut short of its Content-Length, never one that looks complete.
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThan(64 * 1024 * 1024);
  });

  test("a label selector of 80 KB crosses the tunnel whole (in pieces the agent joins)", async () => {
    const { front } = await setup((stream, headers) => {
      stream.respond({ ":status": 200 });
      stream.end(String(joinLongHeaders(headers)[":path"]));
    });
    const selector = `app in (${Array.from({ length: 14000 }, (_, i) => `v${i}`).join(",")})`;
    const path = `/api/v1/pods?labelSelector=${encodeURIComponent(selector)}`;
    expect(path.length).toBeGreaterThan(80_000);
    const res = await within("the long request", httpRequest(front.port, { path }));
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe(path);
  });
});

describe("ending a watch when the relay drains", () => {
  test("a JSON watch ends cleanly right after a complete event, never in the middle of one", async () => {
    const controller = new AbortController();
    let writeHalf: (() => void) | undefined;
    const pair = await startTunnelPair((stream) => {
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.write('{"type":"ADDED","object":{"metadata":{"resourceVersion":"1"}}}\n');
      stream.write('{"type":"MODIFIED","object":');
      writeHalf = () => stream.write('{"metadata":{"resourceVersion":"2"}}}\n{"type":"MODIFIED","object":{"metad');
      stream.on("error", () => {});
    });
    pairs.push(pair);
    front = await startFrontServer(() => pair.client, { endWatch: controller.signal });
    const received: string[] = [];
    const done = new Promise<boolean>((resolve) => {
      const req = http.request({ host: "127.0.0.1", port: front!.port, path: "/api/v1/pods?watch=1", agent: false }, (res) => {
        res.setEncoding("utf8");
        res.on("data", (c: string) => received.push(c));
        res.once("end", () => resolve(res.complete));
        res.on("error", () => resolve(false));
      });
      req.end();
    });
    await waitFor("the first events", () => received.join("").includes('"MODIFIED","object":'));
    controller.abort(); // mid-event: the relay must wait for the end of this event
    writeHalf!();
    expect(await within("the watch to end", done)).toBe(true); // a clean chunked end, not a cut
    const lines = received.join("").split("\n");
    expect(lines.at(-1)).toBe(""); // ends with a newline: no partial event
    expect(lines.slice(0, -1).map((l) => JSON.parse(l).type)).toEqual(["ADDED", "MODIFIED"]);
  });
});

describe("forwardUpgrade", () => {
  const EXEC_HEAD =
    "POST /api/v1/namespaces/default/pods/web/exec?command=sh HTTP/1.1\r\n" +
    "Host: relay\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n";

  /** An agent that accepts upgrades like the API server does for exec, then echoes bytes. */
  const echoAgent: StreamHandler = (stream, headers) => {
    if (!headers["x-arc-upgrade"]) {
      stream.respond({ ":status": 400 });
      stream.end("expected an upgrade");
      return;
    }
    stream.respond({ ":status": 200, "x-arc-upgrade-status": "101", "x-stream-protocol-version": "v4.channel.k8s.io" });
    stream.on("data", (chunk: Buffer) => stream.write(chunk));
    stream.once("end", () => stream.end("bye"));
    stream.on("error", () => {});
  };

  async function readHead(got: () => string): Promise<{ head: string; rest: string }> {
    await waitFor("the response head", () => got().includes("\r\n\r\n"));
    const text = got();
    const end = text.indexOf("\r\n\r\n") + 4;
    return { head: text.slice(0, end), rest: text.slice(end) };
  }

  test("a 101 from the agent reaches the client with its headers, then bytes flow both ways", async () => {
    const { front } = await setup(echoAgent);
    const socket = await rawConnect(front.port, EXEC_HEAD);
    const got = collect(socket);
    const { head } = await readHead(got.text);
    const lines = head.split("\r\n");
    expect(lines[0]).toBe("HTTP/1.1 101 Switching Protocols");
    expect(lines).toContain("connection: Upgrade");
    expect(lines).toContain("upgrade: SPDY/3.1");
    expect(lines).toContain("x-stream-protocol-version: v4.channel.k8s.io");
    // Of the tunnel's own headers only the request id comes back, the id a bug report quotes.
    expect(head.toLowerCase()).toContain("x-arc-request-id: req-1\r\n");
    expect(head.toLowerCase().replace("x-arc-request-id: req-1\r\n", "")).not.toContain("x-arc-");

    socket.write("stdin bytes");
    await waitFor("the echo", () => got.text().endsWith("stdin bytes"));
    const big = Buffer.alloc(3 * 1024 * 1024, 0x37);
    const before = got.bytes().length;
    socket.write(big);
    await waitFor("a 3 MiB echo", () => got.bytes().length - before >= big.length, 4000);
    expect(got.bytes().subarray(before).equals(big)).toBe(true);
    socket.destroy();
  });

  test("kubectl's SPDY upgrade (POST with Content-Length: 0) is not reset when bytes flow", async () => {
    const { front } = await setup(echoAgent);
    const socket = await rawConnect(front.port, EXEC_HEAD.replace("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n"));
    const got = collect(socket);
    const { head } = await readHead(got.text);
    expect(head.startsWith("HTTP/1.1 101 Switching Protocols\r\n")).toBe(true);
    socket.write("stdin after a zero-length body");
    await waitFor("the echo", () => got.text().endsWith("stdin after a zero-length body"));
    socket.destroy();
  });

  test("bytes sent right behind the upgrade request are not lost", async () => {
    const { front } = await setup(echoAgent);
    const socket = await rawConnect(front.port, EXEC_HEAD + "early");
    const got = collect(socket);
    const { head } = await readHead(got.text);
    expect(head.startsWith("HTTP/1.1 101 Switching Protocols\r\n")).toBe(true);
    await waitFor("the early bytes echoed", () => got.text().endsWith("early"));
    socket.destroy();
  });

  test("the client's half-close reaches the agent, and the agent's last words reach the client", async () => {
    let agentSawEnd = false;
    const { front } = await setup((stream, headers) => {
      echoAgent(stream, headers);
      stream.once("end", () => { agentSawEnd = true; });
    });
    const socket = net.connect({ port: front.port, host: "127.0.0.1", allowHalfOpen: true });
    const got = collect(socket);
    socket.write(EXEC_HEAD);
    await readHead(got.text);
    socket.write("last input");
    await waitFor("the echo", () => got.text().endsWith("last input"));
    socket.end();
    await waitFor("the agent to see end of input", () => agentSawEnd);
    await waitFor("the client to get the agent's reply and EOF", () => got.ended());
    expect(got.text().endsWith("last inputbye")).toBe(true);
    await waitFor("the upgrade to finish", () => front.outcomes.length === 1);
    expect(front.outcomes[0]).toEqual({ kind: "upgrade" });
  });

  test("a refused upgrade reaches the client as HTTP/1.1 403 with the API server's body, then closes", async () => {
    const body = JSON.stringify({ kind: "Status", code: 403, reason: "Forbidden", message: "pods \"web\" is forbidden" });
    const { front } = await setup((stream) => {
      stream.respond({ ":status": 200, "x-arc-upgrade-status": "403", "content-type": "application/json" });
      stream.end(body);
    });
    const socket = await rawConnect(front.port, EXEC_HEAD);
    const got = collect(socket);
    await waitFor("the socket to close", () => got.closed());
    const { head, rest } = await readHead(got.text);
    expect(head.startsWith("HTTP/1.1 403 ")).toBe(true);
    expect(head).toContain("content-type: application/json");
    expect(head).toContain("connection: close");
    // Of the tunnel's own headers only the request id comes back, the id a bug report quotes.
    expect(head.toLowerCase()).toContain("x-arc-request-id: req-1\r\n");
    expect(head.toLowerCase().replace("x-arc-request-id: req-1\r\n", "")).not.toContain("x-arc-");
    expect(rest).toBe(body);
  });

  test("an agent that resets the upgrade gives a 502 Status on the socket and the relay keeps serving", async () => {
    const { front } = await setup((stream, headers) => {
      if (headers["x-arc-upgrade"]) {
        stream.on("error", () => {});
        stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR);
        return;
      }
      stream.respond({ ":status": 200 });
      stream.end("still here");
    });
    const socket = await rawConnect(front.port, EXEC_HEAD);
    const got = collect(socket);
    await waitFor("the socket to close", () => got.closed());
    const { head, rest } = await readHead(got.text);
    expect(head.startsWith("HTTP/1.1 502 ")).toBe(true);
    const status = parseStatus(Buffer.from(rest));
    expect(status).toMatchObject({ kind: "Status", code: 502 });
    expect(status.message).toContain(`cluster "prod"`);
    expect(status.message).toContain("req-1");
    await waitFor("the upgrade to finish", () => front.outcomes.length === 1);
    const res = await within("a request after the reset upgrade", httpRequest(front.port, { path: "/version" }));
    expect(res.body.toString()).toBe("still here");
    // The Status is written once: the caller writing it again after forwardUpgrade did would be a
    // write after end on the user's socket, reported before the later request's answer.
    expect(front.socketErrors.map((e) => (e as { code?: string }).code ?? e.message)).toEqual([]);
  });
});
