// Who the agent's request runs as. The SubjectAccessReview itself is exercised against a real API
// server in test/e2e/in-cluster.e2e.test.ts (kubectl --as); here, what is asked and the cases
// that need no API server.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadUpstream } from "../../lib/agent/index.ts";
import { createImpersonationReviewer, impersonationChecks, type ImpersonationReviewer } from "../../lib/agent/impersonation-review.ts";
import { EXTRA_REQUEST_ID, resolveApiServerIdentity } from "../../lib/agent/impersonation.ts";
import type { Identity } from "../../lib/auth/index.ts";
import { Forbidden } from "../../lib/errors/index.ts";
import { encodeImpersonationRequest } from "../../lib/http/index.ts";

const ALICE: Identity = { user: "alice", groups: ["dev", "ops"], subject: "alice", issuer: "https://relay.test", audiences: ["cluster-connect"] };
// No request in these cases may be reviewed: a reviewer that is asked fails the test.
const NO_REVIEWS: ImpersonationReviewer = { authorize: () => { throw new Error("the API server must not be asked"); } };
const ctx = { reviewer: NO_REVIEWS, requestId: "r1", credentials: { authorization: "Bearer agent-sa" } };

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

  test.each(["system:serviceaccount:team-a:Not_Valid", "system:serviceaccount:Team-A:deployer", `system:serviceaccount:${"n".repeat(64)}:x`])(
    "%s is not a valid service account, so it is checked as the user the API server will see",
    (user) => {
      expect(impersonationChecks({ user, groups: [] })).toEqual([{ group: "", resource: "users", name: user }]);
    },
  );
});

describe("createImpersonationReviewer against a stand-in API server", () => {
  let dir: string;
  let server: http.Server;
  const asked: { user: string; groups: string[]; resourceAttributes: { resource: string; name: string } }[] = [];
  let allow = (_attributes: { resource: string; name: string }) => true;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "arc-impersonation-"));
    server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => { body += c; });
      req.on("end", () => {
        const review = JSON.parse(body) as { spec: (typeof asked)[number] };
        asked.push(review.spec);
        res.writeHead(201, { "content-type": "application/json" });
        res.end(JSON.stringify({ ...review, status: { allowed: allow(review.spec.resourceAttributes) } }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    await writeFile(join(dir, "kubeconfig"), `apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: http://127.0.0.1:${(server.address() as AddressInfo).port}\n    insecure-skip-tls-verify: true\nusers:\n- name: a\n  user:\n    token: t\ncontexts:\n- name: s\n  context:\n    cluster: s\n    user: a\ncurrent-context: s\n`);
  });
  afterAll(async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("asks for the verified caller, one check at a time, and stops at the first refusal", async () => {
    asked.length = 0;
    allow = (a) => a.resource !== "users";
    const reviewer = createImpersonationReviewer(loadUpstream({ kubeconfig: join(dir, "kubeconfig") }), "c");
    const error = await reviewer.authorize(ALICE, { user: "bob", groups: ["g1", "g2", "g3"] }, "r1").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Forbidden);
    expect(String(error)).toContain('users "bob" is forbidden: user "alice" cannot impersonate resource "users"');
    expect(asked).toEqual([{ user: "alice", groups: ["dev", "ops", "system:authenticated"], resourceAttributes: { verb: "impersonate", group: "", resource: "users", name: "bob" } as never }]);
  });

  test("a session's repeated --as is asked once within the cache time", async () => {
    asked.length = 0;
    allow = () => true;
    let clock = 1_000_000;
    const reviewer = createImpersonationReviewer(loadUpstream({ kubeconfig: join(dir, "kubeconfig") }), "c", () => clock);
    for (let i = 0; i < 5; i++) await reviewer.authorize(ALICE, { user: "bob", groups: ["g1"] }, `r${i}`);
    expect(asked).toHaveLength(2);
    clock += 10_001;
    await reviewer.authorize(ALICE, { user: "bob", groups: ["g1"] }, "r9");
    expect(asked).toHaveLength(4);
  });
});
