// Closes a tunnel once its agent key is revoked or rotated, told by the store's change feed.
import { calculateJwkThumbprint, type JWK } from "jose";
import { ArcError } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";
import type { ChangeFeed } from "./change-feed.ts";
import type { RelayStore } from "./store/index.ts";

export type KeyLossReason = "key_revoked" | "key_rotated";

export interface AgentKeyWatch {
  /**
   * Watches the tunnel of `cluster` that authenticated with the key whose RFC 7638 thumbprint is
   * `thumbprint`; `close` is called once when that key is no longer the cluster's. Returns the
   * function that stops watching (call it when the tunnel ends).
   */
  track(cluster: string, thumbprint: string, close: (reason: KeyLossReason, why: string) => void): () => void;
}

interface Watched {
  thumbprint: string;
  close: (reason: KeyLossReason, why: string) => void;
}

/**
 * A change to one cluster's row re-reads that cluster's key (one query); `{ table: "*" }` (the
 * feed's resync, or SQLite seeing another process commit) re-reads all clusters in one query and
 * checks every tunnel held here. Nothing is read while nothing changes: at 10,000 idle tunnels the
 * old 3 s re-check per tunnel was 3,300 queries a second. A failed read is logged and keeps the
 * tunnels; the next change or resync reads again.
 */
export function createAgentKeyWatch(opts: { store: RelayStore; feed: ChangeFeed; logger: Logger }): AgentKeyWatch {
  const byCluster = new Map<string, Set<Watched>>();
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
    const watched = byCluster.get(cluster);
    if (!watched) return;
    const current = key ? await thumbprintOf(key) : undefined;
    for (const w of [...watched]) {
      if (current === w.thumbprint) continue;
      watched.delete(w);
      const reason: KeyLossReason = key ? "key_rotated" : "key_revoked";
      w.close(reason, key ? "the cluster's agent key was rotated" : "the cluster's agent key was revoked (or the cluster removed)");
    }
    if (watched.size === 0) byCluster.delete(cluster);
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
    track(cluster, thumbprint, close) {
      const w: Watched = { thumbprint, close };
      const set = byCluster.get(cluster) ?? new Set();
      byCluster.set(cluster, set);
      set.add(w);
      // A key revoked between the agent's login and now was not seen by any change: read it once.
      void opts.store.getCluster(cluster).then((record) => judge(cluster, record?.agentKey)).catch(failed(`the agent key of cluster "${cluster}"`));
      return () => {
        set.delete(w);
        if (set.size === 0 && byCluster.get(cluster) === set) byCluster.delete(cluster);
      };
    },
  };
}
