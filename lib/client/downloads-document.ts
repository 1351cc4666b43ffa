// The relay's signed list of release binaries: its shape, and how a client checks it before trusting a byte.
import { createHash, createPublicKey } from "node:crypto";
import { compactVerify, importJWK, type JWK } from "jose";
import { ArcError, ConfigError } from "../errors/index.ts";

/** One binary the relay serves at `/v1/downloads/<name>/<os>-<arch>`. */
export interface DownloadFile {
  /** `arcproxy`, `arcagent` or `arcrelay`. */
  name: string;
  /** Go's and Docker's names, as `bun run build:all` lays out `dist/`: `linux`, `darwin`, `windows`. */
  os: string;
  /** `amd64` or `arm64`. */
  arch: string;
  version: string;
  /** Bytes. */
  size: number;
  /** Lower-case hex SHA-256 of the file. */
  sha256: string;
  /** Path under the relay's URL, e.g. `/v1/downloads/arcproxy/linux-amd64`. */
  path: string;
}

/** The signed payload: what `GET /v1/downloads/` answers, plus who signed it and when. */
export interface DownloadsDocument {
  /** The relay's public URL; a list signed for another relay is refused. */
  relay: string;
  /** The release version of the files (the folder's VERSION file, else the relay's version). */
  version: string;
  /** RFC 3339 time the relay signed the list. */
  issuedAt: string;
  files: DownloadFile[];
}

/** JWS `typ` of the signed list (RFC 7515 section 4.1.9), so no other token of the relay's can pass for one. */
export const DOWNLOADS_JWS_TYPE = "cluster-connect-downloads+jws";

/** Where the relay serves the list, the signed list, one file, the signing key and the install script. */
export const DOWNLOADS_PATHS = {
  list: "/v1/downloads/",
  signed: "/v1/downloads/index.jws",
  file: (name: string, os: string, arch: string) => `/v1/downloads/${name}/${os}-${arch}`,
  publicKey: "/.well-known/cluster-connect/downloads-key",
  installScript: "/install.sh",
} as const;

/** A binary that does not match what the relay signed, or a list whose signature does not verify. */
export class DownloadVerificationError extends ArcError {
  override readonly code = "ERR_ARC_DOWNLOAD_UNVERIFIED";
  override readonly status = 502;
  override readonly reason = "BadGateway";
}

/**
 * Serialises the document as the bytes that are signed: JSON with one file per line, so that a
 * POSIX shell (install.sh) can pick its line with grep and sed after openssl checked the signature.
 */
export function serializeDownloadsDocument(doc: DownloadsDocument): string {
  const head = JSON.stringify({ relay: doc.relay, version: doc.version, issuedAt: doc.issuedAt });
  const files = doc.files.map((f) => JSON.stringify(f)).join(",\n");
  return `${head.slice(0, -1)},"files":[\n${files}\n]}\n`;
}

/**
 * Verifies a compact JWS made by the relay (EdDSA, Ed25519; RFC 8037) with `publicKey` and returns
 * its document. Throws DownloadVerificationError when the signature, the `typ`, the shape or the
 * relay it names (`expectedRelay`, compared as given) is wrong.
 */
export async function verifyDownloadsDocument(jws: string, publicKey: JWK, expectedRelay: string): Promise<DownloadsDocument> {
  let payload: Uint8Array;
  try {
    const key = await importJWK({ ...publicKey, alg: "EdDSA" }, "EdDSA");
    const verified = await compactVerify(jws.trim(), key, { algorithms: ["EdDSA"] });
    if (verified.protectedHeader.typ !== DOWNLOADS_JWS_TYPE) throw new Error(`typ is ${String(verified.protectedHeader.typ)}, not ${DOWNLOADS_JWS_TYPE}`);
    payload = verified.payload;
  } catch (cause) {
    throw new DownloadVerificationError(
      `the relay's list of downloads does not verify with its signing key (${(cause as Error).message}); nothing was installed. ` +
        "If the relay's key was changed on purpose, get its new fingerprint from the relay's admin",
      { cause },
    );
  }
  const doc = JSON.parse(new TextDecoder().decode(payload)) as DownloadsDocument;
  if (typeof doc?.relay !== "string" || !Array.isArray(doc.files)) throw new DownloadVerificationError("the signed list of downloads has an unknown shape; nothing was installed");
  if (doc.relay !== expectedRelay) {
    throw new DownloadVerificationError(`the signed list of downloads is for ${doc.relay}, not ${expectedRelay}; nothing was installed`);
  }
  return doc;
}

/** Chooses the file for `name` on this machine; throws ConfigError listing what the relay has when it has none. */
export function pickDownload(doc: DownloadsDocument, name: string, os: string, arch: string): DownloadFile {
  const file = doc.files.find((f) => f.name === name && f.os === os && f.arch === arch);
  if (!file) {
    const offered = doc.files.filter((f) => f.name === name).map((f) => `${f.os}-${f.arch}`);
    throw new ConfigError(`the relay serves no ${name} for ${os}-${arch}${offered.length ? ` (it has ${offered.join(", ")})` : ""}`);
  }
  return file;
}

/** This machine in the downloads' names: Node's `x64` is `amd64`, `win32` is `windows`. */
export function hostDownloadPlatform(platform: NodeJS.Platform = process.platform, arch: string = process.arch): { os: string; arch: string } {
  const os = platform === "win32" ? "windows" : platform;
  return { os, arch: arch === "x64" ? "amd64" : arch };
}

/**
 * Hex SHA-256 of an Ed25519 public JWK's SPKI DER: the downloads key's fingerprint, as `arcrelay
 * serve` prints it, install.sh computes it with openssl and users pin it.
 */
export function publicKeySha256(jwk: JWK): string {
  const der = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: jwk.x! }, format: "jwk" }).export({ type: "spki", format: "der" });
  return createHash("sha256").update(der).digest("hex");
}
