// Which relay may run on which schema version: the one rule both stores apply when they open.
import { ConfigError } from "../../errors/index.ts";

/** Settings key holding the number of the last migration applied. */
export const SCHEMA_VERSION_KEY = "schema_version";

/**
 * Settings key holding the oldest schema version a relay may know and still run on this database:
 * a relay rolled back (`helm rollback`, an old pod restarting mid-rollout) runs on a schema one
 * release newer when every migration it does not know only adds what it never reads (triggers,
 * indexes). Absent, the database needs a relay that knows its whole schema.
 */
export const SCHEMA_READABLE_FROM_KEY = "schema_readable_from";

/** What opening a database at schema `current` means for a relay that knows `known` migrations. */
export type SchemaPlan =
  /** Apply migrations `current + 1` to `known`, then record `known` and `readableFrom`. */
  | { action: "migrate"; readableFrom: number }
  /** Up to date: nothing to do. */
  | { action: "none" }
  /** A newer relay's schema that this one can run on: leave it exactly as it is. */
  | { action: "run-on-newer" };

/**
 * Decides what a relay that knows `known` migrations does with a database at `current`, whose
 * SCHEMA_READABLE_FROM_KEY is `readableFrom` (undefined when absent). `additive` holds the
 * versions (1-based) whose migration an older relay may ignore. Throws ConfigError, saying what to
 * do, when the database needs a newer relay.
 */
export function planSchema(current: number, known: number, readableFrom: number | undefined, additive: ReadonlySet<number>): SchemaPlan {
  // Only a version counts: an empty or garbled value (edited by hand) must not read as 0.
  if (readableFrom !== undefined && !(Number.isInteger(readableFrom) && readableFrom >= 1)) readableFrom = undefined;
  if (current > known) {
    if (readableFrom !== undefined && readableFrom <= known) return { action: "run-on-newer" };
    throw new ConfigError(
      `database schema version ${current} is newer than this relay supports (${known}): upgrade arcrelay` +
      (readableFrom !== undefined ? ` (relays of schema ${readableFrom} or later run on it)` : "") +
      "; to roll a relay back across this change, restore the database from a backup taken before it",
    );
  }
  if (current === known) return { action: "none" };
  let oldest = known;
  while (oldest > 1 && additive.has(oldest)) oldest--;
  return { action: "migrate", readableFrom: oldest };
}
