// Who the agent's request runs as. The SubjectAccessReview itself is exercised against a real API
// server in test/e2e/in-cluster.e2e.test.ts (kubectl --as); here, what is asked and the cases
// that need no API server.
import { describe, expect, test } from "bun:test";
import type { Identity } from "../../lib/auth/index.ts";
import { impersonationChecks } from "../../lib/agent/impersonation-review.ts";
import { EXTRA_REQUEST_ID, resolveApiServerIdentity } from "../../lib/agent/impersonation.ts";
import type { Upstream } from "../../lib/agent/upstream.ts";
import { encodeImpersonationRequest } from "../../lib/http/index.ts";

const ALICE: Identity = { user: "alice", groups: ["dev", "ops"], subject: "alice", issuer: "https://relay.test", audiences: ["cluster-connect"] };
// No request in these cases may reach the API server: an upstream that is touched fails the test.
const NO_UPSTREAM = new Proxy({}, { get: () => { throw new Error("the API server must not be asked"); } }) as Upstream;
const ctx = { cluster: "c", upstream: NO_UPSTREAM, requestId: "r1", credentials: { authorization: "Bearer agent-sa" } };

describe("resolveApiServerIdentity", () => {
  test("no --as: the verified caller, with the request id as an extra", async () => {
    expect(await resolveApiServerIdentity({}, ALICE, ctx)).toEqual({
      kind: "impersonate", credentials: ctx.credentials, user: "alice", groups: ["dev", "ops"], extra: { [EXTRA_REQUEST_ID]: ["r1"] },
    });
  });

  test("token mode: the caller's token, and its --as left to the API server", async () => {
    const headers = { "x-arc-kube-token": "sa-token", "x-arc-impersonate": encodeImpersonationRequest({ user: "bob", groups: [] }) };
    expect(await resolveApiServerIdentity(headers, ALICE, ctx)).toEqual({ kind: "token", token: "sa-token", impersonation: { user: "bob", groups: [] } });
  });

  test("a malformed impersonation header is a 400, not a silent drop", async () => {
    expect(resolveApiServerIdentity({ "x-arc-impersonate": "!!" }, ALICE, ctx)).rejects.toThrow("unreadable impersonation request");
  });
});

describe("impersonationChecks (the API server's own questions)", () => {
  test("--as --as-group --as-uid", () => {
    expect(impersonationChecks({ user: "bob", groups: ["a", "b"], uid: "42" })).toEqual([
      { group: "", resource: "users", name: "bob" },
      { group: "", resource: "groups", name: "a" },
      { group: "", resource: "groups", name: "b" },
      { group: "authentication.k8s.io", resource: "uids", name: "42" },
    ]);
  });

  test("a service account user is checked as serviceaccounts in its namespace", () => {
    expect(impersonationChecks({ user: "system:serviceaccount:team-a:deployer", groups: [] })).toEqual([
      { group: "", resource: "serviceaccounts", namespace: "team-a", name: "deployer" },
    ]);
  });
});
