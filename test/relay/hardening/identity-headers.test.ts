// Callers try to choose their identity with headers; the API server must only ever see the agent's choice.
import { afterAll, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { CLUSTER, completeResponses, rawExchange, rawRequest, startHarness, statusCodes, type Harness, type RecordedRequest } from "./harness.ts";

setDefaultTimeout(30_000);
let h: Harness;

beforeAll(async () => {
  h = await startHarness({ relayOptions: { authRateLimit: false } });
});
afterAll(() => h?.stop());
beforeEach(() => {
  h.requests.length = 0;
});

const PATH = `/v1/clusters/${CLUSTER}/k8s/api/v1/namespaces/default/pods`;

/** What the API server saw of identity: only the agent's credential and alice, exactly once each. */
function expectAgentChosenIdentity(seen: RecordedRequest): void {
  expect(seen.headers["authorization"]).toBe(`Bearer ${h.agentSaToken}`);
  expect(seen.headers["impersonate-user"]).toBe("alice");
  expect(seen.headers["impersonate-group"]).toBe("dev");
  const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  expect(names.filter((n) => n === "authorization")).toHaveLength(1);
  expect(names.filter((n) => n === "impersonate-user")).toHaveLength(1);
  expect(names.filter((n) => n === "impersonate-group")).toHaveLength(1);
  expect(names.filter((n) => n.startsWith("impersonate-") && !["impersonate-user", "impersonate-group", "impersonate-extra-arc-request-id"].includes(n))).toEqual([]);
  expect(names.filter((n) => n.startsWith("x-remote-") || n === "proxy-authorization" || n === "cookie")).toEqual([]);
  expect(JSON.stringify(seen.rawHeaders)).not.toMatch(/system:admin|system:masters|root-user|evil/);
}

/** Sends raw header lines (so duplicates and odd casing stay exactly as written) and returns the one recorded request. */
async function sendRaw(lines: string[], method = "GET", target = PATH): Promise<{ codes: number[]; raw: string; seen: RecordedRequest[] }> {
  const raw = await rawExchange(h.port, rawRequest(method, target, [`Authorization: Bearer ${h.alice}`, "Connection: close", ...lines]));
  return { codes: statusCodes(raw), raw, seen: h.requests.filter((r) => r.url.startsWith("/api/v1/namespaces/default/pods")) };
}

// kubectl --as is a request, decided by the API server's own RBAC (a SubjectAccessReview for the
// verified caller): never silently dropped (the caller would read its own answer as bob's), never
// passed on unchecked. The stand-in API server here allows nothing unless a test says so.
describe("Impersonate-* from the caller is checked, never passed on", () => {
  // Users may be impersonated (but not system:admin); groups and uids may not. Each case names its
  // own user, as the agent remembers answers for 10 s.
  beforeEach(() => {
    h.reviews.length = 0;
    h.allowImpersonation = (spec) => spec.resourceAttributes.resource === "users" && spec.resourceAttributes.name !== "system:admin";
  });

  test.each([
    ["upper case", ["IMPERSONATE-USER: system:admin"], [["users", "system:admin"]]],
    ["mixed case", ["iMpErSoNaTe-UsEr: u-mixed", "ImPeRsOnAtE-GrOuP: system:masters"], [["users", "u-mixed"], ["groups", "system:masters"]]],
    ["duplicate group headers", ["Impersonate-User: u-dup", "Impersonate-Group: admins-dup", "Impersonate-Group: admins-dup", "impersonate-group: evil"],
      [["users", "u-dup"], ["groups", "admins-dup"]]],
    ["a comma-folded list is one group, as the API server reads it", ["Impersonate-User: u-comma", "Impersonate-Group: dev, system:masters"], [["users", "u-comma"], ["groups", "dev, system:masters"]]],
    ["forty groups", ["Impersonate-User: u-forty", ...Array.from({ length: 40 }, (_, i) => `Impersonate-Group: system:masters-${i}`)],
      [["users", "u-forty"], ["groups", "system:masters-0"]]],
    ["a uid", ["Impersonate-User: u-uid", "Impersonate-Uid: 0"], [["users", "u-uid"], ["uids", "0"]]],
  ])("%s: refused with 403 at the first check RBAC does not allow; only the agent's reviews reached the API server", async (_what, lines, asked) => {
    const { codes, raw, seen } = await sendRaw(lines);
    expect(codes).toEqual([403]);
    expect(raw).toContain("cannot impersonate");
    expect(seen).toEqual([]);
    // Every check was asked for the verified caller (alice, as the API server would see her), in order, none after the first no.
    expect(h.reviews.map((r) => [r.resourceAttributes.resource, r.resourceAttributes.name])).toEqual(asked);
    for (const review of h.reviews) {
      expect(review.user).toBe("alice");
      expect(review.groups).toEqual(["dev", "system:authenticated"]);
      expect(review.resourceAttributes.verb).toBe("impersonate");
    }
  });

  test.each([
    ["a duplicate user header", ["Impersonate-User: system:admin", "Impersonate-User: root-user"], "may each be given once"],
    ["a group without a user", ["Impersonate-Group: system:masters"], "need Impersonate-User"],
    ["extras", ["Impersonate-User: u", "Impersonate-Extra-Scopes: evil"], "impersonate-extra-scopes is not accepted"],
    ["a forged request-id extra", ["Impersonate-User: u", "Impersonate-Extra-Arc-Request-Id: evil"], "is not accepted"],
  ])("%s: 400 at the relay, nothing asked, nothing forwarded", async (_what, lines, message) => {
    const { codes, raw, seen } = await sendRaw(lines);
    expect(codes).toEqual([400]);
    expect(raw).toContain(message);
    expect(seen).toEqual([]);
    expect(h.reviews).toEqual([]);
  });

  test("allowed by RBAC: the API server sees the target, from the agent, with who really asked", async () => {
    h.allowImpersonation = (spec) => spec.user === "alice" && ["reader", "auditors"].includes(spec.resourceAttributes.name);
    const { codes, seen } = await sendRaw(["Impersonate-User: reader", "Impersonate-Group: auditors"]);
    expect(codes).toEqual([200]);
    expect(seen).toHaveLength(1);
    const headers = seen[0]!.headers;
    expect(headers["authorization"]).toBe(`Bearer ${h.agentSaToken}`);
    expect(headers["impersonate-user"]).toBe("reader");
    expect(headers["impersonate-group"]).toBe("auditors");
    expect(headers["impersonate-extra-arc-original-user"]).toBe("alice");
    expect(headers["impersonate-extra-arc-original-groups"]).toBe("dev");
  });

  test("on an upgrade (exec) too: refused before anything reaches the API server", async () => {
    const raw = await rawExchange(h.port, rawRequest("GET", `/v1/clusters/${CLUSTER}/k8s/api/v1/namespaces/default/pods/demo/exec?command=sh`, [
      `Authorization: Bearer ${h.alice}`, "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "IMPERSONATE-USER: system:admin", "impersonate-group: system:masters",
      "X-Remote-User: root-user", "Proxy-Authorization: Basic ZXZpbA==",
    ]), { until: (received) => completeResponses(received) === 1 });
    expect(statusCodes(raw)).toEqual([403]);
    expect(h.requests.filter((r) => r.url.includes("/exec"))).toEqual([]);
  });
});

describe("credentials smuggled in other headers never act as an identity", () => {
  test.each([
    ["X-Remote-User / X-Remote-Group / X-Remote-Extra", ["X-Remote-User: root-user", "X-Remote-Group: system:masters", "X-Remote-Extra-Scopes: evil"]],
    ["Proxy-Authorization", ["Proxy-Authorization: Bearer evil-proxy-token"]],
    ["Cookie", ["Cookie: session=evil"]],
    ["a second Authorization header", ["Authorization: Bearer evil-second-token"]],
  ])("%s", async (_what, lines) => {
    const { codes, seen } = await sendRaw(lines);
    // A duplicate Authorization may also be refused outright; it must never change who the API server sees.
    if (codes[0] !== 200) {
      expect([400, 401]).toContain(codes[0]!);
      expect(seen).toEqual([]);
      return;
    }
    expect(seen).toHaveLength(1);
    expectAgentChosenIdentity(seen[0]!);
  });

  test("another user's token in X-Forwarded-Authorization is not used: the API server sees alice", async () => {
    const { codes, seen } = await sendRaw([`X-Forwarded-Authorization: Bearer ${h.bob}`, "X-Forwarded-User: bob", "X-Auth-Request-User: bob"]);
    expect(codes).toEqual([200]);
    expect(seen).toHaveLength(1);
    expectAgentChosenIdentity(seen[0]!);
  });

  test("another user's token first and alice's second: never bob on alice's cluster", async () => {
    const raw = await rawExchange(h.port, rawRequest("GET", PATH, [`Authorization: Bearer ${h.bob}`, `Authorization: Bearer ${h.alice}`, "Connection: close"]));
    const seen = h.requests.filter((r) => r.url.startsWith("/api/v1/namespaces/default/pods"));
    if (statusCodes(raw)[0] === 200) expectAgentChosenIdentity(seen[0]!);
    else expect(seen).toEqual([]);
  });
});

describe("hop-by-hop abuse is neutralised", () => {
  test("Connection: Impersonate-User cannot make a hop drop the impersonation the agent sets", async () => {
    const { codes, seen } = await sendRaw(["Connection: Impersonate-User, Impersonate-Group, Impersonate-Extra-Arc-Request-Id", "X-Other: 1"]);
    expect(codes).toEqual([200]);
    expectAgentChosenIdentity(seen[0]!);
  });

  test("Connection: Authorization drops the caller's token at the relay: the agent refuses, nothing reaches the API server", async () => {
    // RFC 9110 7.6.1: a proxy removes what Connection names. The agent then has no token to verify.
    const { codes, raw, seen } = await sendRaw(["Connection: Impersonate-User, Authorization", "Impersonate-User: system:admin"]);
    expect(codes).toEqual([401]);
    expect(raw).toContain('"reason":"Unauthorized"');
    expect(seen).toEqual([]);
  });

  test("a plausible client request id (arcproxy's) is kept end to end; a malformed one is replaced", async () => {
    const kept = await sendRaw(["X-Arc-Request-Id: 0f8e2a4c-arcproxy-id"]);
    expect(kept.raw).toContain("\r\nx-arc-request-id: 0f8e2a4c-arcproxy-id\r\n");
    expect(kept.seen[0]!.headers["impersonate-extra-arc-request-id"]).toBe("0f8e2a4c-arcproxy-id");
    const replaced = await sendRaw(["X-Arc-Request-Id: bad id with spaces"]);
    expect(replaced.raw).toMatch(/\r\nx-arc-request-id: [0-9a-f-]{36}\r\n/i);
  });

  test("Connection: close, x-arc-request-id cannot replace or remove the relay's request id", async () => {
    const { codes, raw, seen } = await sendRaw(["Connection: close, x-arc-request-id", "X-Arc-Request-Id: evil-request-id"]);
    expect(codes).toEqual([200]);
    const requestId = /\r\nx-arc-request-id: ([0-9a-f-]{36})\r\n/i.exec(raw)?.[1];
    expect(requestId).toBeDefined();
    expectAgentChosenIdentity(seen[0]!);
    expect(seen[0]!.headers["impersonate-extra-arc-request-id"]).toBe(requestId!);
  });

  test("Connection naming the tunnel's upgrade marker or the kube-token header changes nothing", async () => {
    const { codes, seen } = await sendRaw(["Connection: x-arc-upgrade, x-arc-kube-token, keep-alive", "X-Arc-Upgrade: websocket"]);
    expect(codes).toEqual([200]);
    expectAgentChosenIdentity(seen[0]!);
  });
});
