// The PostgreSQL store's change feed: LISTEN on a client of its own, proven alive by its own pings.
import { SQL } from "bun";
import type { StoreChange } from "./types.ts";

/** The NOTIFY channel the triggers of migration 4 write every change to (its SQL names it too). */
export const CHANGES_CHANNEL = "arc_changes";

/** How often the feed proves its connection still hears (ms); a ping not back by the next one means it does not. */
export const FEED_PING_EVERY_MS = 5_000;

const CHANGE_TABLES: ReadonlySet<string> = new Set(["clusters", "grants", "presence", "settings", "replicas"]);

/** Bun 1.4's SQL client LISTENs (not yet in its type declarations); `onListen` runs on every LISTEN, after a reconnect too. */
interface ListeningSql {
  listen(channel: string, onNotification: (payload: string) => void, onListen?: () => void): Promise<unknown>;
}

/**
 * Calls `onChange` for each change NOTIFYed on CHANGES_CHANNEL until the returned function is
 * called; `{ table: "*" }` whenever changes may have been missed. The LISTEN runs on a client of
 * its own (one connection to `url`), for two ways of losing it:
 * - closed: Bun LISTENs again on a new connection by itself and calls `onListen` again; what was
 *   committed in between was told to nobody, so listeners resync (a revoked key kept its tunnel
 *   for the minute's resync; attack review).
 * - silent (a NAT or firewall dropping it without a word): nothing would notice, so every
 *   `pingEveryMs` the feed NOTIFYs a ping of its own through `pool`; one not heard back by the
 *   next ping means the connection is deaf, and the feed resyncs and LISTENs on a new client.
 * Throws what the first LISTEN throws.
 */
export async function watchPostgresChanges(
  url: string, pool: SQL, onChange: (change: StoreChange) => void, pingEveryMs = FEED_PING_EVERY_MS,
): Promise<() => Promise<void>> {
  const me = crypto.randomUUID();
  let sequence = 0;
  let awaiting: string | undefined;
  const hear = (payload: string) => {
    const ping = pingOf(payload);
    if (ping === undefined) onChange(parseChange(payload));
    else if (ping === awaiting) awaiting = undefined;
  };
  const open = async (): Promise<SQL> => {
    const client = new SQL(url, { max: 1, connectionTimeout: 10 });
    let listens = 0;
    try {
      await (client as unknown as ListeningSql).listen(CHANGES_CHANNEL, hear, () => { if (++listens > 1) onChange({ table: "*" }); });
    } catch (error) {
      void client.close({ timeout: 0 }).catch(() => undefined);
      throw error;
    }
    return client;
  };
  let current = await open();
  let stopped = false;
  let replacing = false;
  const replace = async () => {
    replacing = true;
    // Not awaited: closing a connection nobody answers on would wait for TCP to give up.
    void current.close({ timeout: 0 }).catch(() => undefined);
    try {
      const next = await open();
      if (stopped) void next.close({ timeout: 0 }).catch(() => undefined);
      else current = next;
    } catch {
      // The database is out of reach: the next ping's turn tries again, and resyncs again.
    } finally {
      replacing = false;
    }
  };
  const timer = setInterval(() => {
    if (replacing) return;
    if (awaiting !== undefined) {
      awaiting = undefined;
      onChange({ table: "*" });
      void replace();
      return;
    }
    awaiting = `${me}:${++sequence}`;
    // A pool that cannot send it leaves the ping unanswered, which is handled as a deaf feed.
    pool`SELECT pg_notify(${CHANGES_CHANNEL}, ${JSON.stringify({ ping: awaiting })})`.catch(() => undefined);
  }, pingEveryMs);
  timer.unref?.();
  return async () => {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    await current.close({ timeout: 1 }).catch(() => undefined);
  };
}

/** A feed's ping (`{"ping": "..."}`), undefined for anything else. */
function pingOf(payload: string): string | undefined {
  if (!payload.startsWith('{"ping":')) return undefined;
  try {
    const parsed = JSON.parse(payload) as { ping?: unknown };
    return typeof parsed.ping === "string" ? parsed.ping : undefined;
  } catch {
    return undefined;
  }
}

/** A NOTIFY payload from arc_notify_change; anything else is read as "anything may have changed". */
export function parseChange(payload: string): StoreChange {
  try {
    const parsed = JSON.parse(payload) as { table?: unknown; key?: unknown };
    if (typeof parsed.table === "string" && CHANGE_TABLES.has(parsed.table)) {
      if (typeof parsed.key === "string") return { table: parsed.table as StoreChange["table"], key: parsed.key };
      // A table told without a row (grants always; any table on TRUNCATE): every row may have changed.
      return parsed.table === "grants" ? { table: "grants" } : { table: "*" };
    }
  } catch {
    // not ours: fall through
  }
  return { table: "*" };
}
