// Path tricks on the cluster name: bob (granted only on beta) must never reach alpha's API server.
import { afterAll, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { CLUSTER, OTHER_CLUSTER, expectNoStack, rawExchange, rawRequest, startHarness, statusCodes, type Harness } from "./harness.ts";

setDefaultTimeout(30_000);
let h: Harness;

beforeAll(async () => {
  h = await startHarness({ relayOptions: { authRateLimit: false } });
});
afterAll(() => h?.stop());
beforeEach(() => {
  h.requests.length = 0;
});

/** Request targets exactly as sent on the wire (no client-side normalisation). */
const targets: [string, string][] = [
  ["dot-dot segment before k8s", `/v1/clusters/${OTHER_CLUSTER}/../${CLUSTER}/k8s/version`],
  ["encoded dot-dot as the name", `/v1/clusters/%2e%2e/k8s/version`],
  ["encoded dot-dot and slash in the name", `/v1/clusters/${OTHER_CLUSTER}%2F..%2F${CLUSTER}/k8s/version`],
  ["encoded slash in the name", `/v1/clusters/${OTHER_CLUSTER}%2F${CLUSTER}/k8s/version`],
  ["double-encoded slash", `/v1/clusters/${OTHER_CLUSTER}%252F..%252F${CLUSTER}/k8s/version`],
  ["percent-encoded letter", `/v1/clusters/alph%61/k8s/version`],
  ["Cyrillic a (percent-encoded)", `/v1/clusters/%D0%B0lpha/k8s/version`],
  ["fullwidth a (percent-encoded)", `/v1/clusters/%EF%BD%81lpha/k8s/version`],
  ["upper case", `/v1/clusters/ALPHA/k8s/version`],
  ["trailing dot", `/v1/clusters/${CLUSTER}./k8s/version`],
  ["NUL byte (encoded)", `/v1/clusters/${CLUSTER}%00/k8s/version`],
  ["empty name (//)", `/v1/clusters//k8s/version`],
  ["double slash before the name", `/v1/clusters//${CLUSTER}/k8s/version`],
  ["double slash before v1", `//v1/clusters/${CLUSTER}/k8s/version`],
  ["double slash before k8s", `/v1/clusters/${CLUSTER}//k8s/version`],
  ["backslash", `/v1/clusters/${OTHER_CLUSTER}\\..\\${CLUSTER}/k8s/version`],
  ["semicolon parameter", `/v1/clusters/${CLUSTER};x=${OTHER_CLUSTER}/k8s/version`],
  ["a query in the name", `/v1/clusters/${CLUSTER}?/k8s/version`],
  ["absolute-form target", `http://127.0.0.1/v1/clusters/${CLUSTER}/k8s/version`],
];

describe("path tricks on the cluster name get 400 or 404 and never reach another cluster", () => {
  test.each(targets)("%s: %s", async (_what, target) => {
    const raw = await rawExchange(h.port, rawRequest("GET", target, [`Authorization: Bearer ${h.bob}`, "Connection: close"]));
    const codes = statusCodes(raw);
    expect(codes).toHaveLength(1);
    expect([400, 404]).toContain(codes[0]!);
    expectNoStack(raw);
    expect(h.requests).toEqual([]);
  });

  test("raw UTF-8 look-alike bytes in the target", async () => {
    const raw = await rawExchange(h.port, Buffer.concat([
      Buffer.from("GET /v1/clusters/"), Buffer.from("аlpha", "utf8"), Buffer.from(`/k8s/version HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer ${h.bob}\r\nConnection: close\r\n\r\n`),
    ]));
    const codes = statusCodes(raw);
    expect(codes.length === 0 || [400, 404].includes(codes[0]!)).toBe(true);
    expect(h.requests).toEqual([]);
  });

  test("dot-dot inside the Kubernetes path stays on the named cluster (beta is offline: 503), never alpha", async () => {
    const raw = await rawExchange(h.port, rawRequest("GET", `/v1/clusters/${OTHER_CLUSTER}/k8s/../../${CLUSTER}/k8s/version`, [`Authorization: Bearer ${h.bob}`, "Connection: close"]));
    expect(statusCodes(raw)).toEqual([503]);
    expect(raw).toContain(`cluster \\"${OTHER_CLUSTER}\\" is offline`);
    expect(h.requests).toEqual([]);
  });

  test("the cluster details route refuses the same tricks", async () => {
    for (const name of ["%2e%2e", `${OTHER_CLUSTER}%2F..%2F${CLUSTER}`, `${OTHER_CLUSTER}%252F..%252F${CLUSTER}`, "%D0%B0lpha", "ALPHA", "%2Falpha"]) {
      const res = await fetch(`${h.base}/v1/clusters/${name}`, { headers: { authorization: `Bearer ${h.bob}` } });
      expect([400, 404]).toContain(res.status);
    }
  });

  test("the cluster details route decodes alph%61 to alpha, and then checks bob's grants on alpha", async () => {
    // Unlike the k8s path, hono decodes the name; harmless because the decoded name is the one authorized.
    const res = await fetch(`${h.base}/v1/clusters/alph%61`, { headers: { authorization: `Bearer ${h.bob}` } });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { message: string }).message).toContain(`cluster "${CLUSTER}"`);
  });

  test("control: bob on his own cluster is routed there (offline: 503), alice on alpha gets through", async () => {
    const bob = await fetch(`${h.base}/v1/clusters/${OTHER_CLUSTER}/k8s/version`, { headers: { authorization: `Bearer ${h.bob}` } });
    expect(bob.status).toBe(503);
    const bobOnAlpha = await fetch(`${h.base}/v1/clusters/${CLUSTER}/k8s/version`, { headers: { authorization: `Bearer ${h.bob}` } });
    expect(bobOnAlpha.status).toBe(403);
    const alice = await fetch(`${h.base}/v1/clusters/${CLUSTER}/k8s/version`, { headers: { authorization: `Bearer ${h.alice}` } });
    expect(alice.status).toBe(200);
    expect(h.requests.map((r) => r.headers["impersonate-user"])).toEqual(["alice"]);
  });
});
