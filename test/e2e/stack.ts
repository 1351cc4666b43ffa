// Starts arcrelay, arcagent (and arcproxy on demand) from source on loopback, for end-to-end tests.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { writeKubeconfig } from "../cluster/kubeconfig-file.ts";
import { waitFor } from "../support/wait-for.ts";

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

/** A relay on loopback with one registered cluster, and the commands users and admins run against it. */
export interface RelayStack {
  /** Where the relay listens (users are sent here). */
  relayUrl: string;
  /** The URL agents dial and tokens name (`--public-url`): relayUrl unless a proxy sits in front. */
  publicUrl: string;
  dataDir: string;
  dir: string;
  cluster: string;
  /** The cluster's single-use enrollment token (from `arcrelay cluster add`). */
  enrollToken: string;
  relayLog(): string;
  /** Runs an `arcrelay` CLI subcommand against the relay's data dir. */
  arcrelay(args: string[]): Promise<CommandResult>;
  userToken(user: string, groups?: string[], ttl?: string): Promise<string>;
  grant(principal: string, cluster?: string): Promise<void>;
  /** `arcproxy --relay ... --cluster ... --token T [extra] -- command...` */
  arcproxy(opts: { token?: string; args?: string[]; command: string[]; env?: Record<string, string>; stdin?: string; timeoutMs?: number }): Promise<CommandResult>;
  /** The argv of `arcproxy ... --token T --` (for callers that spawn it themselves). */
  arcproxyArgv(token: string): string[];
  /** The state `arcrelay cluster list` shows for the cluster. */
  clusterState(): Promise<string | undefined>;
  waitForAgent(state: "connected" | "offline", timeoutMs?: number): Promise<void>;
  /** Stops the relay with `signal` (SIGTERM drains) and waits for it to exit; resolves with its exit code. */
  stopRelay(signal?: "SIGTERM" | "SIGKILL"): Promise<number>;
  /** Starts the relay again on the same port and data dir, and waits until it answers. */
  startRelay(): Promise<void>;
  /** The relay process's id (for memory figures). */
  relayPid(): number | undefined;
  stop(): Promise<void>;
}

/** A relay plus an agent run from source on this machine. */
export interface Stack extends RelayStack {
  agentLog(): string;
  /** Starts the agent (enrolling on its first start); `env` adds to its environment (e.g. HTTPS_PROXY). */
  startAgent(extraArgs?: string[], env?: Record<string, string>): Promise<void>;
  /** SIGTERM (a graceful drain) by default; SIGKILL is `kill -9`. Resolves once it exited. */
  stopAgent(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  agentPid(): number | undefined;
}

export interface RelayStackOptions {
  cluster?: string;
  /** The relay's public URL (default: its own address), e.g. a fault-injection proxy in front of it. */
  publicUrl?: (relayUrl: string) => Promise<string> | string;
  /** More `arcrelay serve` flags (timeouts, liveness). */
  relayArgs?: string[];
}

export interface StackOptions extends RelayStackOptions {
  /** The URL the agent dials (default: the relay's public URL). */
  agentRelayUrl?: string;
}

interface Proc {
  proc: Subprocess;
  log: string[];
}

function spawnLogged(cmd: string[], env: Record<string, string> = {}, log: string[] = []): Proc {
  const proc = Bun.spawn(cmd, { cwd: ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
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

/** Fails with everything the command printed, so a broken step reads like a terminal session. */
export function expectOk(r: CommandResult): string {
  if (r.code !== 0) throw new Error(`exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

/** Starts arcrelay from source on a free loopback port and registers `cluster` (default "demo"). */
export async function startRelayStack(opts: RelayStackOptions = {}): Promise<RelayStack> {
  const dir = await mkdtemp(join(tmpdir(), "arc-e2e-"));
  const dataDir = join(dir, "relay-data");
  const cluster = opts.cluster ?? "demo";
  const port = await freePort();
  const relayUrl = `http://127.0.0.1:${port}`;
  const publicUrl = opts.publicUrl ? await opts.publicUrl(relayUrl) : relayUrl;
  const relayLog: string[] = [];
  let relay: Proc | undefined;
  const startRelay = async () => {
    relay = spawnLogged([BUN, "cmd/arcrelay.ts", "serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--insecure-http",
      "--public-url", publicUrl, "--log-level", "debug", "--shutdown-delay", "0", ...(opts.relayArgs ?? [])], {}, relayLog);
    const started = relay;
    await waitFor("relay /healthz", async () => {
      if (started.proc.exitCode !== null) throw new Error(`the relay exited (${started.proc.exitCode}) before it answered:\n${relayLog.join("").slice(-2000)}`);
      return (await fetch(`${relayUrl}/healthz`, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined))?.ok === true;
    }, 60_000).catch((error: Error) => {
      throw new Error(`${error.message}; the relay said:\n${relayLog.join("").slice(-3000)}`);
    });
  };
  await startRelay();

  const arcrelay = (args: string[]) => run([BUN, "cmd/arcrelay.ts", ...args, "--data-dir", dataDir]);
  const added = await arcrelay(["cluster", "add", cluster]);
  if (added.code !== 0) throw new Error(`cluster add failed: ${added.stderr}`);
  const clusterState = async () => {
    const r = await arcrelay(["cluster", "list", "-o", "json"]);
    return (JSON.parse(r.stdout) as { name: string; state: string }[]).find((c) => c.name === cluster)?.state;
  };
  const arcproxyArgv = (token: string) => [BUN, "cmd/arcproxy.ts", "--relay", relayUrl, "--cluster", cluster, "--port", "0", "--token", token];
  return {
    relayUrl, publicUrl, dataDir, dir, cluster,
    enrollToken: added.stdout.trim().split("\n").at(-1)!,
    relayLog: () => relayLog.join(""),
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
    async arcproxy({ token, args = [], command, env, stdin, timeoutMs }) {
      const base = token ? arcproxyArgv(token) : arcproxyArgv("").slice(0, -2);
      return run([...base, ...args, "--", ...command], { env, stdin, timeoutMs });
    },
    arcproxyArgv,
    clusterState,
    async waitForAgent(state, timeoutMs = 20_000) {
      await waitFor(`agent ${state}`, async () => {
        const now = await clusterState();
        return state === "connected" ? now === "connected" : now !== "connected";
      }, timeoutMs);
    },
    async stopRelay(signal = "SIGTERM") {
      relay?.proc.kill(signal);
      return (await relay?.proc.exited) ?? 0;
    },
    startRelay,
    relayPid: () => relay?.proc.pid,
    async stop() {
      relay?.proc.kill("SIGTERM");
      await relay?.proc.exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A relay plus an agent (from source, on this machine) serving `target`. */
export async function startStack(target: KubeTarget, opts: StackOptions = {}): Promise<Stack> {
  const relay = await startRelayStack(opts);
  const publicUrl = relay.publicUrl;
  const kubeconfig = join(relay.dir, "agent.kubeconfig");
  await writeKubeconfig(kubeconfig, { server: target.server, caFile: target.caFile, userName: "agent", user: { token: target.agentToken } });
  let enrollToken: string | undefined = relay.enrollToken;
  let agent: Proc | undefined;
  const agentLog: string[] = [];
  return {
    ...relay,
    agentLog: () => agentLog.join(""),
    agentPid: () => agent?.proc.pid,
    async startAgent(extraArgs = [], env = {}) {
      const args = [BUN, "cmd/arcagent.ts", "--relay", opts.agentRelayUrl ?? publicUrl, "--cluster", relay.cluster, "--state-dir", join(relay.dir, "agent-state"), "--kubeconfig", kubeconfig, "--log-level", "debug", ...extraArgs];
      if (enrollToken) args.push("--enroll-token", enrollToken);
      enrollToken = undefined;
      agent = spawnLogged(args, env, agentLog);
    },
    async stopAgent(signal = "SIGTERM") {
      if (!agent) return;
      agent.proc.kill(signal);
      await agent.proc.exited;
    },
    async stop() {
      agent?.proc.kill("SIGTERM");
      await agent?.proc.exited;
      await relay.stop();
    },
  };
}
