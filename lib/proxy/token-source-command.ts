// Runs the user's --token-command (sh -c) and reads a token, or a kubectl ExecCredential, from its stdout.
import { spawn, type ChildProcess } from "node:child_process";
import { readJwtExpiry, type TokenCredential } from "./token-source-cache.ts";

/** More than this on stdout is not a token. */
const MAX_STDOUT_BYTES = 1024 * 1024;
/** How much of stderr a failure message quotes, from the end. */
const STDERR_TAIL_CHARS = 600;

export interface TokenCommand {
  run(): Promise<TokenCredential>;
  /** Kills a run in progress. */
  kill(): void;
}

/** `command` runs through `sh -c`; `env` undefined inherits this process's environment. */
export function createTokenCommand(command: string, timeoutMs: number, env?: Record<string, string>): TokenCommand {
  const label = describeCommand(command);
  const running = new Set<ChildProcess>();
  return {
    run() {
      return runOnce(command, label, timeoutMs, env, running).then((stdout) => parseCommandOutput(stdout, label));
    },
    kill() {
      for (const child of running) killGroup(child);
    },
  };
}

/** A short name for messages and logs: the command's first word (the rest may carry secrets). */
export function describeCommand(command: string): string {
  return `command ${command.trim().split(/\s+/)[0] ?? ""}`;
}

function runOnce(command: string, label: string, timeoutMs: number, env: Record<string, string> | undefined, running: Set<ChildProcess>): Promise<string> {
  return new Promise((resolve, reject) => {
    // Its own process group, so a timeout also ends what the shell started (az, sleep, ...), which
    // would otherwise hold stdout open.
    const child = spawn("sh", ["-c", command], { stdio: ["ignore", "pipe", "pipe"], env, detached: true });
    running.add(child);
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = "";
    let failure: Error | undefined;
    const timer = setTimeout(() => {
      failure = new Error(`token ${label} did not finish within ${timeoutMs / 1000}s`);
      killGroup(child);
    }, timeoutMs);
    child.stdout!.on("data", (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (stdoutBytes > MAX_STDOUT_BYTES) {
        failure ??= new Error(`token ${label} printed more than ${MAX_STDOUT_BYTES} bytes; it must print only the token`);
        killGroup(child);
      } else {
        stdout.push(chunk);
      }
    });
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-4 * STDERR_TAIL_CHARS);
    });
    child.once("error", (error) => {
      failure ??= new Error(`cannot run token ${label}: ${error.message}`, { cause: error });
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      if (failure) return reject(failure);
      if (code !== 0) {
        const how = code === null ? `was killed by ${signal}` : `exited with status ${code}`;
        const tail = stderr.trim().slice(-STDERR_TAIL_CHARS);
        return reject(new Error(`token ${label} ${how}${tail ? `: ${tail}` : " (nothing on stderr)"}`));
      }
      resolve(Buffer.concat(stdout).toString("utf8"));
    });
  });
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}

/**
 * A bare token, or an ExecCredential as kubectl exec plugins print it:
 * `{"kind":"ExecCredential","status":{"token":"...","expirationTimestamp":"RFC 3339"}}`.
 */
function parseCommandOutput(stdout: string, label: string): TokenCredential {
  const text = stdout.trim();
  if (!text) throw new Error(`token ${label} printed nothing on stdout`);
  if (text.startsWith("{")) return parseExecCredential(text, label);
  if (/\s/.test(text)) throw new Error(`token ${label} printed more than one word; it must print only the token (or an ExecCredential JSON)`);
  return { token: text, expiresAt: readJwtExpiry(text) };
}

function parseExecCredential(text: string, label: string): TokenCredential {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`token ${label} printed text starting with "{" that is not JSON`);
  }
  const status = (parsed as { status?: { token?: unknown; expirationTimestamp?: unknown } } | null)?.status;
  const token = status?.token;
  if (typeof token !== "string" || !token) throw new Error(`token ${label} printed JSON without status.token (expected an ExecCredential)`);
  const stamp = status?.expirationTimestamp;
  if (stamp === undefined || stamp === null || stamp === "") return { token, expiresAt: readJwtExpiry(token) };
  const expiresAt = typeof stamp === "string" ? new Date(stamp) : undefined;
  if (!expiresAt || Number.isNaN(expiresAt.getTime())) {
    throw new Error(`token ${label} printed an ExecCredential whose status.expirationTimestamp is not an RFC 3339 time`);
  }
  return { token, expiresAt };
}
