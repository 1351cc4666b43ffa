// Which agent tunnel serves which cluster on this relay; the newest connection of a cluster wins,
// and a request can wait a moment for an agent that is reconnecting.
import type { TunnelClient } from "../tunnel/index.ts";

export interface AgentTunnel {
  cluster: string;
  tunnel: TunnelClient;
  agentVersion?: string;
  kubernetesVersion?: string;
  connectedAt: Date;
}

export interface TunnelRegistry {
  /**
   * Registers a tunnel and wakes requests waiting for its cluster. A previous tunnel of the same
   * cluster is closed gracefully (a restarted agent replaces a half-dead one; streams in flight on
   * a draining one finish).
   */
  register(entry: AgentTunnel): void;
  /** Removes `entry` only if it is still the current tunnel of its cluster. */
  unregister(entry: AgentTunnel): boolean;
  /** The cluster's tunnel if it can take a new request (open, not draining). */
  get(cluster: string): AgentTunnel | undefined;
  /**
   * The cluster's usable tunnel, waiting up to `timeoutMs` for one to register (an agent that is
   * reconnecting, or replacing a draining tunnel); undefined when none came in time or `signal`
   * aborted (the client went away).
   */
  waitFor(cluster: string, timeoutMs: number, signal?: AbortSignal): Promise<AgentTunnel | undefined>;
  list(): AgentTunnel[];
  /** Sends GOAWAY on every tunnel: agents dial again (elsewhere) while streams in flight finish. */
  drainAll(): void;
  closeAll(): Promise<void>;
}

export function createTunnelRegistry(): TunnelRegistry {
  const byCluster = new Map<string, AgentTunnel>();
  const waiters = new Map<string, Set<(entry: AgentTunnel) => void>>();
  const usable = (entry: AgentTunnel | undefined) =>
    entry && !entry.tunnel.closed && !entry.tunnel.draining ? entry : undefined;

  const registry: TunnelRegistry = {
    register(entry) {
      const previous = byCluster.get(entry.cluster);
      byCluster.set(entry.cluster, entry);
      if (previous && previous !== entry) void previous.tunnel.close();
      const waiting = waiters.get(entry.cluster);
      if (waiting) {
        waiters.delete(entry.cluster);
        for (const wake of waiting) wake(entry);
      }
    },
    unregister(entry) {
      if (byCluster.get(entry.cluster) !== entry) return false;
      byCluster.delete(entry.cluster);
      return true;
    },
    get: (cluster) => usable(byCluster.get(cluster)),
    waitFor(cluster, timeoutMs, signal) {
      const now = usable(byCluster.get(cluster));
      if (now || timeoutMs <= 0 || signal?.aborted) return Promise.resolve(now);
      return new Promise((resolve) => {
        const set = waiters.get(cluster) ?? new Set();
        waiters.set(cluster, set);
        const finish = (entry: AgentTunnel | undefined) => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          set.delete(wake);
          if (set.size === 0 && waiters.get(cluster) === set) waiters.delete(cluster);
          resolve(usable(entry));
        };
        const wake = (entry: AgentTunnel) => finish(entry);
        const onAbort = () => finish(undefined);
        const timer = setTimeout(() => finish(undefined), timeoutMs);
        set.add(wake);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    },
    list: () => [...byCluster.values()],
    drainAll() {
      for (const entry of byCluster.values()) entry.tunnel.drain();
    },
    async closeAll() {
      const all = [...byCluster.values()];
      byCluster.clear();
      await Promise.all(all.map((e) => e.tunnel.close()));
    },
  };
  return registry;
}
