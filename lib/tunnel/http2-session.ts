// The only importer of node:http2: both ends of the reverse HTTP/2 session over a byte stream.
import http2 from "node:http2";
import type { Duplex } from "node:stream";
import { MAX_CONCURRENT_STREAMS, TUNNEL_DRAIN_TIMEOUT_MS } from "./timeouts.ts";

export type TunnelRequestStream = http2.ClientHttp2Stream;
export type TunnelServerStream = http2.ServerHttp2Stream;
export type TunnelHeaders = http2.IncomingHttpHeaders;
export type TunnelOutgoingHeaders = http2.OutgoingHttpHeaders;

// Larger windows than the 64 KiB default let one stream move bulk data at full speed; memory stays
// bounded because a reader that stops reading stops its own stream's window, not the others'.
// The connection window stays at its default: on Bun 1.4.5, session.setLocalWindowSize() also
// raises the engine's idea of each stream's window without telling the peer, so the peer stops at
// STREAM_WINDOW_BYTES and every body larger than that stalls for good (oven-sh/bun#40180, #41942).
const STREAM_WINDOW_BYTES = 1024 * 1024;

const SETTINGS: http2.Settings = {
  maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
  initialWindowSize: STREAM_WINDOW_BYTES,
  enablePush: false,
};

/** The relay's side: it sends requests to the agent. */
export interface TunnelClient {
  request(headers: TunnelOutgoingHeaders, options?: { endStream?: boolean }): TunnelRequestStream;
  readonly closed: boolean;
  /** Resolves once the session is gone, for whatever reason. */
  readonly done: Promise<void>;
  close(): Promise<void>;
}

/** The agent's side: it answers the relay's requests. */
export interface TunnelServer {
  readonly done: Promise<void>;
  close(): Promise<void>;
}

/** Starts the HTTP/2 client end on `socket` (the relay, over the agent's WebSocket). */
export function openTunnelClient(socket: Duplex, onError?: (error: Error) => void): TunnelClient {
  const session = http2.connect("http://arc-tunnel", {
    createConnection: () => socket as never,
    settings: SETTINGS,
    maxSessionMemory: 64,
  });
  session.on("error", (error) => onError?.(error));
  const done = sessionDone(session, socket);
  return {
    request: (headers, options) => session.request(headers, { endStream: options?.endStream ?? false }),
    get closed() { return session.closed || session.destroyed; },
    done,
    close: () => closeSession(session, done),
  };
}

/** Starts the HTTP/2 server end on `socket` (the agent, over its WebSocket to the relay). */
export function serveTunnel(
  socket: Duplex,
  onStream: (stream: TunnelServerStream, headers: TunnelHeaders) => void,
  onError?: (error: Error) => void,
): TunnelServer {
  const server = http2.createServer({ settings: SETTINGS, maxSessionMemory: 64 });
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => { resolveDone = resolve; });
  let current: http2.ServerHttp2Session | undefined;
  server.on("session", (session) => {
    current = session;
    session.on("error", (error) => onError?.(error));
    void sessionDone(session, socket).then(resolveDone);
  });
  server.on("stream", onStream);
  socket.once("close", () => resolveDone());
  server.emit("connection", socket);
  return {
    done,
    close: async () => {
      if (current) await closeSession(current, done);
      else socket.destroy();
    },
  };
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

export const http2Constants = {
  NGHTTP2_CANCEL: http2.constants.NGHTTP2_CANCEL,
  NGHTTP2_INTERNAL_ERROR: http2.constants.NGHTTP2_INTERNAL_ERROR,
} as const;
