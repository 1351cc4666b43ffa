// Runs the user's command (e.g. kubectl) with the terminal, files and pipes it expects, and reports how it ended.
import { spawn, type StdioOptions } from "node:child_process";
import { closeSync, fstatSync, openSync } from "node:fs";
import { constants } from "node:os";
import type { Writable } from "node:stream";

const FORWARDED_SIGNALS = ["SIGINT", "SIGTERM"] as const;

/**
 * Runs `command args` with `env` as its whole environment, forwarding SIGINT/SIGTERM to it while
 * it runs. Resolves with its exit code, or 128+n when signal n ended it, as a shell would, once
 * all of its output has been written.
 */
export function runChildCommand(command: string, args: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const out = childOutput(1);
    const err = childOutput(2);
    const closeReopened = () => {
      out.close();
      err.close();
    };
    const stdio: StdioOptions = ["inherit", out.stdio, err.stdio];
    const child = spawn(command, args, { stdio, env });
    child.once("spawn", closeReopened);
    if (out.stdio === "pipe") child.stdout!.pipe(process.stdout as Writable, { end: false });
    if (err.stdio === "pipe") child.stderr!.pipe(process.stderr as Writable, { end: false });
    const forward = (signal: NodeJS.Signals) => {
      child.kill(signal);
    };
    for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
    const stopForwarding = () => {
      for (const signal of FORWARDED_SIGNALS) process.off(signal, forward);
    };
    child.once("error", (error: NodeJS.ErrnoException) => {
      stopForwarding();
      closeReopened();
      if (error.code === "ENOENT") reject(new Error(`command not found: ${command}`, { cause: error }));
      else if (error.code === "EACCES") reject(new Error(`command not executable: ${command}`, { cause: error }));
      else reject(new Error(`cannot run ${command}: ${error.message}`, { cause: error }));
    });
    // "close" comes after "exit" and after the child's piped output has been read.
    child.once("close", (code, signal) => {
      stopForwarding();
      if (code !== null) resolve(code);
      else resolve(128 + (signal ? (constants.signals[signal] ?? 0) : 0));
    });
  });
}

/**
 * Bun marks its own stdout/stderr non-blocking once it touches them, and an inherited pipe or
 * socket shares that flag with the child: kubectl writing a large answer then fails with EAGAIN
 * ("write /dev/stdout: resource temporarily unavailable"). So the child never shares one:
 * - a pipe is re-opened through /proc, which gives the child its own, blocking description;
 * - a socket (or a pipe that cannot be re-opened) is relayed through this process;
 * - terminals and files are inherited as they are (a file's second description would have its
 *   own offset and overwrite the parent's output; a terminal keeps `kubectl exec -it` working).
 */
function childOutput(fd: 1 | 2): { stdio: number | "inherit" | "pipe"; close(): void } {
  let kind: "fifo" | "socket" | "other";
  try {
    const stat = fstatSync(fd);
    kind = stat.isFIFO() ? "fifo" : stat.isSocket() ? "socket" : "other";
  } catch {
    return { stdio: "inherit", close() {} };
  }
  if (kind === "other") return { stdio: "inherit", close() {} };
  if (kind === "fifo") {
    try {
      const reopened = openSync(`/proc/self/fd/${fd}`, "w");
      let closed = false;
      return {
        stdio: reopened,
        close() {
          if (!closed) closeSync(reopened);
          closed = true;
        },
      };
    } catch {
      // No /proc (macOS): relay instead.
    }
  }
  return { stdio: "pipe", close() {} };
}
