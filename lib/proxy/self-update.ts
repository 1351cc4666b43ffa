// `arcproxy update`: the relay's current arcproxy, verified against its signed list, put in place atomically.
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { chmod, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Transform } from "node:stream";
import type { JWK } from "jose";
import {
  DOWNLOADS_PATHS, DownloadVerificationError, callRelay, publicKeySha256, hostDownloadPlatform, openRelayRequest, pickDownload, refusalError,
  verifyDownloadsDocument, type DownloadFile, type RelayConnection,
} from "../client/index.ts";
import { BadGateway, ConfigError } from "../errors/index.ts";
import { compareVersions } from "./version-gate.ts";

/** A download may take this long in all (ms): ~100 MB over a slow link. */
const DOWNLOAD_TIMEOUT_MS = 10 * 60_000;

export interface UpdateOptions {
  relay: RelayConnection;
  /** The file to replace: the running compiled arcproxy (process.execPath) or one named with --path. */
  target: string;
  /** The running version; the same or an older version is not installed unless `force` (a relay rolled back, or a replayed list). */
  currentVersion: string;
  force?: boolean;
  /** Hex SHA-256 of the downloads key's SPKI DER, pinned at install time; a relay with another key is refused. */
  pinnedKeySha256?: string;
  /** Default: this machine. */
  platform?: { os: string; arch: string };
  /** Called as bytes arrive (received, total). */
  onProgress?: (received: number, total: number) => void;
}

export interface UpdateResult {
  updated: boolean;
  version: string;
  sha256: string;
  keySha256: string;
}

/**
 * Fetches the relay's downloads key (checked against `pinnedKeySha256` when given) and signed list,
 * picks arcproxy for this platform, downloads it beside `target` while hashing, checks size and
 * SHA-256 against the signed list, and renames it over `target` (on Windows the running file is
 * first renamed to `<target>.old`, as a running executable may be renamed but not replaced).
 * Nothing is changed on any failure. Throws DownloadVerificationError (key, signature, size or
 * checksum wrong), ConfigError (no build for this platform, target not writable), the relay's refusal.
 */
export async function updateSelf(opts: UpdateOptions): Promise<UpdateResult> {
  const keyAnswer = await callRelay(opts.relay, { path: DOWNLOADS_PATHS.publicKey });
  if (keyAnswer.status !== 200) throw refusalError(keyAnswer.status, keyAnswer.json, { relay: opts.relay.url });
  const jwk = (keyAnswer.json as { keys?: JWK[] } | undefined)?.keys?.[0];
  if (!jwk || jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string") {
    throw new BadGateway(`relay ${opts.relay.url.base} answered ${DOWNLOADS_PATHS.publicKey} without an Ed25519 key; is the URL the relay's?`);
  }
  const keySha256 = publicKeySha256(jwk);
  if (opts.pinnedKeySha256 && opts.pinnedKeySha256 !== keySha256) {
    throw new DownloadVerificationError(
      `relay ${opts.relay.url.base} now signs downloads with key ${keySha256}, not the ${opts.pinnedKeySha256} remembered at install; ` +
        "nothing was changed. If the relay's admin confirms the new key, run arcproxy config set-relay URL --downloads-key-sha256 NEW",
    );
  }
  const listAnswer = await callRelay(opts.relay, { path: DOWNLOADS_PATHS.signed });
  if (listAnswer.status !== 200) throw refusalError(listAnswer.status, listAnswer.json, { relay: opts.relay.url });
  const doc = await verifyDownloadsDocument(listAnswer.text, jwk, opts.relay.url.base);
  const platform = opts.platform ?? hostDownloadPlatform();
  const file = pickDownload(doc, "arcproxy", platform.os, platform.arch);
  if (file.version === opts.currentVersion && !opts.force) return { updated: false, version: file.version, sha256: file.sha256, keySha256 };
  if (opts.currentVersion !== "dev" && compareVersions(file.version, opts.currentVersion) < 0 && !opts.force) {
    throw new ConfigError(
      `relay ${opts.relay.url.base} serves arcproxy ${file.version}, older than this ${opts.currentVersion}; nothing was changed ` +
        "(pass --force to install the older one on purpose)",
    );
  }
  await downloadVerified(opts, file, platform.os === "windows");
  return { updated: true, version: file.version, sha256: file.sha256, keySha256 };
}

async function downloadVerified(opts: UpdateOptions, file: DownloadFile, windows: boolean): Promise<void> {
  const dir = dirname(opts.target);
  const temp = join(dir, `.${basename(opts.target)}.${randomBytes(6).toString("hex")}.new`);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), DOWNLOAD_TIMEOUT_MS);
  try {
    const answer = await openRelayRequest(opts.relay, { method: "GET", path: file.path, headers: {} }, controller.signal);
    if (answer.kind !== "response") {
      answer.socket.destroy();
      throw new BadGateway(`relay ${opts.relay.url.base} switched protocols on ${file.path}`);
    }
    if (answer.response.statusCode !== 200) {
      answer.response.resume();
      throw new BadGateway(`relay ${opts.relay.url.base} answered ${file.path} with ${answer.response.statusCode}; nothing was changed`);
    }
    const hash = createHash("sha256");
    let received = 0;
    const check = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        received += chunk.length;
        // More bytes than signed is already wrong: stop before writing a byte more.
        if (received > file.size) return done(new DownloadVerificationError(`the relay sent more than the ${file.size} bytes its signed list gives for ${file.path}; nothing was changed`));
        hash.update(chunk);
        opts.onProgress?.(received, file.size);
        done(null, chunk);
      },
    });
    await pipeline(answer.response, check, createWriteStream(temp, { mode: 0o700, flags: "wx" })).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "EACCES" || error.code === "EROFS" || error.code === "EPERM") {
        throw new ConfigError(`cannot write beside ${opts.target} (${error.code}); run arcproxy update with a user that may, or reinstall with install.sh`, { cause: error });
      }
      throw error;
    });
    if (received !== file.size) throw new DownloadVerificationError(`the download of ${file.path} is ${received} bytes, the signed list says ${file.size}; nothing was changed`);
    const sha256 = hash.digest("hex");
    if (sha256 !== file.sha256) throw new DownloadVerificationError(`the download of ${file.path} has SHA-256 ${sha256}, the signed list says ${file.sha256}; nothing was changed`);
    await chmod(temp, 0o755);
    let movedAside = false;
    if (windows) {
      // Windows keeps a running .exe open without FILE_SHARE_DELETE: it can be moved aside, not overwritten.
      await rm(`${opts.target}.old`, { force: true });
      movedAside = await rename(opts.target, `${opts.target}.old`).then(() => true, (error: NodeJS.ErrnoException) => {
        if (error.code !== "ENOENT") throw error;
        return false; // nothing installed there yet
      });
    }
    await rename(temp, opts.target).catch(async (error: unknown) => {
      // Never leave the user without an arcproxy: the one moved aside goes back.
      if (movedAside) await rename(`${opts.target}.old`, opts.target);
      throw error;
    });
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
