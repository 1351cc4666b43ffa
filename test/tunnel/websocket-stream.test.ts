// The relay's own WebSocket framing (lib/tunnel/websocket-stream.ts) against the `ws` client the
// agent dials with, and against hand-made frames that break RFC 6455.
import { afterEach, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import http, { type IncomingMessage } from "node:http";
import type net from "node:net";
import { Duplex } from "node:stream";
import { WebSocket } from "ws";
import {
  acceptWebSocket, checkWebSocketHandshake, protocol, WebSocketProtocolError, WebSocketStream, type LivenessOptions,
} from "../../lib/tunnel/index.ts";
import { waitFor, within } from "../support/wait-for.ts";
import { closeServer, collect, listen, patternBytes, rawConnect } from "./tunnel-pair.ts";

const SUBPROTOCOL = protocol.TUNNEL_SUBPROTOCOL;
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A server that accepts every valid handshake with acceptWebSocket; resolves each stream. */
async function startServer(liveness: LivenessOptions = {}): Promise<{ port: number; next: () => Promise<WebSocketStream> }> {
  const waiting: Array<(stream: WebSocketStream) => void> = [];
  const ready: WebSocketStream[] = [];
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on("upgrade", (req: IncomingMessage, socket, head) => {
    const refusal = checkWebSocketHandshake(req, SUBPROTOCOL);
    if (refusal) {
      socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-length: ${refusal.length}\r\n\r\n${refusal}`);
      return;
    }
    const stream = acceptWebSocket(req, socket, head, SUBPROTOCOL, liveness);
    stream.on("error", () => {});
    const waiter = waiting.shift();
    if (waiter) waiter(stream);
    else ready.push(stream);
  });
  const port = await listen(server);
  cleanups.push(() => closeServer(server));
  return {
    port,
    next: () => {
      const stream = ready.shift();
      return stream ? Promise.resolve(stream) : new Promise((resolve) => waiting.push(resolve));
    },
  };
}

async function dial(port: number): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, [SUBPROTOCOL], { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  cleanups.push(() => ws.terminate());
  return ws;
}

/** Reads `size` bytes from the stream. */
function readBytes(stream: WebSocketStream, size: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (chunk: Buffer) => {
      chunks.push(Buffer.from(chunk));
      got += chunk.length;
      if (got >= size) {
        stream.off("data", onData);
        resolve(Buffer.concat(chunks));
      }
    };
    stream.on("data", onData);
    stream.once("error", reject);
  });
}

/** A raw client that completes the handshake by hand, to send frames no library would. */
async function rawClient(port: number): Promise<{ socket: net.Socket; got: ReturnType<typeof collect>; afterHandshake: () => Buffer }> {
  const key = randomBytes(16).toString("base64");
  const socket = await rawConnect(port,
    `GET / HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL}\r\n\r\n`);
  cleanups.push(() => socket.destroy());
  const got = collect(socket);
  await waitFor("the 101", () => got.text().includes("\r\n\r\n"));
  const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  expect(got.text()).toStartWith("HTTP/1.1 101 ");
  expect(got.text()).toContain(`Sec-WebSocket-Accept: ${accept}\r\n`);
  const headEnd = got.bytes().indexOf("\r\n\r\n") + 4;
  return { socket, got, afterHandshake: () => got.bytes().subarray(headEnd) };
}

/** One client frame: FIN and opcode in `first`, masked unless `masked` is false, with `length` as declared. */
function frame(first: number, payload: Buffer, options: { masked?: boolean; declared?: bigint } = {}): Buffer {
  const masked = options.masked ?? true;
  const declared = options.declared ?? BigInt(payload.length);
  let head: Buffer;
  if (declared < 126n) head = Buffer.from([first, Number(declared)]);
  else if (declared < 0x10000n) {
    head = Buffer.alloc(4);
    head[0] = first;
    head[1] = 126;
    head.writeUInt16BE(Number(declared), 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = first;
    head[1] = 127;
    head.writeBigUInt64BE(declared, 2);
  }
  if (!masked) return Buffer.concat([head, payload]);
  head[1] = head[1]! | 0x80;
  const key = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ key[i & 3]!;
  return Buffer.concat([head, key, body]);
}

/**
 * The close code of the server's close frame among the (unmasked, short) frames it sent after the
 * handshake. Control frames before it are skipped: the liveness sweep pings every stream on one
 * timer, so a ping may come first (seen in CI: 89 00 ahead of the close).
 */
function closeCodeOf(bytes: Buffer): number | undefined {
  let offset = 0;
  while (offset + 2 <= bytes.length) {
    const length = bytes[offset + 1]! & 0x7f;
    if (length > 125) return undefined;
    if ((bytes[offset]! & 0x0f) === 0x8) return length >= 2 ? bytes.readUInt16BE(offset + 2) : undefined;
    offset += 2 + length;
  }
  return undefined;
}

describe("acceptWebSocket with the agent's ws client", () => {
  test("bytes of every frame size arrive in order both ways, and the subprotocol is agreed", async () => {
    const { port, next } = await startServer();
    const ws = await dial(port);
    const stream = await next();
    expect(ws.protocol).toBe(SUBPROTOCOL);
    const sizes = [1, 125, 126, 65_535, 65_536, 1 << 20];
    const sent = Buffer.concat(sizes.map((size, i) => patternBytes(size, i + 1)));
    const reading = readBytes(stream, sent.length);
    let offset = 0;
    for (const size of sizes) {
      ws.send(sent.subarray(offset, offset + size), { binary: true });
      offset += size;
    }
    expect((await within("the bytes at the relay", reading, 10_000)).equals(sent)).toBe(true);

    const back: Buffer[] = [];
    ws.on("message", (data: Buffer) => back.push(Buffer.from(data)));
    for (const size of sizes) stream.write(patternBytes(size, size));
    const expected = Buffer.concat(sizes.map((size) => patternBytes(size, size)));
    await waitFor("the bytes at the agent", () => Buffer.concat(back).length >= expected.length, 10_000);
    expect(Buffer.concat(back).equals(expected)).toBe(true);
  });

  test("a message sent in fragments arrives as its bytes", async () => {
    const { port, next } = await startServer();
    const ws = await dial(port);
    const stream = await next();
    const reading = readBytes(stream, 9);
    ws.send(Buffer.from("abc"), { binary: true, fin: false });
    ws.send(Buffer.from("def"), { binary: true, fin: false });
    ws.send(Buffer.from("ghi"), { binary: true, fin: true });
    expect((await within("the message", reading, 5_000)).toString()).toBe("abcdefghi");
  });

  test("a ping is answered with a pong carrying its payload", async () => {
    const { port, next } = await startServer();
    const ws = await dial(port);
    await next();
    const pong = new Promise<Buffer>((resolve) => ws.once("pong", resolve));
    ws.ping(Buffer.from("are you there"));
    expect((await within("the pong", pong, 5_000)).toString()).toBe("are you there");
  });

  test("a close from the agent ends the stream and is answered with its code", async () => {
    const { port, next } = await startServer();
    const ws = await dial(port);
    const stream = await next();
    const ended = new Promise<void>((resolve) => stream.once("end", resolve));
    stream.resume();
    const closed = new Promise<number>((resolve) => ws.once("close", resolve));
    ws.close(4001, "moving");
    await within("the stream's end", ended, 5_000);
    expect(await within("the agent's close", closed, 5_000)).toBe(4001);
  });

  test("ending the stream sends a normal close", async () => {
    const { port, next } = await startServer();
    const ws = await dial(port);
    const stream = await next();
    const closed = new Promise<number>((resolve) => ws.once("close", resolve));
    stream.end();
    expect(await within("the agent's close", closed, 5_000)).toBe(1000);
  });

  test("a peer that stops answering pings is reported dead and cut", async () => {
    let dead = false;
    const { port, next } = await startServer({ pingIntervalMs: 50, deadAfterMs: 200, onDead: () => { dead = true; } });
    const { socket } = await rawClient(port);
    const stream = await next();
    const closed = new Promise<void>((resolve) => stream.once("close", resolve));
    await within("the stream to close", closed, 5_000);
    expect(dead).toBe(true);
    await waitFor("the socket to close", () => socket.destroyed || socket.readyState === "closed", 5_000);
  });
});

describe("acceptWebSocket with hand-made frames", () => {
  test("frames split anywhere (inside the header, the key or the payload) arrive whole", async () => {
    // The parser fed directly, so that every split is certain: TCP on loopback may merge writes.
    const socket = new Duplex({ read() {}, write(_chunk, _encoding, callback) { callback(); } });
    const stream = new WebSocketStream(socket);
    cleanups.push(() => stream.destroy());
    const payloads = [patternBytes(70_000, 3), patternBytes(300, 4), patternBytes(5, 5)];
    const bytes = Buffer.concat(payloads.map((payload) => frame(0x82, payload)));
    const reading = readBytes(stream, 70_305);
    for (let i = 0; i < 40; i++) stream.receive(bytes.subarray(i, i + 1));
    for (let i = 40; i < bytes.length; i += 997) stream.receive(bytes.subarray(i, Math.min(bytes.length, i + 997)));
    expect((await within("the payloads", reading, 5_000)).equals(Buffer.concat(payloads))).toBe(true);
  });

  test("a peer that sends pings and never reads gets no queue of pongs at the relay", async () => {
    const { port, next } = await startServer();
    const { socket } = await rawClient(port);
    const stream = await next();
    socket.pause();
    socket.removeAllListeners("data");
    // 8 MiB of 125-byte pings, far more pongs than the socket buffers of both ends hold.
    const pings = Buffer.concat(Array.from({ length: 4096 }, () => frame(0x89, Buffer.alloc(125, 7))));
    for (let sent = 0; sent < 8 << 20; sent += pings.length) {
      if (!socket.write(pings)) await new Promise((resolve) => socket.once("drain", resolve));
    }
    const received = new Promise<void>((resolve) => socket.once("drain", resolve).write(frame(0x82, Buffer.from("end")), () => resolve()));
    const reading = readBytes(stream, 3);
    await within("the data frame after the pings", Promise.all([received, reading]), 10_000);
    expect(stream.isOpen).toBe(true);
    expect(stream.bufferedAmount).toBeLessThan(1 << 20);
  });

  test.each([
    ["an unmasked frame", frame(0x82, Buffer.from("x"), { masked: false }), 1002, "unmasked"],
    ["a text frame", frame(0x81, Buffer.from("hello")), 1003, "binary frames only"],
    ["a reserved data opcode", frame(0x83, Buffer.from("x")), 1002, "reserved opcode 3"],
    ["a reserved control opcode", frame(0x8b, Buffer.from("x")), 1002, "reserved opcode 11"],
    ["a reserved bit", frame(0xc2, Buffer.from("x")), 1002, "reserved bit"],
    ["a control frame longer than 125 bytes", frame(0x89, Buffer.alloc(126)), 1002, "control frame"],
    ["a fragmented ping", frame(0x09, Buffer.from("x")), 1002, "control frame"],
    ["a continuation outside a message", frame(0x80, Buffer.from("x")), 1002, "continuation"],
    ["a message begun inside another", Buffer.concat([frame(0x02, Buffer.from("x")), frame(0x82, Buffer.from("y"))]), 1002, "inside another"],
    ["a length with its top bit set", frame(0x82, Buffer.alloc(0), { declared: 1n << 63n }), 1002, "2^53"],
    ["a close frame with a one-byte body", frame(0x88, Buffer.from([3])), 1002, "one-byte"],
    ["a close with 1006, which only reports", frame(0x88, Buffer.from([0x03, 0xee])), 1002, "code 1006"],
    ["a close with 999", frame(0x88, Buffer.from([0x03, 0xe7])), 1002, "code 999"],
    ["a close with an unassigned 2000", frame(0x88, Buffer.from([0x07, 0xd0])), 1002, "code 2000"],
  ])("%s is refused with a close frame and the stream fails", async (_name, bytes, code, message) => {
    const { port, next } = await startServer();
    const { socket, got, afterHandshake } = await rawClient(port);
    const stream = await next();
    const failed = new Promise<Error>((resolve) => stream.once("error", resolve));
    socket.write(bytes);
    const error = await within("the stream's error", failed, 5_000);
    expect(error).toBeInstanceOf(WebSocketProtocolError);
    expect(error.message).toContain(message);
    await waitFor("the close frame and the socket's end", () => got.ended() || got.closed(), 5_000);
    expect(closeCodeOf(afterHandshake())).toBe(code);
  });
});

describe("checkWebSocketHandshake", () => {
  const valid = {
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-version": "13",
    "sec-websocket-key": randomBytes(16).toString("base64"),
    "sec-websocket-protocol": `other, ${SUBPROTOCOL}`,
  };
  const request = (method: string, headers: Record<string, string | undefined>) => ({ method, headers }) as unknown as IncomingMessage;

  test("a valid handshake offering the subprotocol among others is accepted", () => {
    expect(checkWebSocketHandshake(request("GET", valid), SUBPROTOCOL)).toBeUndefined();
  });

  test.each([
    ["a POST", "POST", {}, "GET"],
    ["another upgrade", "GET", { upgrade: "SPDY/3.1" }, "Upgrade: websocket"],
    ["version 8", "GET", { "sec-websocket-version": "8" }, "version 13"],
    ["a short key", "GET", { "sec-websocket-key": "c2hvcnQ=" }, "Sec-WebSocket-Key"],
    ["no key", "GET", { "sec-websocket-key": undefined }, "Sec-WebSocket-Key"],
    ["no subprotocol", "GET", { "sec-websocket-protocol": undefined }, `this relay speaks ${SUBPROTOCOL}`],
    ["an older subprotocol", "GET", { "sec-websocket-protocol": "arc-tunnel.v0" }, "\"arc-tunnel.v0\""],
  ])("%s is refused with a message that says why", (_name, method, headers, message) => {
    expect(checkWebSocketHandshake(request(method, { ...valid, ...headers }), SUBPROTOCOL)).toContain(message);
  });
});
