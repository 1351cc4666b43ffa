// The release binaries a relay serves (--downloads-dir), their checksums, and the signed list of them.
import { createHash, createPublicKey } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { calculateJwkThumbprint, CompactSign, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import {
  DOWNLOADS_JWS_TYPE, DOWNLOADS_PATHS, publicKeySha256, serializeDownloadsDocument, type DownloadFile, type DownloadsDocument,
} from "../client/index.ts";
import { ConfigError } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";

/** The binaries and platforms a downloads folder may hold, as `bun run build:all` writes them. */
const NAMES = new Set(["arcproxy", "arcagent", "arcrelay"]);
const OSES = new Set(["linux", "darwin", "windows"]);
const ARCHES = new Set(["amd64", "arm64"]);
/** The signing key's file in the data dir: a private Ed25519 JWK, mode 0600. */
const SIGNING_KEY_FILE = "downloads-signing-key.jwk";

export interface DownloadCatalog {
  /** The unsigned list (`GET /v1/downloads/`). */
  document: DownloadsDocument;
  /** The same list as a compact JWS (`GET /v1/downloads/index.jws`). */
  signed: string;
  /** The public half of the signing key, with its `kid` (the RFC 7638 thumbprint). */
  publicJwk: JWK;
  /** The public key as SPKI PEM, what install.sh gives openssl. */
  publicPem: string;
  /** Hex SHA-256 of the public key's SPKI DER: what a user pins with ARC_DOWNLOADS_KEY_SHA256. */
  publicKeySha256: string;
  /** The file on disk for a name and platform, or undefined. */
  fileFor(name: string, os: string, arch: string): { entry: DownloadFile; path: string } | undefined;
}

/**
 * Reads `dir` as `bun run build:all` writes `dist/` (`<os>-<arch>/<name>[.exe]`, os linux, darwin
 * or windows, arch amd64 or arm64; anything else is skipped with a warning), hashes every binary,
 * and signs the list with the relay's downloads key (created in `dataDir` on first use, Ed25519,
 * 0600). The version is `dir/VERSION` when present, else `relayVersion`. The catalog is a snapshot:
 * restart the relay after changing the folder (a client that then gets other bytes refuses them).
 * Throws ConfigError when `dir` cannot be read or holds no binary at all.
 */
export async function loadDownloadCatalog(opts: {
  dir: string;
  dataDir: string;
  relay: string;
  relayVersion: string;
  logger: Logger;
  /**
   * Replicas keep the key in their database (setting `downloads.signing-key`), not in each one's
   * data dir: every replica must sign with the key users pinned.
   */
  sharedSettings?: { getSetting(k: string): Promise<string | undefined>; setSettingIfAbsent(k: string, v: string): Promise<string> };
}): Promise<DownloadCatalog> {
  const entries = await readdir(opts.dir, { withFileTypes: true }).catch((error: Error) => {
    throw new ConfigError(`--downloads-dir ${opts.dir}: ${error.message}`, { cause: error });
  });
  const version = (await readFile(join(opts.dir, "VERSION"), "utf8").catch(() => opts.relayVersion)).trim() || opts.relayVersion;
  const files: { entry: DownloadFile; path: string }[] = [];
  for (const folder of entries.filter((e) => e.isDirectory()).map((e) => e.name).sort()) {
    const [os, arch, extra] = folder.split("-");
    if (!OSES.has(os!) || !ARCHES.has(arch!) || extra !== undefined) {
      opts.logger.warn("downloads: skipping a folder that is not <os>-<arch>", { folder });
      continue;
    }
    for (const fileName of (await readdir(join(opts.dir, folder))).sort()) {
      const name = os === "windows" ? fileName.replace(/\.exe$/, "") : fileName;
      if (!NAMES.has(name) || (os === "windows") !== fileName.endsWith(".exe")) continue;
      const path = join(opts.dir, folder, fileName);
      const info = await stat(path);
      if (!info.isFile()) continue;
      const sha256 = await sha256OfFile(path);
      files.push({ path, entry: { name, os: os!, arch: arch!, version, size: info.size, sha256, path: DOWNLOADS_PATHS.file(name, os!, arch!) } });
    }
  }
  if (files.length === 0) {
    throw new ConfigError(`--downloads-dir ${opts.dir} holds no binaries; lay it out as 'bun run build:all' writes dist/ (<os>-<arch>/arcproxy)`);
  }
  const key = await loadSigningKey(opts.dataDir, opts.sharedSettings);
  const document: DownloadsDocument = { relay: opts.relay, version, issuedAt: new Date().toISOString(), files: files.map((f) => f.entry) };
  const signed = await new CompactSign(new TextEncoder().encode(serializeDownloadsDocument(document)))
    .setProtectedHeader({ alg: "EdDSA", typ: DOWNLOADS_JWS_TYPE, kid: key.publicJwk.kid })
    .sign(key.privateKey);
  return {
    document, signed,
    publicJwk: key.publicJwk,
    publicPem: key.publicPem,
    publicKeySha256: key.publicKeySha256,
    fileFor: (name, os, arch) => files.find((f) => f.entry.name === name && f.entry.os === os && f.entry.arch === arch),
  };
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** The replicas' downloads key, when they share a database. */
const SIGNING_KEY_SETTING = "downloads.signing-key";

/**
 * Loads the relay's downloads key from the data dir (or the replicas' shared settings), creating
 * it on first use (exclusive create, or insert-if-absent: relays starting at once agree).
 */
async function loadSigningKey(dataDir: string, shared?: { getSetting(k: string): Promise<string | undefined>; setSettingIfAbsent(k: string, v: string): Promise<string> }) {
  const path = shared ? `the database setting ${SIGNING_KEY_SETTING}` : join(dataDir, SIGNING_KEY_FILE);
  let text = shared
    ? (await shared.getSetting(SIGNING_KEY_SETTING)) ??
      (await shared.setSettingIfAbsent(SIGNING_KEY_SETTING, JSON.stringify(await exportJWK((await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true })).privateKey))))
    : await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return undefined;
      throw new ConfigError(`cannot read the downloads signing key ${path}: ${error.message}`, { cause: error });
    });
  if (text === undefined) {
    const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
    const jwk = await exportJWK(privateKey);
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await writeFile(path, JSON.stringify(jwk), { mode: 0o600, flag: "wx" }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw new ConfigError(`cannot write the downloads signing key ${path}: ${error.message}`, { cause: error });
    });
    text = await readFile(path, "utf8");
  }
  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch (cause) {
    throw new ConfigError(`${path} is not JSON; remove it to make a new downloads key (clients that pinned the old one must pin the new)`, { cause });
  }
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || !jwk.d) throw new ConfigError(`${path} is not a private Ed25519 JWK; remove it to make a new downloads key`);
  const privateKey = await importJWK({ ...jwk, alg: "EdDSA" }, "EdDSA");
  const { d: _private, ...publicPart } = jwk;
  const publicJwk: JWK = { kty: publicPart.kty, crv: publicPart.crv, x: publicPart.x, use: "sig", alg: "EdDSA" };
  publicJwk.kid = await calculateJwkThumbprint(publicJwk);
  const spki = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: publicJwk.x! }, format: "jwk" });
  return {
    privateKey,
    publicJwk,
    publicPem: String(spki.export({ type: "spki", format: "pem" })),
    publicKeySha256: publicKeySha256(publicJwk),
  };
}
