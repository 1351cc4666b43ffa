// What the status page shows beside the store: requests in flight and their rate per cluster, and the latest refusals.

/** A refusal as the status page lists it: no token, no header, only what an admin needs to act. */
export interface Refusal {
  at: string;
  cluster: string;
  user: string;
  code: number;
  message: string;
}

export interface ClusterActivity {
  started(cluster: string): void;
  finished(cluster: string): void;
  refused(refusal: Omit<Refusal, "at">): void;
  /** Requests and sessions in flight for `cluster`. */
  active(cluster: string): number;
  /** Requests finished in the last minute, per second. */
  ratePerSecond(cluster: string): number;
  /** The latest refusals, newest first (at most `maxRefusals`). */
  refusals(): Refusal[];
}

/** Rate window (ms) and the bounds of what is kept. */
const RATE_WINDOW_MS = 60_000;
const MAX_STAMPS_PER_CLUSTER = 10_000;

/**
 * In-memory counters for this relay only, bounded: per cluster at most MAX_STAMPS_PER_CLUSTER
 * finish times within RATE_WINDOW_MS, and `maxRefusals` (default 50) refusals. Clusters come from
 * routed requests only, so the map holds registered clusters.
 */
export function createClusterActivity(opts: { maxRefusals?: number; now?: () => number } = {}): ClusterActivity {
  const now = opts.now ?? Date.now;
  const maxRefusals = opts.maxRefusals ?? 50;
  const inFlight = new Map<string, number>();
  const finishedAt = new Map<string, number[]>();
  const latest: Refusal[] = [];
  const prune = (stamps: number[]) => {
    const since = now() - RATE_WINDOW_MS;
    let drop = 0;
    while (drop < stamps.length && stamps[drop]! < since) drop++;
    if (drop > 0) stamps.splice(0, drop);
  };
  return {
    started(cluster) {
      inFlight.set(cluster, (inFlight.get(cluster) ?? 0) + 1);
    },
    finished(cluster) {
      const left = (inFlight.get(cluster) ?? 1) - 1;
      if (left <= 0) inFlight.delete(cluster);
      else inFlight.set(cluster, left);
      const stamps = finishedAt.get(cluster) ?? [];
      prune(stamps);
      if (stamps.length >= MAX_STAMPS_PER_CLUSTER) stamps.shift();
      stamps.push(now());
      finishedAt.set(cluster, stamps);
    },
    refused(refusal) {
      latest.unshift({ at: new Date(now()).toISOString(), ...refusal, message: refusal.message.slice(0, 300) });
      if (latest.length > maxRefusals) latest.length = maxRefusals;
    },
    active: (cluster) => inFlight.get(cluster) ?? 0,
    ratePerSecond(cluster) {
      const stamps = finishedAt.get(cluster);
      if (!stamps) return 0;
      prune(stamps);
      return stamps.length / (RATE_WINDOW_MS / 1000);
    },
    refusals: () => [...latest],
  };
}
