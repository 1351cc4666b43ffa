// Where `arcproxy login` keeps a relay's tokens: one file per relay in the user's config folder, 0600.
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ConfigError } from "../errors/index.ts";
import { userConfigDir } from "./user-config.ts";

/** One login: the OpenID Connect tokens for a relay, from one issuer and client. */
export interface StoredLogin {
  relay: string;
  issuer: string;
  clientId: string;
  /** The ID token: what the relay verifies as the user's token. */
  idToken: string;
  /** Absent when the provider issued none; the login then lasts as long as the ID token. */
  refreshToken?: string;
  /** RFC 3339 expiry of the ID token (its `exp`). */
  expiresAt: string;
  /** The user name the relay will see (from the ID token), for messages. */
  subject?: string;
}

/** `<userConfigDir>/logins/<first 16 hex of SHA-256 of the relay URL>.json`: a file name that says nothing about the relay. */
export function loginFilePath(relay: string, dir = userConfigDir()): string {
  return join(dir, "logins", `${createHash("sha256").update(relay).digest("hex").slice(0, 16)}.json`);
}

/** The stored login for `relay`, or undefined. Throws ConfigError naming the file (and `arcproxy logout`) when it cannot be read. */
export async function readLogin(relay: string, dir = userConfigDir()): Promise<StoredLogin | undefined> {
  const path = loginFilePath(relay, dir);
  const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw new ConfigError(`cannot read your login ${path}: ${error.message}`, { cause: error });
  });
  if (text === undefined) return undefined;
  let value: Partial<StoredLogin>;
  try {
    value = JSON.parse(text) as Partial<StoredLogin>;
  } catch (cause) {
    throw new ConfigError(`your login ${path} is damaged; run arcproxy logout, then arcproxy login`, { cause });
  }
  if (value.relay !== relay || typeof value.idToken !== "string" || typeof value.issuer !== "string" || typeof value.clientId !== "string") {
    throw new ConfigError(`your login ${path} is damaged; run arcproxy logout, then arcproxy login`);
  }
  return value as StoredLogin;
}

/** Writes the login atomically (folder 0700, file 0600): a reader never sees half a token. */
export async function writeLogin(login: StoredLogin, dir = userConfigDir()): Promise<string> {
  const path = loginFilePath(login.relay, dir);
  await mkdir(join(path, ".."), { recursive: true, mode: 0o700 });
  const temp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await writeFile(temp, JSON.stringify(login, null, 2) + "\n", { mode: 0o600, flag: "wx" });
    await chmod(temp, 0o600);
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw new ConfigError(`cannot save your login in ${path}: ${(error as Error).message}`, { cause: error });
  }
  return path;
}

/** Removes the login for `relay`; resolves whether there was one. */
export async function removeLogin(relay: string, dir = userConfigDir()): Promise<boolean> {
  const path = loginFilePath(relay, dir);
  try {
    await rm(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw new ConfigError(`cannot remove your login ${path}: ${(error as Error).message}`, { cause: error });
  }
}
