import { describe, expect, test } from "bun:test";
import { findRole, parsePrincipal, parseRole, roleAtLeast, type Grant, type Role } from "../../lib/auth/index.ts";
import { BadRequest } from "../../lib/errors/index.ts";

const alice = { user: "alice", groups: ["devs", "oncall"], subject: "alice-sub" };
const ci = { user: "ci", groups: [], subject: "repo:acme/app:ref:refs/heads/main" };

describe("parsePrincipal", () => {
  test.each([
    ["user:alice", "user", "alice"],
    ["group:devs", "group", "devs"],
    ["sub:repo:acme/app:ref:refs/heads/main", "sub", "repo:acme/app:ref:refs/heads/main"],
    ["user:system:serviceaccount:ns:sa", "user", "system:serviceaccount:ns:sa"],
    ["sub:*", "sub", "*"],
  ])("%p", (p, kind, pattern) => {
    expect(parsePrincipal(p)).toEqual({ kind: kind as "user", pattern });
  });

  test.each(["alice", "user:", "users:alice", "User:alice", ":alice", "", "group:a\nb", "email:a@b"])(
    "rejects %p and shows the accepted forms",
    (p) => {
      expect(() => parsePrincipal(p)).toThrow(BadRequest);
      expect(() => parsePrincipal(p)).toThrow(/use user:NAME, group:NAME or sub:PATTERN/);
    },
  );
});

describe("parseRole", () => {
  test.each(["cluster-user", "cluster-admin", "relay-admin"])("accepts %p", (r) => {
    expect(parseRole(r)).toBe(r as Role);
  });
  test.each(["admin", "", "Cluster-User", "toString", "__proto__"])("rejects %p", (r) => {
    expect(() => parseRole(r)).toThrow(/invalid role .*: use cluster-user, cluster-admin or relay-admin/);
  });
});

describe("findRole", () => {
  test.each<[string, Grant[], Role | undefined]>([
    ["no grants", [], undefined],
    ["user grant on this cluster", [{ principal: "user:alice", cluster: "prod", role: "cluster-user" }], "cluster-user"],
    ["user grant on another cluster", [{ principal: "user:alice", cluster: "dev", role: "cluster-admin" }], undefined],
    ["grant on every cluster", [{ principal: "user:alice", cluster: "*", role: "cluster-user" }], "cluster-user"],
    ["group grant", [{ principal: "group:oncall", cluster: "prod", role: "cluster-admin" }], "cluster-admin"],
    ["other user's grant", [{ principal: "user:bob", cluster: "prod", role: "cluster-user" }], undefined],
    ["user name is not a group", [{ principal: "group:alice", cluster: "prod", role: "cluster-user" }], undefined],
    ["group name is not a user", [{ principal: "user:devs", cluster: "prod", role: "cluster-user" }], undefined],
    ["relay-admin applies to any cluster", [{ principal: "user:alice", cluster: "elsewhere", role: "relay-admin" }], "relay-admin"],
    ["highest of several wins", [
      { principal: "group:devs", cluster: "prod", role: "cluster-admin" },
      { principal: "user:alice", cluster: "*", role: "cluster-user" },
    ], "cluster-admin"],
    ["an invalid grant is skipped, not fatal", [
      { principal: "bogus", cluster: "prod", role: "relay-admin" },
      { principal: "user:alice", cluster: "prod", role: "cluster-user" },
    ], "cluster-user"],
    ["user glob", [{ principal: "user:ali*", cluster: "prod", role: "cluster-user" }], "cluster-user"],
    ["cluster field is not a glob", [{ principal: "user:alice", cluster: "pro*", role: "cluster-user" }], undefined],
  ])("%s", (_label, grants, expected) => {
    expect(findRole(alice, "prod", grants)).toBe(expected);
  });

  test.each<[string, string, boolean]>([
    ["exact subject", "sub:repo:acme/app:ref:refs/heads/main", true],
    ["* spans '/' and ':'", "sub:repo:acme/*", true],
    ["* in the middle", "sub:repo:acme/app:*:refs/heads/main", true],
    ["* alone", "sub:*", true],
    ["* matches an empty run", "sub:repo:acme/app:ref:refs/heads/main*", true],
    ["several stars", "sub:*acme*main", true],
    ["other branch", "sub:repo:acme/app:ref:refs/heads/dev", false],
    ["other repo", "sub:repo:acme/other:*", false],
    ["prefix without *", "sub:repo:acme/app", false],
    ["'.' is literal, not a regex wildcard", "sub:repo.acme/app:ref:refs/heads/main", false],
    ["'?' is literal", "sub:repo:acme/app:ref:refs/heads/mai?", false],
    ["'+' is literal", "sub:repo:acme/app+:ref:refs/heads/main", false],
    ["character class is literal", "sub:repo:acme/[a-z]pp:ref:refs/heads/main", false],
    ["'|' cannot add alternatives", "sub:x|repo:acme/app:ref:refs/heads/main", false],
    ["'^' and '$' are literal", "sub:^repo:acme/app:ref:refs/heads/main$", false],
    ["'\\' is literal", "sub:repo:acme\\/app:ref:refs/heads/main", false],
  ])("sub pattern: %s", (_label, principal, matches) => {
    expect(findRole(ci, "prod", [{ principal, cluster: "prod", role: "cluster-user" }])).toBe(matches ? "cluster-user" : undefined);
  });

  test("metacharacters in a pattern match themselves literally", () => {
    const odd = { user: "a.b+c?(d)[e]{f}|g^h$i\\j", groups: [], subject: "s" };
    expect(findRole(odd, "prod", [{ principal: "user:a.b+c?(d)[e]{f}|g^h$i\\j", cluster: "*", role: "cluster-user" }])).toBe("cluster-user");
    expect(findRole({ ...odd, user: "aXb+c?(d)[e]{f}|g^h$i\\j" }, "prod", [
      { principal: "user:a.b+c?(d)[e]{f}|g^h$i\\j", cluster: "*", role: "cluster-user" },
    ])).toBeUndefined();
  });

  test("a pathological pattern on a long subject answers quickly", () => {
    const subject = "a".repeat(16_000);
    const started = performance.now();
    expect(findRole({ user: "u", groups: [], subject }, "prod", [
      { principal: `sub:${"*a".repeat(30)}b`, cluster: "prod", role: "cluster-user" },
    ])).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe("roleAtLeast", () => {
  test.each<[Role | undefined, Role, boolean]>([
    [undefined, "cluster-user", false],
    ["cluster-user", "cluster-user", true],
    ["cluster-user", "cluster-admin", false],
    ["cluster-admin", "cluster-user", true],
    ["cluster-admin", "relay-admin", false],
    ["relay-admin", "cluster-admin", true],
    ["relay-admin", "relay-admin", true],
  ])("%p has at least %p: %p", (role, needed, expected) => {
    expect(roleAtLeast(role, needed)).toBe(expected);
  });
});
