// The relay's end of an agent's WebSocket: RFC 6455 framing read and written straight on the
// upgraded socket, as one byte stream for HTTP/2. Why not `ws`: docs/decisions.md, "The relay
// frames the agent's WebSocket itself".
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { Duplex } from "node:stream";
import { livenessTimes, unwatchLiveness, watchLiveness, type LivenessOptions, type LivenessTarget } from "./liveness.ts";
import { destroyOnceRead } from "./read-grace.ts";

/** RFC 6455 §1.3: appended to the client's key before hashing it into Sec-WebSocket-Accept. */
const ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** RFC 6455 §4.1: the key is 16 random bytes, base64-encoded. */
const KEY_PATTERN = /^[+/0-9A-Za-z]{22}==$/;

const OPCODE_CONTINUATION = 0x0;
const OPCODE_TEXT = 0x1;
const OPCODE_BINARY = 0x2;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;
const OPCODE_PONG = 0xa;

/** RFC 6455 §7.4.1 close codes this end sends. */
const CLOSE_NORMAL = 1000;
const CLOSE_PROTOCOL_ERROR = 1002;
const CLOSE_UNSUPPORTED_DATA = 1003;
const CLOSE_NO_STATUS = 1005;

/** After this end sends its close frame, the peer has this long to close the TCP connection (ms). */
const CLOSE_HANDSHAKE_MS = 1_000;

const EMPTY = Buffer.alloc(0);

/** A peer broke RFC 6455; the stream is destroyed with it after a close frame with `closeCode`. */
export class WebSocketProtocolError extends Error {
  override readonly name = "WebSocketProtocolError";
  constructor(message: string, readonly closeCode: number) {
    super(message);
  }
}

/**
 * Checks a WebSocket opening handshake (RFC 6455 §4.2.1) that must offer `subprotocol`.
 * Returns why it is refused, as a message that says what to do (the caller answers 400; RFC 6455
 * §4.4 allows 426 for a version mismatch, and every client in use speaks 13), or undefined when it
 * may be accepted. Never throws.
 */
export function checkWebSocketHandshake(req: IncomingMessage, subprotocol: string): string | undefined {
  if (req.method !== "GET") return `a WebSocket handshake is a GET, not ${req.method}`;
  const upgrade = String(req.headers.upgrade ?? "").toLowerCase().split(",").map((t) => t.trim());
  if (!upgrade.includes("websocket")) return "expected Upgrade: websocket";
  if (req.headers["sec-websocket-version"] !== "13") {
    return "this relay speaks WebSocket version 13 (RFC 6455) only: send Sec-WebSocket-Version: 13";
  }
  if (!KEY_PATTERN.test(String(req.headers["sec-websocket-key"] ?? ""))) {
    return "missing or malformed Sec-WebSocket-Key (16 random bytes in base64, RFC 6455 §4.1)";
  }
  const offered = String(req.headers["sec-websocket-protocol"] ?? "").split(",").map((p) => p.trim());
  if (!offered.includes(subprotocol)) {
    return `the client offered the tunnel subprotocol(s) ${JSON.stringify(offered.filter(Boolean).join(", "))}, ` +
      `and this relay speaks ${subprotocol}: run an agent of a version this relay serves`;
  }
  return undefined;
}

/**
 * Completes a handshake that `checkWebSocketHandshake` accepted: writes the 101 with
 * Sec-WebSocket-Accept and `subprotocol`, and returns the byte stream of the connection. `head`
 * is what the client sent after its request head (node:http's `upgrade` event hands it over).
 */
export function acceptWebSocket(
  req: IncomingMessage, socket: Duplex, head: Buffer, subprotocol: string, options: LivenessOptions = {},
): WebSocketStream {
  const accept = createHash("sha1").update(String(req.headers["sec-websocket-key"]) + ACCEPT_GUID).digest("base64");
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${subprotocol}\r\n\r\n`,
  );
  const stream = new WebSocketStream(socket, options);
  if (head.length > 0) stream.receive(head);
  return stream;
}

/**
 * The server end of a WebSocket as a Duplex of the bytes its binary messages carry: what the peer
 * sends comes out unmasked, message and frame boundaries dropped (the tunnel is one byte stream,
 * so nothing is buffered to rebuild a message); each write goes out as one unmasked binary frame.
 * Pings are answered while the socket takes writes; the liveness sweep pings the peer and
 * terminates it after `deadAfterMs` of silence. A peer that breaks RFC 6455 (an unmasked frame, a
 * text frame, a reserved opcode or bit, a fragmented or long control frame, a close code no
 * endpoint may send) gets a close frame with 1002 or 1003, and the stream is destroyed with a
 * WebSocketProtocolError. Backpressure: the socket is paused while the reader
 * is full, and writes wait for the socket to drain.
 */
export class WebSocketStream extends Duplex implements LivenessTarget {
  lastHeard = performance.now();
  lastPing = 0;
  readonly pingEvery: number;
  readonly deadAfter: number;
  readonly onDead?: () => void;

  private readonly socket: Duplex;
  /** A frame header split across reads: its first bytes. */
  private partialHeader: Buffer | undefined;
  /** Inside a frame's payload: its opcode, the payload bytes still to come, its masking key. */
  private inFrame = false;
  private opcode = 0;
  private remaining = 0;
  private maskKey = 0;
  private maskOffset = 0;
  /** A data message of several frames has begun and not yet had its final frame. */
  private inMessage = false;
  /** A control frame's payload (at most 125 bytes) as it arrives. */
  private control: Buffer[] | undefined;
  private closeSent = false;
  /** The peer's close frame came: what follows it is ignored (RFC 6455 §5.5.1). */
  private closeReceived = false;
  private paused = false;

  constructor(socket: Duplex, options: LivenessOptions = {}) {
    super({ allowHalfOpen: false });
    this.socket = socket;
    ({ pingEvery: this.pingEvery, deadAfter: this.deadAfter } = livenessTimes(options));
    this.onDead = options.onDead;
    (socket as { setTimeout?: (ms: number) => void }).setTimeout?.(0);
    (socket as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    // Listeners shared by every stream, which each find theirs on the socket: a relay holds one
    // stream per idle agent, and four closures each would cost more than this one property.
    (socket as SocketOf).arcWebSocketStream = this;
    socket.on("data", onSocketData);
    socket.on("end", onSocketEnd);
    socket.on("error", onSocketError);
    socket.on("close", onSocketClose);
    watchLiveness(this);
  }

  get isOpen(): boolean { return !this.closeSent && !this.destroyed; }

  /** Bytes written to the socket and not yet taken by the kernel (as `ws`'s `bufferedAmount`). */
  get bufferedAmount(): number { return this.socket.writableLength; }

  ping(): void { this.sendFrame(OPCODE_PING, EMPTY); }

  terminate(): void { this.socket.destroy(); }

  /** Feeds bytes read from the socket through the frame parser. */
  receive(chunk: Buffer): void {
    this.lastHeard = performance.now();
    if (this.closeReceived) return;
    let data = chunk;
    if (this.partialHeader) {
      data = Buffer.concat([this.partialHeader, chunk]);
      this.partialHeader = undefined;
    }
    let offset = 0;
    while (offset < data.length && !this.destroyed && !this.closeReceived) {
      if (!this.inFrame) {
        const used = this.readHeader(data, offset);
        if (used === 0) {
          // Copied: a slice would keep the whole read alive until the next one.
          this.partialHeader = Buffer.from(data.subarray(offset));
          return;
        }
        if (used < 0) return;
        offset += used;
        if (this.remaining === 0) this.endFrame();
        continue;
      }
      const n = Math.min(this.remaining, data.length - offset);
      const payload = data.subarray(offset, offset + n);
      unmask(payload, this.maskKey, this.maskOffset);
      this.maskOffset = (this.maskOffset + n) & 3;
      offset += n;
      this.remaining -= n;
      if (this.control) this.control.push(Buffer.from(payload));
      else if (!this.push(payload) && !this.paused) {
        this.paused = true;
        this.socket.pause();
      }
      if (this.remaining === 0) this.endFrame();
    }
  }

  /**
   * Reads one frame header (RFC 6455 §5.2) at `offset`: returns the bytes it took, 0 if the header
   * is not all there yet, -1 if it broke the protocol (the stream is then failing).
   */
  private readHeader(data: Buffer, offset: number): number {
    const available = data.length - offset;
    if (available < 2) return 0;
    const b0 = data[offset]!;
    const b1 = data[offset + 1]!;
    const length7 = b1 & 0x7f;
    const size = 2 + (length7 === 126 ? 2 : length7 === 127 ? 8 : 0) + 4;
    if ((b1 & 0x80) === 0) return this.fail("the agent sent an unmasked frame; a client masks every frame (RFC 6455 §5.1)", CLOSE_PROTOCOL_ERROR);
    if (available < size) return 0;
    if ((b0 & 0x70) !== 0) return this.fail("the agent set a reserved bit (RSV1-3) with no extension agreed (RFC 6455 §5.2)", CLOSE_PROTOCOL_ERROR);
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    let length = length7;
    if (length7 === 126) length = data.readUInt16BE(offset + 2);
    else if (length7 === 127) {
      const high = data.readUInt32BE(offset + 2);
      // The most significant bit must be 0 (§5.2); beyond 2^53 a number loses bytes.
      if (high > 0x1fffff) return this.fail("the agent sent a frame longer than 2^53 bytes", CLOSE_PROTOCOL_ERROR);
      length = high * 0x1_0000_0000 + data.readUInt32BE(offset + 6);
    }
    if (opcode >= OPCODE_CLOSE) {
      if (opcode > OPCODE_PONG) return this.fail(`the agent sent a frame with reserved opcode ${opcode} (RFC 6455 §5.2)`, CLOSE_PROTOCOL_ERROR);
      if (!fin || length > 125) return this.fail("the agent sent a fragmented or over-long control frame (RFC 6455 §5.5)", CLOSE_PROTOCOL_ERROR);
      this.control = [];
    } else if (opcode === OPCODE_TEXT) {
      return this.fail("the agent sent a text frame; the tunnel carries binary frames only", CLOSE_UNSUPPORTED_DATA);
    } else if (opcode === OPCODE_BINARY || opcode === OPCODE_CONTINUATION) {
      if ((opcode === OPCODE_CONTINUATION) !== this.inMessage) {
        return this.fail(opcode === OPCODE_CONTINUATION ? "the agent sent a continuation frame outside a message" : "the agent began a message inside another (RFC 6455 §5.4)", CLOSE_PROTOCOL_ERROR);
      }
      this.inMessage = !fin;
    } else {
      return this.fail(`the agent sent a frame with reserved opcode ${opcode} (RFC 6455 §5.2)`, CLOSE_PROTOCOL_ERROR);
    }
    this.maskKey = data.readUInt32BE(offset + size - 4);
    this.maskOffset = 0;
    this.opcode = opcode;
    this.remaining = length;
    this.inFrame = true;
    return size;
  }

  private endFrame(): void {
    this.inFrame = false;
    const control = this.control;
    if (!control) return;
    this.control = undefined;
    const payload = control.length === 1 ? control[0]! : Buffer.concat(control);
    if (this.opcode === OPCODE_PING) {
      // Only while the socket takes writes: a peer that sends pings and never reads would
      // otherwise have every pong queued here without bound. Answering only some pings is allowed
      // (RFC 6455 §5.5.3: a pong may answer just the latest ping), and every ping counts as life.
      if (!this.closeSent && !this.socket.writableNeedDrain) this.sendFrame(OPCODE_PONG, payload);
    } else if (this.opcode === OPCODE_CLOSE) {
      if (payload.length === 1) {
        this.fail("the agent sent a close frame with a one-byte body (RFC 6455 §5.5.1)", CLOSE_PROTOCOL_ERROR);
        return;
      }
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : CLOSE_NO_STATUS;
      if (payload.length >= 2 && !isSendableCloseCode(code)) {
        this.fail(`the agent closed with code ${code}, which no endpoint may send (RFC 6455 §7.4)`, CLOSE_PROTOCOL_ERROR);
        return;
      }
      this.closeReceived = true;
      this.sendClose(code === CLOSE_NO_STATUS ? CLOSE_NORMAL : code, "");
      this.push(null);
    }
  }

  /** Sends a close frame (once) and ends the socket; the peer closes TCP, or it is closed for it. */
  private sendClose(code: number, reason: string): void {
    if (this.closeSent) return;
    this.closeSent = true;
    const why = Buffer.from(reason.slice(0, 120));
    const body = Buffer.allocUnsafe(2 + why.length);
    body.writeUInt16BE(code, 0);
    why.copy(body, 2);
    this.sendFrame(OPCODE_CLOSE, body);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_HANDSHAKE_MS).unref?.();
  }

  private fail(message: string, closeCode: number): -1 {
    this.sendClose(closeCode, message);
    this.destroy(new WebSocketProtocolError(message, closeCode));
    return -1;
  }

  /**
   * One unmasked frame, its payload copied behind its header: one write costs less than two
   * corked ones on Bun's sockets (measured: 256 MiB in 16 KiB frames, 240-260 against 280-340 ms CPU).
   */
  private sendFrame(opcode: number, payload: Buffer, callback?: (error?: Error | null) => void): void {
    if (this.socket.destroyed) {
      callback?.(null);
      return;
    }
    const length = payload.length;
    const headerSize = length < 126 ? 2 : length < 0x10000 ? 4 : 10;
    const frame = Buffer.allocUnsafe(headerSize + length);
    frame[0] = 0x80 | opcode;
    if (headerSize === 2) frame[1] = length;
    else if (headerSize === 4) {
      frame[1] = 126;
      frame.writeUInt16BE(length, 2);
    } else {
      frame[1] = 127;
      frame.writeUInt32BE(Math.floor(length / 0x1_0000_0000), 2);
      frame.writeUInt32BE(length >>> 0, 6);
    }
    payload.copy(frame, headerSize);
    const flushed = this.socket.write(frame);
    if (!callback) return;
    if (flushed) callback();
    else this.socket.once("drain", () => callback());
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.closeSent) {
      callback(new Error("the tunnel's WebSocket is closing"));
      return;
    }
    this.sendFrame(OPCODE_BINARY, chunk, callback);
  }

  override _read(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket.resume();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.sendClose(CLOSE_NORMAL, "");
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    unwatchLiveness(this);
    // A close frame already sent gets its moment on the wire (sendClose destroys the socket later).
    if (!this.closeSent) this.socket.destroy();
    callback(error);
  }

  /** (The socket's 'close' listener.) The socket is gone: see destroyOnceRead. */
  socketClosed(): void {
    unwatchLiveness(this);
    if (this.destroyed) return;
    this.push(null);
    destroyOnceRead(this);
  }
}

/**
 * RFC 6455 §7.4: codes 1000-4999 but those reserved for reporting (1004, 1005, 1006, 1015) and
 * those no version of the RFC assigned (1016-2999).
 */
function isSendableCloseCode(code: number): boolean {
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006;
}

type SocketOf = Duplex & { arcWebSocketStream: WebSocketStream };

function onSocketData(this: SocketOf, chunk: Buffer): void {
  this.arcWebSocketStream.receive(chunk);
}

function onSocketEnd(this: SocketOf): void {
  this.arcWebSocketStream.push(null);
}

function onSocketError(this: SocketOf, error: Error): void {
  this.arcWebSocketStream.destroy(error);
}

function onSocketClose(this: SocketOf): void {
  this.arcWebSocketStream.socketClosed();
}

/** Whether this machine stores a 32-bit word's lowest byte first (the word-wise unmask assumes it). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * XORs `payload` in place with the 32-bit masking key (big-endian, as on the wire), starting
 * `offset` bytes into the key (RFC 6455 §5.3). Word by word where the buffer is aligned: four
 * times fewer steps than byte by byte, which is most of reading a tunnel's bulk transfer.
 */
function unmask(payload: Buffer, key: number, offset: number): void {
  const length = payload.length;
  let i = 0;
  if (LITTLE_ENDIAN && length >= 16) {
    for (const skip = (4 - (payload.byteOffset & 3)) & 3; i < skip; i++) payload[i]! ^= maskByte(key, offset + i);
    const words = (length - i) >>> 2;
    const j = offset + i;
    const word = maskByte(key, j) | (maskByte(key, j + 1) << 8) | (maskByte(key, j + 2) << 16) | (maskByte(key, j + 3) << 24);
    const view = new Int32Array(payload.buffer, payload.byteOffset + i, words);
    for (let w = 0; w < words; w++) view[w]! ^= word;
    i += words * 4;
  }
  for (; i < length; i++) payload[i]! ^= maskByte(key, offset + i);
}

/** Byte `position` (mod 4) of the big-endian masking key. */
function maskByte(key: number, position: number): number {
  return (key >>> (24 - 8 * (position & 3))) & 0xff;
}
