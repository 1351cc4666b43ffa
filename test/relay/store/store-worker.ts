// A child process for cross-process store tests: waits for a shared start time, opens the store,
// optionally consumes one enrollment token, and prints what happened as one JSON line.
import { openSqliteStore } from "../../../lib/relay/store/index.ts";

const [dataDir, startAt, secretHash] = process.argv.slice(2);
if (!dataDir || !startAt) throw new TypeError("usage: store-worker.ts DATA_DIR START_AT_MS [SECRET_HASH]");

await Bun.sleep(Math.max(0, Number(startAt) - Date.now()));
const store = await openSqliteStore(dataDir);
try {
  const consumed = secretHash ? (await store.consumeEnrollmentToken(secretHash, new Date())) !== undefined : undefined;
  console.log(JSON.stringify({ opened: true, consumed }));
} finally {
  await store.close();
}
