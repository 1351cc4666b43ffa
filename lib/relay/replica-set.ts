// This replica among the others: where each cluster's tunnel is held, and how many replicas are alive.
import { ArcError } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";
import type { ChangeFeed } from "./change-feed.ts";
import type { RelayStore, ReplicaRecord } from "./store/index.ts";

export interface ReplicaSet {
  readonly replicaId: string;
  /** The secret replicas authenticate each other with (made by the first replica, kept in the database). */
  readonly secret: string;
  /**
   * The live replica other than this one that holds `cluster`'s tunnel, or undefined. From memory
   * while nothing changed: a presence or replica change (the feed) or the holder's expiry drops it.
   */
  holderOf(cluster: string): Promise<ReplicaRecord | undefined>;
  /** Waits up to `timeoutMs` for another replica to take `cluster`'s tunnel; undefined on timeout or abort. */
  waitForHolder(cluster: string, timeoutMs: number, signal?: AbortSignal): Promise<ReplicaRecord | undefined>;
  /** A forward found `holder` unreachable (or stopping): it is not routed to for UNREACHABLE_BACKOFF_MS, or until its record changes or expires. */
  unreachable(holder: ReplicaRecord): void;
  /** Live replicas, this one included (at least 1); refreshed on every replica change and resync. */
  size(): number;
}

/** A replica that could not be reached is tried again after this (ms). */
export const UNREACHABLE_BACKOFF_MS = 5_000;

/** The shared secret's settings key; made with 256 random bits on the first start of any replica. */
export const REPLICA_SECRET_SETTING = "replica.secret";

/**
 * Reads (or makes) the shared secret and the live replicas, then follows the change feed. Store
 * failures in lookups propagate to the request (a 500 that names the database), never cached.
 */
export async function createReplicaSet(opts: { store: RelayStore; feed: ChangeFeed; replicaId: string; logger: Logger; now?: () => number }): Promise<ReplicaSet> {
  const now = opts.now ?? Date.now;
  const secret = await opts.store.setSettingIfAbsent(REPLICA_SECRET_SETTING, Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url"));
  const holders = new Map<string, Promise<ReplicaRecord | undefined>>();
  // Replica endpoints a forward could not reach, and until when they are left alone: a new record
  // of that replica, its expiry, or UNREACHABLE_BACKOFF_MS, after which it is tried again (it may
  // only have been busy; heartbeats notify nothing, so a live replica would otherwise stay shunned).
  const dead = new Map<string, { holder: ReplicaRecord; until: number }>();
  const waiters = new Map<string, Set<() => void>>();
  let live = 1;

  const refreshSize = () =>
    opts.store.listReplicas(new Date(now())).then(
      (replicas) => (live = Math.max(1, replicas.filter((r) => r.replicaId !== opts.replicaId).length + 1)),
      (error: unknown) => opts.logger.warn("could not count the relay's replicas; keeping the last count", { error: error instanceof ArcError ? error.message : error }),
    );
  await refreshSize();

  const wake = (cluster?: string) => {
    for (const [key, set] of waiters) {
      if (cluster !== undefined && key !== cluster) continue;
      for (const w of [...set]) w();
    }
  };
  opts.feed.subscribe((change) => {
    if (change.table === "presence" && change.key !== undefined) {
      holders.delete(change.key);
      wake(change.key);
    } else if (change.table === "replicas" || change.table === "presence" || change.table === "*") {
      holders.clear();
      if (change.table === "replicas" && change.key !== undefined) dead.delete(change.key);
      if (change.table !== "presence") void refreshSize();
      wake();
    }
  });

  const usable = (holder: ReplicaRecord | undefined) => {
    if (!holder || holder.replicaId === opts.replicaId || holder.expiresAt.getTime() <= now()) return undefined;
    const gone = dead.get(holder.replicaId);
    if (gone && gone.until > now() && gone.holder.internalUrl === holder.internalUrl && gone.holder.certificatePem === holder.certificatePem) return undefined;
    if (gone) dead.delete(holder.replicaId);
    return holder;
  };

  const set: ReplicaSet = {
    replicaId: opts.replicaId,
    secret,
    async holderOf(cluster) {
      let known = holders.get(cluster);
      const cachedHolder = known ? await known.catch(() => undefined) : undefined;
      if (known && cachedHolder && cachedHolder.expiresAt.getTime() <= now()) known = undefined;
      if (!known) {
        if (holders.size >= 10_000) holders.clear();
        known = opts.store.findTunnelHolder(cluster, new Date(now()));
        holders.set(cluster, known);
        known.catch(() => holders.delete(cluster));
      }
      return usable(await known);
    },
    waitForHolder(cluster, timeoutMs, signal) {
      return new Promise((resolve) => {
        let done = false;
        const finish = (holder: ReplicaRecord | undefined) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          const list = waiters.get(cluster);
          list?.delete(check);
          if (list?.size === 0) waiters.delete(cluster);
          resolve(holder);
        };
        const check = () => {
          void set.holderOf(cluster).then((holder) => holder && finish(holder), () => undefined);
        };
        const onAbort = () => finish(undefined);
        const timer = setTimeout(() => finish(undefined), timeoutMs);
        signal?.addEventListener("abort", onAbort, { once: true });
        const list = waiters.get(cluster) ?? new Set();
        waiters.set(cluster, list);
        list.add(check);
        check();
      });
    },
    unreachable(holder) {
      dead.set(holder.replicaId, { holder, until: Math.min(holder.expiresAt.getTime(), now() + UNREACHABLE_BACKOFF_MS) });
      holders.clear();
      opts.logger.warn("a replica's internal endpoint cannot be reached; routing around it until it is back or expires", {
        replicaId: holder.replicaId, internalUrl: holder.internalUrl, expiresAt: holder.expiresAt.toISOString(),
      });
    },
    size: () => live,
  };
  return set;
}
