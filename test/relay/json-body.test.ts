// The one JSON body reader: the same caps and refusals on enrollment, key rotation and the admin API.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import net from "node:net";
import { join } from "node:path";
import type { Hono } from "hono";
import {
  builtinIssuerTrust, createUserTokenVerifier, generateSigningKeyPair, signAgentToken, type BuiltinIssuer,
} from "../../lib/auth/index.ts";
import { BadRequest, PayloadTooLarge } from "../../lib/errors/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { createRelayApp } from "../../lib/relay/app.ts";
import { startRelay } from "../../lib/relay/index.ts";
import { readJsonBody } from "../../lib/relay/json-body.ts";
import type { RelayStore } from "../../lib/relay/store/index.ts";
import { createTunnelRegistry } from "../../lib/relay/tunnel-registry.ts";
import { createUserAccess } from "../../lib/relay/user-access.ts";
import { openRelayFixture, type RelayFixture } from "./relay-fixture.ts";

const ISSUER_URL = "https://relay.test";
const CAP = 16 * 1024;

let fixture: RelayFixture;
let dir: string;
let store: RelayStore;
let issuer: BuiltinIssuer;
let app: Hono;
let rootToken: string;
let agentToken: string;

beforeAll(async () => {
  fixture = await openRelayFixture("json-body");
  ({ dir, store, issuer } = fixture);
  rootToken = await issuer.signUserToken({ user: "root" });
  const access = createUserAccess({ store, verifyUserToken: createUserTokenVerifier({ issuers: [builtinIssuerTrust(issuer)] }).verifyUserToken });
  app = createRelayApp({ store, registry: createTunnelRegistry(), access, issuer, logger: silentLogger });
});

afterAll(() => fixture.close());

beforeEach(async () => {
  await fixture.reset();
  await store.addCluster("prod");
  await store.addGrant({ principal: "user:root", cluster: "*", role: "relay-admin" });
  const agent = await generateSigningKeyPair("EdDSA");
  await store.setAgentKey("prod", agent.publicJwk);
  agentToken = await signAgentToken({ privateJwk: agent.privateJwk, cluster: "prod", audience: ISSUER_URL });
});

/** Every route that takes JSON, with the credentials it needs to get as far as reading the body. */
const routes: [string, () => Record<string, string>][] = [
  ["/v1/agent/enroll", () => ({})],
  ["/v1/agent/rotate-key", () => ({ authorization: `Bearer ${agentToken}` })],
  ["/v1/admin/clusters", () => ({ authorization: `Bearer ${rootToken}` })],
];

/** A body as a chunked HTTP/1.1 request brings it: a stream of `chunk`-byte pieces, no length. */
function stream(total: number, chunk = 1024): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent >= total) return c.close();
      const n = Math.min(chunk, total - sent);
      sent += n;
      c.enqueue(new Uint8Array(n).fill(0x20)); // spaces: valid JSON whitespace, so only the size can refuse it
    },
  });
}

async function post(path: string, headers: Record<string, string>, body: string | Uint8Array | ReadableStream<Uint8Array>): Promise<{ status: number; reason: string; message: string }> {
  const response = await app.request(path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  const status = (await response.json()) as { kind: string; reason: string; message: string; code: number };
  expect(status.kind).toBe("Status");
  expect(status.code).toBe(response.status);
  return { status: response.status, reason: status.reason, message: status.message };
}

describe.each(routes)("POST %s", (path, credentials) => {
  test("a chunked body without Content-Length over 16 KiB: 413 RequestEntityTooLarge naming the limit", async () => {
    const refused = await post(path, credentials(), stream(CAP + 1));
    expect(refused).toMatchObject({ status: 413, reason: "RequestEntityTooLarge" });
    expect(refused.message).toContain(`at most ${CAP} bytes`);
    expect(refused.message).toContain(path);
  });

  test("a Content-Length that understates the body does not lift the cap: 413", async () => {
    const refused = await post(path, { ...credentials(), "content-length": "2" }, `{}${" ".repeat(CAP)}`);
    expect(refused.status).toBe(413);
  });

  test("a declared Content-Length over the cap: 413 before reading", async () => {
    expect((await post(path, { ...credentials(), "content-length": String(CAP + 1) }, "{}")).status).toBe(413);
  });

  test.each([
    ["text that is not JSON", "{name:", "must be JSON"],
    ["a JSON array", "[]", "not an array"],
    ["JSON null", "null", "not null"],
    ["a JSON string", '"prod"', "not a string"],
    ["an empty body", "", "is empty"],
    ["bytes that are not UTF-8", new Uint8Array([0x7b, 0xff, 0x7d]), "UTF-8"],
  ])("%s: 400 BadRequest naming the route and what it expects", async (_what, body, expected) => {
    const refused = await post(path, credentials(), body);
    expect(refused).toMatchObject({ status: 400, reason: "BadRequest" });
    expect(refused.message).toContain(expected);
    expect(refused.message).toContain(path);
    expect(refused.message).toMatch(/\{"\w+"/); // names the fields it expects
  });
});

describe("readJsonBody", () => {
  test("stops reading at the cap: an endless body costs at most the cap and one chunk", async () => {
    let pulled = 0;
    const endless = new ReadableStream<Uint8Array>({
      pull(c) {
        pulled += 1024;
        c.enqueue(new Uint8Array(1024).fill(0x20));
      },
    });
    const request = new Request("http://relay/x", { method: "POST", body: endless });
    const error = await readJsonBody(request, { what: "a test request", expected: '{"a": 1}' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PayloadTooLarge);
    expect(pulled).toBeLessThanOrEqual(CAP + 3 * 1024); // the stream's own read-ahead, nothing more
  });

  test("reads a Request; an empty body is {} only where every field is optional", async () => {
    const read = (body: string, emptyIsObject?: boolean) =>
      readJsonBody(new Request("http://relay/x", { method: "POST", body }), { what: "a test request", expected: "{}", ...(emptyIsObject ? { emptyIsObject } : {}) });
    expect(await read(' {"a": [1]} ')).toEqual({ a: [1] });
    expect(await read("", true)).toEqual({});
    expect(await read("").catch((e: unknown) => e)).toBeInstanceOf(BadRequest);
  });

  test("a parse error does not repeat the body (it may hold an enrollment secret)", async () => {
    const request = new Request("http://relay/x", { method: "POST", body: '{"token": "arcenroll_secret' });
    const error = (await readJsonBody(request, { what: "a test request", expected: "{}" }).catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(BadRequest);
    expect(error.message).not.toContain("arcenroll_secret");
  });

  test("a body that was already read is a caller mistake: TypeError", async () => {
    const request = new Request("http://relay/x", { method: "POST", body: "{}" });
    await request.text();
    expect(await readJsonBody(request, { what: "a test request", expected: "{}" }).catch((e: unknown) => e)).toBeInstanceOf(TypeError);
  });
});

describe("over a real connection", () => {
  test("an endless chunked enrollment body is answered 413 and the relay closes the connection", async () => {
    const relay = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "relay"), logger: silentLogger, authRateLimit: false });
    try {
      const { answer, sentBytes } = await new Promise<{ answer: string; sentBytes: number }>((resolve) => {
        const socket = net.connect(relay.port, "127.0.0.1");
        let answer = "";
        let sentBytes = 0;
        // Keep sending 1 KiB chunks, each once the last one is flushed, until the relay answers or hangs up.
        const sendChunk = (): void => {
          if (socket.destroyed || answer.length > 0) return;
          sentBytes += 1024;
          socket.write(`400\r\n${" ".repeat(1024)}\r\n`, () => setImmediate(sendChunk));
        };
        socket.on("connect", () => {
          socket.write("POST /v1/agent/enroll HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
          sendChunk();
        });
        socket.on("data", (d: Buffer) => { answer += d.toString("latin1"); });
        socket.on("error", () => {});
        socket.on("close", () => resolve({ answer, sentBytes }));
      });
      expect(answer).toStartWith("HTTP/1.1 413 ");
      expect(answer).toContain('"reason":"RequestEntityTooLarge"');
      expect(sentBytes).toBeGreaterThan(CAP);
    } finally {
      await relay.close();
    }
  });
});
