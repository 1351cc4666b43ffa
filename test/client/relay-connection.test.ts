// The relay connection's pool: what an agent leaves open at the relay once its tunnel is up.
import { afterAll, beforeAll, expect, test } from "bun:test";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { callRelay, createRelayConnection } from "../../lib/client/index.ts";
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
