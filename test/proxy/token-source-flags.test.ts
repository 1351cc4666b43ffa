// From arcproxy's token flags to a source spec, and back to flags for a kubeconfig's exec plugin.
import { expect, test } from "bun:test";
import { buildTokenSourceArgs, resolveTokenSourceSpec, type TokenSourceFlags } from "../../lib/proxy/index.ts";

const GH_ENV = { ACTIONS_ID_TOKEN_REQUEST_URL: "https://runner/idtoken?api-version=2.0", ACTIONS_ID_TOKEN_REQUEST_TOKEN: "rt" };

test.each([
  [{ token: "t1" }, {}, { kind: "static", token: "t1" }],
  [{}, { ARC_TOKEN: "from-env" }, { kind: "static", token: "from-env" }],
  [{ "token-file": "/run/token" }, { ARC_TOKEN: "ignored" }, { kind: "file", path: "/run/token" }],
  [{ "token-command": "az account get-access-token -o tsv --query accessToken" }, {}, { kind: "command", command: "az account get-access-token -o tsv --query accessToken" }],
  [{ "token-source": "github-actions" }, GH_ENV, { kind: "github-actions", audience: "cluster-connect", env: { requestUrl: GH_ENV.ACTIONS_ID_TOKEN_REQUEST_URL, requestToken: "rt" } }],
  [{ "token-source": "github-actions", audience: "relay.example" }, {}, { kind: "github-actions", audience: "relay.example", env: {} }],
] as [TokenSourceFlags, Record<string, string>, unknown][])("flags %p with env %p -> %p", (flags, env, spec) => {
  expect(resolveTokenSourceSpec(flags, env)).toEqual(spec as never);
});

test.each([
  [{}, "no token: run arcproxy login, pass --token or set ARC_TOKEN (e.g. from arcrelay token create)"],
  [{ token: "t", "token-file": "/f" }, "pass one token source, not --token and --token-file"],
  [{ "token-command": "x", "token-source": "github-actions" }, "pass one token source, not --token-command and --token-source"],
  [{ "token-file": "/f", audience: "a" }, "--audience applies to --token-source github-actions only"],
  [{ "token-source": "gitlab" }, 'unknown --token-source "gitlab"'],
] as [TokenSourceFlags, string][])("flags %p are refused: %s", (flags, message) => {
  expect(() => resolveTokenSourceSpec(flags, {})).toThrow(message);
});

test.each([
  [{ "token-file": "tokens/me" }, ["--token-file", "/home/ci/tokens/me"]],
  [{ "token-file": "/abs/me" }, ["--token-file", "/abs/me"]],
  [{ "token-command": "vault read -field=token x" }, ["--token-command", "vault read -field=token x"]],
  [{ "token-source": "github-actions" }, ["--token-source", "github-actions", "--audience", "cluster-connect"]],
  [{}, []],
] as [TokenSourceFlags, string[]][])("exec plugin args for %p: %p", (flags, args) => {
  expect(buildTokenSourceArgs(flags, "/home/ci")).toEqual(args);
});

test("with no flag and no ARC_TOKEN, a known relay means the login arcproxy login stored for it", () => {
  expect(resolveTokenSourceSpec({}, {}, "https://relay.example.com")).toEqual({ kind: "login", relay: "https://relay.example.com" });
  expect(resolveTokenSourceSpec({}, { ARC_TOKEN: "t" }, "https://relay.example.com")).toEqual({ kind: "static", token: "t" });
});

test("a literal --token is not written into a kubeconfig", () => {
  expect(() => buildTokenSourceArgs({ token: "secret" }, "/")).toThrow("--token would be written into the kubeconfig in clear");
});
