// Runs the user's command (e.g. kubectl) with inherited stdio and reports how it ended.
import { spawn } from "node:child_process";
import { constants } from "node:os";

const FORWARDED_SIGNALS = ["SIGINT", "SIGTERM"] as const;

/**
 * Runs `command args` with `env` as its whole environment, forwarding SIGINT/SIGTERM to it while
 * it runs. Resolves with its exit code, or 128+n when signal n ended it, as a shell would.
 */
export function runChildCommand(command: string, args: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: "inherit", env });
    const forward = (signal: NodeJS.Signals) => {
      child.kill(signal);
    };
    for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
    const stopForwarding = () => {
      for (const signal of FORWARDED_SIGNALS) process.off(signal, forward);
    };
    child.once("error", (error: NodeJS.ErrnoException) => {
      stopForwarding();
      if (error.code === "ENOENT") reject(new Error(`command not found: ${command}`, { cause: error }));
      else if (error.code === "EACCES") reject(new Error(`command not executable: ${command}`, { cause: error }));
      else reject(new Error(`cannot run ${command}: ${error.message}`, { cause: error }));
    });
    child.once("exit", (code, signal) => {
      stopForwarding();
      if (code !== null) resolve(code);
      else resolve(128 + (signal ? (constants.signals[signal] ?? 0) : 0));
    });
  });
}
