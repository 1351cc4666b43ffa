// Child processes for the test cluster: output to a log file, stopped with
// SIGTERM then SIGKILL, and never outliving this process: exit and signal
// handlers kill them, and on Linux `setpriv --pdeathsig KILL` (util-linux)
// also covers this process being SIGKILLed.
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";

const STOP_GRACE_MS = 5_000;

/** Whether `pid` runs (a zombie, which still answers kill(0), does not count). Linux /proc only. */
export function isAlive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

export interface ManagedProcess {
  name: string;
  pid: number;
  logFile: string;
  /** Resolves with the exit code (or 128+signal) once the process is gone. */
  exited: Promise<number>;
  hasExited(): boolean;
  stop(): Promise<void>;
  /** Last `lines` lines of the log file. */
  logTail(lines?: number): string;
}

const live = new Set<import("bun").Subprocess>();
let hooksInstalled = false;

export function startProcess(name: string, cmd: string[], logFile: string): ManagedProcess {
  installHooks();
  const fd = openSync(logFile, "w");
  let proc: import("bun").Subprocess;
  try {
    // With PDEATHSIG the child gets its own session, so a terminal's Ctrl-C
    // reaches only us and we stop the child in order; it still dies with us.
    const prefix = pdeathsigPrefix();
    proc = Bun.spawn([...prefix, ...cmd], { stdin: "ignore", stdout: fd, stderr: fd, detached: prefix.length > 0 });
  } finally {
    closeSync(fd);
  }
  live.add(proc);
  let done = false;
  const exited = proc.exited.then((code) => {
    done = true;
    live.delete(proc);
    return code;
  });
  return {
    name,
    pid: proc.pid,
    logFile,
    exited,
    hasExited: () => done,
    async stop() {
      if (done) return;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    },
    logTail: (lines = 40) => tailFile(logFile, lines),
  };
}

export function tailFile(path: string, lines: number): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

let prefix: string[] | undefined;
/** `setpriv --pdeathsig KILL --` when util-linux setpriv supports it. */
function pdeathsigPrefix(): string[] {
  if (prefix) return prefix;
  prefix = [];
  if (process.platform !== "linux") return prefix;
  const setpriv = Bun.which("setpriv");
  if (!setpriv || !existsSync(setpriv)) return prefix;
  const help = Bun.spawnSync([setpriv, "--help"], { stderr: "ignore" }).stdout.toString();
  if (help.includes("--pdeathsig")) prefix = [setpriv, "--pdeathsig", "KILL", "--"];
  return prefix;
}

const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", killAll);
  for (const [sig, code] of Object.entries(SIGNAL_EXIT)) {
    const signal = sig as NodeJS.Signals;
    process.on(signal, () => {
      // Another handler (e.g. kube-up's graceful shutdown) owns this signal.
      if (process.listenerCount(signal) > 1) return;
      killAll();
      process.exit(code);
    });
  }
}

function killAll(): void {
  for (const proc of live) proc.kill("SIGKILL");
}
