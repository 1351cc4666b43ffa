// kubectl --as, --as-group and --as-uid as the relay reads them, and as the tunnel carries them.
import { describe, expect, test } from "bun:test";
import { BadRequest } from "../../lib/errors/index.ts";
import {
  decodeImpersonationRequest, encodeImpersonationRequest, MAX_IMPERSONATED_GROUPS, parseImpersonationRequest,
} from "../../lib/http/index.ts";

const wire = (value: string) => Buffer.from(value, "utf8").toString("latin1");

describe("parseImpersonationRequest", () => {
  test("none: undefined", () => {
    expect(parseImpersonationRequest(["Accept", "application/json", "Authorization", "Bearer t"])).toBeUndefined();
  });

  test.each<[string, string[], unknown]>([
    ["--as", ["Impersonate-User", "bob"], { user: "bob", groups: [] }],
    ["--as in upper case", ["IMPERSONATE-USER", "bob"], { user: "bob", groups: [] }],
    ["--as --as-group twice, one with a comma", ["impersonate-user", "bob", "Impersonate-Group", "a,b", "impersonate-group", "c"], { user: "bob", groups: ["a,b", "c"] }],
    ["--as --as-uid", ["Impersonate-User", "bob", "Impersonate-Uid", "1234"], { user: "bob", groups: [], uid: "1234" }],
    ["a service account", ["Impersonate-User", "system:serviceaccount:ns:sa"], { user: "system:serviceaccount:ns:sa", groups: [] }],
    ["UTF-8 names as client-go sends them", ["Impersonate-User", wire("josé"), "Impersonate-Group", wire("開発")], { user: "josé", groups: ["開発"] }],
  ])("%s", (_what, raw, expected) => {
    expect(parseImpersonationRequest(raw)).toEqual(expected as ReturnType<typeof parseImpersonationRequest>);
  });

  test.each<[string, string[], RegExp]>([
    ["--as-group without --as", ["Impersonate-Group", "admins"], /need Impersonate-User/],
    ["--as-uid without --as", ["Impersonate-Uid", "1"], /need Impersonate-User/],
    ["two users", ["Impersonate-User", "a", "Impersonate-User", "b"], /may each be given once/],
    ["two uids", ["Impersonate-User", "a", "Impersonate-Uid", "1", "Impersonate-Uid", "2"], /may each be given once/],
    ["a user extra", ["Impersonate-User", "a", "Impersonate-Extra-Scopes", "all"], /impersonate-extra-scopes is not accepted/],
    ["an unknown impersonation header", ["Impersonate-User", "a", "Impersonate-Everyone", "x"], /unknown impersonation header impersonate-everyone/],
    ["an empty user", ["Impersonate-User", ""], /must be 1-1024 characters/],
    ["a control character", ["Impersonate-User", "bob\u0001"], /without control characters/],
    ["white space around a name", ["Impersonate-User", "bob", "Impersonate-Group", " system:masters"], /may not start or end with white space/],
  ])("refuses %s with 400", (_what, raw, message) => {
    let error: unknown;
    try {
      parseImpersonationRequest(raw);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(BadRequest);
    expect(String(error)).toMatch(message);
  });

  test(`more than ${MAX_IMPERSONATED_GROUPS} groups are refused`, () => {
    const raw = ["Impersonate-User", "bob", ...Array.from({ length: MAX_IMPERSONATED_GROUPS + 1 }, (_, i) => ["Impersonate-Group", `g${i}`]).flat()];
    expect(() => parseImpersonationRequest(raw)).toThrow(`at most ${MAX_IMPERSONATED_GROUPS} groups`);
  });
});

describe("the tunnel's x-arc-impersonate", () => {
  test("round-trips any UTF-8 name in header-safe characters", () => {
    const request = { user: "josé", groups: ["開発", "a,b"], uid: "u" };
    const encoded = encodeImpersonationRequest(request);
    expect(encoded).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeImpersonationRequest(encoded)).toEqual(request);
  });

  test("absent: undefined", () => {
    expect(decodeImpersonationRequest(undefined)).toBeUndefined();
    expect(decodeImpersonationRequest("")).toBeUndefined();
  });

  test.each([
    ["not base64url JSON", "%%%"],
    ["not an object", Buffer.from("[1]").toString("base64url")],
    ["a group that is not a string", Buffer.from(JSON.stringify({ user: "b", groups: [1] })).toString("base64url")],
    ["an empty user", Buffer.from(JSON.stringify({ user: "", groups: [] })).toString("base64url")],
  ])("the agent re-checks it: %s is a 400", (_what, value) => {
    expect(() => decodeImpersonationRequest(value)).toThrow(BadRequest);
  });
});
