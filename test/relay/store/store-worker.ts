// A child process for cross-process store tests: tells the parent it is ready, waits for the word
// to go (so that all workers act at the same moment), opens the store, optionally consumes one
// enrollment token, and prints what happened as one JSON line.
import { openSqliteStore } from "../../../lib/relay/store/index.ts";

const [dataDir, secretHash] = process.argv.slice(2);
if (!dataDir || !process.send) throw new TypeError("usage: store-worker.ts DATA_DIR [SECRET_HASH], spawned with an IPC channel");

const go = new Promise((resolve) => process.once("message", resolve));
process.send("ready");
await go;
const store = await openSqliteStore(dataDir);
try {
  const consumed = secretHash ? (await store.consumeEnrollmentToken(secretHash, new Date())) !== undefined : undefined;
  console.log(JSON.stringify({ opened: true, consumed }));
} finally {
  await store.close();
  process.disconnect?.();
}
