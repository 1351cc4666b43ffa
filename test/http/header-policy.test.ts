// The one table of which request and response headers cross each hop. Every header name some hop
// treats specially is here, in several casings; the expectations are written out, not derived.
import { describe, expect, test } from "bun:test";
import { BadRequest } from "../../lib/errors/index.ts";
import {
  apiServerRequestHeaders, arcproxyRequestHeaders, classifyHeader, decodeImpersonationRequest, relayRequestHeaders, renderResponseHead, replicaRequestHeaders,
  responseHeaders, type HeaderMap,
} from "../../lib/http/index.ts";

type Hop = "arcproxy" | "relay" | "agent" | "agentTokenMode";
const HOPS: Hop[] = ["arcproxy", "relay", "agent", "agentTokenMode"];

/**
 * Whether the caller's own value of a request header reaches the next hop unchanged, per hop:
 * arcproxy -> relay, relay -> agent, agent -> API server, agent -> API server in token mode.
 */
const REQUEST_TABLE: [name: string, arcproxy: boolean, relay: boolean, agent: boolean, agentTokenMode: boolean][] = [
  // end-to-end
  ["accept", true, true, true, true],
  ["content-type", true, true, true, true],
  ["content-length", true, true, true, true],
  ["user-agent", true, true, true, true],
  ["sec-websocket-protocol", true, true, true, true],
  ["x-stream-protocol-version", true, true, true, true],
  // facts the API server audits (sourceIPs, auditID): never from the caller
  ["x-forwarded-for", false, false, false, false],
  ["x-forwarded-host", false, false, false, false],
  ["forwarded", false, false, false, false],
  ["x-real-ip", false, false, false, false],
  ["audit-id", false, false, false, false],
  // credentials: each hop sets its own
  ["authorization", false, true, false, false],
  ["proxy-authorization", false, false, false, false],
  ["cookie", false, false, false, false],
  // Kubernetes impersonation: the relay reads it into x-arc-impersonate; the agent decides
  ["impersonate-user", true, false, false, false],
  ["impersonate-group", true, false, false, false],
  ["impersonate-uid", true, false, false, false],
  ["impersonate-extra-scopes", true, false, false, false],
  // the API server's front-proxy identity: never
  ["x-remote-user", false, false, false, false],
  ["x-remote-group", false, false, false, false],
  ["x-remote-extra-scopes", false, false, false, false],
  // the tunnel's own: only ever set by us; token mode's header passes the relay
  ["x-arc-request-id", false, false, false, false],
  ["x-arc-upgrade", false, false, false, false],
  ["x-arc-upgrade-status", false, false, false, false],
  ["x-arc-impersonate", false, false, false, false],
  ["x-arc-long-p-path-0", false, false, false, false],
  ["x-arc-long-h-label-0", false, false, false, false],
  ["x-arc-anything", false, false, false, false],
  ["x-arc-kube-token", false, true, false, false],
  // hop-by-hop (RFC 9110 7.6.1, RFC 9113 8.2.2)
  ["connection", false, false, false, false],
  ["keep-alive", false, false, false, false],
  ["proxy-connection", false, false, false, false],
  ["proxy-authenticate", false, false, false, false],
  ["te", false, false, false, false],
  ["trailer", false, false, false, false],
  ["transfer-encoding", false, false, false, false],
  ["upgrade", false, false, false, false],
  ["host", false, false, false, false],
  ["http2-settings", false, false, false, false],
];

const CASINGS: [string, (name: string) => string][] = [
  ["lower case", (n) => n],
  ["Title-Case", (n) => n.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase())],
  ["UPPER CASE", (n) => n.toUpperCase()],
];

const CALLER_VALUE = "caller-value";
const ALICE = { user: "alice", groups: ["dev"] };

/** Runs one hop on a request that carries `name` with the caller's value (as node's rawHeaders). */
function forward(hop: Hop, name: string): HeaderMap {
  const raw = ["Accept", "application/json", name, CALLER_VALUE];
  switch (hop) {
    case "arcproxy":
      return arcproxyRequestHeaders(raw, { userToken: "user-token" });
    case "relay":
      return relayRequestHeaders(raw);
    case "agent":
      return apiServerRequestHeaders(raw, { kind: "impersonate", credentials: { Authorization: "Bearer agent-sa" }, ...ALICE, extra: { "arc-request-id": ["r1"] } });
    case "agentTokenMode":
      return apiServerRequestHeaders(raw, { kind: "token", token: "caller-sa-token" });
  }
}

describe("request headers, per hop", () => {
  for (const [casing, cased] of CASINGS) {
    describe(casing, () => {
      test.each(REQUEST_TABLE)("%s", (name, arcproxy, relay, agent, agentTokenMode) => {
        const passes = [arcproxy, relay, agent, agentTokenMode];
        HOPS.forEach((hop, i) => {
          const out = forward(hop, cased(name));
          const forwarded = out[name] === CALLER_VALUE || (Array.isArray(out[name]) && out[name].includes(CALLER_VALUE));
          expect({ hop, name: cased(name), forwarded }).toEqual({ hop, name: cased(name), forwarded: passes[i]! });
          for (const key of Object.keys(out)) expect(key).toBe(key.toLowerCase());
        });
      });
    });
  }

  test("a name listed in Connection is hop-by-hop too", () => {
    const raw = ["Connection", "keep-alive, X-Private", "X-Private", "secret", "X-Public", "ok"];
    for (const out of [arcproxyRequestHeaders(raw, { userToken: "t" }), relayRequestHeaders(raw), apiServerRequestHeaders(raw, { kind: "token", token: "t" })]) {
      expect(out).not.toHaveProperty("x-private");
      expect(out["x-public"]).toBe("ok");
    }
  });

  test("pseudo-headers never pass (each hop sets its own)", () => {
    const tunnel = { ":method": "GET", ":path": "/api", ":authority": "x", accept: "a" };
    expect(Object.keys(apiServerRequestHeaders(tunnel, { kind: "token", token: "t" })).some((n) => n.startsWith(":"))).toBe(false);
  });
});

describe("what each hop sets", () => {
  test("arcproxy: the user token replaces its session secret; token mode's header comes from its flag; an upgrade is re-added", () => {
    const raw = ["Authorization", "Bearer session-secret", "X-Arc-Kube-Token", "forged", "Connection", "Upgrade", "Upgrade", "SPDY/3.1"];
    expect(arcproxyRequestHeaders(raw, { userToken: "u", kubeToken: "k", upgrade: "SPDY/3.1" })).toEqual({
      authorization: "Bearer u", "x-arc-kube-token": "k", connection: "Upgrade", upgrade: "SPDY/3.1",
    });
    expect(arcproxyRequestHeaders(raw, { userToken: "u" })).toEqual({ authorization: "Bearer u" });
  });

  test("arcproxy keeps repeated impersonation groups apart", () => {
    const raw = ["Impersonate-User", "bob", "Impersonate-Group", "a,b", "Impersonate-Group", "c"];
    expect(arcproxyRequestHeaders(raw, { userToken: "u" })["impersonate-group"]).toEqual(["a,b", "c"]);
  });

  test("relay: the caller's impersonation request travels as one x-arc-impersonate value", () => {
    const out = relayRequestHeaders(["Authorization", "Bearer u", "Impersonate-User", "bob"], { user: "bob", groups: ["a,b", "c"], uid: "42" });
    expect(out["authorization"]).toBe("Bearer u");
    expect(decodeImpersonationRequest(out["x-arc-impersonate"] as string)).toEqual({ user: "bob", groups: ["a,b", "c"], uid: "42" });
    expect(Object.keys(out).some((n) => n.startsWith("impersonate-"))).toBe(false);
  });

  test("agent: its credential and the identity it was given, with extras and UTF-8 names as the API server reads them", () => {
    const out = apiServerRequestHeaders(["Authorization", "Bearer user-jwt", "Impersonate-User", "system:admin"], {
      kind: "impersonate", credentials: { AUTHORIZATION: "Bearer agent-sa" }, user: "josé", groups: ["開発", "ops"], uid: "u-1",
      extra: { "arc-request-id": ["r1"], "arc-original-user": ["alice"], "acme.com/project": ["p"], empty: [] },
    }, "websocket");
    expect(out).toEqual({
      authorization: "Bearer agent-sa",
      "impersonate-user": Buffer.from("josé").toString("latin1"),
      "impersonate-group": [Buffer.from("開発").toString("latin1"), "ops"],
      "impersonate-uid": "u-1",
      "impersonate-extra-arc-request-id": ["r1"],
      "impersonate-extra-arc-original-user": ["alice"],
      "impersonate-extra-acme.com%2Fproject": ["p"],
      connection: "Upgrade",
      upgrade: "websocket",
    });
  });

  test.each([" system:masters", "x\r\ny: z", ""])("agent: a name the API server would read differently (%j) is never written", (group) => {
    expect(() => apiServerRequestHeaders([], { kind: "impersonate", credentials: {}, user: "alice", groups: [group], extra: {} })).toThrow(BadRequest);
  });

  test("agent without a token of its own (client certificate): no Authorization at all", () => {
    const out = apiServerRequestHeaders(["Authorization", "Bearer user-jwt"], { kind: "impersonate", credentials: {}, user: "alice", groups: [], extra: {} });
    expect(out).toEqual({ "impersonate-user": "alice" });
  });

  test("agent in token mode: the caller's token, and its impersonation request for the API server to judge", () => {
    const out = apiServerRequestHeaders(["Impersonate-User", "system:admin", "X-Arc-Kube-Token", "k"], {
      kind: "token", token: "caller-sa-token", impersonation: { user: "bob", groups: ["g"] },
    });
    expect(out).toEqual({ authorization: "Bearer caller-sa-token", "impersonate-user": "bob", "impersonate-group": ["g"] });
  });
});

describe("replica -> agent: what another replica forwarded", () => {
  // The replica that took the user's request already applied relay-to-agent; the one holding the
  // tunnel passes the same, so every row of the request table passes here exactly when it passes the relay.
  for (const [casing, cased] of CASINGS) {
    test.each(REQUEST_TABLE.filter(([name]) => name !== "x-arc-impersonate"))(`${casing}: %s`, (name, _arcproxy, relay) => {
      const forwarded = replicaRequestHeaders([cased(name), "v"])[name] === "v";
      expect({ name, forwarded }).toEqual({ name, forwarded: relay });
    });
  }

  test("the impersonation request crosses checked again; a malformed one is refused", () => {
    const carried = relayRequestHeaders(["Impersonate-User", "bob", "Impersonate-Group", "g1", "Impersonate-Group", "g2"], { user: "bob", groups: ["g1", "g2"] });
    const out = replicaRequestHeaders(Object.entries(carried).flatMap(([k, v]) => (Array.isArray(v) ? v.flatMap((x) => [k, x]) : [k, v])));
    expect(decodeImpersonationRequest(out["x-arc-impersonate"] as string)).toEqual({ user: "bob", groups: ["g1", "g2"] });
    expect(() => replicaRequestHeaders(["x-arc-impersonate", "not-json"])).toThrow(BadRequest);
    expect(() => replicaRequestHeaders(["x-arc-impersonate", Buffer.from(JSON.stringify({ user: " system:admin", groups: [] })).toString("base64url")])).toThrow(BadRequest);
  });
});

describe("response headers, per hop", () => {
  const RESPONSE_TABLE: [name: string, apiServerToAgent: boolean, relayToClient: boolean, replicaToRelay: boolean, arcproxyToClient: boolean][] = [
    ["content-type", true, true, true, true],
    ["set-cookie", true, true, true, true],
    ["audit-id", true, true, true, true],
    ["retry-after", true, true, true, true],
    ["x-arc-request-id", false, false, false, true],
    ["x-arc-not-forwarded", false, false, false, true],
    ["x-arc-upgrade-status", false, false, false, true],
    ["x-arc-kube-token", false, false, false, false],
    ["transfer-encoding", false, false, false, false],
    ["connection", false, false, false, false],
    ["keep-alive", false, false, false, false],
    ["upgrade", false, false, false, false],
  ];
  for (const [casing, cased] of CASINGS) {
    test.each(RESPONSE_TABLE)(`${casing}: %s`, (name, apiServerToAgent, relayToClient, replicaToRelay, arcproxyToClient) => {
      const passes = [apiServerToAgent, relayToClient, replicaToRelay, arcproxyToClient];
      (["api-server-to-agent", "relay-to-client", "replica-to-relay", "arcproxy-to-client"] as const).forEach((hop, i) => {
        const forwarded = responseHeaders(hop, [cased(name), "v"])[name] === "v";
        expect({ hop, forwarded }).toEqual({ hop, forwarded: passes[i]! });
      });
    });
  }
});

describe("classifyHeader", () => {
  test.each([
    ["Authorization", "authorization"], ["IMPERSONATE-EXTRA-FOO", "impersonation"], ["X-Remote-User", "front-proxy"],
    ["Cookie", "cookie"], ["X-Forwarded-For", "forwarding"], ["Audit-ID", "forwarding"], ["X-Arc-Kube-Token", "kube-token"], ["X-ARC-REQUEST-ID", "tunnel"], ["Transfer-Encoding", "hop-by-hop"],
    [":path", "pseudo"], ["X-Remote", "end-to-end"], ["Impersonate", "end-to-end"], ["Set-Cookie", "end-to-end"],
  ])("%s is %s", (name, cls) => {
    expect(classifyHeader(name)).toBe(cls as ReturnType<typeof classifyHeader>);
  });
});

describe("renderResponseHead", () => {
  test("writes each value of a repeated header on its own line", () => {
    const head = renderResponseHead(101, "Switching Protocols", { upgrade: "websocket", "set-cookie": ["a=1", "b=2"] });
    expect(head).toBe("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n\r\n");
  });

  test.each(["v\r\nx-injected: 1", "v\nx", "v\r"])("leaves out a value holding CR or LF: %j", (value) => {
    const head = renderResponseHead(403, "Forbidden", { "x-bad": value, "x-good": "ok" });
    expect(head).toBe("HTTP/1.1 403 Forbidden\r\nx-good: ok\r\n\r\n");
  });

  test("leaves out a name holding CR or LF", () => {
    expect(renderResponseHead(200, "OK", { "x-a\r\nx-injected": "1" })).toBe("HTTP/1.1 200 OK\r\n\r\n");
  });
});
