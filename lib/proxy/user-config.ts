// arcproxy's own settings on the user's machine: which relay to use when none is named.
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { parseRelayUrl } from "../client/index.ts";
import { ConfigError } from "../errors/index.ts";

/** What arcproxy remembers between runs (config.yaml in userConfigDir). */
export interface UserConfig {
  /** The relay used when neither --relay nor ARC_RELAY names one. */
  relay?: string;
  /** Hex SHA-256 of that relay's downloads key (SPKI DER), pinned by install.sh; `arcproxy update` refuses another. */
  downloadsKeySha256?: string;
}

/**
 * The folder for arcproxy's settings and, later, its login tokens: `$XDG_CONFIG_HOME/cluster-connect`
 * (default `~/.config/cluster-connect`) on Linux and the BSDs, `~/Library/Application Support/
 * cluster-connect` on macOS, `%APPDATA%\cluster-connect` on Windows.
 */
export function userConfigDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (platform === "win32") return join(env.APPDATA ?? join(homedir(), "AppData", "Roaming"), "cluster-connect");
  if (platform === "darwin") return join(homedir(), "Library", "Application Support", "cluster-connect");
  return join(env.XDG_CONFIG_HOME || join(env.HOME ?? homedir(), ".config"), "cluster-connect");
}

/** Reads config.yaml; a missing file is an empty config. Throws ConfigError naming the file if it is not a mapping. */
export async function readUserConfig(dir = userConfigDir()): Promise<UserConfig> {
  const path = join(dir, "config.yaml");
  const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return "";
    throw new ConfigError(`cannot read ${path}: ${error.message}`, { cause: error });
  });
  if (text.trim() === "") return {};
  let value: unknown;
  try {
    value = parse(text);
  } catch (cause) {
    throw new ConfigError(`${path} is not valid YAML; fix it or remove it`, { cause });
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new ConfigError(`${path} must be a mapping (relay: URL)`);
  const { relay, downloadsKeySha256: pin } = value as { relay?: unknown; downloadsKeySha256?: unknown };
  if (relay !== undefined && typeof relay !== "string") throw new ConfigError(`${path}: relay must be a URL`);
  if (pin !== undefined && (typeof pin !== "string" || !/^[0-9a-f]{64}$/.test(pin))) throw new ConfigError(`${path}: downloadsKeySha256 must be 64 hex digits`);
  return { ...(relay ? { relay } : {}), ...(pin ? { downloadsKeySha256: pin } : {}) };
}

/** Writes config.yaml (folder 0700, file 0600, atomically). */
export async function writeUserConfig(config: UserConfig, dir = userConfigDir()): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, "config.yaml");
  const temp = join(dir, `.config.yaml.${randomBytes(6).toString("hex")}`);
  try {
    await writeFile(temp, stringify(config), { mode: 0o600, flag: "wx" });
    await chmod(temp, 0o600);
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw new ConfigError(`cannot write ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * The relay to use: `--relay`, else `ARC_RELAY`, else the remembered one (arcproxy login or
 * install.sh remember it). Returns the normalised URL; throws ConfigError saying how to name one
 * when there is none, and for a URL parseRelayUrl refuses.
 */
export function resolveRelayUrl(flag: string | undefined, env: NodeJS.ProcessEnv, remembered: UserConfig): string {
  if (flag) return parseRelayUrl(flag, "--relay").base;
  if (env.ARC_RELAY) return parseRelayUrl(env.ARC_RELAY, "ARC_RELAY").base;
  if (remembered.relay) return parseRelayUrl(remembered.relay, `the remembered relay (${join(userConfigDir(env), "config.yaml")})`).base;
  throw new ConfigError("no relay: pass --relay https://relay.example.com, set ARC_RELAY, or run arcproxy login --relay URL once to remember it");
}
