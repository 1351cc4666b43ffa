// Closes a tunnel once its agent key is revoked or rotated, told by the store's change feed.
import { calculateJwkThumbprint, type JWK } from "jose";
import { ArcError } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";
import type { ChangeFeed } from "./change-feed.ts";
import type { RelayStore } from "./store/index.ts";

export type KeyLossReason = "key_revoked" | "key_rotated";

/** A tunnel as the key watch sees it: the key it authenticated with, and what to do when that key goes. */
export interface KeyWatcher {
  /** RFC 7638 thumbprint (SHA-256) of the agent key the tunnel authenticated with. */
  readonly keyThumbprint: string;
  /** Called once when that key is no longer the cluster's; the watcher is then no longer tracked. */
  keyLost(reason: KeyLossReason, why: string): void;
}

export interface AgentKeyWatch {
  /** Watches a tunnel of `cluster` (an object the tunnel owns: nothing is allocated per tunnel but a slot). */
  track(cluster: string, watcher: KeyWatcher): void;
  /** Stops watching it (the tunnel ended). */
  untrack(cluster: string, watcher: KeyWatcher): void;
}

/**
 * A change to one cluster's row re-reads that cluster's key (one query); `{ table: "*" }` (the
 * feed's resync, or SQLite seeing another process commit) re-reads all clusters in one query and
 * checks every tunnel held here. Nothing is read while nothing changes: at 10,000 idle tunnels the
 * old 3 s re-check per tunnel was 3,300 queries a second. A failed read is logged and keeps the
 * tunnels; the next change or resync reads again.
 */
export function createAgentKeyWatch(opts: { store: RelayStore; feed: ChangeFeed; logger: Logger }): AgentKeyWatch {
  // An array per cluster, not a Set: a cluster has one tunnel, sometimes two while it moves.
  const byCluster = new Map<string, KeyWatcher[]>();
  // Thumbprints by key JSON: a resync of 10,000 unchanged keys hashes none of them again.
  const thumbprints = new Map<string, string>();
  const thumbprintOf = async (key: JWK) => {
    const text = JSON.stringify(key);
    let known = thumbprints.get(text);
    if (!known) {
      known = await calculateJwkThumbprint(key, "sha256");
      if (thumbprints.size >= 100_000) thumbprints.clear();
      thumbprints.set(text, known);
    }
    return known;
  };

  async function judge(cluster: string, key: JWK | undefined): Promise<void> {
    if (!byCluster.has(cluster)) return;
    const current = key ? await thumbprintOf(key) : undefined;
    // Read after the await: tunnels may have come or gone meanwhile.
    const watched = byCluster.get(cluster);
    if (!watched) return;
    const lost = watched.filter((w) => w.keyThumbprint !== current);
    if (lost.length === 0) return;
    const kept = watched.filter((w) => w.keyThumbprint === current);
    if (kept.length === 0) byCluster.delete(cluster);
    else byCluster.set(cluster, kept);
    const reason: KeyLossReason = key ? "key_rotated" : "key_revoked";
    for (const w of lost) w.keyLost(reason, key ? "the cluster's agent key was rotated" : "the cluster's agent key was revoked (or the cluster removed)");
  }

  const failed = (what: string) => (error: unknown) =>
    opts.logger.warn(`could not re-check ${what} in the store; keeping the tunnels until the next change or resync`, {
      error: error instanceof ArcError ? error.message : error,
    });

  let sweeping: Promise<void> | undefined;
  const sweep = () => (sweeping ??= (async () => {
    try {
      if (byCluster.size === 0) return;
      const clusters = new Map((await opts.store.listClusters()).map((c) => [c.name, c.agentKey]));
      for (const cluster of [...byCluster.keys()]) await judge(cluster, clusters.get(cluster));
    } finally {
      sweeping = undefined;
    }
  })().catch(failed("the agent keys of every tunnel")));

  opts.feed.subscribe((change) => {
    if (change.table === "*") void sweep();
    else if (change.table === "clusters" && change.key !== undefined && byCluster.has(change.key)) {
      const cluster = change.key;
      void opts.store.getCluster(cluster).then((record) => judge(cluster, record?.agentKey)).catch(failed(`the agent key of cluster "${cluster}"`));
    }
  });

  return {
    track(cluster, watcher) {
      const watched = byCluster.get(cluster);
      if (watched) watched.push(watcher);
      else byCluster.set(cluster, [watcher]);
      // A key revoked between the agent's login and now was not seen by any change: read it once.
      void opts.store.getCluster(cluster).then((record) => judge(cluster, record?.agentKey)).catch(failed(`the agent key of cluster "${cluster}"`));
    },
    untrack(cluster, watcher) {
      const watched = byCluster.get(cluster);
      if (!watched) return;
      const kept = watched.filter((w) => w !== watcher);
      if (kept.length === 0) byCluster.delete(cluster);
      else if (kept.length !== watched.length) byCluster.set(cluster, kept);
    },
  };
}
