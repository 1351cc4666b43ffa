// Claims one of a few numbered slots per machine, so clusters that run at once (a test run beside the
// demo) get distinct bridges, subnets and cgroup roots. A slot left by a dead process is taken over
// after tearing down what that process left behind.
import { chmodSync, mkdirSync, readFileSync, unlinkSync } from "node:fs";
import { link, readFile, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isAlive } from "./proc.ts";

export const SLOT_COUNT = 32;
const SLOT_DIR = "/run/cluster-connect-test";

export interface Slot {
  index: number;
  /** Linux bridge of the node's pod network (at most 15 characters). */
  bridge: string;
  /** The pods' /24. */
  subnet: string;
  /** The node's cgroup root, below every v1 hierarchy. */
  cgroupRoot: string;
  release(): Promise<void>;
}

interface SlotOwner {
  pid: number;
  dir: string;
}

/** Releases slot `index` if `dir`'s cluster holds it (a watchdog's teardown calls this). */
export function releaseSlotOf(index: number, dir: string): void {
  const path = join(SLOT_DIR, `slot-${index}`);
  try {
    const owner = JSON.parse(readFileSync(path, "utf8")) as SlotOwner;
    if (owner.dir === dir) unlinkSync(path);
  } catch {
    // not held, or held by another cluster
  }
}

/**
 * Claims the first free slot for the cluster in `dir`. `cleanUp(previousDir)` is called (and
 * awaited) before a slot whose owner died is reused. Throws when all slots are held by live processes.
 */
export async function claimSlot(dir: string, cleanUp: (previousDir: string, slot: number) => Promise<void>): Promise<Slot> {
  mkdirSync(SLOT_DIR, { recursive: true, mode: 0o700 });
  chmodSync(SLOT_DIR, 0o700);
  const mine = join(SLOT_DIR, `claim.${process.pid}.${Date.now()}`);
  await writeFile(mine, JSON.stringify({ pid: process.pid, dir } satisfies SlotOwner));
  try {
    for (let index = 0; index < SLOT_COUNT; index++) {
      const path = join(SLOT_DIR, `slot-${index}`);
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          await link(mine, path);
          return describeSlot(index, path);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
        }
        const owner = await readOwner(path);
        if (owner && isAlive(owner.pid)) break;
        // The dead owner's folder is torn down only if its own state still names this slot: the
        // folder may have been reused since by a cluster that holds another slot.
        if (owner) await cleanUp(owner.dir, index);
        // Remove it only if it still names the same dead owner, then try to link again.
        if (JSON.stringify(await readOwner(path)) === JSON.stringify(owner)) await unlink(path).catch(() => {});
      }
    }
  } finally {
    await unlink(mine).catch(() => {});
  }
  throw new Error(`all ${SLOT_COUNT} test cluster slots in ${SLOT_DIR} are held by running processes; stop some clusters first`);
}

function describeSlot(index: number, path: string): Slot {
  return {
    index,
    bridge: `arctest${index}`,
    subnet: `10.123.${index}.0/24`,
    cgroupRoot: `/cluster-connect-test-${index}`,
    release: () => unlink(path).catch(() => {}),
  };
}

async function readOwner(path: string): Promise<SlotOwner | undefined> {
  try {
    const owner = JSON.parse(await readFile(path, "utf8")) as SlotOwner;
    return Number.isSafeInteger(owner.pid) && typeof owner.dir === "string" ? owner : undefined;
  } catch {
    return undefined;
  }
}
