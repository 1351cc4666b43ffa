import { readFileSync } from "node:fs";

/**
 * A process's resident set size in MiB, from `/proc/PID/status` (`VmRSS`, Linux only).
 * Returns undefined when there is no pid or the process has exited (its status file is gone):
 * callers sample processes that tests stop and restart on purpose.
 */
export function rssMiB(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ESRCH") return undefined;
    throw err;
  }
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return kb ? Number(kb) / 1024 : undefined;
}
