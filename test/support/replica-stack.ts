// Relay replicas as a Deployment runs them: each its own arcrelay process on one PostgreSQL, behind
// a TCP front that plays the load balancer (agents and users who go through it land where it says).
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { createFileKeyStore, loadUpstream, runAgent } from "../../lib/agent/index.ts";
import { createRelayConnection, type RelayTls } from "../../lib/client/index.ts";
import { createSelfSignedCertificate } from "../../lib/http/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { loadStoredIssuer } from "../../lib/relay/index.ts";
import { openPostgresStore } from "../../lib/relay/store/postgres-store.ts";
import type { RelayStore } from "../../lib/relay/store/index.ts";
import { waitFor } from "./wait-for.ts";
import { freePorts } from "../cluster/control-plane.ts";

const ROOT = join(import.meta.dir, "..", "..");

export interface Replica {
  id: string;
  port: number;
  internalPort: number;
  /** http://127.0.0.1:PORT: this replica alone, past the front. */
  url: string;
  proc: Subprocess;
  log(): string;
}

export interface ReplicaStack {
  /** The front (the "load balancer"): the relay's public URL, what agents dial. */
  publicUrl: string;
  /** What clients need to trust the relay (its CA with `tls`). */
  relayTls: RelayTls;
  replicas: Replica[];
  replica(id: string): Replica;
  /** The shared database, for checks and grants. */
  store: RelayStore;
  /** `arcrelay ARGS --database-url URL` */
  arcrelay(args: string[]): { code: number; stdout: string; stderr: string };
  /** Registers `cluster` and starts its agent (in this process) through the front, steered to replica `via`; resolves once `via` holds its tunnel. */
  startAgent(cluster: string, kubeconfig: string, via: string): Promise<void>;
  /** The replica holding `cluster`'s tunnel, per the database. */
  holderOf(cluster: string): Promise<string | undefined>;
  userToken(user: string, groups?: string[]): Promise<string>;
  /**
   * Stops replica `id` with `signal` (SIGTERM: it drains and hands its tunnels back), waits for it
   * to exit, and starts it again on the same ports; resolves once the new process answers /readyz.
   */
  restart(id: string, signal: "SIGTERM" | "SIGKILL"): Promise<Replica>;
  stop(): Promise<void>;
}

const freePort = async () => (await freePorts(1))[0]!;

/**
 * Starts `ids.length` replicas at once on the (empty) database at `databaseUrl` (they migrate it
 * once and all come up) and the front. Throws with a replica's log when one does not get ready in 30 s.
 */
export async function startReplicaStack(opts: {
  databaseUrl: string;
  ids?: string[];
  /**
   * One replica, reached directly (its own URL is the public URL): for the idle-agents benchmark,
   * where the front's two sockets per connection would exceed this machine's 20,000 file descriptors.
   */
  direct?: boolean;
  /** More `arcrelay serve` flags for every replica. */
  relayArgs?: string[];
  /**
   * Serve TLS, as the chart's relay does (a certificate for 127.0.0.1 made at start; agents and
   * checks trust it); with `direct` only, since the front forwards plain TCP to one port.
   */
  tls?: boolean;
}): Promise<ReplicaStack> {
  if (opts.direct && (opts.ids?.length ?? 3) !== 1) throw new Error("startReplicaStack: direct works with one replica only");
  const dir = await mkdtemp(join(tmpdir(), "arc-replicas-"));
  const agentStop = new AbortController();
  let replicas: Replica[] = [];
  let steer: string | undefined;
  const front = net.createServer((client) => {
    const live = replicas.filter((r) => r.proc.exitCode === null && !r.proc.killed);
    const chosen = live.find((r) => r.id === steer) ?? live[0];
    if (!chosen) return client.destroy();
    const backend = net.connect(chosen.port, "127.0.0.1");
    client.pipe(backend).pipe(client);
    client.on("error", () => backend.destroy());
    backend.on("error", () => client.destroy());
  });
  await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
  const directPort = opts.direct ? await freePort() : undefined;
  if (opts.tls && !opts.direct) throw new Error("startReplicaStack: tls works with direct only");
  const scheme = opts.tls ? "https" : "http";
  const publicUrl = `${scheme}://127.0.0.1:${directPort ?? (front.address() as net.AddressInfo).port}`;
  const certificate = opts.tls ? await createSelfSignedCertificate({ commonName: "127.0.0.1", hosts: ["127.0.0.1"] }) : undefined;
  let listenArgs = ["--insecure-http"];
  if (certificate) {
    await writeFile(join(dir, "tls.crt"), certificate.certPem);
    await writeFile(join(dir, "tls.key"), certificate.keyPem, { mode: 0o600 });
    listenArgs = ["--tls-cert", join(dir, "tls.crt"), "--tls-key", join(dir, "tls.key")];
  }
  const relayTls = { ca: certificate?.certPem };

  const startReplica = async (id: string, ports?: { port: number; internal: number }): Promise<Replica> => {
    const [port, internal] = ports ? [ports.port, ports.internal] : [directPort ?? await freePort(), await freePort()];
    const log: string[] = [];
    // No --data-dir: on PostgreSQL a replica keeps nothing of its own on disk.
    const proc = Bun.spawn([process.execPath, "cmd/arcrelay.ts", "serve", "--listen", `127.0.0.1:${port}`, ...listenArgs, "--public-url", publicUrl,
      "--replica-id", id, "--internal-listen", `127.0.0.1:${internal}`, "--shutdown-delay", "0", "--log-level", "debug", ...(opts.relayArgs ?? [])], {
      cwd: ROOT, env: { ...process.env, ARC_DATABASE_URL: opts.databaseUrl }, stdout: "pipe", stderr: "pipe",
    });
    for (const stream of [proc.stdout, proc.stderr] as ReadableStream<Uint8Array>[]) {
      void (async () => {
        const decoder = new TextDecoder();
        for await (const chunk of stream) log.push(decoder.decode(chunk));
      })();
    }
    const replica: Replica = { id, port, internalPort: internal, proc, url: `${scheme}://127.0.0.1:${port}`, log: () => log.join("") };
    await waitFor(`replica ${id} to answer /readyz`, async () => {
      if (proc.exitCode !== null) throw new Error(`replica ${id} exited (${proc.exitCode}):\n${replica.log()}`);
      return (await fetch(`${replica.url}/readyz`, { tls: relayTls }).catch(() => undefined))?.ok === true;
    }, 30_000);
    return replica;
  };
  replicas = await Promise.all((opts.ids ?? ["r1", "r2", "r3"]).map((id) => startReplica(id)));
  const store = await openPostgresStore(opts.databaseUrl);
  const arcrelay = (args: string[]) => {
    const proc = Bun.spawnSync([process.execPath, "cmd/arcrelay.ts", ...args, "--database-url", opts.databaseUrl], { cwd: ROOT });
    return { code: proc.exitCode ?? -1, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
  };
  const holderOf = async (cluster: string) => (await store.listPresence(new Date())).find((p) => p.cluster === cluster)?.replicaId;
  return {
    publicUrl,
    relayTls,
    get replicas() { return replicas; },
    replica: (id) => replicas.find((r) => r.id === id)!,
    store,
    arcrelay,
    holderOf,
    async startAgent(cluster, kubeconfig, via) {
      const added = arcrelay(["cluster", "add", cluster]);
      if (added.code !== 0) throw new Error(`cluster add ${cluster}: ${added.stderr}`);
      steer = via;
      void runAgent({
        relay: createRelayConnection(publicUrl, relayTls), cluster, keyStore: createFileKeyStore(join(dir, "agents", cluster)), enrollToken: added.stdout.trim().split("\n").at(-1)!,
        upstream: loadUpstream({ kubeconfig }), agentVersion: "test", logger: silentLogger, signal: agentStop.signal, drainTimeoutMs: 1_000,
      });
      try {
        await waitFor(`cluster ${cluster}'s tunnel on ${via}`, async () => (await holderOf(cluster)) === via, 20_000);
      } finally {
        steer = undefined;
      }
    },
    async restart(id, signal) {
      const old = replicas.find((r) => r.id === id)!;
      old.proc.kill(signal);
      await old.proc.exited;
      const fresh = await startReplica(id, { port: old.port, internal: old.internalPort });
      replicas = replicas.map((r) => (r === old ? fresh : r));
      return fresh;
    },
    async userToken(user, groups = []) {
      return (await loadStoredIssuer(store, publicUrl)).signUserToken({ user, groups });
    },
    async stop() {
      agentStop.abort();
      for (const r of replicas) r.proc.kill("SIGKILL");
      await Promise.all(replicas.map((r) => r.proc.exited));
      front.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
