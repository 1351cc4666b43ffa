// The relay's audit log: one JSON line per request stage, shaped as a Kubernetes audit Event, rotated by size.
import { createWriteStream, type WriteStream } from "node:fs";
import { chmod, mkdir, rename, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { ConfigError } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";

/**
 * One audit record, modelled on `audit.k8s.io/v1` `Event` (level Metadata), so the tools that read
 * the API server's audit log read this one: `auditID` is the request id the API server also sees.
 * Never a token or a header that carries one; the query keeps its keys but not the values of
 * parameters that look like secrets.
 */
export interface AuditEvent {
  kind: "Event";
  apiVersion: "audit.k8s.io/v1";
  level: "Metadata";
  auditID: string;
  stage: "ResponseStarted" | "ResponseComplete";
  requestURI: string;
  verb: string;
  user: { username: string; groups: string[]; extra: { "cluster-connect.io/issuer": string[] } } | { username: "" };
  sourceIPs: string[];
  userAgent?: string;
  responseStatus: { code: number };
  requestReceivedTimestamp: string;
  stageTimestamp: string;
  annotations: Record<string, string>;
}

export interface AuditLog {
  write(event: AuditEvent): void;
  close(): Promise<void>;
}

/** Rotate after this many bytes (100 MiB), keeping this many old files (PATH.1 ... PATH.3). */
export const DEFAULT_AUDIT_MAX_BYTES = 100 * 1024 * 1024;
export const DEFAULT_AUDIT_BACKUPS = 3;

/**
 * Opens the audit log: `-` is stdout; a path is appended to (created 0600, its folder 0700) and
 * rotated when it passes `maxBytes` (PATH -> PATH.1 -> ... -> PATH.<backups>, the oldest dropped).
 * Writes never block a request: lines are queued on the stream; a rotation or write failure is
 * logged (once per failure) and the log goes on. Throws ConfigError when the file cannot be opened.
 */
export async function openAuditLog(opts: { path: string; maxBytes?: number; backups?: number; logger: Logger }): Promise<AuditLog> {
  if (opts.path === "-") {
    return {
      write: (event) => void process.stdout.write(JSON.stringify(event) + "\n"),
      close: async () => {},
    };
  }
  const maxBytes = opts.maxBytes ?? DEFAULT_AUDIT_MAX_BYTES;
  const backups = opts.backups ?? DEFAULT_AUDIT_BACKUPS;
  await mkdir(dirname(opts.path), { recursive: true, mode: 0o700 });
  let size = await stat(opts.path).then((s) => s.size, () => 0);
  // An existing file keeps no looser mode than a new one: it holds who did what.
  await chmod(opts.path, 0o600).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw new ConfigError(`--audit-log ${opts.path}: ${error.message}`, { cause: error });
  });
  const open = () => createWriteStream(opts.path, { flags: "a", mode: 0o600 });
  let stream: WriteStream = open();
  await new Promise<void>((resolve, reject) => {
    stream.once("open", () => resolve());
    stream.once("error", (error) => reject(new ConfigError(`--audit-log ${opts.path}: ${error.message}`, { cause: error })));
  });
  const onError = (error: Error) => opts.logger.error("audit log write failed", { path: opts.path, error });
  stream.on("error", onError);
  // Lines that come while a rotation runs wait here and go to the new file, in order.
  let pending: string[] | undefined;

  const rotate = async () => {
    const old = stream;
    await new Promise<void>((resolve) => old.end(() => resolve()));
    try {
      await rm(`${opts.path}.${backups}`, { force: true });
      for (let i = backups - 1; i >= 1; i--) await rename(`${opts.path}.${i}`, `${opts.path}.${i + 1}`).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== "ENOENT") throw error;
      });
      await rename(opts.path, `${opts.path}.1`);
    } catch (error) {
      opts.logger.error("audit log rotation failed; going on in the same file", { path: opts.path, error });
    }
    stream = open();
    stream.on("error", onError);
    size = 0;
  };

  const append = (line: string) => {
    if (pending) {
      pending.push(line);
      return;
    }
    stream.write(line);
    size += Buffer.byteLength(line);
    if (size < maxBytes) return;
    pending = [];
    rotation = rotate().then(() => {
      const waiting = pending!;
      pending = undefined;
      for (const queued of waiting) append(queued);
    });
  };
  let rotation: Promise<void> = Promise.resolve();

  return {
    write(event) {
      append(JSON.stringify(event) + "\n");
    },
    async close() {
      // A rotation may start another while its queue drains: wait until none is left.
      while (pending) await rotation;
      await new Promise<void>((resolve) => stream.end(() => resolve()));
    },
  };
}

/** Query parameters whose values are never written (a client that puts a token in the URL). */
const SECRET_PARAMETER = /token|secret|password|passwd|key|signature|sig$|credential|auth|bearer|jwt|session/i;

/** The request URI with the values of secret-looking query parameters replaced by `REDACTED`. */
export function redactRequestUri(uri: string): string {
  const at = uri.indexOf("?");
  if (at < 0) return uri;
  const params = new URLSearchParams(uri.slice(at + 1));
  for (const name of [...new Set(params.keys())]) {
    if (SECRET_PARAMETER.test(name)) params.set(name, "REDACTED");
  }
  return `${uri.slice(0, at)}?${params.toString()}`;
}

/** The Kubernetes verb of a request, as the API server's audit log names it (approximately: a GET of a collection is `get` here too). */
export function kubernetesVerb(method: string, uri: string, upgrade: boolean): string {
  if (upgrade) return method === "POST" ? "create" : "get";
  switch (method) {
    case "GET": return /[?&]watch=(true|1)(&|$)/.test(uri) ? "watch" : "get";
    case "POST": return "create";
    case "PUT": return "update";
    case "PATCH": return "patch";
    case "DELETE": return "delete";
    default: return method.toLowerCase();
  }
}
