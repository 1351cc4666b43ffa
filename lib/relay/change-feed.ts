// One subscription to the store's changes per relay process, handed to every cache and watcher in it.
import type { Logger } from "../observe/index.ts";
import type { RelayStore, StoreChange } from "./store/index.ts";

/**
 * Every this often each listener is told `{ table: "*" }` (drop caches, re-check every tunnel's
 * key): the safety net for a notification lost with a database connection. One event per process,
 * not per tunnel: 10,000 tunnels cost one listClusters a minute.
 */
export const RESYNC_INTERVAL_MS = 60_000;

export interface ChangeFeed {
  /** Calls `listener` for every change until the returned function is called. */
  subscribe(listener: (change: StoreChange) => void): () => void;
  stop(): Promise<void>;
}

/**
 * Subscribes to `store.watchChanges` once and fans each change out to the listeners; a listener
 * that throws is logged and the others still run. `resyncMs` (default RESYNC_INTERVAL_MS) sends
 * `{ table: "*" }` to all. Throws what watchChanges throws (the database refused LISTEN).
 */
export async function startChangeFeed(store: RelayStore, logger: Logger, resyncMs = RESYNC_INTERVAL_MS): Promise<ChangeFeed> {
  const listeners = new Set<(change: StoreChange) => void>();
  const tell = (change: StoreChange) => {
    for (const listener of listeners) {
      try {
        listener(change);
      } catch (error) {
        logger.error("a listener of the store's change feed failed; the periodic resync repairs what it missed", { change, error });
      }
    }
  };
  const unwatch = await store.watchChanges(tell);
  const resync = setInterval(() => tell({ table: "*" }), resyncMs);
  resync.unref?.();
  return {
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async stop() {
      clearInterval(resync);
      listeners.clear();
      await unwatch();
    },
  };
}
