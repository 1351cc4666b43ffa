// The only importer of node:http2: both ends of the reverse HTTP/2 session over a byte stream.
import http2 from "node:http2";
import type { Duplex } from "node:stream";
import {
  CONNECTION_WINDOW_BYTES, MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_BYTES, MAX_HEADER_LIST_PAIRS, MAX_SESSION_MEMORY_MB, STREAM_WINDOW_BYTES,
  TUNNEL_DRAIN_TIMEOUT_MS,
} from "./timeouts.ts";

export type TunnelRequestStream = http2.ClientHttp2Stream;
export type TunnelServerStream = http2.ServerHttp2Stream;
export type TunnelHeaders = http2.IncomingHttpHeaders;
export type TunnelOutgoingHeaders = http2.OutgoingHttpHeaders;

const SETTINGS: http2.Settings = {
  maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
  initialWindowSize: STREAM_WINDOW_BYTES,
  maxHeaderListSize: MAX_HEADER_LIST_BYTES,
  enablePush: false,
};

/** The relay's side: it sends requests to the agent. */
export interface TunnelClient {
  request(headers: TunnelOutgoingHeaders, options?: { endStream?: boolean }): TunnelRequestStream;
  /** True once closing or closed: no new request goes here. */
  readonly closed: boolean;
  /**
   * True once the session was destroyed (its socket gone, cut, or past the drain timeout), not
   * merely closing: Bun then ends every open stream as if its peer had, so a stream that "ends"
   * now was cut. A graceful close's streams keep ending for real meanwhile.
   */
  readonly lost: boolean;
  /** True once either end said GOAWAY: streams in flight finish, new requests go elsewhere. */
  readonly draining: boolean;
  /** Resolves once the session is gone, for whatever reason. */
  readonly done: Promise<void>;
  /** Resolves when the agent announces it is going away (its GOAWAY); never rejects. */
  readonly goaway: Promise<void>;
  /** Sends GOAWAY (the agent then dials a new tunnel) and lets streams in flight finish. */
  drain(): void;
  /** Streams in flight right now. */
  readonly activeStreams: number;
  /** GOAWAY, streams in flight finish (at most TUNNEL_DRAIN_TIMEOUT_MS), then the session ends. */
  close(): Promise<void>;
  /** Ends the session now, every stream in flight reset: for an agent that may no longer serve. */
  terminate(): Promise<void>;
}

/** The agent's side: it answers the relay's requests. */
export interface TunnelServer {
  readonly done: Promise<void>;
  /** Resolves when the relay announces it is going away (its GOAWAY); never rejects. */
  readonly goaway: Promise<void>;
  /** Sends GOAWAY: the relay routes no new request here; streams in flight finish. */
  drain(): void;
  readonly activeStreams: number;
  close(): Promise<void>;
}

/**
 * What the owner of a tunnel client hears, as methods of one object it already has (a relay holds
 * one per idle agent: one object, not three closures and two promise reactions).
 */
export interface TunnelClientEvents {
  /** A session error (a peer hanging up among them); the session then ends. */
  sessionError?(error: Error): void;
  /** The agent said GOAWAY: requests in flight finish, new ones go elsewhere. */
  goaway?(): void;
  /** The session is gone, for whatever reason; called once. */
  closed?(): void;
}

/**
 * Starts the HTTP/2 client end on `socket` (the relay, over the agent's WebSocket), telling
 * `events` what happens to it; `done` and `goaway` say the same as promises.
 */
export function openTunnelClient(socket: Duplex, events: TunnelClientEvents = {}): TunnelClient {
  return new Http2TunnelClient(socket, events);
}

/**
 * The authority every tunnel session names, parsed once: node:http2 keeps the URL it is given,
 * and a string would be parsed into a URL of its own per tunnel.
 */
const TUNNEL_AUTHORITY = new URL("http://arc-tunnel");

/** node:http2 calls `createConnection(authority, options)` with the options `connect` got. */
function takeTunnelSocket(_authority: URL, options: { tunnelSocket: Duplex }): Duplex {
  return options.tunnelSocket;
}

type ClientSession = http2.ClientHttp2Session & { arcTunnelClient: Http2TunnelClient };
type ClientSocket = Duplex & { arcTunnelClient: Http2TunnelClient };

/**
 * A class, not an object literal of closures, and its session's and socket's listeners shared by
 * every tunnel (each finds its client on the emitter): a relay holds one per idle agent, and
 * methods on the prototype cost nothing per tunnel, where each closure, `once` wrapper and
 * promise reaction costs a little.
 */
class Http2TunnelClient implements TunnelClient {
  private readonly session: ClientSession;
  // The promises are made only when asked for: the relay listens through `events`.
  private donePromise?: Promise<void>;
  private goawayPromise?: Promise<void>;
  private resolveDone?: () => void;
  private resolveGoaway?: () => void;
  private isDone = false;
  private kickPending = false;
  private goingAway = false;
  private peerSaidGoaway = false;
  private active = 0;

  constructor(private readonly socket: Duplex, private readonly events: TunnelClientEvents) {
    const session = http2.connect(TUNNEL_AUTHORITY, {
      createConnection: takeTunnelSocket as never,
      tunnelSocket: socket,
      settings: SETTINGS,
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      maxHeaderListPairs: MAX_HEADER_LIST_PAIRS,
    } as http2.ClientSessionOptions) as ClientSession;
    this.session = session;
    session.arcTunnelClient = this;
    (socket as ClientSocket).arcTunnelClient = this;
    widenConnectionWindow(session);
    // Without a listener an 'error' event would throw; the session ends either way and `closed` says so.
    session.on("error", onClientSessionError);
    session.on("close", onClientSessionClose);
    session.on("goaway", onClientSessionGoaway);
    socket.on("close", onClientSocketClose);
  }

  request(headers: TunnelOutgoingHeaders, options?: { endStream?: boolean }): TunnelRequestStream {
    const stream = this.session.request(headers, { endStream: options?.endStream ?? false });
    this.active += 1;
    stream.once("close", () => { this.active -= 1; });
    return kickAfterWrites(stream, this);
  }

  get closed(): boolean { return this.session.closed || this.session.destroyed; }
  get lost(): boolean { return this.session.destroyed; }
  get draining(): boolean { return this.goingAway || this.session.closed || this.session.destroyed; }
  get activeStreams(): number { return this.active; }

  drain(): void {
    if (this.goingAway || this.session.destroyed) return;
    this.goingAway = true;
    this.session.goaway(http2.constants.NGHTTP2_NO_ERROR);
  }

  close(): Promise<void> { return closeSession(this.session, this.done); }

  terminate(): Promise<void> {
    if (!this.session.destroyed) this.session.destroy();
    return this.done;
  }

  /** See createFlushKick: the same, with its flag on the client rather than in a closure. */
  kick(): void {
    if (this.kickPending) return;
    this.kickPending = true;
    queueMicrotask(() => {
      this.kickPending = false;
      if (!this.socket.destroyed) this.socket.emit("drain");
    });
  }

  get done(): Promise<void> {
    this.donePromise ??= this.isDone ? Promise.resolve() : new Promise((resolve) => { this.resolveDone = resolve; });
    return this.donePromise;
  }

  /** Resolves on the agent's GOAWAY; never, if the session ends without one. */
  get goaway(): Promise<void> {
    this.goawayPromise ??= this.peerSaidGoaway ? Promise.resolve() : new Promise((resolve) => { this.resolveGoaway = resolve; });
    return this.goawayPromise;
  }

  /** @internal The session's 'error'. */
  sessionError(error: Error): void { this.events.sessionError?.(error); }

  /** @internal The session's 'close', or its socket's. */
  sessionClosed(): void {
    if (this.isDone) return;
    this.isDone = true;
    this.resolveDone?.();
    this.events.closed?.();
  }

  /** @internal The agent's GOAWAY. */
  peerGoingAway(): void {
    if (this.peerSaidGoaway || this.isDone) return;
    this.peerSaidGoaway = true;
    this.goingAway = true;
    this.resolveGoaway?.();
    this.events.goaway?.();
  }

  /** @internal The socket's 'close': the session goes with it. */
  socketClosed(): void {
    if (!this.session.destroyed) this.session.destroy();
    this.sessionClosed();
  }
}

function onClientSessionError(this: ClientSession, error: Error): void { this.arcTunnelClient.sessionError(error); }
function onClientSessionClose(this: ClientSession): void { this.arcTunnelClient.sessionClosed(); }
function onClientSessionGoaway(this: ClientSession): void { this.arcTunnelClient.peerGoingAway(); }
function onClientSocketClose(this: ClientSocket): void { this.arcTunnelClient.socketClosed(); }

/**
 * Starts the HTTP/2 server end on `socket` (the agent, over its WebSocket to the relay). Each
 * request stream goes to `onStream`; `onError` receives session errors.
 */
export function serveTunnel(
  socket: Duplex,
  onStream: (stream: TunnelServerStream, headers: TunnelHeaders) => void,
  onError?: (error: Error) => void,
): TunnelServer {
  const server = http2.createServer({ settings: SETTINGS, maxSessionMemory: MAX_SESSION_MEMORY_MB, maxHeaderListPairs: MAX_HEADER_LIST_PAIRS });
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => { resolveDone = resolve; });
  let resolveGoaway!: () => void;
  const goaway = new Promise<void>((resolve) => { resolveGoaway = resolve; });
  let current: http2.ServerHttp2Session | undefined;
  let active = 0;
  let lastStreamId = 0;
  // Set by drain(): streams above it were refused by our GOAWAY and must not be served.
  let goawayLastStreamId: number | undefined;
  const kicker = { kick: createFlushKick(socket) };
  server.on("session", (session) => {
    current = session;
    widenConnectionWindow(session);
    session.on("error", (error) => onError?.(error));
    session.once("goaway", () => resolveGoaway());
    void sessionDone(session, socket).then(resolveDone);
  });
  server.on("stream", (stream: TunnelServerStream, headers: TunnelHeaders) => {
    // Bun 1.4.5 still emits a stream that arrived after our GOAWAY, and refuses it (REFUSED_STREAM)
    // too: served, it would run while the relay, told it was not processed at all (RFC 9113 8.7),
    // sends it again, so a create ran twice. It is left to Bun's refusal; closing it here as well
    // made Bun cancel every other stream still in flight.
    const id = stream.id ?? 0;
    if (goawayLastStreamId !== undefined && id > goawayLastStreamId) return;
    if (id > lastStreamId) lastStreamId = id;
    active += 1;
    stream.once("close", () => { active -= 1; });
    onStream(kickAfterWrites(stream, kicker), headers);
  });
  socket.once("close", () => resolveDone());
  server.emit("connection", socket);
  return {
    done,
    goaway,
    get activeStreams() { return active; },
    drain() {
      if (!current || current.destroyed || goawayLastStreamId !== undefined) return;
      // Bun's GOAWAY names the last stream it has taken, the last one emitted here.
      goawayLastStreamId = lastStreamId;
      current.goaway(http2.constants.NGHTTP2_NO_ERROR);
    },
    close: async () => {
      if (current) await closeSession(current, done);
      else socket.destroy();
    },
  };
}

/**
 * A bigger connection window lets bulk transfers use a long link at full speed.
 *
 * On Bun 1.4.5 `setLocalWindowSize()` also raises the engine's idea of each new stream's window
 * without telling the peer, so every body larger than the stream window stalls for good
 * (oven-sh/bun#40180, #41942). Sending our stream window again right after, as a SETTINGS frame,
 * puts the engine's per-stream value back; the connection window keeps the new size.
 * `streamWindowBytes` is the session's own stream window (default STREAM_WINDOW_BYTES).
 */
export function widenConnectionWindow(session: http2.Http2Session, streamWindowBytes = STREAM_WINDOW_BYTES): void {
  session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
  session.settings({ initialWindowSize: streamWindowBytes });
}

/**
 * Bun 1.4.5 queues a stream's DATA whenever any other stream of the session has frames queued
 * (say, behind its own used-up flow-control window), and sends it only when the peer's next frame
 * arrives (oven-sh/bun#43422). One reader that stops reading then stalls every other response on
 * the tunnel. The session flushes its queues when its socket drains, so after every write the
 * socket reports a drain (once per microtask, however many writes).
 */
function createFlushKick(socket: Duplex): () => void {
  let pending = false;
  return function kickSessionFlush() {
    if (pending) return;
    pending = true;
    queueMicrotask(() => {
      pending = false;
      if (!socket.destroyed) socket.emit("drain");
    });
  };
}

function kickAfterWrites<T extends http2.Http2Stream>(stream: T, kicker: { kick(): void }): T {
  const patched = stream as unknown as { write: (...a: unknown[]) => boolean; end: (...a: unknown[]) => unknown };
  const write = patched.write;
  const end = patched.end;
  patched.write = function writeAndFlush(this: unknown, ...args: unknown[]) {
    const ok = write.apply(this, args);
    kicker.kick();
    return ok;
  };
  patched.end = function endAndFlush(this: unknown, ...args: unknown[]) {
    const result = end.apply(this, args);
    kicker.kick();
    return result;
  };
  return stream;
}

function sessionDone(session: http2.Http2Session, socket: Duplex): Promise<void> {
  return new Promise((resolve) => {
    session.once("close", () => resolve());
    socket.once("close", () => {
      if (!session.destroyed) session.destroy();
      resolve();
    });
  });
}

/** Lets in-flight streams finish for a moment, then tears the session and its socket down. */
async function closeSession(session: http2.Http2Session, done: Promise<void>): Promise<void> {
  if (!session.closed) session.close();
  const timer = setTimeout(() => session.destroy(), TUNNEL_DRAIN_TIMEOUT_MS);
  await done;
  clearTimeout(timer);
}

/**
 * Cancels `stream`: RST_STREAM with CANCEL (RFC 9113 8.7), and, while its own body is unfinished,
 * nothing before it. Bun 1.4.5's `close(code)` and a plain `destroy()` end the writable side first,
 * which puts an empty DATA frame with END_STREAM on the wire: the peer takes a request body cut
 * short for a complete one (a Go server, as the API server is, reads it without error). A
 * `destroy(error)` resets without ending, and an error whose code is ABORT_ERR gives CANCEL, not
 * INTERNAL_ERROR. A stream whose own side already ended gets `close(CANCEL)`. No-op once destroyed.
 */
export function cancelStream(stream: http2.Http2Stream): void {
  if (stream.destroyed) return;
  if (stream.writableEnded) {
    stream.close(http2.constants.NGHTTP2_CANCEL);
    return;
  }
  // The error only selects the reset: nobody waits on it.
  stream.once("error", ignoreOwnCancel);
  stream.destroy(new StreamCancelled());
}

/** Bun 1.4.5's Http2Stream#_destroy resets with CANCEL for an error whose code is ABORT_ERR. */
class StreamCancelled extends Error {
  override readonly name = "AbortError";
  readonly code = "ABORT_ERR";
  constructor() {
    super("the stream was cancelled");
  }
}

function ignoreOwnCancel(): void {}

/**
 * Whether `stream`'s incoming side ended with the peer's END_STREAM, rather than with a reset or
 * the end of its session: Bun 1.4.5 ends the readable side of a reset stream too. Call it from
 * 'end'; only then may what was read be forwarded as complete. Bun marks a clean end with
 * `rstCode` 0 and a reset with its code (CANCEL for a session that died), and sets `aborted` only
 * while this end's own side is still open. A reset read together with END_STREAM (one TCP read)
 * sets its code before 'end' runs and counts as a cut: the safe side, as a body or an answer is
 * then never passed on as whole when it might not be.
 */
export function endedByPeer(stream: http2.Http2Stream): boolean {
  return !stream.aborted && !stream.rstCode;
}

export const http2Constants = {
  NGHTTP2_NO_ERROR: http2.constants.NGHTTP2_NO_ERROR,
  NGHTTP2_CANCEL: http2.constants.NGHTTP2_CANCEL,
  NGHTTP2_INTERNAL_ERROR: http2.constants.NGHTTP2_INTERNAL_ERROR,
  NGHTTP2_PROTOCOL_ERROR: http2.constants.NGHTTP2_PROTOCOL_ERROR,
  NGHTTP2_REFUSED_STREAM: http2.constants.NGHTTP2_REFUSED_STREAM,
} as const;
