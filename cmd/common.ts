// What every entry point shares: version, logger from flags, duration parsing, error exit.
import { renderUsage, runCommand, runMain, type CommandDef } from "citty";
import { stripVTControlCharacters } from "node:util";
import ms from "ms";
import { createLogger, type Logger, type LogLevel } from "../lib/observe/index.ts";
import { ConfigError } from "../lib/errors/index.ts";
import { checkCommandLine, subcommandFirst } from "./cli-args.ts";

declare const VERSION: string | undefined;
/** Stamped by scripts/build.ts; "dev" when run from source. */
export const version: string = typeof VERSION === "string" ? VERSION : "dev";

export function loggerFor(component: string, level: string | undefined, format?: string): Logger {
  const levels: LogLevel[] = ["debug", "info", "warn", "error"];
  if (level && !levels.includes(level as LogLevel)) throw new ConfigError(`--log-level ${level}: use one of ${levels.join(", ")}`);
  if (format && format !== "json" && format !== "text") throw new ConfigError(`--log-format ${format}: use json or text`);
  // People read a terminal; machines read everything else (a pod's log, a file, a pipe).
  const chosen = (format as "json" | "text" | undefined) ?? (process.stderr.isTTY ? "text" : "json");
  return createLogger({ component, level: (level as LogLevel | undefined) ?? "info", format: chosen, colorize: chosen === "text" && Boolean(process.stderr.isTTY) });
}

/** `500ms`, `2s`, `1m` -> milliseconds; `0` allowed when `allowZero`. Throws ConfigError naming the flag. */
export function parseDurationMs(flag: string, value: string, allowZero = false): number {
  const millis = value === "0" ? 0 : ms(value as ms.StringValue);
  if (typeof millis !== "number" || !Number.isFinite(millis) || millis < 0 || (millis === 0 && !allowZero)) {
    throw new ConfigError(`--${flag} ${JSON.stringify(value)} is not a duration: use e.g. 500ms, 2s or 1m${allowZero ? " (or 0)" : ""}`);
  }
  return millis;
}

/** A whole number from 1 to `max` (default: no bound). Throws ConfigError naming the flag and the range. */
export function parsePositiveInteger(flag: string, value: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new ConfigError(`--${flag} ${JSON.stringify(value)}: use a whole number of at least 1${max < Number.MAX_SAFE_INTEGER ? ` and at most ${max}` : ""}`);
  }
  return n;
}

/** `90s`, `15m`, `1h`, `7d` -> seconds. */
export function parseDurationSeconds(flag: string, value: string): number {
  const millis = ms(value as ms.StringValue);
  if (typeof millis !== "number" || !Number.isFinite(millis) || millis <= 0) {
    throw new ConfigError(`--${flag} ${JSON.stringify(value)} is not a duration: use e.g. 90s, 15m, 1h or 7d`);
  }
  return Math.round(millis / 1000);
}

/** citty keeps only the last value of a repeated flag; this collects all of them from raw args. */
export function repeatedFlag(rawArgs: string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i]!;
    if (arg === "--") break;
    if (arg === `--${name}` && i + 1 < rawArgs.length) values.push(rawArgs[++i]!);
    else if (arg.startsWith(`--${name}=`)) values.push(arg.slice(name.length + 3));
  }
  return values;
}

/**
 * Prints the message and the chain of causes (what the operating system, TLS or the API server
 * said), no stack trace, and exits 1: what users see for every expected failure.
 */
export function exitWithError(binary: string, error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`${binary}: ${message}\n`);
  let cause = error instanceof Error ? error.cause : undefined;
  for (let depth = 0; cause !== undefined && depth < 4; depth++) {
    const text = cause instanceof Error ? cause.message : String(cause);
    if (text && !message.includes(text)) process.stderr.write(`  caused by: ${text}\n`);
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  if (process.env.ARC_DEBUG && error instanceof Error && error.stack) process.stderr.write(error.stack + "\n");
  process.exit(1);
}

/**
 * Resolves on the first SIGINT or SIGTERM. A second signal while the graceful stop runs calls
 * `onSecondSignal` (default: exit 130 at once), so Ctrl-C twice never waits for a drain.
 */
export function waitForShutdownSignal(onSecondSignal: () => void = () => process.exit(130)): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let seen = false;
    const handler = (signal: NodeJS.Signals) => {
      if (seen) {
        onSecondSignal();
        return;
      }
      seen = true;
      resolve(signal);
    };
    process.on("SIGINT", handler);
    process.on("SIGTERM", handler);
  });
}

/** How long a stopped process may take to let go of what still holds its event loop (ms). */
const EXIT_GRACE_MS = 2_000;

/**
 * After a graceful stop (the drain is done): the process ends by itself once nothing holds it,
 * with every log line flushed; an idle keep-alive socket or a stray timer may not hold it longer
 * than EXIT_GRACE_MS (a SIGTERM'd agent once took 45 s to exit after a 25 s drain).
 */
export function exitSoonAfterStop(): void {
  process.exitCode = 0;
  setTimeout(() => process.exit(0), EXIT_GRACE_MS).unref();
}

/**
 * The command after the first `--` (`arcproxy --cluster x -- kubectl get pods`), or [] without one.
 * citty never sees it, so `arcproxy -- kubectl --help` reaches kubectl.
 */
export function childCommand(argv: readonly string[] = process.argv.slice(2)): string[] {
  const dashdash = argv.indexOf("--");
  return dashdash === -1 ? [] : argv.slice(dashdash + 1);
}

/** citty's usage text; its colours only on a terminal (a pipe or a file gets plain text, as `grep` expects). */
async function printUsage(cmd: CommandDef<any>, parent?: CommandDef<any>): Promise<void> {
  const text = await renderUsage(cmd, parent);
  console.log(process.stdout.isTTY ? text : stripVTControlCharacters(text));
}

/**
 * Runs a citty command with our error contract: usage errors and expected failures print one line
 * (with their causes) and exit 1. Only the arguments before `--` are parsed (childCommand has the rest).
 */
export async function runCli(main: CommandDef<any>, binary: string): Promise<void> {
  const rawArgs = process.argv.slice(2);
  const dashdash = rawArgs.indexOf("--");
  // The subcommand first, wherever the user wrote it among the flags (cli-args.ts).
  const own = subcommandFirst(main, dashdash >= 0 ? rawArgs.slice(0, dashdash) : rawArgs);
  if (own.includes("--help") || own.includes("-h") || (own.length === 1 && own[0] === "--version")) {
    await runMain(main, { rawArgs: own, showUsage: printUsage });
    return;
  }
  try {
    checkCommandLine(main, own, binary);
    await runCommand(main, { rawArgs: own });
  } catch (error) {
    // citty colours its own messages, which a pipe or a log file would get as escape codes.
    if ((error as Error)?.name === "CLIError") exitWithError(binary, new Error(`${stripVTControlCharacters((error as Error).message)} (see ${binary} --help)`));
    exitWithError(binary, error);
  }
}
