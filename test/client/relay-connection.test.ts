// The relay connection's pool: what an agent leaves open at the relay once its tunnel is up.
import { afterAll, beforeAll, expect, test } from "bun:test";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { callRelay, createRelayConnection } from "../../lib/client/index.ts";
import { RELAY_TCP_KEEPALIVE_MS } from "../../lib/client/relay-connection.ts";
import { waitFor } from "../support/wait-for.ts";

let server: http.Server;
let open = 0;

beforeAll(async () => {
  server = http.createServer((_req, res) => res.end("{}"));
  server.on("connection", (socket) => {
    open++;
    socket.on("close", () => open--);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
});
afterAll(() => server.close());

test("closeIdle closes the keep-alive socket a finished call left open, and the next call opens another", async () => {
  const relay = createRelayConnection(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  expect((await callRelay(relay, { path: "/.well-known/cluster-connect" })).status).toBe(200);
  expect(open).toBe(1); // kept alive for the next call
  relay.closeIdle();
  await waitFor("the server to see the idle socket close", () => open === 0);
  expect((await callRelay(relay, { path: "/.well-known/cluster-connect" })).status).toBe(200);
  relay.close();
  await waitFor("the last socket closed", () => open === 0);
});

test("every connection to the relay keeps TCP keepalive at 30 s, set once when it opens and never shortened when it is pooled", async () => {
  // node:http's pool sets keepalive again on each socket it takes back, with its own delay (1 s by default).
  const net = await import("node:net");
  const calls: unknown[][] = [];
  const original = net.Socket.prototype.setKeepAlive;
  net.Socket.prototype.setKeepAlive = function (this: import("node:net").Socket, ...args: unknown[]) {
    calls.push(args);
    return original.apply(this, args as Parameters<typeof original>);
  };
  const relay = createRelayConnection(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  try {
    for (let i = 0; i < 3; i++) expect((await callRelay(relay, { path: "/.well-known/cluster-connect" })).status).toBe(200);
  } finally {
    net.Socket.prototype.setKeepAlive = original;
    relay.close();
  }
  expect(open).toBeLessThanOrEqual(1);
  expect(calls.length).toBeGreaterThanOrEqual(1);
  for (const args of calls) expect(args).toEqual([true, RELAY_TCP_KEEPALIVE_MS]);
  // Once as it opened, then at most once per return to the pool: not again for each reuse as well.
  expect(calls.length).toBeLessThanOrEqual(1 + 3);
});

test("a connection through an HTTPS proxy gets its TCP keepalive as it opens, though it arrives already connected", async () => {
  const { createSelfSignedCertificate } = await import("../../lib/http/index.ts");
  const https = await import("node:https");
  const net = await import("node:net");
  const tls = await import("node:tls");
  const cert = await createSelfSignedCertificate({ commonName: "relay", hosts: ["127.0.0.1"] });
  const calls: unknown[][] = [];
  let callsWhenRequested = -1;
  const relay = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (_req, res) => {
    if (callsWhenRequested < 0) callsWhenRequested = calls.length;
    res.end("{}");
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  // A CONNECT proxy, as a corporate egress proxy is.
  const tunnels = new Set<import("node:net").Socket>();
  const proxy = net.createServer((client) => {
    tunnels.add(client);
    client.once("data", (head) => {
      const [, target] = /^CONNECT (\S+) /.exec(head.toString()) ?? [];
      const [host, port] = (target ?? "").split(":");
      const upstream = net.connect(Number(port), host!, () => {
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        client.pipe(upstream).pipe(client);
      });
      tunnels.add(upstream);
      upstream.on("error", () => client.destroy());
    });
    client.on("error", () => {});
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const saved = { HTTPS_PROXY: process.env.HTTPS_PROXY, NO_PROXY: process.env.NO_PROXY };
  process.env.HTTPS_PROXY = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  delete process.env.NO_PROXY;
  const patched = [net.Socket.prototype, tls.TLSSocket.prototype].filter((p, i, all) => Object.hasOwn(p, "setKeepAlive") && all.indexOf(p) === i);
  const originals = patched.map((p) => p.setKeepAlive);
  patched.forEach((p, i) => {
    p.setKeepAlive = function (this: import("node:net").Socket, ...args: unknown[]) {
      calls.push(args);
      return originals[i]!.apply(this, args as Parameters<typeof originals[number]>);
    };
  });
  const conn = createRelayConnection(`https://127.0.0.1:${(relay.address() as AddressInfo).port}`, { ca: cert.caPem });
  try {
    expect(conn.proxy).toBeDefined();
    expect((await callRelay(conn, { path: "/.well-known/cluster-connect" })).status).toBe(200);
  } finally {
    patched.forEach((p, i) => { p.setKeepAlive = originals[i]!; });
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    conn.close();
    for (const s of tunnels) s.destroy();
    proxy.close();
    relay.close();
  }
  expect(callsWhenRequested).toBeGreaterThanOrEqual(1);
  for (const args of calls) expect(args).toEqual([true, RELAY_TCP_KEEPALIVE_MS]);
});
