import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadIssuerConfig, parseIssuerConfig, resolveTrustedIssuers } from "../../lib/auth/index.ts";
import { generatePki } from "../cluster/pki.ts";

const ENTRA = `
issuers:
  - issuer: https://login.microsoftonline.com/TENANT/v2.0
    audiences: [api://cluster-connect]
    usernameClaim: preferred_username
    usernamePrefix: "entra:"
    groupsClaim: groups
    groupsPrefix: "entra:"
    algorithms: [RS256]
`;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-issuer-config-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("valid config", () => {
  test("a login client: default scopes, advertised beside the verifier's view", () => {
    const text = "issuers:\n  - issuer: https://idp.example.com\n    audiences: [arcproxy]\n    usernameClaim: email\n    login: {clientId: arcproxy}\n";
    const [config] = parseIssuerConfig(text, "relay.yaml");
    expect(config!.login).toEqual({ clientId: "arcproxy", scopes: ["openid", "profile", "email", "offline_access"] });
    expect(resolveTrustedIssuers([config!])[0]!.login).toEqual(config!.login);
  });

  test("reads every field", () => {
    expect(parseIssuerConfig(ENTRA, "relay.yaml")).toEqual([{
      issuer: "https://login.microsoftonline.com/TENANT/v2.0",
      audiences: ["api://cluster-connect"],
      usernameClaim: "preferred_username",
      usernamePrefix: "entra:",
      groupsClaim: "groups",
      groupsPrefix: "entra:",
      algorithms: ["RS256"],
    }]);
  });

  test("algorithms default to RS256; several issuers; jwksUrl skips discovery", () => {
    const configs = parseIssuerConfig(`
issuers:
  - issuer: https://token.actions.githubusercontent.com
    audiences: [cluster-connect]
    usernameClaim: sub
    usernamePrefix: "github:"
  - issuer: http://127.0.0.1:5556/dex
    audiences: [arc]
    usernameClaim: email
    algorithms: [ES256, RS256]
    jwksUrl: http://127.0.0.1:5556/dex/keys
`, "relay.yaml");
    expect(configs.map((c) => c.algorithms)).toEqual([["RS256"], ["ES256", "RS256"]]);
    const [github, dex] = resolveTrustedIssuers(configs);
    expect("discover" in github!.jwks).toBe(true);
    expect(dex!.jwks).toEqual({ url: "http://127.0.0.1:5556/dex/keys" });
  });

  test("loads from a file and reads caFile relative to it", async () => {
    const pki = await generatePki(join(dir, "pki"));
    const path = join(dir, "with-ca.yaml");
    await writeFile(path, ENTRA + `    caFile: pki/${pki.caCert.split("/").pop()}\n`);
    const [config] = await loadIssuerConfig(path);
    expect(config!.caFile).toBe(pki.caCert);
    expect(config!.ca).toBe(await readFile(pki.caCert, "utf8"));
    expect(resolveTrustedIssuers([config!])[0]!.tlsCa).toBe(config!.ca);
  }, 30_000);
});

describe("mistakes are refused naming the file, line and field", () => {
  const entry = (lines: string) => `issuers:\n  - issuer: https://idp.example.com\n    audiences: [arc]\n    usernameClaim: sub\n${lines}`;

  test.each<[string, string, RegExp]>([
    ["not YAML", "issuers: [", /^relay\.yaml:1:\d+: not valid YAML: [^\n]+$/],
    ["duplicate key", "issuers: []\nissuers: []", /^relay\.yaml:2:1: not valid YAML: .*unique/i],
    ["empty file", "", /^relay\.yaml: top level: the file must be a mapping with an `issuers` list/],
    ["unknown top-level field", "issuers: []\nlisten: 1", /^relay\.yaml:2: listen: unknown field/],
    ["no issuers", "issuers: []", /^relay\.yaml:1: issuers: must be a non-empty list/],
    ["an issuer that is not a mapping", "issuers: [https://idp.example.com]", /issuers\[0\]: must be a mapping/],
    ["unknown issuer field", entry("    usernameclaim: email\n"), /^relay\.yaml:5: issuers\[0\]\.usernameclaim: unknown field; known fields are issuer, audiences/],
    ["keysFrom neither issuer nor relay", entry("    keysFrom: proxy\n"), /issuers\[0\]\.keysFrom: must be issuer or relay/],
    ["missing issuer", "issuers:\n  - audiences: [arc]\n    usernameClaim: sub\n", /^relay\.yaml:2: issuers\[0\]\.issuer: is required/],
    ["plain http issuer", entry("").replace("https://idp", "http://idp"), /issuers\[0\]\.issuer: http:\/\/idp\.example\.com must be an https URL \(plain http only on a loopback address\)/],
    ["issuer not a URL", entry("").replace("https://idp.example.com", "idp.example.com"), /issuers\[0\]\.issuer: "idp\.example\.com" is not a URL/],
    ["issuer with query", entry("").replace("https://idp.example.com", "https://idp.example.com/?x=1"), /issuers\[0\]\.issuer: .* must not carry a query/],
    ["empty audiences", entry("").replace("[arc]", "[]"), /^relay\.yaml:3: issuers\[0\]\.audiences: must be a non-empty list of strings/],
    ["audience not a string", entry("").replace("[arc]", "[arc, 7]"), /issuers\[0\]\.audiences\[1\]: must be a non-empty string/],
    ["missing usernameClaim", "issuers:\n  - issuer: https://idp.example.com\n    audiences: [arc]\n", /issuers\[0\]\.usernameClaim: is required/],
    ["HS256", entry("    algorithms: [RS256, HS256]\n"), /^relay\.yaml:5: issuers\[0\]\.algorithms\[1\]: HS256 is not allowed; use asymmetric algorithms: RS256/],
    ["none", entry("    algorithms: [none]\n"), /issuers\[0\]\.algorithms\[0\]: none is not allowed/],
    ["empty algorithms", entry("    algorithms: []\n"), /issuers\[0\]\.algorithms: must be a non-empty list/],
    ["system: prefix", entry("    usernamePrefix: \"system:\"\n"), /issuers\[0\]\.usernamePrefix: must not start with "system:"/],
    ["groupsPrefix without groupsClaim", entry("    groupsPrefix: \"x:\"\n"), /issuers\[0\]\.groupsPrefix: needs groupsClaim/],
    ["login client that is not an audience", entry("    login: {clientId: other}\n"), /issuers\[0\]\.login\.clientId: must be one of audiences \(arc\)/],
    ["login without openid", entry("    login: {clientId: arc, scopes: [email]}\n"), /issuers\[0\]\.login\.scopes: must be a list of scopes that includes "openid"/],
    ["login with a secret", entry("    login: {clientId: arc, clientSecret: s}\n"), /issuers\[0\]\.login\.clientSecret: unknown field/],
    ["http jwksUrl off loopback", entry("    jwksUrl: http://idp.example.com/keys\n"), /issuers\[0\]\.jwksUrl: .* must be an https URL/],
    ["prefix not a string", entry("    usernamePrefix: 5\n"), /issuers\[0\]\.usernamePrefix: must be a string/],
    ["same issuer twice", `issuers:\n${entry("").split("\n").slice(1).join("\n")}${entry("").split("\n").slice(1).join("\n")}`,
      /^relay\.yaml:5: issuers\[1\]\.issuer: https:\/\/idp\.example\.com is already listed as issuers\[0\]/],
  ])("%s", (_label, text, message) => {
    expect(() => parseIssuerConfig(text, "relay.yaml")).toThrow(message);
  });

  test("a missing file", async () => {
    await expect(loadIssuerConfig(join(dir, "nope.yaml"))).rejects.toThrow(/nope\.yaml: cannot read the issuer config: .*ENOENT|no such file/);
  });

  test("a caFile that does not exist or holds no certificate", async () => {
    const path = join(dir, "bad-ca.yaml");
    await writeFile(path, ENTRA + "    caFile: missing.pem\n");
    await expect(loadIssuerConfig(path)).rejects.toThrow(new RegExp(`bad-ca\\.yaml: issuers\\[0\\]\\.caFile: cannot read ${dir}/missing\\.pem`));
    await writeFile(join(dir, "junk.pem"), "hello");
    await writeFile(path, ENTRA + "    caFile: junk.pem\n");
    await expect(loadIssuerConfig(path)).rejects.toThrow(/issuers\[0\]\.caFile: .*junk\.pem holds no PEM certificate/);
  });
});
