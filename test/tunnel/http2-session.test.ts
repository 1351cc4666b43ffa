import { afterEach, describe, expect, test } from "bun:test";
import { http2Constants, timeouts, type TunnelHeaders, type TunnelServerStream } from "../../lib/tunnel/index.ts";
import { waitFor, within } from "../support/wait-for.ts";
import { patternBytes, readAll, startTunnelPair, tunnelGet, type TunnelPair } from "./tunnel-pair.ts";

let pair: TunnelPair | undefined;
afterEach(async () => {
  await pair?.close();
  pair = undefined;
});

const BIG = 32 * 1024 * 1024;
const bigBody = patternBytes(BIG);

describe("HTTP/2 over the WebSocket tunnel", () => {
  test("a simple GET is answered with status, headers and body", async () => {
    const seen: TunnelHeaders[] = [];
    pair = await startTunnelPair((stream, headers) => {
      seen.push(headers);
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.end(JSON.stringify({ kind: "PodList", path: headers[":path"] }));
    });
    const res = await within("the GET", tunnelGet(pair.client, "/api/v1/pods?limit=1"));
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(res.body.toString())).toEqual({ kind: "PodList", path: "/api/v1/pods?limit=1" });
    expect(seen[0]?.[":method"]).toBe("GET");
  });

  test("a request and an answer of 400 header fields each cross whole (node:http2 reset more than 124 by default)", async () => {
    const fields = (prefix: string) => Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`${prefix}-${i}`, String(i)]));
    let seen: TunnelHeaders | undefined;
    pair = await startTunnelPair((stream, headers) => {
      seen = headers;
      stream.respond({ ":status": 200, ...fields("x-answer") }, { endStream: true });
    });
    const request = pair.client.request({ ":method": "GET", ":path": "/api", ...fields("x-asked") }, { endStream: true });
    const answer = await within("the answer", new Promise<TunnelHeaders>((resolve, reject) => {
      request.once("response", resolve);
      request.once("error", reject);
    }));
    request.resume();
    expect(Object.keys(seen ?? {}).filter((name) => name.startsWith("x-asked-")).length).toBe(400);
    expect(Object.keys(answer).filter((name) => name.startsWith("x-answer-")).length).toBe(400);
  });

  test("200 concurrent requests are each answered with their own body", async () => {
    pair = await startTunnelPair((stream, headers) => {
      const n = String(headers[":path"]).slice(1);
      // Answer out of order, so a mixed-up stream would show.
      setTimeout(() => {
        stream.respond({ ":status": 200 });
        stream.end(`answer-${n}`);
      }, Number(n) % 7);
    });
    const client = pair.client;
    const results = await within("200 concurrent requests", Promise.all(
      Array.from({ length: 200 }, (_, i) => tunnelGet(client, `/${i}`)),
    ), 4000);
    results.forEach((res, i) => {
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe(`answer-${i}`);
    });
  });

  test("a 32 MiB response left unread does not stall 50 small requests, then arrives whole", async () => {
    let bigFinished = false;
    pair = await startTunnelPair((stream, headers) => {
      if (headers[":path"] === "/big") {
        stream.respond({ ":status": 200, "content-length": String(BIG) });
        stream.end(bigBody, () => { bigFinished = true; });
        return;
      }
      stream.respond({ ":status": 200 });
      stream.end(`small ${headers[":path"]}`);
    });
    const big = pair.client.request({ ":method": "GET", ":path": "/big" }, { endStream: true });
    await within("the big response's headers", new Promise((resolve) => big.once("response", resolve)));
    big.pause();
    // The reader is not reading: once its stream window is full, the agent must be held back.
    await waitFor("the unread response to fill its stream window", () => big.readableLength >= timeouts.STREAM_WINDOW_BYTES, 2000);
    expect(bigFinished).toBe(false);

    const client = pair.client;
    const started = Date.now();
    const smalls = await within("50 small requests beside the stalled one", Promise.all(
      Array.from({ length: 50 }, (_, i) => tunnelGet(client, `/small/${i}`)),
    ), 3000);
    const elapsed = Date.now() - started;
    smalls.forEach((res, i) => expect(res.body.toString()).toBe(`small /small/${i}`));
    expect(elapsed).toBeLessThan(2000);
    expect(bigFinished).toBe(false);

    big.resume();
    const body = await within("the big response to resume and finish", readAll(big), 4000);
    expect(body.length).toBe(BIG);
    expect(body.equals(bigBody)).toBe(true);
  }, 10_000);

  test("an 8 MiB request body streams to the agent byte-exact", async () => {
    const upload = patternBytes(8 * 1024 * 1024, 99);
    let received: Buffer | undefined;
    pair = await startTunnelPair((stream) => {
      void readAll(stream).then((body) => {
        received = body;
        stream.respond({ ":status": 201 });
        stream.end(`got ${body.length}`);
      });
    });
    const req = pair.client.request({ ":method": "POST", ":path": "/upload" });
    const response = new Promise<TunnelHeaders>((resolve) => req.once("response", resolve));
    // Write in chunks, honouring backpressure, as a piped request body would.
    for (let off = 0; off < upload.length; off += 256 * 1024) {
      if (!req.write(upload.subarray(off, off + 256 * 1024))) await new Promise((r) => req.once("drain", r));
    }
    req.end();
    const headers = await within("the upload's response", response, 4000);
    const text = (await readAll(req)).toString();
    expect(Number(headers[":status"])).toBe(201);
    expect(text).toBe(`got ${upload.length}`);
    expect(received?.equals(upload)).toBe(true);
  }, 10_000);

  test("a streamed (watch-like) response arrives chunk by chunk before it ends", async () => {
    let serverEnded = false;
    let agentStream: TunnelServerStream | undefined;
    pair = await startTunnelPair((stream) => {
      agentStream = stream;
      stream.respond({ ":status": 200, "content-type": "application/json" });
      let n = 0;
      const timer = setInterval(() => {
        n += 1;
        if (stream.destroyed) return clearInterval(timer);
        if (n === 5) {
          clearInterval(timer);
          serverEnded = true;
          stream.end(`{"type":"ADDED","n":${n}}\n`);
          return;
        }
        stream.write(`{"type":"ADDED","n":${n}}\n`);
      }, 100);
    });
    const watch = pair.client.request({ ":method": "GET", ":path": "/api/v1/pods?watch=1" }, { endStream: true });
    const chunks: Array<{ text: string; serverEnded: boolean }> = [];
    watch.on("data", (chunk: Buffer) => chunks.push({ text: chunk.toString(), serverEnded }));
    await waitFor("the first watch event", () => chunks.length > 0, 2000);
    expect(chunks[0]).toEqual({ text: `{"type":"ADDED","n":1}\n`, serverEnded: false });
    expect(agentStream?.writableEnded).toBe(false);
    await within("the watch to end", new Promise((resolve) => watch.once("end", resolve)), 3000);
    const events = chunks.map((c) => c.text).join("").trim().split("\n").map((line) => JSON.parse(line).n);
    expect(events).toEqual([1, 2, 3, 4, 5]);
    // Each event arrived on its own, not batched at the end.
    expect(chunks.filter((c) => !c.serverEnded).length).toBeGreaterThanOrEqual(3);
  });

  test("the relay hears the agent's GOAWAY and then the session's end, once each, through its events", async () => {
    const heard: string[] = [];
    pair = await startTunnelPair((stream) => {
      stream.respond({ ":status": 200 });
      stream.end("ok");
    }, { events: { goaway: () => heard.push("goaway"), closed: () => heard.push("closed"), sessionError: (e) => heard.push(`error ${e.message}`) } });
    expect((await tunnelGet(pair.client, "/healthz")).status).toBe(200);
    pair.server.drain();
    await within("the GOAWAY as a promise too", pair.client.goaway, 2000);
    expect(heard).toEqual(["goaway"]);
    expect(pair.client.draining).toBe(true);
    pair.agentWs.close();
    await within("the session's end", pair.client.done, 2000);
    expect(heard).toEqual(["goaway", "closed"]);
    // Asked for after the end, the promises are already settled.
    await within("done, asked for late", pair.client.done, 100);
    await within("goaway, asked for late", pair.client.goaway, 100);
  });

  test("a request that crosses the agent's GOAWAY is refused and never served; those before it finish", async () => {
    // The relay sends a refused request again (RFC 9113 8.7: it was not processed): had the agent
    // served it too, a create would run twice.
    const served: string[] = [];
    pair = await startTunnelPair((stream, headers) => {
      served.push(String(headers[":path"]));
      setTimeout(() => {
        stream.respond({ ":status": 200 });
        stream.end("ok");
      }, 5);
    });
    const client = pair.client;
    const outcome = (path: string) => new Promise<string>((resolve) => {
      const stream = client.request({ ":method": "POST", ":path": path }, { endStream: true });
      stream.once("response", (headers) => resolve(`${path} ${headers[":status"]}`));
      stream.once("error", () => {});
      stream.once("close", () => resolve(`${path} reset ${stream.rstCode}`));
    });
    const before = Array.from({ length: 20 }, (_, i) => outcome(`/before-${i}`));
    await waitFor("the agent to have the first 20", () => served.length === 20);
    pair.server.drain();
    // Sent before the relay has read the GOAWAY: the agent's session gets it after its own GOAWAY.
    const crossing = outcome("/crossing");
    expect(await within("the answers", Promise.all(before))).toEqual(Array.from({ length: 20 }, (_, i) => `/before-${i} 200`));
    expect(await within("the refusal", crossing)).toBe(`/crossing reset ${http2Constants.NGHTTP2_REFUSED_STREAM}`);
    expect(served).not.toContain("/crossing");
    await waitFor("the drain to count no stream", () => pair!.server.activeStreams === 0);
  });
});

