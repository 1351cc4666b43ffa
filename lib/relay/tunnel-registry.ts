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
   * Registers a tunnel and wakes requests waiting for its cluster. A previous live tunnel of the
   * same cluster is closed (a restarted agent replaces a half-dead one); a draining one finishes
   * its streams and closes by itself.
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
  /**
   * Whether the cluster's agent is probably coming back: its tunnel is draining, or it left (or
   * this relay started) less than `withinMs` ago. A refusal then says when to retry; for a cluster offline for
   * longer it does not, so clients fail fast instead of retrying for a minute.
   */
  expectedBack(cluster: string, withinMs: number): boolean;
  list(): AgentTunnel[];
  /** Sends GOAWAY on every tunnel: agents dial again (elsewhere) while streams in flight finish. */
  drainAll(): void;
  closeAll(): Promise<void>;
}

/** `now` (ms since the epoch) is injectable for tests; a fresh registry is a relay that just started. */
export function createTunnelRegistry(now: () => number = Date.now): TunnelRegistry {
  const startedAt = now();
  const byCluster = new Map<string, AgentTunnel>();
  // When each cluster's last tunnel went away; one number per cluster this relay has served.
  const departedAt = new Map<string, number>();
  const waiters = new Map<string, Set<(entry: AgentTunnel) => void>>();
  const usable = (entry: AgentTunnel | undefined) =>
    entry && !entry.tunnel.closed && !entry.tunnel.draining ? entry : undefined;

  const registry: TunnelRegistry = {
    register(entry) {
      const previous = byCluster.get(entry.cluster);
      byCluster.set(entry.cluster, entry);
      // A live tunnel that is replaced (a second agent, a stale connection) closes; a draining one
      // (its agent is stopping or moving) finishes its streams first, and closes by itself.
      if (previous && previous !== entry && !previous.tunnel.draining) void previous.tunnel.close();
      const waiting = waiters.get(entry.cluster);
      if (waiting) {
        waiters.delete(entry.cluster);
        for (const wake of waiting) wake(entry);
      }
    },
    unregister(entry) {
      if (byCluster.get(entry.cluster) !== entry) return false;
      byCluster.delete(entry.cluster);
      departedAt.set(entry.cluster, now());
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
    expectedBack(cluster, withinMs) {
      const entry = byCluster.get(cluster);
      if (entry && (entry.tunnel.draining || entry.tunnel.closed)) return true;
      // A relay that just (re)started expects every agent to dial in within seconds.
      const since = departedAt.get(cluster) ?? startedAt;
      return now() - since < withinMs;
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
