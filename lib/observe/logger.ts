// One JSON line per event with fixed keys (level, msg, component, cluster, requestId), or the same as readable text; built on pino.
import pino from "pino";
import pretty from "pino-pretty";
import { Writable } from "node:stream";

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (e.g. `{ cluster, requestId }`). */
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  component: string;
  level?: LogLevel;
  /** Where lines go; defaults to stderr so stdout stays free for command output. */
  write?: (line: string) => void;
  /**
   * `json` (default): one JSON object per line, for machines. `text`: the same fields as one
   * readable line for people (pino-pretty), coloured when `colorize`.
   */
  format?: "json" | "text";
  colorize?: boolean;
}

// Header and field names that may carry a credential; pino replaces their values.
const REDACT_PATHS = [
  "token", "authorization", "Authorization", "password", "secret", "enrollToken",
  "headers.authorization", "headers.Authorization", "*.token", "*.authorization",
];

/** Creates the process logger. Pass it down; tests pass a `write` that collects lines. */
export function createLogger(options: LoggerOptions): Logger {
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const base = pino(
    {
      level: options.level ?? "info",
      base: { component: options.component },
      messageKey: "msg",
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    },
    options.format === "text"
      // pino-pretty as a plain stream in this thread (no transport worker, which a compiled binary would have to ship).
      ? pretty({
        colorize: options.colorize ?? false,
        sync: true,
        translateTime: "SYS:HH:MM:ss.l",
        ignore: "pid,hostname",
        singleLine: true,
        // Our errors are plain objects (name, message, code, cause): inline, not as a multi-line stack.
        errorLikeObjectKeys: [],
        messageKey: "msg",
        destination: new Writable({ write(chunk: Buffer, _encoding, done) { write(chunk.toString()); done(); } }),
      })
      : { write },
  );
  return wrap(base);
}

function wrap(p: pino.Logger): Logger {
  return {
    // Per-request lines are debug or info: their fields are not even copied when that level is off.
    debug: (msg, fields) => { if (p.isLevelEnabled("debug")) p.debug(normalizeErrorFields(fields), msg); },
    info: (msg, fields) => { if (p.isLevelEnabled("info")) p.info(normalizeErrorFields(fields), msg); },
    warn: (msg, fields) => { if (p.isLevelEnabled("warn")) p.warn(normalizeErrorFields(fields), msg); },
    error: (msg, fields) => p.error(normalizeErrorFields(fields), msg),
    child: (fields) => wrap(p.child(fields)),
  };
}

// Errors are reduced to name, message and code: stacks stay out of the JSON lines.
function normalizeErrorFields(fields?: LogFields): LogFields {
  if (!fields) return {};
  const { error, ...rest } = fields;
  if (error instanceof Error) return { ...rest, error: describeError(error) };
  if (error !== undefined) return { ...rest, error: String(error) };
  return rest;
}

/** A logger that discards everything, for code paths that are handed none. */
export const silentLogger: Logger = {
  debug: () => {}, info: () => {}, warn: () => {}, error: () => {}, child: () => silentLogger,
};

// Keeps the chain of causes (a jose or socket error under our own) without stacks.
function describeError(error: Error, depth = 0): Record<string, unknown> {
  const code = (error as { code?: unknown }).code;
  const cause = error.cause instanceof Error && depth < 3 ? describeError(error.cause, depth + 1) : undefined;
  return { name: error.name, message: error.message, ...(code !== undefined ? { code } : {}), ...(cause ? { cause } : {}) };
}
