// A token read from a file and re-read when the file changes (a mounted, rotated token, e.g. a projected service-account token).
import { readFile, stat } from "node:fs/promises";
import { readJwtExpiry, type TokenCredential } from "./token-source-cache.ts";
import { FILE_CHECK_INTERVAL_MS } from "./token-source-timeouts.ts";

/**
 * Returns a function that yields the file's trimmed content. It stats the file at most once per
 * second and reads it again only when its inode, mtime, ctime or size changed (the inode catches a
 * same-size replacement by rename within one timestamp tick, as Kubernetes swaps mounted tokens).
 */
export function createFileCredential(path: string, now: () => number): () => Promise<TokenCredential> {
  let cached: { credential: TokenCredential; version: string; checkedAt: number } | undefined;

  return async function readTokenFile(): Promise<TokenCredential> {
    const checkedAt = now();
    if (cached && checkedAt - cached.checkedAt < FILE_CHECK_INTERVAL_MS) return cached.credential;
    let version: string;
    try {
      const info = await stat(path, { bigint: true });
      version = `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}`;
    } catch (error) {
      cached = undefined;
      throw describeReadError(path, error);
    }
    if (cached && cached.version === version) {
      cached.checkedAt = checkedAt;
      return cached.credential;
    }
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      cached = undefined;
      throw describeReadError(path, error);
    }
    const token = text.trim();
    if (!token) {
      cached = undefined;
      throw new Error(`token file ${path} is empty`);
    }
    if (/\s/.test(token)) {
      cached = undefined;
      throw new Error(`token file ${path} holds more than one word; it must contain only the token`);
    }
    cached = { credential: { token, expiresAt: readJwtExpiry(token) }, version, checkedAt };
    return cached.credential;
  };
}

function describeReadError(path: string, error: unknown): Error {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new Error(`token file ${path} does not exist`, { cause: error });
  if (code === "EACCES") return new Error(`token file ${path} is not readable (permission denied)`, { cause: error });
  return new Error(`cannot read token file ${path}: ${(error as Error).message}`, { cause: error });
}
