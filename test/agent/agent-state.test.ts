// The agent's key file in --state-dir: private modes, round trip, missing and corrupt files.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFileKeyStore, type AgentKeys } from "../../lib/agent/index.ts";
import { generateSigningKeyPair } from "../../lib/auth/index.ts";

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "arc-agent-state-"));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function agentKeys(cluster = "prod"): Promise<AgentKeys> {
  return { cluster, ...(await generateSigningKeyPair("EdDSA")) };
}

async function loadError(stateDir: string): Promise<Error> {
  try {
    await createFileKeyStore(stateDir).load();
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected load() to throw");
}

describe("createFileKeyStore", () => {
  test("save creates the state dir 0700 and the key file 0600", async () => {
    const stateDir = join(root, "nested", "state");
    const store = createFileKeyStore(stateDir);
    await store.save(await agentKeys());
    expect((await stat(stateDir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(stateDir, "agent-key.json"))).mode & 0o777).toBe(0o600);
    expect(await readdir(stateDir)).toEqual(["agent-key.json"]);
  });

  test("save tightens a key file that already existed with a loose mode", async () => {
    const stateDir = join(root, "state");
    await mkdir(stateDir, { mode: 0o700 });
    await writeFile(join(stateDir, "agent-key.json"), "{}", { mode: 0o644 });
    await createFileKeyStore(stateDir).save(await agentKeys());
    expect((await stat(join(stateDir, "agent-key.json"))).mode & 0o777).toBe(0o600);
  });

  test("round-trips the keys", async () => {
    const stateDir = join(root, "state");
    const keys = await agentKeys("edge-7");
    await createFileKeyStore(stateDir).save(keys);
    expect(await createFileKeyStore(stateDir).load()).toEqual(keys);
  });

  test("a second save replaces the first", async () => {
    const store = createFileKeyStore(join(root, "state"));
    await store.save(await agentKeys("a"));
    const second = await agentKeys("b");
    await store.save(second);
    expect(await store.load()).toEqual(second);
  });

  test("load returns undefined when there is no key file (or no dir)", async () => {
    expect(await createFileKeyStore(join(root, "missing")).load()).toBeUndefined();
    await mkdir(join(root, "empty"));
    expect(await createFileKeyStore(join(root, "empty")).load()).toBeUndefined();
  });

  test("describe names the key file", () => {
    expect(createFileKeyStore("/var/lib/arcagent").describe()).toBe("/var/lib/arcagent/agent-key.json");
  });

  test.each([
    ["JSON of the wrong shape", JSON.stringify({ hello: "world" })],
    ["a public key only", JSON.stringify({ cluster: "prod", privateJwk: { kty: "OKP" }, publicJwk: { kty: "OKP" } })],
    ["no cluster", JSON.stringify({ privateJwk: { d: "x" }, publicJwk: {} })],
  ])("%s: an error naming the file and how to recover", async (_what, text) => {
    const stateDir = join(root, "state");
    await mkdir(stateDir);
    await writeFile(join(stateDir, "agent-key.json"), text);
    const error = await loadError(stateDir);
    expect(error.message).toContain(join(stateDir, "agent-key.json"));
    expect(error.message).toContain("--enroll-token");
  });

  // BUG (lib/agent/agent-state.ts load): JSON.parse runs outside any handling, so a truncated or
  // garbage file (e.g. a disk-full write by hand, or `null`) surfaces as a bare SyntaxError or
  // TypeError ("JSON Parse error: ...", "null is not an object") with no path and no remedy.
  test.each([
    ["truncated JSON", "{\"cluster\": \"prod\", \"privateJwk\": {"],
    ["not JSON at all", "garbage\n"],
    ["an empty file", ""],
    ["JSON null", "null"],
  ])("%s: an error naming the file and how to recover", async (_what, text) => {
    const stateDir = join(root, "state");
    await mkdir(stateDir);
    await writeFile(join(stateDir, "agent-key.json"), text);
    const error = await loadError(stateDir);
    expect(error.message).toContain(join(stateDir, "agent-key.json"));
    expect(error.message).toContain("--enroll-token");
  });

  test("an unreadable key path (a directory) is an error naming it, not 'missing'", async () => {
    const stateDir = join(root, "state");
    await mkdir(join(stateDir, "agent-key.json"), { recursive: true });
    const error = await loadError(stateDir);
    expect(error.message).toContain("cannot read the agent key");
  });
});
