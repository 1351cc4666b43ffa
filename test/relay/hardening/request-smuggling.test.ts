// Ambiguous HTTP/1.1 framing on a raw socket: a request hidden in a body must never be executed.
import { afterAll, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { CLUSTER, rawExchange, startHarness, statusCodes, type Harness } from "./harness.ts";

setDefaultTimeout(30_000);
let h: Harness;

beforeAll(async () => {
  h = await startHarness({ relayOptions: { authRateLimit: false } });
});
afterAll(() => h?.stop());
beforeEach(() => {
  h.requests.length = 0;
});

const POST = `POST /v1/clusters/${CLUSTER}/k8s/api/v1/namespaces/default/configmaps HTTP/1.1`;

/** A complete, valid request for alice: if any parser sees it as a request, it is executed. */
function smuggled(): string {
  return `GET /v1/clusters/${CLUSTER}/k8s/smuggled HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${h.alice}\r\n\r\n`;
}

function head(lines: string[]): string {
  return [POST, "Host: relay", `Authorization: Bearer ${h.alice}`, "Content-Type: application/json", ...lines, "", ""].join("\r\n");
}

function executedSmuggled(): boolean {
  return h.requests.some((r) => r.url.includes("smuggled"));
}

/**
 * Sends `attack`, then a last request that asks the relay to close the connection: a relay that
 * reads on answers it last, one that stops reading closes at once, so the exchange ends on an event
 * either way. Returns the status codes answered before it. A request the relay forwarded from this
 * connection was forwarded before a later request on a new connection, which is awaited too.
 */
async function attack(bytes: string): Promise<number[]> {
  const last = `GET /v1/clusters/${CLUSTER}/k8s/last HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${h.alice}\r\nConnection: close\r\n\r\n`;
  const raw = await rawExchange(h.port, bytes + last);
  const lastAnswer = raw.indexOf('"path":"/last"');
  const later = await fetch(`${h.base}/v1/clusters/${CLUSTER}/k8s/later`, { headers: { authorization: `Bearer ${h.alice}` } });
  expect(later.status).toBe(200);
  return statusCodes(lastAnswer < 0 ? raw : raw.slice(0, raw.lastIndexOf("HTTP/1.1 ", lastAnswer)));
}

describe("a smuggled second request is never executed", () => {
  test("control: a plainly pipelined second request is executed (so the detector works)", async () => {
    expect(await attack(head(["Content-Length: 2"]) + "{}" + smuggled())).toEqual([200, 200]);
    expect(executedSmuggled()).toBe(true);
  });

  test("Content-Length and Transfer-Encoding: chunked together (CL.TE / TE.CL)", async () => {
    const body = "0\r\n\r\n" + smuggled();
    const codes = await attack(head([`Content-Length: ${body.length}`, "Transfer-Encoding: chunked"]) + body);
    // Either refused, or read as chunked and the connection closed right after (RFC 9112 6.3).
    expect(codes.length).toBeGreaterThan(0);
    expect(codes.length === 1 && [200, 400].includes(codes[0]!)).toBe(true);
    expect(executedSmuggled()).toBe(false);
  });

  test("Transfer-Encoding: chunked first, Content-Length second", async () => {
    const body = "0\r\n\r\n" + smuggled();
    expect((await attack(head(["Transfer-Encoding: chunked", `Content-Length: ${body.length}`]) + body)).length).toBeLessThanOrEqual(1);
    expect(executedSmuggled()).toBe(false);
  });

  test("two different Content-Length headers are refused with 400", async () => {
    const body = "{}" + smuggled();
    expect(await attack(head(["Content-Length: 2", `Content-Length: ${body.length}`]) + body)).toEqual([400]);
    expect(h.requests.map((r) => r.url)).toEqual(["/later"]);
  });

  test("a comma list of different Content-Lengths is refused with 400", async () => {
    const body = "{}" + smuggled();
    expect(await attack(head([`Content-Length: 2, ${body.length}`]) + body)).toEqual([400]);
    expect(executedSmuggled()).toBe(false);
  });

  test.each([[true], [false]])("Transfer-Encoding: chunked, identity (chunked not last) is refused with 400 (with a Content-Length: %p)", async (withLength) => {
    // RFC 9112 6.3: chunked not final in a request -> 400 and close.
    const body = "0\r\n\r\n" + smuggled();
    expect(await attack(head(["Transfer-Encoding: chunked, identity", ...(withLength ? [`Content-Length: ${body.length}`] : [])]) + body)).toEqual([400]);
    expect(executedSmuggled()).toBe(false);
  });

  test.each([
    ["Transfer-Encoding: xchunked", "Transfer-Encoding: xchunked"],
    ["Transfer-Encoding : chunked (space before colon)", "Transfer-Encoding : chunked"],
    ["Transfer-Encoding:\\tchunked, duplicated", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity"],
  ])("%s with a Content-Length", async (_what, te) => {
    const body = "0\r\n\r\n" + smuggled();
    expect((await attack(head([te, `Content-Length: ${body.length}`]) + body)).length).toBeLessThanOrEqual(1);
    expect(executedSmuggled()).toBe(false);
  });

  test("an obs-fold Transfer-Encoding continuation line", async () => {
    const body = "0\r\n\r\n" + smuggled();
    expect((await attack(head(["X-Padding: a", " Transfer-Encoding: chunked", `Content-Length: ${body.length}`]) + body)).length).toBeLessThanOrEqual(1);
    expect(executedSmuggled()).toBe(false);
  });

  test("an obs-fold header hiding Impersonate-User is refused or never an identity", async () => {
    const raw = await rawExchange(h.port, [
      `GET /v1/clusters/${CLUSTER}/k8s/api/v1/pods HTTP/1.1`, "Host: relay", `Authorization: Bearer ${h.alice}`,
      "X-Note: a", " Impersonate-User: system:admin", "\tImpersonate-Group: system:masters", "Connection: close", "", "",
    ].join("\r\n"));
    const codes = statusCodes(raw);
    expect(codes).toHaveLength(1);
    if (codes[0] === 200) {
      expect(h.requests).toHaveLength(1);
      expect(h.requests[0]!.headers["impersonate-user"]).toBe("alice");
      expect(JSON.stringify(h.requests[0]!.rawHeaders)).not.toMatch(/system:admin|system:masters/);
    } else {
      expect(codes[0]).toBe(400);
      expect(h.requests).toEqual([]);
    }
  });

  test("a bare LF line ending cannot start a hidden header", async () => {
    const raw = await rawExchange(h.port,
      `GET /v1/clusters/${CLUSTER}/k8s/api/v1/pods HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${h.alice}\r\nX-Note: a\nImpersonate-User: system:admin\r\nConnection: close\r\n\r\n`);
    const codes = statusCodes(raw);
    expect(codes).toHaveLength(1);
    for (const r of h.requests) expect(r.headers["impersonate-user"]).toBe("alice");
  });

  test("the relay still serves after all of this", async () => {
    const res = await fetch(`http://127.0.0.1:${h.port}/v1/clusters/${CLUSTER}/k8s/version`, { headers: { authorization: `Bearer ${h.alice}` } });
    expect(res.status).toBe(200);
  });
});
