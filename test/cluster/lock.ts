// A cross-process lock file: created atomically with link(2), holding the
// owner's pid so a lock left behind by a dead process is taken over.
import { link, readFile, unlink, writeFile } from "node:fs/promises";
import { isAlive } from "./proc.ts";

const POLL_MS = 1_000;
const WAIT_LOG_MS = 15_000;

/** Waits until the lock at `path` is ours; returns a function releasing it. */
export async function acquireLock(path: string, log: (l: string) => void): Promise<() => Promise<void>> {
  const mine = `${path}.${process.pid}`;
  await writeFile(mine, `${process.pid}\n`);
  let lastLog = 0;
  try {
    for (;;) {
      try {
        await link(mine, path);
        return async () => {
          await unlink(path).catch(() => {});
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      const owner = await readOwner(path);
      if (owner === undefined || owner === process.pid || !isAlive(owner)) {
        // Stale: remove it, but only if it still names the same dead owner.
        if ((await readOwner(path)) === owner) await unlink(path).catch(() => {});
        continue;
      }
      if (Date.now() - lastLog >= WAIT_LOG_MS) {
        log(`[kube-build] waiting for the build running in process ${owner} (lock ${path})`);
        lastLog = Date.now();
      }
      await Bun.sleep(POLL_MS);
    }
  } finally {
    await unlink(mine).catch(() => {});
  }
}

async function readOwner(path: string): Promise<number | undefined> {
  const text = await readFile(path, "utf8").catch(() => "");
  const pid = Number.parseInt(text, 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}
