// How every program names its relay: https anywhere, plain http only to loopback, one normal form.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clusterApiPath, parseRelayUrl, readCaFile, relayHref, relayWebSocketUrl } from "../../lib/client/index.ts";
import { ConfigError } from "../../lib/errors/index.ts";

describe("parseRelayUrl", () => {
  test.each([
    ["https://relay.example.com", "https://relay.example.com", 443, ""],
    ["https://relay.example.com/", "https://relay.example.com", 443, ""],
    ["https://relay.example.com///", "https://relay.example.com", 443, ""],
    ["https://relay.example.com:8443/", "https://relay.example.com:8443", 8443, ""],
    ["https://relay.example.com:443/", "https://relay.example.com", 443, ""],
    ["HTTPS://Relay.Example.COM/", "https://relay.example.com", 443, ""],
    ["https://relay.example.com/cc/", "https://relay.example.com/cc", 443, "/cc"],
    ["https://10.1.2.3", "https://10.1.2.3", 443, ""],
    ["http://127.0.0.1:8080", "http://127.0.0.1:8080", 8080, ""],
    ["http://127.1.2.3:9", "http://127.1.2.3:9", 9, ""],
    ["http://localhost:8080", "http://localhost:8080", 8080, ""],
    ["http://[::1]:8080/", "http://[::1]:8080", 8080, ""],
  ])("accepts %s as %s", (input, base, port, basePath) => {
    const url = parseRelayUrl(input);
    expect(url).toMatchObject({ base, port, basePath });
    expect(url.hostname.startsWith("[")).toBe(false);
  });

  test.each([
    "http://relay.example.com",
    "http://10.0.0.1:8080",
    "http://192.168.1.10",
    "http://127.0.0.1.nip.io",
    "http://localhost.example.com",
    "http://[::2]:8080",
    "http://0.0.0.0:8080",
  ])("refuses plain http to a non-loopback host: %s", (input) => {
    expect(() => parseRelayUrl(input)).toThrow(ConfigError);
    expect(() => parseRelayUrl(input)).toThrow(/http:\/\/ is allowed for loopback hosts only/);
  });

  test.each(["ws://relay.example.com", "wss://relay.example.com", "ftp://relay.example.com", "file:///etc/passwd"])(
    "refuses other schemes: %s",
    (input) => {
      expect(() => parseRelayUrl(input)).toThrow(/the scheme must be https:\/\//);
    },
  );

  test.each(["relay.example.com", "", "https://", "not a url"])("refuses %p as not a URL, with an example", (input) => {
    expect(() => parseRelayUrl(input)).toThrow(/https:\/\/relay\.example\.com/);
  });

  test.each([
    ["a query", "https://relay.example.com/?x=1"],
    ["a fragment", "https://relay.example.com/#top"],
    ["credentials", "https://user:secret@relay.example.com"],
  ])("refuses a relay URL with %s", (_what, input) => {
    expect(() => parseRelayUrl(input)).toThrow(/without query, fragment or credentials/);
  });

  test("names the flag it read", () => {
    expect(() => parseRelayUrl("nope", "--public-url")).toThrow(/^--public-url "nope"/);
  });
});

describe("paths and URLs on the relay", () => {
  test.each([
    ["https://relay.example.com", "/v1/agent/connect", "wss://relay.example.com/v1/agent/connect"],
    ["https://relay.example.com:8443/cc/", "/v1/agent/connect", "wss://relay.example.com:8443/cc/v1/agent/connect"],
    ["http://127.0.0.1:8080", "/v1/agent/connect", "ws://127.0.0.1:8080/v1/agent/connect"],
    ["http://[::1]:8080", "/x", "ws://[::1]:8080/x"],
  ])("%s + %s -> %s", (url, path, expected) => {
    expect(relayWebSocketUrl(parseRelayUrl(url), path)).toBe(expected);
  });

  test("a cluster's API path is relative to the base and encodes the name", () => {
    expect(clusterApiPath("prod", "/api/v1/pods?limit=1")).toBe("/v1/clusters/prod/k8s/api/v1/pods?limit=1");
    expect(clusterApiPath("a/b")).toBe("/v1/clusters/a%2Fb/k8s");
    expect(relayHref(parseRelayUrl("https://relay.example.com/cc/"), clusterApiPath("prod"))).toBe("https://relay.example.com/cc/v1/clusters/prod/k8s");
  });
});

describe("readCaFile", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "arc-relay-ca-"));
    await writeFile(join(dir, "ca.pem"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    await writeFile(join(dir, "key.pem"), "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n");
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("reads a PEM certificate", async () => {
    expect(await readCaFile(join(dir, "ca.pem"))).toContain("BEGIN CERTIFICATE");
  });

  test("a missing file names the flag and the path", async () => {
    const error = await readCaFile(join(dir, "nope.pem"), "--relay-ca").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).toContain(`cannot read --relay-ca ${join(dir, "nope.pem")}`);
  });

  test("a file without a certificate is refused", async () => {
    expect(readCaFile(join(dir, "key.pem"))).rejects.toThrow(/holds no PEM certificate/);
  });
});
