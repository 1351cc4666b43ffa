import { describe, expect, test } from "bun:test";
import { BadRequest } from "../../lib/errors/index.ts";
import { validateClusterName, validateGroupName, validateUserName } from "../../lib/kube/names.ts";

describe("validateClusterName", () => {
  test.each(["a", "prod", "prod-eu-1", "0", "9lives", "a".repeat(63)])("accepts %p", (name) => {
    expect(validateClusterName(name)).toBe(name);
  });

  test.each([
    ["empty", ""],
    ["uppercase", "Prod"],
    ["dot-dot", ".."],
    ["dot", "a.b"],
    ["encoded dot", "%2e%2e"],
    ["slash", "a/b"],
    ["backslash", "a\\b"],
    ["leading dash", "-a"],
    ["trailing dash", "a-"],
    ["underscore", "a_b"],
    ["space", "a b"],
    ["trailing newline", "prod\n"],
    ["64 chars", "a".repeat(64)],
    ["cyrillic a look-alike", "prod-\u0430"],
    ["fullwidth letter", "\uff50rod"],
    ["dotless i", "\u0131"],
  ])("rejects %s with a message that says what a name may contain", (_label, name) => {
    expect(() => validateClusterName(name)).toThrow(BadRequest);
    expect(() => validateClusterName(name)).toThrow(/invalid cluster name .*: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit/);
  });

  test("quotes the rejected name so control characters are visible", () => {
    expect(() => validateClusterName("x\n")).toThrow('invalid cluster name "x\\n"');
  });
});

describe("validateUserName", () => {
  test.each(["alice", "alice@example.com", "systemic", "ユーザー", "a".repeat(256)])("accepts %p", (name) => {
    expect(validateUserName(name)).toBe(name);
  });

  test.each([" system:masters", "alice ", "\talice"])("refuses %p: a header would not carry it as it is", (name) => {
    expect(() => validateGroupName(name)).toThrow(BadRequest);
  });

  test.each(["system:admin", "system:serviceaccount:ns:sa", "SYSTEM:node:x"])("refuses Kubernetes' own name %p", (name) => {
    expect(() => validateUserName(name)).toThrow('names starting with "system:" are Kubernetes\' own');
    expect(() => validateGroupName(name)).toThrow("never put in a token");
  });

  test.each([
    ["empty", ""],
    ["257 chars", "a".repeat(257)],
    ["newline", "alice\nbob"],
    ["NUL", "alice\u0000"],
    ["DEL", "alice\u007f"],
    ["C1 control", "alice\u0085"],
  ])("rejects %s", (_label, name) => {
    expect(() => validateUserName(name)).toThrow(BadRequest);
    expect(() => validateUserName(name)).toThrow(/invalid user name/);
  });

  test("group names follow the same rules and say 'group'", () => {
    expect(validateGroupName("devs")).toBe("devs");
    expect(() => validateGroupName("")).toThrow(/invalid group name/);
  });
});
