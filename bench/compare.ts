// cluster-connect against the tunnels people use today, side by side on this machine, with one
// upstream and one load generator (issue 13).
//
//   bun bench/compare.ts               every path, every scenario, 3 interleaved rounds (A B C A B C)
//   bun bench/compare.ts --rounds 5
//   bun bench/compare.ts --smoke       each scenario once, small (what the test suite runs)
//   bun bench/compare.ts --only direct,ours,chisel
//   bun bench/compare.ts --only relay --rounds 1 --no-watches --cpu-prof /tmp/prof   where the relay's and agent's time goes
//
// Paths: direct to the upstream; arcproxy -> arcrelay -> arcagent (compiled binaries, each its own
// process); the relay directly with a user token (the exec-plugin path); chisel (server --reverse,
// client R:), frp (frps + frpc tcp proxy), konnectivity (apiserver-network-proxy server in
// http-connect mode + agent). The peers are built from their Go modules at the versions pinned in
// bench/peers/go.mod; the upstream (HTTPS) and the load generator are the Go programs in
// bench/compare/. The LIST reads 5,000 ConfigMaps from a real kube-apiserver (the tests' own, no
// node) through a second set of the same paths; then arcproxy's start to its first answer is timed. Results (medians, ranges, ratios to direct, load average) go to stdout, and as
// JSON to --json FILE. BENCH_DEBUG=1 prints the relay's requests in flight before each run.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { parse } from "yaml";
import { buildBinaries } from "../scripts/build.ts";
import { applyManifest, createServiceAccountKubeconfig, startKubeCluster, type KubeCluster } from "../test/cluster/cluster.ts";
import { findGo, goEnv } from "../test/cluster/go-toolchain.ts";
import { writeKubeconfig } from "../test/cluster/kubeconfig-file.ts";
import { cacheRoot } from "../scripts/cache-root.ts";
import { waitFor } from "../test/support/wait-for.ts";

const ROOT = join(import.meta.dir, "..");
const argv = process.argv.slice(2);
const USAGE = `usage: bun bench/compare.ts [--rounds N] [--only PATH,...] [--smoke] [--json FILE] [--no-watches | --watches-only] [--cpu-prof DIR]
  paths: direct, ours (arcproxy -> arcrelay -> arcagent), relay (the relay directly), chisel, frp, konnectivity
  --smoke: each scenario once, small, our binaries from source: proves the suite runs; its figures mean nothing
  --no-watches: leave out the 1,000 and 10,000 watches
  --watches-only: only the watches, on a relay and agent that served nothing before (the relay path)
  --cpu-prof DIR: arcproxy, arcrelay and arcagent write a Markdown CPU profile each to DIR when they exit (Bun's --cpu-prof-md)`;
if (argv.includes("--help") || argv.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--smoke" || argv[i] === "--no-watches" || argv[i] === "--watches-only") continue;
  if (["--rounds", "--only", "--json", "--cpu-prof"].includes(argv[i]!) && argv[i + 1] !== undefined) {
    i++;
    continue;
  }
  console.error(`unknown or incomplete argument ${JSON.stringify(argv[i])}\n${USAGE}`);
  process.exit(2);
}
const flag = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const SMOKE = argv.includes("--smoke");
/** The watches alone: their memory from processes that served no other load first. */
const WATCHES_ONLY = argv.includes("--watches-only");
if (WATCHES_ONLY && argv.includes("--no-watches")) {
  console.error(`--watches-only and --no-watches contradict each other\n${USAGE}`);
  process.exit(2);
}
const ROUNDS = SMOKE ? 1 : Number(flag("--rounds") ?? 3);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) {
  console.error(`--rounds ${JSON.stringify(flag("--rounds"))}: use a whole number of at least 1\n${USAGE}`);
  process.exit(2);
}
const ALL_PATHS = ["direct", "ours", "relay", "chisel", "frp", "konnectivity"] as const;
type PathName = (typeof ALL_PATHS)[number];
const ONLY = (WATCHES_ONLY ? ["relay"] : flag("--only")?.split(",") ?? [...ALL_PATHS]) as PathName[];
for (const p of ONLY) {
  if (!ALL_PATHS.includes(p)) {
    console.error(`--only: unknown path ${JSON.stringify(p)}\n${USAGE}`);
    process.exit(2);
  }
}
const BULK_BYTES = SMOKE ? 4 << 20 : 256 << 20;
/** ConfigMaps in the namespace the LIST reads, from the real API server (about 1.1 KB of JSON each). */
const LIST_OBJECTS = SMOKE ? 50 : 5000;
const LIST_NAMESPACE = "bench";
/** Watches held open at once on one tunnel, each run on its own (issue 13's scale scenario). */
const WATCH_COUNTS = argv.includes("--no-watches") ? [] : SMOKE ? [20] : [1000, 10_000];
/** Where our processes write their CPU profiles (--cpu-prof), through BUN_OPTIONS, which compiled binaries read too. */
const CPU_PROF_DIR = flag("--cpu-prof") === undefined ? undefined : resolve(flag("--cpu-prof")!);
const WATCH_EVENTS = SMOKE ? 2 : 5;
const LIST_SCENARIO = ["-mode", "latency", "-n", SMOKE ? "2" : "20", "-warmup", SMOKE ? "1" : "3", "-url-path", `/api/v1/namespaces/${LIST_NAMESPACE}/configmaps`];

/** The scenarios, as loadgen arguments; smoke mode runs each once, small. */
const SCENARIOS: Record<string, string[]> = {
  "c=1": ["-mode", "latency", "-n", SMOKE ? "50" : "2000", "-warmup", SMOKE ? "10" : "200"],
  "c=16": ["-mode", "rate", "-c", "16", "-duration", SMOKE ? "500ms" : "5s", "-warmup", SMOKE ? "10" : "200"],
  "c=64": ["-mode", "rate", "-c", "64", "-duration", SMOKE ? "500ms" : "5s", "-warmup", SMOKE ? "10" : "200"],
  bulk: ["-mode", "bulk", "-url-path", `/bulk?bytes=${BULK_BYTES}`],
};

interface LoadResult {
  mode: string;
  requests: number;
  errors: number;
  p50_us?: number;
  p99_us?: number;
  rps?: number;
  mb_per_s?: number;
  first_error?: string;
}

/** One way from the load generator to the upstream: its URL and what the load generator needs. */
interface Path {
  name: PathName;
  url: string;
  ca?: string;
  bearer?: string;
  connectVia?: string;
  procs: Subprocess[];
}

const work = await mkdtemp(join(tmpdir(), "arc-compare-"));
const procs: Subprocess[] = [];
const logs = new Map<Subprocess, string[]>();

function start(cmd: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Subprocess {
  const ours = CPU_PROF_DIR !== undefined && cmd.some((part) => /arc(proxy|relay|agent)(\.ts)?$/.test(part));
  const profile = ours ? { BUN_OPTIONS: `--cpu-prof-md --cpu-prof-dir=${CPU_PROF_DIR}` } : {};
  const proc = Bun.spawn(cmd, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...profile, ...opts.env }, stdout: "pipe", stderr: "pipe" });
  const log: string[] = [];
  logs.set(proc, log);
  for (const stream of [proc.stdout, proc.stderr] as ReadableStream<Uint8Array>[]) {
    void (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) log.push(decoder.decode(chunk));
    })();
  }
  procs.push(proc);
  return proc;
}
const logOf = (proc: Subprocess) => (logs.get(proc) ?? []).join("").slice(-3000);

async function freePort(below = 65536): Promise<number> {
  for (;;) {
    const port = below < 65536 ? 20000 + Math.floor(Math.random() * (below - 20000)) : 0;
    const server = net.createServer();
    const ok = await new Promise<boolean>((resolve) => {
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => resolve(true));
    });
    if (!ok) continue;
    const chosen = (server.address() as net.AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));
    return chosen;
  }
}

async function listening(port: number, what: string, proc: Subprocess, timeoutMs = 30_000): Promise<void> {
  await waitFor(`${what} on port ${port}`, async () => {
    if (proc.exitCode !== null) throw new Error(`${what} exited (${proc.exitCode}):\n${logOf(proc)}`);
    return new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
  }, timeoutMs);
}

/**
 * Builds the Go programs (ours and the peers) once per version of their sources, in ~/.cache:
 * ours are keyed by bench/compare, the peers by bench/peers, so a change to the load generator
 * does not rebuild the peers (about 2.5 minutes).
 */
async function buildGo(): Promise<Record<string, string>> {
  const cacheDirOf = async (dir: string) => {
    const hash = createHash("sha256");
    for (const file of (await readdir(join(ROOT, dir), { recursive: true })).sort()) {
      if (file.endsWith(".go") || file.endsWith("go.mod") || file.endsWith("go.sum")) hash.update(file).update(await readFile(join(ROOT, dir, file)));
    }
    return join(cacheRoot(), "bench", `${dir.replace("bench/", "")}-${hash.digest("hex").slice(0, 16)}`);
  };
  const outOf: Record<string, string> = { "bench/compare": await cacheDirOf("bench/compare"), "bench/peers": await cacheDirOf("bench/peers") };
  const programs: Record<string, [dir: string, pkg: string]> = {
    loadgen: ["bench/compare", "./loadgen"],
    upstream: ["bench/compare", "./upstream"],
    chisel: ["bench/peers", "github.com/jpillora/chisel"],
    frps: ["bench/peers", "github.com/fatedier/frp/cmd/frps"],
    frpc: ["bench/peers", "github.com/fatedier/frp/cmd/frpc"],
    "proxy-server": ["bench/peers", "sigs.k8s.io/apiserver-network-proxy/cmd/server"],
    "proxy-agent": ["bench/peers", "sigs.k8s.io/apiserver-network-proxy/cmd/agent"],
  };
  const need = (name: string) =>
    name === "loadgen" || name === "upstream" ||
    (ONLY.includes("chisel") && name === "chisel") || (ONLY.includes("frp") && name.startsWith("frp")) || (ONLY.includes("konnectivity") && name.startsWith("proxy-"));
  const paths: Record<string, string> = {};
  let go: string | undefined;
  for (const [name, [dir, pkg]] of Object.entries(programs)) {
    if (!need(name)) continue;
    await mkdir(outOf[dir]!, { recursive: true });
    paths[name] = join(outOf[dir]!, name);
    if (existsSync(paths[name])) continue;
    const started = performance.now();
    // The machine's Go if it is new enough, else a toolchain from the Go module proxy (as the tests' own builds).
    go ??= await findGo({ log: (line) => console.error(`# ${line}`) });
    console.error(`# building ${name} (${pkg}) with ${go}`);
    const built = Bun.spawnSync([go, "build", "-trimpath", "-o", paths[name], pkg], {
      cwd: join(ROOT, dir),
      // The peers' own modules, at the pinned versions; konnectivity's module is not in the checksum database.
      env: { ...process.env, ...goEnv(), GOFLAGS: "-mod=mod", GONOSUMDB: "sigs.k8s.io/apiserver-network-proxy", CGO_ENABLED: "0" },
      stdout: "pipe", stderr: "pipe",
    });
    if (built.exitCode !== 0) throw new Error(`go build ${pkg} failed:\n${built.stderr.toString()}`);
    console.error(`# built ${name} in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  }
  return paths;
}

/** arcproxy, arcrelay and arcagent: compiled (full runs), or from source (smoke: nothing to compile). */
async function ourBinaries(): Promise<Record<"arcproxy" | "arcrelay" | "arcagent", string[]>> {
  if (SMOKE) {
    return { arcproxy: [process.execPath, "cmd/arcproxy.ts"], arcrelay: [process.execPath, "cmd/arcrelay.ts"], arcagent: [process.execPath, "cmd/arcagent.ts"] };
  }
  const outDir = join(work, "dist");
  const built = await buildBinaries({ outDir, log: (line) => console.error(`# ${line}`) });
  const path = (name: string) => [built.find((b) => b.name === name)!.path];
  return { arcproxy: path("arcproxy"), arcrelay: path("arcrelay"), arcagent: path("arcagent") };
}

/**
 * What the paths lead to: the Go upstream, or the real API server (for the LIST). `bearer` is what
 * the load generator sends on the direct path and through the peers (L4 tunnels: the API server
 * itself checks it); our paths send our user token, and the agent reaches `port` with `kubeconfig`.
 */
interface Target {
  cluster: string;
  port: number;
  ca: string;
  bearer?: string;
  /** The agent's credentials for the target (default: a token the upstream ignores). */
  agentToken?: string;
}

/** The relay and its admin CLI, started once and shared by both targets (one cluster each). */
interface OurRelay {
  bin: Record<"arcproxy" | "arcrelay" | "arcagent", string[]>;
  url: string;
  token: string;
  cliOutput(args: string[]): string;
  proc: Subprocess;
}
let ourRelay: OurRelay | undefined;
/** Our agent's process for each target's cluster. */
const ourAgents: Record<string, Subprocess> = {};

async function startOurRelay(): Promise<OurRelay> {
  if (ourRelay) return ourRelay;
  const bin = await ourBinaries();
  const relayPort = await freePort();
  const url = `http://127.0.0.1:${relayPort}`;
  const dataDir = join(work, "relay");
  metricsPort = await freePort();
  // One user opens all the watches of the watch scenario: the per-user limit (100 by default) raised past them.
  const proc = start([...bin.arcrelay, "serve", "--listen", `127.0.0.1:${relayPort}`, "--insecure-http", "--data-dir", dataDir, "--log-level", "warn", "--shutdown-delay", "0",
    "--metrics-listen", `127.0.0.1:${metricsPort}`, "--max-requests-per-user", String(Math.max(100, ...WATCH_COUNTS) + 100)]);
  await listening(relayPort, "arcrelay", proc);
  const cliOutput = (args: string[]) => {
    const r = Bun.spawnSync([...bin.arcrelay, ...args, "--data-dir", dataDir], { cwd: ROOT });
    if (r.exitCode !== 0) throw new Error(`arcrelay ${args.join(" ")}: ${r.stderr.toString()}`);
    return r.stdout.toString();
  };
  const token = cliOutput(["token", "create", "--user", "bench", "--ttl", "12h"]).trim().split("\n").at(-1)!;
  ourRelay = { bin, url, token, cliOutput, proc };
  return ourRelay;
}

async function startPaths(go: Record<string, string>, target: Target): Promise<Path[]> {
  const paths: Path[] = [];
  const upstreamPort = target.port;
  const upstreamCa = target.ca;
  const upstream = `https://127.0.0.1:${upstreamPort}`;
  const peerBearer = target.bearer ? { bearer: target.bearer } : {};
  if (ONLY.includes("direct")) paths.push({ name: "direct", url: upstream, ca: upstreamCa, ...peerBearer, procs: [] });

  if (ONLY.includes("ours") || ONLY.includes("relay")) {
    const { bin, url: relayUrl, token, cliOutput, proc: relay } = await startOurRelay();
    const cli = (args: string[]) => cliOutput(args).trim().split("\n").at(-1)!;
    const enroll = cli(["cluster", "add", target.cluster]);
    cli(["grant", "add", "--principal", "user:bench", "--cluster", target.cluster]);
    const kubeconfig = join(work, `${target.cluster}-agent.kubeconfig`);
    await writeKubeconfig(kubeconfig, { server: upstream, caFile: upstreamCa, userName: "agent", user: { token: target.agentToken ?? "bench" } });
    const agent = ourAgents[target.cluster] = start([...bin.arcagent, "--relay", relayUrl, "--cluster", target.cluster, "--state-dir", join(work, `${target.cluster}-agent`), "--kubeconfig", kubeconfig, "--enroll-token", enroll, "--log-level", "warn",
      // The watch scenario holds 10,000 requests on this agent: its own limit (2,000) raised to the tunnel's.
      "--max-requests-in-flight", String(Math.max(...WATCH_COUNTS, 2000))]);
    const connected = () => (JSON.parse(cliOutput(["cluster", "list", "-o", "json"])) as { name: string; status?: string; connected?: boolean }[])
      .some((c) => c.name === target.cluster && JSON.stringify(c).includes('"connected"'));
    await waitFor(`the agent's tunnel for ${target.cluster}`, connected, 30_000).catch((error: Error) => {
      throw new Error(`${error.message}\n${logOf(agent)}`);
    });
    if (ONLY.includes("relay")) paths.push({ name: "relay", url: `${relayUrl}/v1/clusters/${target.cluster}/k8s`, bearer: token, procs: [relay, agent] });
    if (ONLY.includes("ours")) {
      const ready = join(work, `${target.cluster}-arcproxy.ready`);
      const out = join(work, `${target.cluster}-arcproxy.kubeconfig`);
      const proxy = start([...bin.arcproxy, "--relay", relayUrl, "--cluster", target.cluster, "--port", "0", "--token", token, "--kubeconfig-out", out, "--ready-file", ready]);
      await waitFor("arcproxy's ready file", () => existsSync(ready), 30_000).catch((error: Error) => {
        throw new Error(`${error.message}\n${logOf(proxy)}`);
      });
      const config = parse(await readFile(out, "utf8")) as { clusters: { cluster: { server: string; "certificate-authority-data": string } }[]; users: { user: { token: string } }[] };
      const ca = join(work, `${target.cluster}-arcproxy-ca.pem`);
      await writeFile(ca, Buffer.from(config.clusters[0]!.cluster["certificate-authority-data"], "base64"));
      paths.push({ name: "ours", url: config.clusters[0]!.cluster.server, ca, bearer: config.users[0]!.user.token, procs: [proxy, relay, agent] });
    }
  }

  if (ONLY.includes("chisel")) {
    const [serverPort, localPort] = [await freePort(), await freePort()];
    const server = start([go.chisel!, "server", "--host", "127.0.0.1", "--port", String(serverPort), "--reverse"]);
    await listening(serverPort, "chisel server", server);
    const client = start([go.chisel!, "client", `http://127.0.0.1:${serverPort}`, `R:127.0.0.1:${localPort}:127.0.0.1:${upstreamPort}`]);
    await listening(localPort, "chisel's reverse port", client);
    paths.push({ name: "chisel", url: `https://127.0.0.1:${localPort}`, ca: upstreamCa, ...peerBearer, procs: [server, client] });
  }

  if (ONLY.includes("frp")) {
    const [bindPort, remotePort] = [await freePort(), await freePort()];
    await writeFile(join(work, `${target.cluster}-frps.toml`), `bindAddr = "127.0.0.1"\nbindPort = ${bindPort}\nlog.level = "warn"\n`);
    await writeFile(join(work, `${target.cluster}-frpc.toml`), `serverAddr = "127.0.0.1"\nserverPort = ${bindPort}\nlog.level = "warn"\n\n[[proxies]]\nname = "bench"\ntype = "tcp"\nlocalIP = "127.0.0.1"\nlocalPort = ${upstreamPort}\nremotePort = ${remotePort}\n`);
    const server = start([go.frps!, "-c", join(work, `${target.cluster}-frps.toml`)]);
    await listening(bindPort, "frps", server);
    const client = start([go.frpc!, "-c", join(work, `${target.cluster}-frpc.toml`)]);
    await listening(remotePort, "frp's remote port", client);
    paths.push({ name: "frp", url: `https://127.0.0.1:${remotePort}`, ca: upstreamCa, ...peerBearer, procs: [server, client] });
  }

  if (ONLY.includes("konnectivity")) {
    // It refuses ports in the ephemeral range (above 49151).
    const ports: number[] = [];
    for (let i = 0; i < 5; i++) ports.push(await freePort(49151));
    const [agentPort, adminPort, healthPort, agentAdmin, agentHealth] = ports as [number, number, number, number, number];
    const cert = join(work, `${target.cluster}-konnectivity.crt`);
    const key = join(work, `${target.cluster}-konnectivity.key`);
    const made = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
      "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { stderr: "pipe" });
    if (made.exitCode !== 0) throw new Error(`openssl: ${made.stderr.toString()}`);
    const socket = join(work, `${target.cluster}-konnectivity.sock`);
    const server = start([go["proxy-server"]!, "--mode=http-connect", `--uds-name=${socket}`, "--server-port=0", "--delete-existing-uds-file",
      `--cluster-cert=${cert}`, `--cluster-key=${key}`, "--agent-bind-address=127.0.0.1", `--agent-port=${agentPort}`,
      `--admin-port=${adminPort}`, `--health-port=${healthPort}`, "--health-bind-address=127.0.0.1", "--v=0"]);
    await listening(agentPort, "konnectivity server", server);
    const agent = start([go["proxy-agent"]!, `--ca-cert=${cert}`, "--proxy-server-host=127.0.0.1", `--proxy-server-port=${agentPort}`,
      `--admin-server-port=${agentAdmin}`, `--health-server-port=${agentHealth}`, "--health-server-host=127.0.0.1", "--v=0"]);
    await listening(agentHealth, "konnectivity agent", agent);
    // The agent's health port answers before its tunnel is up: wait for a request to get through.
    await waitFor("a request through konnectivity", async () => (await runLoad({ name: "konnectivity", url: upstream, ca: upstreamCa, ...peerBearer, connectVia: `unix:${socket}`, procs: [] }, ["-mode", "latency", "-n", "1", "-warmup", "0"]).catch(() => undefined))?.requests === 1, 30_000);
    paths.push({ name: "konnectivity", url: upstream, ca: upstreamCa, ...peerBearer, connectVia: `unix:${socket}`, procs: [server, agent] });
  }
  return paths;
}

let apiServerCluster: KubeCluster | undefined;

/**
 * A real kube-apiserver and etcd (the tests' own, built from the Go modules; no node), LIST_OBJECTS
 * ConfigMaps in LIST_NAMESPACE, and a ServiceAccount token that may do anything: the bearer for
 * the direct path and the peers, and the agent's credential (it impersonates our user, whom a
 * Role lets read ConfigMaps there; `view` would be empty: it is aggregated by the controller manager,
 * which this cluster does not run).
 */
async function startApiServer(): Promise<{ port: number; ca: string; token: string }> {
  const started = performance.now();
  // Its progress on stderr: the first run builds Kubernetes from its Go modules (about 12 minutes on 2 cores) unless the demo or the tests did.
  apiServerCluster = await startKubeCluster({ dir: join(work, "cluster"), node: false, log: (line) => console.error(`# ${line}`) });
  const cluster = apiServerCluster;
  await applyManifest(cluster, "bench.yaml", `apiVersion: v1
kind: Namespace
metadata: {name: ${LIST_NAMESPACE}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: bench, namespace: ${LIST_NAMESPACE}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bench-agent}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: bench, namespace: ${LIST_NAMESPACE}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: bench-read, namespace: ${LIST_NAMESPACE}}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bench-read, namespace: ${LIST_NAMESPACE}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: bench-read}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bench}]
`);
  const { token } = await createServiceAccountKubeconfig(cluster, { namespace: LIST_NAMESPACE, serviceAccount: "bench", out: join(work, "bench-sa.kubeconfig"), duration: "12h" });
  const ca = await readFile(cluster.caFile, "utf8");
  let next = 0;
  const value = "x".repeat(800);
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < LIST_OBJECTS) {
      const name = `cm-${next++}`;
      const res = await fetch(`${cluster.server}/api/v1/namespaces/${LIST_NAMESPACE}/configmaps`, {
        method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, labels: { app: "bench" } }, data: { value } }),
        tls: { ca },
      });
      if (res.status !== 201) throw new Error(`creating ConfigMap ${name}: ${res.status} ${await res.text()}`);
    }
  }));
  console.error(`# API server up with ${LIST_OBJECTS} ConfigMaps in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  return { port: Number(new URL(cluster.server).port), ca: cluster.caFile, token };
}

/**
 * Starts arcproxy `n` times against the running relay (cluster "bench") and times each from spawn
 * to the first answered request through it: its ready file appears, then one GET with the token
 * and CA of the kubeconfig it wrote. Returns milliseconds.
 */
async function arcproxyStarts(n: number): Promise<number[]> {
  const relay = await startOurRelay();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const ready = join(work, `start-${i}.ready`);
    const out = join(work, `start-${i}.kubeconfig`);
    const t0 = performance.now();
    const proxy = start([...relay.bin.arcproxy, "--relay", relay.url, "--cluster", "bench", "--port", "0", "--token", relay.token, "--kubeconfig-out", out, "--ready-file", ready]);
    try {
      // Polled every 2 ms (waitFor backs off to 100 ms, too coarse for what is measured here).
      const deadline = performance.now() + 30_000;
      while (!existsSync(ready)) {
        if (proxy.exitCode !== null || performance.now() > deadline) throw new Error(`arcproxy did not become ready:\n${logOf(proxy)}`);
        await Bun.sleep(2);
      }
      const config = parse(await readFile(out, "utf8")) as { clusters: { cluster: { server: string; "certificate-authority-data": string } }[]; users: { user: { token: string } }[] };
      const res = await fetch(`${config.clusters[0]!.cluster.server}/version`, {
        headers: { authorization: `Bearer ${config.users[0]!.user.token}` },
        tls: { ca: Buffer.from(config.clusters[0]!.cluster["certificate-authority-data"], "base64").toString() },
      });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`arcproxy's first request answered ${res.status}`);
      times.push(performance.now() - t0);
    } finally {
      proxy.kill("SIGTERM");
      await proxy.exited;
    }
  }
  return times;
}

interface WatchFigure {
  watches: number;
  establishedS: number;
  p50Us: number;
  p99Us: number;
  relayMiB: [before: number, holding: number];
  agentMiB: [before: number, holding: number];
}

function printWatches(watches: WatchFigure[]): void {
  if (!watches.length) return;
  console.log(`\n| watches on one tunnel | all open in | event delivery p50 | p99 | relay RSS MiB | agent RSS MiB | relay + agent |`);
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const w of watches) {
    console.log(`| ${w.watches} | ${w.establishedS.toFixed(1)} s | ${(w.p50Us / 1000).toFixed(1)} ms | ${(w.p99Us / 1000).toFixed(1)} ms | ${w.relayMiB[0].toFixed(0)} -> ${w.relayMiB[1].toFixed(0)} | ${w.agentMiB[0].toFixed(0)} -> ${w.agentMiB[1].toFixed(0)} | ${(w.relayMiB[1] + w.agentMiB[1]).toFixed(0)} MiB |`);
  }
}

/**
 * For each count: opens that many watches at once through the relay (user token) on the one
 * tunnel of cluster "bench", fires WATCH_EVENTS events at the upstream, and reports how long the
 * watches took to open, each event's delivery time to every watch (p50, p99; upstream write to
 * client read), and the RSS of relay and agent before and while holding them.
 */
async function watchesOnOneTunnel(upstreamPort: number, upstreamCa: string): Promise<WatchFigure[]> {
  const relay = await startOurRelay();
  const agent = ourAgents.bench!;
  const rss = async (proc: Subprocess) => Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${proc.pid}/status`, "utf8"))![1]) / 1024;
  const figures: WatchFigure[] = [];
  for (const count of WATCH_COUNTS) {
    const before = [await rss(relay.proc), await rss(agent)];
    const proc = Bun.spawn([loadgen, "-mode", "watch", "-c", String(count), "-events", String(WATCH_EVENTS), "-bearer", relay.token,
      "-url", `${relay.url}/v1/clusters/bench/k8s/api/v1/namespaces/bench/configmaps?watch=1`,
      "-fire-url", `https://127.0.0.1:${upstreamPort}/fire`, "-fire-ca", upstreamCa], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    const reader = proc.stdout.getReader();
    const first = await reader.read();
    if (first.done) throw new Error(`loadgen's watches failed: ${(await new Response(proc.stderr).text()).trim()}`);
    const r = JSON.parse(new TextDecoder().decode(first.value)) as LoadResult & { established_s: number };
    const holding = [await rss(relay.proc), await rss(agent)];
    proc.stdin.end();
    await proc.exited;
    figures.push({ watches: count, establishedS: r.established_s, p50Us: r.p50_us!, p99Us: r.p99_us!, relayMiB: [before[0]!, holding[0]!], agentMiB: [before[1]!, holding[1]!] });
    // The next count starts once the relay has let go of these (its streams in flight back to none).
    await waitFor("the relay to close the watches", async () => !/arcrelay_active_streams\{kind="watch"\} [1-9]/.test(await relayActive()), 60_000);
  }
  return figures;
}

let loadgen = "";
let metricsPort = 0;
async function relayActive(): Promise<string> {
  if (!metricsPort) return "";
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return text.split("\n").filter((l) => l.startsWith("arcrelay_active_streams")).join(" ");
}
async function runLoad(path: Path, args: string[]): Promise<LoadResult> {
  const urlPath = args.includes("-url-path") ? args[args.indexOf("-url-path") + 1]! : "/";
  const rest = args.filter((_, i) => args[i] !== "-url-path" && args[i - 1] !== "-url-path");
  const cmd = [loadgen, "-url", path.url.replace(/\/$/, "") + urlPath, ...rest,
    ...(path.ca ? ["-ca", path.ca] : []), ...(path.bearer ? ["-bearer", path.bearer] : []), ...(path.connectVia ? ["-connect-via", path.connectVia] : [])];
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`loadgen on ${path.name} failed: ${err.trim()}`);
  return JSON.parse(out) as LoadResult;
}

/** CPU seconds (user + system) the path's own processes have used so far. */
async function cpuSeconds(path: Path): Promise<number> {
  let ticks = 0;
  for (const proc of path.procs) {
    const fields = (await readFile(`/proc/${proc.pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / 100;
}
async function rssMiB(path: Path): Promise<number[]> {
  return Promise.all(path.procs.map(async (proc) => Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${proc.pid}/status`, "utf8"))![1]) / 1024));
}

/** What each path is, in the table. */
const LABEL: Record<PathName, string> = {
  direct: "direct", ours: "arcproxy -> arcrelay -> arcagent", relay: "arcrelay -> arcagent (user token)",
  chisel: "chisel", frp: "frp", konnectivity: "konnectivity",
};
const PROCESS_NAMES: Record<PathName, string> = {
  direct: "", ours: "arcproxy + arcrelay + arcagent", relay: "arcrelay + arcagent", chisel: "server + client", frp: "frps + frpc", konnectivity: "server + agent",
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const range = (xs: number[], digits = 0) => (xs.length === 1 ? xs[0]!.toFixed(digits) : `${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}`);

/** Stops every process and the API server and removes the work folder (keys, etcd data) once, however the run ends. */
let cleaning: Promise<void> | undefined;
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    await apiServerCluster?.stop();
    if (CPU_PROF_DIR !== undefined) {
      // A profile is written at exit: SIGTERM (our processes drain and exit), SIGKILL only for what is left after 40 s.
      for (const proc of procs) proc.kill("SIGTERM");
      await Promise.race([Promise.all(procs.map((p) => p.exited)), Bun.sleep(40_000)]);
    }
    for (const proc of procs) proc.kill("SIGKILL");
    await Promise.all(procs.map((p) => p.exited));
    await rm(work, { recursive: true, force: true });
  })();
  return cleaning;
}
// Ctrl-C (or a SIGTERM) would otherwise leave the work folder behind, with its keys and etcd data.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.error(`# ${signal}: stopping and cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}

try {
  console.log(`# ${new Date().toISOString()} ${SMOKE ? "smoke" : `${ROUNDS} rounds`}; load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  if (SMOKE) console.log("# smoke: each scenario once and small (4 MiB bulk), arcproxy/arcrelay/arcagent from source, not compiled: the figures only show that every path answered");
  const go = await buildGo();
  loadgen = go.loadgen!;
  const caFile = join(work, "upstream-ca.pem");
  const upstreamProc = start([go.upstream!, "-listen", "127.0.0.1:0", "-ca-out", caFile]);
  await waitFor("the upstream's port", () => (logs.get(upstreamProc) ?? []).join("").includes("\n"), 10_000);
  const upstreamPort = Number((logs.get(upstreamProc) ?? []).join("").split("\n")[0]);
  const paths = await startPaths(go, { cluster: "bench", port: upstreamPort, ca: caFile });
  if (WATCHES_ONLY) {
    const watches = await watchesOnOneTunnel(upstreamPort, caFile);
    printWatches(watches);
    console.log(`\n# load average at the end ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
    const json = flag("--json");
    if (json) await writeFile(json, JSON.stringify({ date: new Date().toISOString(), watchesOnly: true, watches }, null, 2));
    await cleanUp();
    process.exit(0);
  }
  const apiServer = await startApiServer();
  const listPaths = await startPaths(go, { cluster: "bench-k8s", port: apiServer.port, ca: apiServer.ca, bearer: apiServer.token, agentToken: apiServer.token });

  // results[scenario][path] = one figure per round
  const results: Record<string, Record<string, number[]>> = {};
  const p99: Record<string, Record<string, number[]>> = {};
  const cpu: Record<string, number[]> = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const [scenario, args] of Object.entries(SCENARIOS)) {
      for (const path of paths) {
        if (process.env.BENCH_DEBUG) console.error(`# before ${path.name} ${scenario}: ${await relayActive()}`);
        const before = await cpuSeconds(path);
        const r = await runLoad(path, args);
        if (r.errors > 0) throw new Error(`${path.name} ${scenario}: ${r.errors} requests failed, the first with: ${r.first_error}`);
        const figure = scenario === "c=1" ? r.p50_us! : scenario === "bulk" ? r.mb_per_s! : r.rps!;
        ((results[scenario] ??= {})[path.name] ??= []).push(figure);
        if (r.p99_us !== undefined) ((p99[scenario] ??= {})[path.name] ??= []).push(r.p99_us);
        if (scenario === "c=16" && r.requests > 0) (cpu[path.name] ??= []).push(((await cpuSeconds(path)) - before) / r.requests * 10_000);
      }
    }
    for (const path of listPaths) {
      const r = await runLoad(path, LIST_SCENARIO);
      if (r.errors > 0) throw new Error(`${path.name} LIST: ${r.errors} requests failed, the first with: ${r.first_error}`);
      ((results.LIST ??= {})[path.name] ??= []).push(r.p50_us! / 1000);
    }
  }
  // RSS of each path's processes after its load, before the scale scenarios below grow the relay and agent.
  const rssAfterLoad = new Map<Path, number[]>();
  for (const path of paths) if (path.procs.length) rssAfterLoad.set(path, await rssMiB(path));
  const starts = ONLY.includes("ours") ? await arcproxyStarts(SMOKE ? 1 : 5) : [];
  const watches = ONLY.includes("relay") ? await watchesOnOneTunnel(upstreamPort, caFile) : [];

  const unit: Record<string, string> = { "c=1": "p50 us", "c=16": "req/s", "c=64": "req/s", bulk: "MB/s", LIST: `of ${LIST_OBJECTS} p50 ms` };
  const columns = [...Object.keys(SCENARIOS), "LIST"];
  console.log(`\n| path | ${columns.map((s) => `${s} ${unit[s]}`).join(" | ")} | c=1 p99 us | CPU s / 10k req (c=16) | RSS MiB (processes) |`);
  console.log(`| --- | ${columns.map(() => "---").join(" | ")} | --- | --- | --- |`);
  const direct = (scenario: string) => results[scenario]?.direct ? median(results[scenario]!.direct!) : undefined;
  for (const path of paths) {
    const cells = columns.map((scenario) => {
      const xs = results[scenario]![path.name]!;
      const base = direct(scenario);
      const ratio = base && path.name !== "direct" ? ` (${(median(xs) / base).toFixed(2)}x)` : "";
      return `${range(xs, scenario === "LIST" ? 1 : 0)}${ratio}`;
    });
    const rss = path.procs.length ? `${rssAfterLoad.get(path)!.map((m) => m.toFixed(0)).join(" + ")} (${PROCESS_NAMES[path.name]})` : "";
    console.log(`| ${LABEL[path.name]} | ${cells.join(" | ")} | ${range(p99["c=1"]![path.name]!)} | ${path.procs.length ? range(cpu[path.name]!, 2) : ""} | ${rss} |`);
  }
  if (starts.length) console.log(`\narcproxy start to its first answered request (spawn -> ready file -> one GET through it, ${starts.length} starts): median ${median(starts).toFixed(0)} ms, ${range(starts)} ms`);
  printWatches(watches);
  console.log(`\n# load average at the end ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  const json = flag("--json");
  if (json) await writeFile(json, JSON.stringify({ date: new Date().toISOString(), rounds: ROUNDS, smoke: SMOKE, results, p99, cpu, arcproxyStartMs: starts, watches }, null, 2));
} finally {
  await cleanUp();
}
process.exit(0);
