// Which relay arcproxy uses when none is named, and where it remembers it.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../../lib/errors/index.ts";
import { suggestNames } from "../../lib/kube/index.ts";
import { readUserConfig, resolveRelayUrl, userConfigDir, writeUserConfig } from "../../lib/proxy/index.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-user-config-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("userConfigDir", () => {
  test("XDG on Linux, Application Support on macOS, APPDATA on Windows", () => {
    expect(userConfigDir({ XDG_CONFIG_HOME: "/x" }, "linux")).toBe("/x/cluster-connect");
    expect(userConfigDir({ HOME: "/home/a" }, "linux")).toBe("/home/a/.config/cluster-connect");
    expect(userConfigDir({}, "darwin")).toEndWith(join("Library", "Application Support", "cluster-connect"));
    expect(userConfigDir({ APPDATA: "C:\\Users\\a\\AppData\\Roaming" }, "win32")).toContain("cluster-connect");
  });
});

describe("readUserConfig / writeUserConfig", () => {
  test("round trip, folder 0700 and file 0600; no file is an empty config", async () => {
    const folder = join(dir, "cluster-connect");
    expect(await readUserConfig(folder)).toEqual({});
    await writeUserConfig({ relay: "https://relay.example.com" }, folder);
    expect(await readUserConfig(folder)).toEqual({ relay: "https://relay.example.com" });
    expect((await stat(folder)).mode & 0o777).toBe(0o700);
    expect((await stat(join(folder, "config.yaml"))).mode & 0o777).toBe(0o600);
  });

  test("a file that is not a mapping names itself", async () => {
    await writeFile(join(dir, "config.yaml"), "- a\n- b\n");
    expect(readUserConfig(dir)).rejects.toThrow(`${join(dir, "config.yaml")} must be a mapping`);
  });
});

describe("resolveRelayUrl", () => {
  test("--relay, then ARC_RELAY, then the remembered one; normalised", () => {
    const remembered = { relay: "https://remembered.example.com/" };
    expect(resolveRelayUrl("HTTPS://Flag.Example.com/", { ARC_RELAY: "https://env.example.com" }, remembered)).toBe("https://flag.example.com");
    expect(resolveRelayUrl(undefined, { ARC_RELAY: "https://env.example.com" }, remembered)).toBe("https://env.example.com");
    expect(resolveRelayUrl(undefined, {}, remembered)).toBe("https://remembered.example.com");
  });

  test("none: a ConfigError that says the three ways to name one", () => {
    expect(() => resolveRelayUrl(undefined, {}, {})).toThrow(ConfigError);
    expect(() => resolveRelayUrl(undefined, {}, {})).toThrow(/--relay .*ARC_RELAY.*arcproxy login --relay URL/);
  });

  test("a bad ARC_RELAY is named as such", () => {
    expect(() => resolveRelayUrl(undefined, { ARC_RELAY: "http://relay.example.com" }, {})).toThrow(/^ARC_RELAY http:\/\/relay\.example\.com: refusing plain http/);
  });
});

describe("suggestNames", () => {
  test.each([
    ["prd", ["prod", "staging", "dev"], ["prod"]],
    ["prod", ["prod-eu", "prod-us", "dev"], ["prod-eu", "prod-us"]],
    ["stagng", ["staging", "prod"], ["staging"]],
    ["zzz", ["prod", "staging"], []],
    // Two letters swapped, the commonest typo: one edit, not two.
    ["prdo", ["prod", "staging", "dev"], ["prod"]],
    ["stgaing", ["staging", "prod"], ["staging"]],
    ["ved", ["prod", "dev"], []],
  ] as const)("%s among %j: %j", (wanted, known, expected) => {
    expect(suggestNames(wanted, known)).toEqual([...expected]);
  });
});

test("the remembered relay file is plain YAML a person can read", async () => {
  await writeUserConfig({ relay: "https://relay.example.com" }, dir);
  expect(await readFile(join(dir, "config.yaml"), "utf8")).toBe("relay: https://relay.example.com\n");
});
