// Real tunnels for tests: a relay (node:http, its end framed by acceptWebSocket as the relay's own)
// and an agent dialing it with `ws` (wrapped with createWebSocketDuplex, as the agent's own).
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import net, { type AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocket } from "ws";
import {
  acceptWebSocket, createWebSocketDuplex, openTunnelClient, protocol, serveTunnel, type TunnelClient, type TunnelClientEvents, type TunnelHeaders,
  type TunnelServer, type TunnelServerStream, type WebSocketDuplexOptions, type WebSocketStream,
} from "../../lib/tunnel/index.ts";
import { within } from "../support/wait-for.ts";

export type StreamHandler = (stream: TunnelServerStream, headers: TunnelHeaders) => void;

export interface TunnelPair {
  /** The relay's HTTP/2 client end. */
  client: TunnelClient;
  /** The agent's HTTP/2 server end. */
  server: TunnelServer;
  /** The relay's end of the WebSocket (accepted by acceptWebSocket). */
  relayStream: WebSocketStream;
  /** The agent's WebSocket (dialed with `ws`). */
  agentWs: WebSocket;
  close(): Promise<void>;
}

export async function listen(server: http.Server | net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

export async function closeServer(server: http.Server | net.Server): Promise<void> {
  if ("closeAllConnections" in server) server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A relay with a WebSocket endpoint and an agent connected to it, with HTTP/2 over the pair. */
export async function startTunnelPair(
  onStream: StreamHandler,
  options: { duplex?: WebSocketDuplexOptions; events?: TunnelClientEvents } = {},
): Promise<TunnelPair> {
  const relay = http.createServer((_req, res) => res.writeHead(404).end());
  const accepted = new Promise<WebSocketStream>((resolve) => {
    relay.on("upgrade", (req, socket, head) => resolve(acceptWebSocket(req, socket, head, protocol.TUNNEL_SUBPROTOCOL, options.duplex)));
  });
  const port = await listen(relay);

  const agentWs = new WebSocket(`ws://127.0.0.1:${port}${protocol.AGENT_CONNECT_PATH}`, [protocol.TUNNEL_SUBPROTOCOL], {
    perMessageDeflate: false,
  });
  await new Promise<void>((resolve, reject) => {
    agentWs.once("open", () => resolve());
    agentWs.once("error", reject);
  });
  const relayStream = await accepted;
  relayStream.on("error", () => {});

  const server = serveTunnel(createWebSocketDuplex(agentWs, options.duplex), onStream, () => {});
  const client = openTunnelClient(relayStream, options.events);

  return {
    client,
    server,
    relayStream,
    agentWs,
    async close() {
      agentWs.terminate();
      relayStream.terminate();
      await within("the tunnel to close", Promise.all([client.done, server.done]), 2000).catch(() => {});
      await closeServer(relay);
    },
  };
}

/**
 * Reads a whole stream (an HTTP/2 stream or an IncomingMessage) into one Buffer. Events, not
 * `for await`: on Bun 1.4.5 a ClientHttp2Stream reports `closed` as soon as END_STREAM arrives,
 * with its body still buffered, and the async iterator then fails with ERR_STREAM_PREMATURE_CLOSE.
 */
export function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(Buffer.from(chunk)));
    stream.once("end", () => resolve(Buffer.concat(chunks)));
    stream.once("error", reject);
    stream.once("close", () => setImmediate(() => reject(new Error(`stream closed after ${Buffer.concat(chunks).length} bytes, before its end`))));
  });
}

/** Sends one request on the tunnel and reads the response whole. */
export async function tunnelGet(client: TunnelClient, path: string): Promise<{ status: number; headers: TunnelHeaders; body: Buffer }> {
  const stream = client.request({ ":method": "GET", ":path": path }, { endStream: true });
  const headers = await new Promise<TunnelHeaders>((resolve, reject) => {
    stream.once("response", resolve);
    stream.once("error", reject);
  });
  const body = await readAll(stream);
  return { status: Number(headers[":status"]), headers, body };
}

/** Deterministic bytes so a transfer can be checked byte for byte. */
export function patternBytes(size: number, seed = 7): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** A plain HTTP/1.1 request to a local server, read whole. */
export function httpRequest(
  port: number,
  options: { method?: string; path?: string; headers?: http.OutgoingHttpHeaders; body?: Buffer | string } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, method: options.method ?? "GET", path: options.path ?? "/", headers: options.headers, agent: false, maxHeaderSize: 1 << 20 },
      (res) => {
        readAll(res).then((body) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }), reject);
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Opens a raw TCP connection and sends `head` (an HTTP/1.1 request head). */
export async function rawConnect(port: number, head: string): Promise<net.Socket> {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.write(head);
  return socket;
}

/** Collects everything a socket receives, and whether it ended/closed. */
export function collect(socket: net.Socket): { bytes: () => Buffer; text: () => string; ended: () => boolean; closed: () => boolean } {
  const chunks: Buffer[] = [];
  let ended = false;
  let closed = false;
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.on("end", () => { ended = true; });
  socket.on("close", () => { closed = true; });
  socket.on("error", () => {});
  return {
    bytes: () => Buffer.concat(chunks),
    text: () => Buffer.concat(chunks).toString("latin1"),
    ended: () => ended,
    closed: () => closed,
  };
}
