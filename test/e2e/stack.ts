// Starts arcrelay, arcagent (and arcproxy on demand) from source on loopback, for end-to-end tests.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { writeKubeconfig } from "../kube/kubeconfig-file.ts";

const ROOT = join(import.meta.dir, "..", "..");
const BUN = process.execPath;

/** The API server the agent talks to: the stand-in or a real kube-apiserver. */
export interface KubeTarget {
  server: string;
  caFile: string;
  /** The agent's own ServiceAccount token. */
  agentToken: string;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Stack {
  relayUrl: string;
  dataDir: string;
  dir: string;
  cluster: string;
  relayLog(): string;
  agentLog(): string;
  /** Runs an `arcrelay` CLI subcommand against the relay's data dir. */
  arcrelay(args: string[]): Promise<CommandResult>;
  userToken(user: string, groups?: string[], ttl?: string): Promise<string>;
  grant(principal: string, cluster?: string): Promise<void>;
  /** `arcproxy --relay ... --cluster ... --token T [extra] -- command...` */
  arcproxy(opts: { token?: string; args?: string[]; command: string[]; env?: Record<string, string>; stdin?: string }): Promise<CommandResult>;
  startAgent(extraArgs?: string[]): Promise<void>;
  stopAgent(): Promise<void>;
  waitForAgent(state: "connected" | "offline"): Promise<void>;
  stop(): Promise<void>;
}

interface Proc {
  proc: Subprocess;
  log: string[];
}

function spawnLogged(cmd: string[], env: Record<string, string> = {}): Proc {
  const proc = Bun.spawn(cmd, { cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const log: string[] = [];
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) log.push(decoder.decode(chunk));
  };
  void drain(proc.stdout as ReadableStream<Uint8Array>);
  void drain(proc.stderr as ReadableStream<Uint8Array>);
  return { proc, log };
}

export async function run(cmd: string[], opts: { env?: Record<string, string>; stdin?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
  const proc = Bun.spawn(cmd, {
    cwd: ROOT,
    env: { ...process.env, ...opts.env },
    stdin: opts.stdin !== undefined ? new TextEncoder().encode(opts.stdin) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout as ReadableStream).text(),
    new Response(proc.stderr as ReadableStream).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await Bun.sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

export async function startStack(target: KubeTarget, opts: { cluster?: string } = {}): Promise<Stack> {
  const dir = await mkdtemp(join(tmpdir(), "arc-e2e-"));
  const dataDir = join(dir, "relay-data");
  const cluster = opts.cluster ?? "demo";
  const port = await freePort();
  const relayUrl = `http://127.0.0.1:${port}`;
  const relay = spawnLogged([BUN, "cmd/arcrelay.ts", "serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--insecure-http", "--log-level", "debug"]);
  await waitFor("relay /healthz", async () => (await fetch(`${relayUrl}/healthz`).catch(() => undefined))?.ok === true, 60_000);

  const kubeconfig = join(dir, "agent.kubeconfig");
  await writeKubeconfig(kubeconfig, { server: target.server, caFile: target.caFile, userName: "agent", user: { token: target.agentToken } });

  const arcrelay = (args: string[]) => run([BUN, "cmd/arcrelay.ts", ...args, "--data-dir", dataDir]);
  const added = await arcrelay(["cluster", "add", cluster]);
  if (added.code !== 0) throw new Error(`cluster add failed: ${added.stderr}`);
  let enrollToken: string | undefined = added.stdout.trim().split("\n").at(-1)!;
  let agent: Proc | undefined;

  const stack: Stack = {
    relayUrl, dataDir, dir, cluster,
    relayLog: () => relay.log.join(""),
    agentLog: () => agent?.log.join("") ?? "",
    arcrelay,
    async userToken(user, groups = [], ttl = "1h") {
      const r = await arcrelay(["token", "create", "--user", user, ...groups.flatMap((g) => ["--group", g]), "--ttl", ttl]);
      if (r.code !== 0) throw new Error(`token create failed: ${r.stderr}`);
      return r.stdout.trim().split("\n").at(-1)!;
    },
    async grant(principal, grantCluster = cluster) {
      const r = await arcrelay(["grant", "add", "--principal", principal, "--cluster", grantCluster, "--role", "cluster-user"]);
      if (r.code !== 0) throw new Error(`grant add failed: ${r.stderr}`);
    },
    async arcproxy({ token, args = [], command, env, stdin }) {
      return run(
        [BUN, "cmd/arcproxy.ts", "--relay", relayUrl, "--cluster", cluster, "--port", "0", ...(token ? ["--token", token] : []), ...args, "--", ...command],
        { env, stdin },
      );
    },
    async startAgent(extraArgs = []) {
      const args = [BUN, "cmd/arcagent.ts", "--relay", relayUrl, "--cluster", cluster, "--state-dir", join(dir, "agent-state"), "--kubeconfig", kubeconfig, "--log-level", "debug", ...extraArgs];
      if (enrollToken) args.push("--enroll-token", enrollToken);
      enrollToken = undefined;
      agent = spawnLogged(args);
    },
    async stopAgent() {
      if (!agent) return;
      agent.proc.kill("SIGTERM");
      await agent.proc.exited;
    },
    async waitForAgent(state) {
      await waitFor(`agent ${state}`, async () => {
        const r = await arcrelay(["cluster", "list", "-o", "json"]);
        const row = (JSON.parse(r.stdout) as { name: string; state: string }[]).find((c) => c.name === cluster);
        return state === "connected" ? row?.state === "connected" : row?.state !== "connected";
      });
    },
    async stop() {
      agent?.proc.kill("SIGTERM");
      relay.proc.kill("SIGTERM");
      await Promise.all([agent?.proc.exited, relay.proc.exited]);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return stack;
}
