import { afterEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import http from "node:http";
import net from "node:net";
import { WebSocket } from "ws";
import {
  acceptWebSocket, createWebSocketDuplex, openTunnelClient, protocol, type WebSocketStream,
} from "../../lib/tunnel/index.ts";
import { waitFor, within } from "../support/wait-for.ts";
import { closeServer, collect, listen, startTunnelPair, tunnelGet, type TunnelPair } from "./tunnel-pair.ts";

const FAST = { pingIntervalMs: 50, deadAfterMs: 200 };

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A relay WebSocket endpoint, framed as the relay's own; resolves the accepted stream (FAST liveness). */
async function relayEndpoint(onDead: () => void): Promise<{ port: number; accepted: Promise<WebSocketStream> }> {
  const server = http.createServer();
  const accepted = new Promise<WebSocketStream>((resolve) => {
    server.on("upgrade", (req, socket, head) => resolve(acceptWebSocket(req, socket, head, protocol.TUNNEL_SUBPROTOCOL, { ...FAST, onDead })));
  });
  const port = await listen(server);
  cleanups.push(() => closeServer(server));
  return { port, accepted };
}

/** An "agent" that completes the WebSocket handshake by hand, then never says another word. */
async function frozenAgent(port: number): Promise<net.Socket> {
  const socket = net.connect(port, "127.0.0.1");
  cleanups.push(() => socket.destroy());
  const key = Buffer.from("frozen-agent-key").toString("base64");
  socket.write(
    `GET /v1/agent/connect HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const expectedAccept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  const got = collect(socket);
  await waitFor("the handshake answer", () => got.text().includes("\r\n\r\n"));
  expect(got.text()).toContain(`Sec-WebSocket-Accept: ${expectedAccept}`);
  return socket;
}

/**
 * A "relay" that accepts the WebSocket handshake by hand, then reads and writes nothing (a hung
 * process or a black-holed connection). Pausing ws's own socket does not work for this on Bun:
 * its ws server keeps receiving frames on a paused socket.
 */
async function frozenRelay(): Promise<number> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on("error", () => {});
    socket.once("data", (chunk: Buffer) => {
      const key = /sec-websocket-key: *(\S+)/i.exec(chunk.toString("latin1"))?.[1] ?? "";
      const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      socket.pause();
    });
  });
  const port = await listen(server);
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await closeServer(server);
  });
  return port;
}

async function dialFrozenRelay(port: number): Promise<WebSocket> {
  const agentWs = new WebSocket(`ws://127.0.0.1:${port}/v1/agent/connect`);
  cleanups.push(() => agentWs.terminate());
  await new Promise<void>((resolve, reject) => { agentWs.once("open", () => resolve()); agentWs.once("error", reject); });
  return agentWs;
}

describe("tunnel keepalive (the relay's acceptWebSocket, the agent's createWebSocketDuplex)", () => {
  test("a relay whose agent stops answering terminates the socket and calls onDead", async () => {
    let deadAt = 0;
    const { port, accepted } = await relayEndpoint(() => { deadAt = Date.now(); });
    const startedAt = Date.now();
    const agentSocket = await frozenAgent(port);
    const agentSide = collect(agentSocket);
    const relayStream = await accepted;
    relayStream.on("error", () => {});
    const tunnel = openTunnelClient(relayStream);

    await waitFor("onDead", () => deadAt > 0, 2000);
    expect(deadAt - startedAt).toBeGreaterThanOrEqual(FAST.deadAfterMs);
    expect(deadAt - startedAt).toBeLessThan(1500);
    await waitFor("the relay's socket to close", () => relayStream.destroyed, 1000);
    await waitFor("the frozen agent's TCP connection to be cut", () => agentSide.closed() || agentSide.ended(), 1000);
    // HTTP/2 sees the tunnel go, so the relay stops routing requests into it.
    await within("the tunnel to be done", tunnel.done, 1000);
    expect(tunnel.closed).toBe(true);
  });

  test("an agent whose relay stops answering terminates the socket and calls onDead once", async () => {
    const port = await frozenRelay();
    const agentWs = await dialFrozenRelay(port);
    let deadCalls = 0;
    const startedAt = Date.now();
    const duplex = createWebSocketDuplex(agentWs, { ...FAST, onDead: () => { deadCalls += 1; } });
    duplex.on("error", () => {});
    const closed = new Promise<void>((resolve) => duplex.once("close", () => resolve()));

    await waitFor("onDead", () => deadCalls > 0, 2000);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(FAST.deadAfterMs);
    await waitFor("the agent's socket to close", () => agentWs.readyState === WebSocket.CLOSED, 1000);
    await within("the duplex to close", closed, 1000);
    // A second tunnel on the same liveness sweep dies only after the sweep has run for another
    // deadAfterMs: a repeated onDead for the first would have come before it.
    let laterDead = false;
    createWebSocketDuplex(await dialFrozenRelay(port), { ...FAST, onDead: () => { laterDead = true; } }).on("error", () => {});
    await waitFor("a later frozen tunnel's onDead", () => laterDead, 2000);
    expect(deadCalls).toBe(1);
  });

  test("a healthy idle tunnel stays open well past deadAfterMs, and still carries requests", async () => {
    let deadCalls = 0;
    const pair: TunnelPair = await startTunnelPair((stream) => {
      stream.respond({ ":status": 200 });
      stream.end("alive");
    }, { duplex: { ...FAST, onDead: () => { deadCalls += 1; } } });
    cleanups.push(() => pair.close());
    // The relay's pings and its answers to the agent's, as the agent sees them.
    const pongs = { relay: 0, agent: 0 };
    pair.agentWs.on("ping", () => { pongs.relay += 1; });
    pair.agentWs.on("pong", () => { pongs.agent += 1; });
    const startedAt = Date.now();

    // 20 answered pings per end span about five times deadAfterMs.
    await waitFor("20 answered pings on each end", () => pongs.relay >= 20 && pongs.agent >= 20, 4000);
    expect(Date.now() - startedAt).toBeGreaterThan(2 * FAST.deadAfterMs);
    expect(deadCalls).toBe(0);
    expect(pair.agentWs.readyState).toBe(WebSocket.OPEN);
    expect(pair.relayStream.isOpen).toBe(true);
    expect(pair.client.closed).toBe(false);
    const res = await within("a request after the idle period", tunnelGet(pair.client, "/healthz"));
    expect(res.body.toString()).toBe("alive");
  });

  test("a closed WebSocket closes the duplex, so both HTTP/2 ends finish", async () => {
    const pair = await startTunnelPair(() => {});
    cleanups.push(() => pair.close());
    pair.agentWs.close();
    await within("both ends of the tunnel to be done", Promise.all([pair.client.done, pair.server.done]), 2000);
    expect(pair.client.closed).toBe(true);
  });
});
