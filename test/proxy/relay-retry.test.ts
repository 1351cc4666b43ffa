// What arcproxy sends again: only what cannot have reached the cluster, or cannot change anything.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createRelayConnection, type RelayConnection } from "../../lib/client/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { RetryMemo, sendWithRetry } from "../../lib/proxy/relay-retry.ts";

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

  test("after one request ran out its window on an offline cluster, the next ones within a window are sent once; an answer makes them wait again", async () => {
    const memo = new RetryMemo();
    const offline = (res: http.ServerResponse) => refusal(true)(res);
    const sendOnce = async () => {
      const answer = await sendWithRetry(relay, "prod", async () => ({ method: "GET", kubePath: "/api", headers: {} }), new AbortController().signal, silentLogger, 600, memo);
      answer.resume();
      return answer.statusCode ?? 0;
    };
    // The first request retries until its window is over (Retry-After: 0 means the 250 ms minimum).
    received = 0;
    answers = Array.from({ length: 50 }, () => offline);
    expect(await sendOnce()).toBe(503);
    expect(received).toBeGreaterThan(1);
    // kubectl's next requests (discovery, then the call) get the refusal at once.
    received = 0;
    expect(await sendOnce()).toBe(503);
    expect(await sendOnce()).toBe(503);
    expect(received).toBe(2);
    // The cluster answers again: that is remembered, and the next refusal is waited out again.
    answers = [];
    expect(await sendOnce()).toBe(200);
    received = 0;
    answers = [offline, offline];
    expect(await sendOnce()).toBe(200);
    expect(received).toBe(3);
  });

  test("an API server's 503 with Retry-After is passed to the client, never sent again", async () => {
    received = 0;
    answers = [refusal(false)];
    expect(await send("POST")).toBe(503);
    expect(received).toBe(1);
  });
});
