// What arcproxy sends again: only what cannot have reached the cluster, or cannot change anything.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createRelayConnection, type RelayConnection } from "../../lib/client/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { sendWithRetry } from "../../lib/proxy/relay-retry.ts";

let server: http.Server;
let relay: RelayConnection;
let answers: ((res: http.ServerResponse) => void)[] = [];
let received = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    received++;
    req.resume();
    (answers.shift() ?? ((r) => r.end("ok")))(res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  relay = createRelayConnection(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});
afterAll(() => {
  relay.close();
  server.close();
});

const refusal = (notForwarded: boolean) => (res: http.ServerResponse) => {
  res.writeHead(503, { "retry-after": "0", "content-type": "application/json", ...(notForwarded ? { "x-arc-not-forwarded": "true" } : {}) });
  res.end("{}");
};

async function send(method: string): Promise<number> {
  const answer = await sendWithRetry(relay, "prod", async () => ({ method, kubePath: "/api/v1/namespaces/x/configmaps", headers: {}, body: Buffer.from("{}") }),
    new AbortController().signal, silentLogger, 10_000);
  answer.resume();
  return answer.statusCode ?? 0;
}

describe("sendWithRetry", () => {
  test("the relay's own refusal (nothing forwarded) is sent again, a POST included", async () => {
    received = 0;
    answers = [refusal(true), refusal(true)];
    expect(await send("POST")).toBe(200);
    expect(received).toBe(3);
  });

  test("an API server's 503 with Retry-After is passed to the client, never sent again", async () => {
    received = 0;
    answers = [refusal(false)];
    expect(await send("POST")).toBe(503);
    expect(received).toBe(1);
  });
});
