// What the API server sees: the caller's request minus every identity header, plus the agent's own.
import { describe, expect, test } from "bun:test";
import type { Identity } from "../../lib/auth/index.ts";
import { buildImpersonatedHeaders, buildPassThroughHeaders, REQUEST_ID_EXTRA } from "../../lib/agent/impersonation.ts";
import type { TunnelHeaders } from "../../lib/tunnel/index.ts";

const ALICE: Identity = { user: "alice", groups: ["dev", "ops"], subject: "alice", issuer: "https://relay.test", audiences: ["cluster-connect"] };
const AGENT_CREDENTIALS = { Authorization: "Bearer agent-sa-token" };

/** Headers as they reach the agent from the tunnel: pseudo-headers plus whatever the caller sent. */
function incoming(extra: Record<string, string | string[]>): TunnelHeaders {
  return {
    ":method": "GET",
    ":path": "/api/v1/namespaces/default/pods",
    ":scheme": "http",
    ":authority": "arc-tunnel",
    accept: "application/json",
    ...extra,
  } as TunnelHeaders;
}

function build(extra: Record<string, string | string[]>, identity: Identity = ALICE) {
  return buildImpersonatedHeaders(incoming(extra), identity, "req-1", AGENT_CREDENTIALS);
}

describe("buildImpersonatedHeaders", () => {
  // Each of these could pick or claim an identity, or is hop-by-hop: none may reach the API server.
  test.each<[string, Record<string, string | string[]>]>([
    ["the caller's Authorization", { authorization: "Bearer user-jwt" }],
    ["Authorization in odd casing", { AuThOrIzAtIoN: "Bearer user-jwt" }],
    ["Impersonate-User", { "impersonate-user": "system:admin" }],
    ["Impersonate-User, title case", { "Impersonate-User": "system:admin" }],
    ["Impersonate-User, upper case", { "IMPERSONATE-USER": "system:admin" }],
    ["Impersonate-Group, one", { "impersonate-group": "system:masters" }],
    ["Impersonate-Group, many", { "impersonate-group": ["system:masters", "cluster-admins", "x"] }],
    ["Impersonate-Group, mixed casing keys", { "Impersonate-Group": "system:masters", "impersonate-GROUP": ["a", "b"] }],
    ["Impersonate-Uid", { "impersonate-uid": "0" }],
    ["Impersonate-Extra-*", { "impersonate-extra-scopes": ["all"], "Impersonate-Extra-Arc-Request-Id": "forged" }],
    ["Impersonate-Extra with encoded key", { "impersonate-extra-acme.com%2fproject": "p" }],
    ["X-Remote-User", { "x-remote-user": "system:admin" }],
    ["X-Remote-Group", { "X-Remote-Group": ["system:masters", "admins"] }],
    ["X-Remote-Extra-*", { "x-remote-extra-scopes": "all" }],
    ["the tunnel's x-arc-* headers", { "x-arc-request-id": "r", "x-arc-upgrade": "SPDY/3.1", "X-Arc-Anything": "v" }],
    ["Cookie", { cookie: "session=abc" }],
    ["Proxy-Authorization", { "proxy-authorization": "Basic eA==" }],
    ["hop-by-hop headers", {
      connection: "keep-alive, x-private", "keep-alive": "timeout=5", "proxy-connection": "keep-alive", te: "trailers",
      trailer: "x", "transfer-encoding": "chunked", upgrade: "websocket", host: "evil", "http2-settings": "AAA",
      "x-private": "named by Connection",
    }],
  ])("strips %s", (_what, extra) => {
    const out = build(extra);
    const expectedImpersonation = ["impersonate-user", "impersonate-group", REQUEST_ID_EXTRA];
    for (const name of Object.keys(out)) {
      if (name.startsWith("impersonate-")) expect(expectedImpersonation).toContain(name);
      expect(name.startsWith("x-remote-")).toBe(false);
      expect(name.startsWith("x-arc-")).toBe(false);
      expect(name.startsWith(":")).toBe(false);
      expect(name).toBe(name.toLowerCase());
    }
    for (const name of Object.keys(extra)) {
      const lower = name.toLowerCase();
      if (lower === "authorization" || lower.startsWith("impersonate-")) continue; // replaced by the agent's own, checked below
      expect(out).not.toHaveProperty(lower);
    }
    expect(out["authorization"]).toBe("Bearer agent-sa-token");
    expect(out["impersonate-user"]).toBe("alice");
    expect(out["impersonate-group"]).toEqual(["dev", "ops"]);
    expect(out[REQUEST_ID_EXTRA]).toBe("req-1");
    expect(Object.keys(out).filter((n) => n === "impersonate-uid" || n.startsWith("impersonate-extra-") && n !== REQUEST_ID_EXTRA))
      .toEqual([]);
  });

  test("sets the verified identity, the request id extra and the agent's credential", () => {
    expect(build({ "content-type": "application/json", "user-agent": "kubectl/v1.31.0" })).toEqual({
      accept: "application/json",
      "content-type": "application/json",
      "user-agent": "kubectl/v1.31.0",
      authorization: "Bearer agent-sa-token",
      "impersonate-user": "alice",
      "impersonate-group": ["dev", "ops"],
      [REQUEST_ID_EXTRA]: "req-1",
    });
  });

  test("impersonate-group is an array even for a single group", () => {
    expect(build({}, { ...ALICE, groups: ["only"] })["impersonate-group"]).toEqual(["only"]);
  });

  test("no groups: no impersonate-group at all, even if the caller sent one", () => {
    const out = build({ "impersonate-group": "system:masters" }, { ...ALICE, groups: [] });
    expect(out).not.toHaveProperty("impersonate-group");
    expect(out["impersonate-user"]).toBe("alice");
  });

  test("keeps ordinary end-to-end headers, lower-cased, arrays intact", () => {
    const out = build({
      "Content-Type": "application/strategic-merge-patch+json",
      "User-Agent": "kubectl/v1.31.0 (linux/amd64)",
      "accept-encoding": "gzip",
      "x-custom": ["a", "b"],
      "content-length": "42",
      "x-forwarded-for": "10.0.0.1",
    });
    expect(out).toMatchObject({
      accept: "application/json",
      "content-type": "application/strategic-merge-patch+json",
      "user-agent": "kubectl/v1.31.0 (linux/amd64)",
      "accept-encoding": "gzip",
      "x-custom": ["a", "b"],
      "content-length": "42",
    });
  });

  test("the agent's credential headers are lower-cased and win over the caller's", () => {
    const out = buildImpersonatedHeaders(incoming({ Authorization: "Bearer user" }), ALICE, "r", { AUTHORIZATION: "Bearer sa" });
    expect(out["authorization"]).toBe("Bearer sa");
    expect(Object.keys(out).filter((n) => n.toLowerCase() === "authorization")).toEqual(["authorization"]);
  });

  test("no agent credential (client-certificate auth): no authorization header at all", () => {
    const out = buildImpersonatedHeaders(incoming({ authorization: "Bearer user" }), ALICE, "r", {});
    expect(out).not.toHaveProperty("authorization");
  });
});

describe("buildPassThroughHeaders (token mode)", () => {
  test("sends the caller's Kubernetes token and strips every impersonation header", () => {
    const out = buildPassThroughHeaders(
      incoming({ authorization: "Bearer ignored", "impersonate-user": "system:admin", "x-remote-user": "root", cookie: "c" }),
      "sa-token",
    );
    expect(out).toEqual({ accept: "application/json", authorization: "Bearer sa-token" });
  });
});
