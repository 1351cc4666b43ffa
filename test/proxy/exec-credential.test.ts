// The ExecCredential arcproxy prints and the kubeconfig that makes kubectl run it.
import { expect, test } from "bun:test";
import { parse } from "yaml";
import { buildCredentialKubeconfig, buildExecCredential, resolveSelfCommand } from "../../lib/proxy/index.ts";

test("an ExecCredential with the expiry to the second", () => {
  const json = buildExecCredential({ token: "abc", expiresAt: new Date("2030-01-02T03:04:05.678Z") });
  expect(JSON.parse(json)).toEqual({
    apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential",
    status: { token: "abc", expirationTimestamp: "2030-01-02T03:04:05Z" },
  });
});

test("no expiry known: no expirationTimestamp", () => {
  expect(JSON.parse(buildExecCredential({ token: "abc" })).status).toEqual({ token: "abc" });
});

test.each([
  ["/$bunfs/root/arcproxy", { command: "/usr/local/bin/arcproxy", args: [] }],
  ["B:\\~BUN\\root\\arcproxy.exe", { command: "/usr/local/bin/arcproxy", args: [] }],
  ["/src/cluster-connect/cmd/arcproxy.ts", { command: "/usr/local/bin/arcproxy", args: ["/src/cluster-connect/cmd/arcproxy.ts"] }],
])("started from %p -> %p", (scriptPath, self) => {
  expect(resolveSelfCommand("/usr/local/bin/arcproxy", scriptPath)).toEqual(self);
});

test("the kubeconfig points at the relay's k8s path and runs arcproxy credential", () => {
  const yaml = buildCredentialKubeconfig({
    relayUrl: "https://relay.example.com/base/",
    cluster: "prod-eu",
    caPem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    self: { command: "/usr/bin/bun", args: ["/src/cmd/arcproxy.ts"] },
    tokenArgs: ["--token-file", "/run/token"],
  });
  const config = parse(yaml);
  expect(config["current-context"]).toBe("prod-eu");
  expect(config.clusters[0].cluster.server).toBe("https://relay.example.com/base/v1/clusters/prod-eu/k8s");
  expect(Buffer.from(config.clusters[0].cluster["certificate-authority-data"], "base64").toString()).toContain("BEGIN CERTIFICATE");
  expect(config.users[0].user).toEqual({
    exec: {
      apiVersion: "client.authentication.k8s.io/v1",
      command: "/usr/bin/bun",
      args: ["/src/cmd/arcproxy.ts", "credential", "--relay", "https://relay.example.com/base", "--cluster", "prod-eu", "--token-file", "/run/token"],
      interactiveMode: "Never",
    },
  });
});

test.each([
  ["ftp://relay", "the scheme must be https://"],
  ["http://relay.example.com", "http:// is allowed for loopback hosts only"],
  ["not a url", "is not a URL"],
])("relay URL %p is refused", (relayUrl, message) => {
  expect(() => buildCredentialKubeconfig({ relayUrl, cluster: "c", self: { command: "x", args: [] }, tokenArgs: [] })).toThrow(message);
});

test("a bad cluster name is refused", () => {
  expect(() => buildCredentialKubeconfig({ relayUrl: "https://r", cluster: "Prod_EU", self: { command: "x", args: [] }, tokenArgs: [] })).toThrow("invalid cluster name");
});
