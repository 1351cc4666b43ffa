// Which tunnels this replica holds, in the store: recorded on connect and disconnect, renewed by one heartbeat.
import { ArcError } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";
import type { RelayStore } from "./store/index.ts";
import type { AgentTunnel } from "./tunnel-registry.ts";

/** The replica renews its record and all its presence this often. */
export const PRESENCE_HEARTBEAT_MS = 20_000;
/** A replica that stopped renewing (killed, cut off from the database) is no longer routed to after this. */
export const PRESENCE_EXPIRY_MS = 3 * PRESENCE_HEARTBEAT_MS;

export interface PresenceKeeper {
  /** The tunnel is up here: this replica holds its cluster (one write, at connect). */
  connected(entry: AgentTunnel): Promise<void>;
  /** The cluster's current tunnel here is gone. */
  disconnected(entry: AgentTunnel): Promise<void>;
  /** Stops the heartbeat; with `forget`, removes this replica and all it held (a clean stop). */
  stop(options?: { forget?: boolean }): Promise<void>;
}

/**
 * One heartbeat for the whole replica (renewReplica: one statement whatever it holds), where
 * each tunnel used to renew its own rows: at 10,000 idle tunnels that was 1,000 writes a second.
 * Store failures are logged (with the cluster) and never close a tunnel; the next heartbeat or
 * reconnect repairs them. `now` is injectable for tests.
 */
export function createPresenceKeeper(opts: {
  store: RelayStore;
  replicaId: string;
  logger: Logger;
  /** Default PRESENCE_HEARTBEAT_MS; records expire after three. */
  heartbeatMs?: number;
  /** Milliseconds since the epoch (default Date.now). */
  now?: () => number;
}): PresenceKeeper {
  const heartbeatMs = opts.heartbeatMs ?? PRESENCE_HEARTBEAT_MS;
  const now = opts.now ?? Date.now;
  const expiry = () => new Date(now() + 3 * heartbeatMs);
  const report = (what: string, cluster?: string) => (error: unknown) =>
    opts.logger.error(`could not record ${what} in the store; the next heartbeat tries again`, {
      ...(cluster ? { cluster } : {}), replicaId: opts.replicaId, error: error instanceof ArcError ? error.message : error,
    });
  let beating = false;
  const timer = setInterval(() => {
    if (beating) return;
    beating = true;
    void opts.store.renewReplica(opts.replicaId, expiry(), new Date(now())).catch(report("this replica's heartbeat")).finally(() => (beating = false));
  }, heartbeatMs);
  timer.unref?.();

  return {
    async connected(entry) {
      const at = new Date(now());
      await Promise.all([
        opts.store.recordAgentSeen(entry.cluster, { agentVersion: entry.agentVersion, kubernetesVersion: entry.kubernetesVersion, at, connected: true }),
        opts.store.recordPresence({ cluster: entry.cluster, replicaId: opts.replicaId, expiresAt: expiry() }),
      ]).catch(report("the agent's presence", entry.cluster));
    },
    async disconnected(entry) {
      await Promise.all([
        opts.store.recordAgentSeen(entry.cluster, { at: new Date(now()), connected: false }),
        opts.store.removePresence(entry.cluster, opts.replicaId),
      ]).catch(report("the agent's departure", entry.cluster));
    },
    async stop(options = {}) {
      clearInterval(timer);
      if (options.forget) await opts.store.removeReplica(opts.replicaId).catch(report("this replica's departure"));
    },
  };
}
