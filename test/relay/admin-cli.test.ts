// `arcrelay cluster|grant ...` against a running relay with --relay and a token, after a local relay-admin bootstrap.
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { generateSigningKeyPair } from "../../lib/auth/index.ts";
import { BadGateway } from "../../lib/errors/index.ts";
import { createSelfSignedCertificate } from "../../lib/http/index.ts";
import { createAdminClient } from "../../lib/relay/index.ts";
import { run, type CommandResult } from "../e2e/stack.ts";
import { waitFor } from "../support/wait-for.ts";

const BUN = process.execPath;

let dir: string;
let dataDir: string;
let relayUrl: string;
let relay: Subprocess;
const relayLog: string[] = [];
let rootToken: string;
let bobToken: string;

async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

/** `arcrelay ARGS` with ARC_TOKEN cleared unless given. */
function arcrelay(args: string[], env: Record<string, string> = {}): Promise<CommandResult> {
  return run([BUN, "cmd/arcrelay.ts", ...args], { env: { ARC_TOKEN: "", ...env } });
}

function remote(args: string[], token = rootToken): Promise<CommandResult> {
  return arcrelay([...args, "--relay", relayUrl, "--token", token]);
}

function lastLine(text: string): string {
  return text.trim().split("\n").at(-1)!;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-admin-cli-"));
  dataDir = join(dir, "relay-data");
  const port = await freePort();
  relayUrl = `http://127.0.0.1:${port}`;
  relay = Bun.spawn([BUN, "cmd/arcrelay.ts", "serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--insecure-http"], {
    cwd: join(import.meta.dir, "..", ".."), stdout: "pipe", stderr: "pipe",
  });
  void (async () => {
    for await (const chunk of relay.stderr as ReadableStream<Uint8Array>) relayLog.push(new TextDecoder().decode(chunk));
  })();
  // A relay that exits (a port taken meanwhile, a crash) fails the suite at once, with its log.
  await Promise.race([
    waitFor("relay /healthz", async () => (await fetch(`${relayUrl}/healthz`).catch(() => undefined))?.ok === true, 60_000),
    relay.exited.then((code) => { throw new Error(`arcrelay serve exited ${code} before it was ready:\n${relayLog.join("")}`); }),
  ]);

  // Bootstrap: the first relay-admin is granted on the relay host itself.
  const bootstrap = await arcrelay(["grant", "add", "--principal", "user:root", "--cluster", "*", "--role", "relay-admin", "--data-dir", dataDir]);
  expect(bootstrap.stderr).toBe("");
  expect(bootstrap.code).toBe(0);
  rootToken = lastLine((await arcrelay(["token", "create", "--user", "root", "--data-dir", dataDir])).stdout);
  bobToken = lastLine((await arcrelay(["token", "create", "--user", "bob", "--data-dir", dataDir])).stdout);
}, 90_000);

afterAll(async () => {
  relay?.kill("SIGTERM");
  await relay?.exited;
  await rm(dir, { recursive: true, force: true });
});

describe("arcrelay admin subcommands with --relay", () => {
  let enrollToken: string;
  let grantId: string;

  test("cluster add prints the enrollment token last, as in local mode", async () => {
    const r = await arcrelay(["cluster", "add", "edge", "--ttl", "10m", "--relay", relayUrl], { ARC_TOKEN: rootToken });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('cluster "edge" registered');
    enrollToken = lastLine(r.stdout);
    expect(enrollToken.startsWith("arcenroll_")).toBe(true);
    const log = relayLog.join("");
    expect(log).toContain("admin: cluster registered");
    expect(log).not.toContain(enrollToken);
    expect(log).not.toContain(rootToken);
  });

  test("cluster list -o json shows it, in the local format", async () => {
    const r = await remote(["cluster", "list", "-o", "json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([{ name: "edge", state: "never-connected", enrolled: false }]);
    const local = await arcrelay(["cluster", "list", "-o", "json", "--data-dir", dataDir]);
    expect(JSON.parse(local.stdout)).toEqual(JSON.parse(r.stdout));
  });

  test("grant add, grant list", async () => {
    const added = await remote(["grant", "add", "--principal", "user:bob", "--cluster", "edge", "--role", "cluster-user"]);
    expect(added.stderr).toBe("");
    expect(added.stdout).toMatch(/^granted cluster-user on edge to user:bob \(id [0-9a-f-]+\)\n$/);
    grantId = /\(id ([0-9a-f-]+)\)/.exec(added.stdout)![1]!;
    const listed = await remote(["grant", "list", "--cluster", "edge"]);
    expect(listed.code).toBe(0);
    expect(listed.stdout.split("\n")[0]).toMatch(/^ID +PRINCIPAL +CLUSTER +ROLE$/);
    expect(listed.stdout).toContain(grantId);
    expect(listed.stdout).toContain("user:bob");
  });

  test("a cluster-user's token is refused with the relay's 403 message", async () => {
    const list = await remote(["cluster", "list"], bobToken);
    expect(list.code).toBe(1);
    expect(list.stderr).toContain('user "bob" may not list clusters: that needs the cluster-admin role');
    const add = await remote(["cluster", "add", "other"], bobToken);
    expect(add.code).toBe(1);
    expect(add.stderr).toContain("needs the relay-admin role");
    const revoke = await remote(["cluster", "revoke-agent", "edge"], bobToken);
    expect(revoke.code).toBe(1);
    expect(revoke.stderr).toContain('has no cluster-admin access to cluster "edge"');
  });

  test("cluster revoke-agent clears the enrolled agent's key", async () => {
    const { publicJwk } = await generateSigningKeyPair("EdDSA");
    const body = JSON.stringify({ cluster: "edge", token: enrollToken, publicKey: publicJwk });
    const enrolled = await fetch(`${relayUrl}/v1/agent/enroll`, { method: "POST", headers: { "content-type": "application/json" }, body });
    expect(enrolled.status).toBe(201);
    const before = JSON.parse((await remote(["cluster", "list", "-o", "json"])).stdout) as { enrolled: boolean }[];
    expect(before[0]!.enrolled).toBe(true);

    const r = await remote(["cluster", "revoke-agent", "edge"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain('agent key of cluster "edge" revoked; it had no open tunnel');
    const after = JSON.parse((await remote(["cluster", "list", "-o", "json"])).stdout) as { enrolled: boolean }[];
    expect(after[0]!.enrolled).toBe(false);
  });

  test("grant remove by id, then by principal finds nothing", async () => {
    const byId = await remote(["grant", "remove", "--id", grantId]);
    expect(byId.stdout).toBe("removed 1 grant(s)\n");
    expect(byId.code).toBe(0);
    await remote(["grant", "add", "--principal", "user:bob", "--cluster", "edge", "--role", "cluster-admin"]);
    const byPrincipal = await remote(["grant", "remove", "--principal", "user:bob", "--cluster", "edge"]);
    expect(byPrincipal.stdout).toBe("removed 1 grant(s)\n");
    const again = await remote(["grant", "remove", "--principal", "user:bob"]);
    expect(again.stdout).toBe("removed 0 grant(s)\n");
    expect(again.code).toBe(1);
  });

  test("enroll-token and cluster remove", async () => {
    const token = await remote(["cluster", "enroll-token", "edge"]);
    expect(lastLine(token.stdout).startsWith("arcenroll_")).toBe(true);
    const removed = await remote(["cluster", "remove", "edge"]);
    expect(removed.stdout).toBe('cluster "edge" removed\n');
    const gone = await remote(["cluster", "remove", "edge"]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('cluster "edge" is not registered');
  });
});

describe("choosing local or remote", () => {
  test.each([
    ["both --data-dir and --relay", () => ["cluster", "list", "--data-dir", dataDir, "--relay", relayUrl, "--token", rootToken]],
    ["neither", () => ["cluster", "list"]],
  ])("%s: a clear error", async (_what, args) => {
    const r = await arcrelay(args());
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("pass exactly one of --data-dir DIR");
  });

  test.each([
    "cluster list", "cluster add typo", "grant list", "token create --user alice", "issuer rotate-key",
  ])("a --data-dir that holds no relay store (a typo) is refused, and nothing is made there: %s", async (line) => {
    const command = line.split(" ");
    const typo = `${dataDir}-typo`;
    const r = await arcrelay([...command, "--data-dir", typo]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${typo} holds no relay store: pass the --data-dir that arcrelay serve uses`);
    expect(existsSync(typo)).toBe(false);
  });

  test("a --data-dir this user may not read says so, and whose it is (not 'holds no relay store')", async () => {
    const outer = await mkdtemp(join(tmpdir(), "arc-private-"));
    try {
      const { openSqliteStore } = await import("../../lib/relay/index.ts");
      await (await openSqliteStore(join(outer, "data"))).close(); // 0700, as arcrelay serve makes it
      const proc = Bun.spawn(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", BUN, "cmd/arcrelay.ts", "cluster", "list", "--data-dir", join(outer, "data")], {
        cwd: join(import.meta.dir, "..", ".."), stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH ?? "", HOME: "/tmp" },
      });
      const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
      expect(code).toBe(1);
      expect(stderr).toContain("EACCES");
      expect(stderr).toContain("run this as the user arcrelay serve runs as");
    } finally {
      await rm(outer, { recursive: true, force: true });
    }
  });

  test("--relay without a token says where to put one", async () => {
    const r = await arcrelay(["cluster", "list", "--relay", relayUrl]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("pass --token or set ARC_TOKEN");
  });

  test("a token that does not verify: the relay's 401 message", async () => {
    const r = await remote(["grant", "list"], "not-a-token");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("relay http://127.0.0.1");
    expect(r.stderr).toContain("--token or ARC_TOKEN");
  });

  test("plain http:// to a non-loopback relay is refused before any token is sent", async () => {
    const r = await arcrelay(["cluster", "list", "--relay", "http://relay.example.com", "--token", rootToken]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("refusing plain http://");
  });
});

describe("createAdminClient over https", () => {
  test("a relay with a private certificate is trusted through its CA, and refused without it", async () => {
    const cert = await createSelfSignedCertificate({ commonName: "test" });
    const server = Bun.serve({
      hostname: "127.0.0.1", port: 0, tls: { cert: cert.certPem, key: cert.keyPem },
      fetch: (req) => new URL(req.url).pathname === "/v1/admin/clusters" ? Response.json([]) : new Response("no", { status: 404 }),
    });
    try {
      const url = `https://127.0.0.1:${server.port}`;
      expect(await createAdminClient({ relayUrl: url, token: "t", ca: cert.caPem }).listClusters()).toEqual([]);
      const untrusted = createAdminClient({ relayUrl: url, token: "t" }).listClusters();
      await expect(untrusted).rejects.toBeInstanceOf(BadGateway);
      await expect(untrusted).rejects.toThrow(`cannot reach relay ${url}`);
    } finally {
      server.stop(true);
    }
  });
});

test("arcrelay serve without --data-dir or a database URL says which to pass", () => {
  const env = { ...process.env };
  delete env.ARC_DATABASE_URL;
  const r = Bun.spawnSync([BUN, "cmd/arcrelay.ts", "serve", "--listen", "127.0.0.1:0", "--insecure-http"], { cwd: join(import.meta.dir, "..", ".."), env });
  expect(r.exitCode).not.toBe(0);
  expect(r.stderr.toString()).toContain("pass --data-dir DIR (the embedded store), or --database-url URL (or ARC_DATABASE_URL)");
});
