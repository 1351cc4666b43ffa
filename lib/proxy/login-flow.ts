// `arcproxy login` and `arcproxy logout` end to end: which issuer the relay offers, the login, the relay's check, what is stored.
import { callRelay, refusalError, type RelayConnection } from "../client/index.ts";
import { ConfigError } from "../errors/index.ts";
import { protocol } from "../tunnel/index.ts";
import { readLogin, removeLogin, writeLogin, type StoredLogin } from "./login-store.ts";
import { loginWithBrowser, loginWithDeviceCode, revokeLogin, type LoginIssuer } from "./oidc-login.ts";
import { listClusters, type ClusterInfo } from "./relay-client.ts";
import { readUserConfig, writeUserConfig } from "./user-config.ts";
import { printable } from "./terminal-text.ts";

export interface LoginOptions {
  relay: RelayConnection;
  /** The device authorization grant instead of the browser. */
  device?: boolean;
  /** Which of the relay's login issuers (its URL); needed only when the relay lists several. */
  issuer?: string;
  openBrowser: (url: string) => Promise<boolean>;
  notify: (line: string) => void;
  /** The user config folder; default userConfigDir(). */
  dir?: string;
  timeoutMs?: number;
}

/** The issuers the relay offers for login (`/.well-known/cluster-connect`). Throws the relay's refusal or RelayUnreachable. */
export async function fetchLoginIssuers(relay: RelayConnection): Promise<LoginIssuer[]> {
  const answer = await callRelay(relay, { path: protocol.CLIENT_CONFIG_PATH });
  if (answer.status !== 200) throw refusalError(answer.status, answer.json, { relay: relay.url });
  const issuers = (answer.json as { loginIssuers?: unknown } | undefined)?.loginIssuers;
  // What the relay says is checked before arcproxy acts on it: an issuer is an http(s) URL with a client id and scopes.
  return (Array.isArray(issuers) ? issuers : []).filter((i): i is LoginIssuer =>
    typeof i?.issuer === "string" && /^https?:\/\//.test(i.issuer) && typeof i.clientId === "string" && i.clientId.length > 0 &&
    Array.isArray(i.scopes) && i.scopes.every((scope: unknown) => typeof scope === "string"));
}

/**
 * Logs the user in at the relay's issuer (browser, or `device`), has the relay check the new ID
 * token (`GET /v1/clusters`) before anything is stored, then stores the tokens (0600) and
 * remembers the relay. Resolves with the login and the clusters the user may reach. Throws
 * ConfigError when the relay offers no login issuer or `issuer` is not one of them, the
 * relay's refusal of the token (401, with its reason), and what loginWithBrowser/-DeviceCode throw.
 */
export async function runLogin(opts: LoginOptions): Promise<{ login: StoredLogin; clusters: ClusterInfo[]; path: string }> {
  const relayUrl = opts.relay.url.base;
  const offered = await fetchLoginIssuers(opts.relay);
  if (offered.length === 0) {
    throw new ConfigError(`relay ${relayUrl} offers no login: its admin adds login: {clientId: ...} to an issuer in arcrelay's --config, or use --token / ARC_TOKEN`);
  }
  const issuer = opts.issuer ? offered.find((i) => i.issuer === opts.issuer) : offered.length === 1 ? offered[0] : undefined;
  if (!issuer) {
    throw new ConfigError(`${opts.issuer ? `relay ${relayUrl} offers no login at ${opts.issuer}` : `relay ${relayUrl} offers several logins`}; pass --issuer with one of: ${offered.map((i) => printable(String(i.issuer))).join(", ")}`);
  }
  const login = opts.device
    ? await loginWithDeviceCode({ relay: relayUrl, issuer, notify: opts.notify, timeoutMs: opts.timeoutMs })
    : await loginWithBrowser({ relay: relayUrl, issuer, openBrowser: opts.openBrowser, notify: opts.notify, timeoutMs: opts.timeoutMs });
  // A token the relay refuses (a claim it does not map, an audience it does not take) is not kept.
  const clusters = await listClusters(opts.relay, login.idToken);
  const path = await writeLogin(login, opts.dir);
  const config = await readUserConfig(opts.dir);
  if (config.relay !== relayUrl) await writeUserConfig({ relay: relayUrl }, opts.dir);
  return { login, clusters, path };
}

/**
 * Revokes the refresh token at the provider when it can (RFC 7009), then removes the stored login
 * for the relay; resolves whether there was one and what the provider said. A damaged file is
 * removed all the same.
 */
export async function runLogout(relayUrl: string, dir?: string): Promise<{ removed: boolean; subject?: string; revocation?: Awaited<ReturnType<typeof revokeLogin>> }> {
  const login = await readLogin(relayUrl, dir).catch(() => undefined); // damaged: nothing to revoke, the file goes anyway
  const revocation = login ? await revokeLogin(login) : undefined;
  const removed = await removeLogin(relayUrl, dir);
  return { removed, ...(login?.subject ? { subject: login.subject } : {}), ...(revocation ? { revocation } : {}) };
}
