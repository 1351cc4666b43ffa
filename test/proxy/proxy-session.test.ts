import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parse } from "yaml";
import { silentLogger } from "../../lib/observe/index.ts";
import { startProxySession } from "../../lib/proxy/index.ts";
import { CLUSTER, USER_TOKEN, VERSION_BODY, startFakeRelay, type FakeRelay } from "./fake-relay.ts";

let relay: FakeRelay;
beforeAll(async () => {
  relay = await startFakeRelay();
});
afterAll(() => relay.close());

const base = () => ({ relayUrl: relay.url, cluster: CLUSTER, getToken: async () => USER_TOKEN, port: 0, tls: {}, logger: silentLogger });

test("writes a private temp kubeconfig pointing at the local proxy, removed on close", async () => {
  const session = await startProxySession({ ...base(), kubeconfig: { kind: "temp" } });
  const path = session.kubeconfigPath!;
  const dir = dirname(path);
  try {
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const config = parse(await readFile(path, "utf8"));
    expect(config["current-context"]).toBe(CLUSTER);
    expect(config.clusters[0].cluster.server).toBe(`https://127.0.0.1:${session.port}`);
    expect(Buffer.from(config.clusters[0].cluster["certificate-authority-data"], "base64").toString()).toContain("BEGIN CERTIFICATE");
    expect(config.users[0].user.token).not.toBe(USER_TOKEN);
  } finally {
    await session.close();
  }
  expect(existsSync(dir)).toBe(false);
});

test("fails early with the relay's message for a cluster the user may not use", async () => {
  expect(startProxySession({ ...base(), cluster: "secret" })).rejects.toThrow("user alice may not use cluster secret");
});

test("real kubectl: get --raw /version through arcproxy to the relay", async () => {
  const kubectl = Bun.which("kubectl");
  if (!kubectl) throw new Error("kubectl is not on PATH; this test needs it");
  const dir = await mkdtemp(join(tmpdir(), "arcproxy-kubectl-"));
  const kubeconfigOut = join(dir, "config");
  const session = await startProxySession({ ...base(), kubeconfig: { kind: "merge", path: kubeconfigOut } });
  try {
    const child = Bun.spawn([kubectl, "--kubeconfig", kubeconfigOut, "get", "--raw", "/version"], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual(VERSION_BODY);
    const seen = relay.seen.at(-1)!;
    expect(seen.url).toBe("/version");
    const auth = seen.rawHeaders[seen.rawHeaders.findIndex((h) => h.toLowerCase() === "authorization") + 1];
    expect(auth).toBe(`Bearer ${USER_TOKEN}`);
  } finally {
    await session.close();
  }
  // A kubeconfig arcproxy created goes with its context.
  expect(existsSync(kubeconfigOut)).toBe(false);
  await rm(dir, { recursive: true, force: true });
});
