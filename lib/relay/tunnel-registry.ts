// Which agent tunnel serves which cluster on this relay; the newest connection of a cluster wins.
import type { TunnelClient } from "../tunnel/index.ts";

export interface AgentTunnel {
  cluster: string;
  tunnel: TunnelClient;
  agentVersion?: string;
  kubernetesVersion?: string;
  connectedAt: Date;
}

export interface TunnelRegistry {
  /** Registers a tunnel; a previous tunnel of the same cluster is closed (a restarted agent replaces a half-dead one). */
  register(entry: AgentTunnel): void;
  /** Removes `entry` only if it is still the current tunnel of its cluster. */
  unregister(entry: AgentTunnel): boolean;
  get(cluster: string): AgentTunnel | undefined;
  list(): AgentTunnel[];
  closeAll(): Promise<void>;
}

export function createTunnelRegistry(): TunnelRegistry {
  const byCluster = new Map<string, AgentTunnel>();
  return {
    register(entry) {
      const previous = byCluster.get(entry.cluster);
      byCluster.set(entry.cluster, entry);
      if (previous && previous !== entry) void previous.tunnel.close();
    },
    unregister(entry) {
      if (byCluster.get(entry.cluster) !== entry) return false;
      byCluster.delete(entry.cluster);
      return true;
    },
    get(cluster) {
      const entry = byCluster.get(cluster);
      return entry && !entry.tunnel.closed ? entry : undefined;
    },
    list: () => [...byCluster.values()],
    async closeAll() {
      const all = [...byCluster.values()];
      byCluster.clear();
      await Promise.all(all.map((e) => e.tunnel.close()));
    },
  };
}
