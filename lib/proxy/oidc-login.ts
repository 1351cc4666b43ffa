// `arcproxy login`: OpenID Connect with panva's openid-client: authorization code + PKCE on a loopback redirect, the device grant, refresh.
import { timingSafeEqual } from "node:crypto";
import http from "node:http";
import * as oidc from "openid-client";
import { decodeJwt } from "jose";
import { ConfigError, Unauthorized } from "../errors/index.ts";
import { isLoopbackHost } from "../kube/index.ts";
import type { StoredLogin } from "./login-store.ts";
import { printable } from "./terminal-text.ts";

/** An issuer the relay lists for login (`/.well-known/cluster-connect` `loginIssuers`). */
export interface LoginIssuer {
  issuer: string;
  clientId: string;
  scopes: string[];
}

/** How long the browser or the device flow may take before arcproxy gives up (ms). */
export const LOGIN_TIMEOUT_MS = 5 * 60_000;
/** Bound of every call to the provider (seconds, as openid-client takes it). */
const PROVIDER_TIMEOUT_SECONDS = 15;

/**
 * Discovers the issuer (OpenID Connect Discovery 1.0) as a public client (no secret: PKCE,
 * RFC 7636, protects the code). Plain http is allowed for a loopback issuer only (a test provider
 * or a port-forward), as the relay's issuer config allows. Throws ConfigError naming the issuer.
 */
async function discover(issuer: LoginIssuer): Promise<oidc.Configuration> {
  const url = new URL(issuer.issuer);
  const insecure = url.protocol === "http:";
  if (insecure && !isLoopbackHost(url.hostname)) throw new ConfigError(`login issuer ${issuer.issuer} must be https (plain http only on loopback)`);
  try {
    return await oidc.discovery(url, issuer.clientId, undefined, oidc.None(), {
      timeout: PROVIDER_TIMEOUT_SECONDS,
      ...(insecure ? { execute: [oidc.allowInsecureRequests] } : {}),
    });
  } catch (cause) {
    throw new ConfigError(`cannot reach the login issuer ${issuer.issuer}: ${(cause as Error).message}`, { cause });
  }
}

function toStoredLogin(relay: string, issuer: LoginIssuer, tokens: oidc.TokenEndpointResponse, previousRefresh?: string): StoredLogin {
  if (!tokens.id_token) throw new ConfigError(`login issuer ${issuer.issuer} returned no ID token; its login scopes must include openid`);
  const claims = decodeJwt(tokens.id_token);
  if (typeof claims.exp !== "number") throw new ConfigError(`the ID token from ${issuer.issuer} has no expiry`);
  const refreshToken = tokens.refresh_token ?? previousRefresh;
  return {
    relay,
    issuer: issuer.issuer,
    clientId: issuer.clientId,
    idToken: tokens.id_token,
    ...(refreshToken ? { refreshToken } : {}),
    expiresAt: new Date(claims.exp * 1000).toISOString(),
    ...(typeof claims.sub === "string" ? { subject: printable(String(claims.email ?? claims.preferred_username ?? claims.sub), 256) } : {}),
  };
}

/**
 * The authorization code flow with PKCE and a loopback redirect (RFC 8252 section 7.3:
 * `http://127.0.0.1:<free port>/callback`, which providers must accept on any port for a native
 * client). `openBrowser(url)` resolves whether a browser was started; the URL is always passed to
 * `notify` so a user whose browser did not open can paste it. State and nonce are checked by
 * openid-client. Resolves with the tokens; throws Unauthorized when the provider refuses
 * (`error=access_denied`), ConfigError when the issuer cannot be used, and after `timeoutMs`
 * (LOGIN_TIMEOUT_MS, 5 min) an Unauthorized saying nothing came back.
 */
export async function loginWithBrowser(opts: {
  relay: string;
  issuer: LoginIssuer;
  openBrowser: (url: string) => Promise<boolean>;
  notify: (line: string) => void;
  timeoutMs?: number;
}): Promise<StoredLogin> {
  const config = await discover(opts.issuer);
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  let settle!: { resolve: (login: StoredLogin) => void; reject: (error: Error) => void };
  const done = new Promise<StoredLogin>((resolve, reject) => (settle = { resolve, reject }));
  let redirectUri = "";
  let handled = false;
  const server = http.createServer((req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? "/", redirectUri);
    } catch {
      res.writeHead(400, { "content-type": "text/plain" }).end("bad request");
      return;
    }
    // Only the callback that carries this login's state counts: another local process (or a
    // favicon request, or a second visit) must not end the login before the browser comes back.
    if (url.pathname !== "/callback" || handled || !sameText(url.searchParams.get("state"), state)) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    handled = true;
    oidc.authorizationCodeGrant(config, url, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true })
      .then((tokens) => {
        const login = toStoredLogin(opts.relay, opts.issuer, tokens);
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" })
          .end(page(`Logged in to ${opts.relay}${login.subject ? ` as ${login.subject}` : ""}. You can close this tab and return to the terminal.`));
        settle.resolve(login);
      }, (error: Error & { error?: string; error_description?: string }) => {
        const why = error.error ? `${error.error}${error.error_description ? `: ${error.error_description}` : ""}` : error.message;
        res.writeHead(400, { "content-type": "text/html; charset=utf-8" }).end(page(`Login failed: ${why}. Return to the terminal.`));
        settle.reject(new Unauthorized(`login at ${opts.issuer.issuer} failed: ${why}; run arcproxy login again`, { cause: error }));
      });
  });
  server.headersTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  redirectUri = `http://127.0.0.1:${(server.address() as { port: number }).port}/callback`;
  const timeoutMs = opts.timeoutMs ?? LOGIN_TIMEOUT_MS;
  const timer = setTimeout(() => settle.reject(new Unauthorized(`no login came back from ${opts.issuer.issuer} within ${timeoutMs / 1000}s; run arcproxy login again (or arcproxy login --device)`)), timeoutMs);
  try {
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: opts.issuer.scopes.join(" "),
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      state,
      nonce,
    }).href;
    const opened = await opts.openBrowser(url);
    opts.notify(opened ? `Your browser has been opened to log in. If it did not open, visit:\n\n  ${printable(url)}\n` : `Open this URL in a browser to log in:\n\n  ${printable(url)}\n`);
    return await done;
  } finally {
    clearTimeout(timer);
    server.closeAllConnections();
    server.close();
  }
}

/**
 * The device authorization grant (RFC 8628) for a machine without a browser: tells the user where
 * to go and which code to enter, then polls at the provider's interval until they did, the code
 * expired, or `timeoutMs` passed. Throws Unauthorized (denied, expired) or ConfigError (the issuer
 * has no device endpoint).
 */
export async function loginWithDeviceCode(opts: { relay: string; issuer: LoginIssuer; notify: (line: string) => void; timeoutMs?: number }): Promise<StoredLogin> {
  const config = await discover(opts.issuer);
  if (!config.serverMetadata().device_authorization_endpoint) {
    throw new ConfigError(`login issuer ${opts.issuer.issuer} offers no device login; run arcproxy login without --device`);
  }
  const device = await oidc.initiateDeviceAuthorization(config, { scope: opts.issuer.scopes.join(" ") });
  opts.notify(`To log in, visit ${printable(device.verification_uri_complete ?? device.verification_uri)} and enter the code ${printable(device.user_code, 64)}`);
  const signal = AbortSignal.timeout(Math.min(opts.timeoutMs ?? LOGIN_TIMEOUT_MS, device.expires_in * 1000));
  try {
    return toStoredLogin(opts.relay, opts.issuer, await oidc.pollDeviceAuthorizationGrant(config, device, undefined, { signal }));
  } catch (error) {
    const code = (error as { error?: string }).error;
    const why = code ?? (signal.aborted ? "the code expired before it was entered" : (error as Error).message);
    throw new Unauthorized(`device login at ${opts.issuer.issuer} failed: ${why}; run arcproxy login --device again`, { cause: error });
  }
}

/**
 * Trades the refresh token for a new ID token (OpenID Connect Core 1.0 section 12). Throws
 * Unauthorized saying to run `arcproxy login` when there is no refresh token or the provider
 * refuses it (`invalid_grant`: expired, revoked, or used by another process already).
 */
export async function refreshLogin(login: StoredLogin): Promise<StoredLogin> {
  const again = `your login to ${login.relay} has expired; run arcproxy login`;
  if (!login.refreshToken) throw new Unauthorized(again);
  const issuer = { issuer: login.issuer, clientId: login.clientId, scopes: [] };
  const config = await discover(issuer);
  try {
    return toStoredLogin(login.relay, issuer, await oidc.refreshTokenGrant(config, login.refreshToken), login.refreshToken);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as { error?: string }).error;
    // The provider's OAuth error code says it all; its body object would only add noise to the message.
    if (code) throw new Unauthorized(`${again} (the provider said ${code})`);
    throw new Unauthorized(again, { cause: error });
  }
}

function page(message: string): string {
  const text = message.replace(/[&<>"]/g, (ch) => `&#${ch.charCodeAt(0)};`);
  return `<!doctype html><meta charset="utf-8"><title>arcproxy login</title><p>${text}</p>\n`;
}

/** Constant-time comparison of the callback's state with ours. */
function sameText(given: string | null, expected: string): boolean {
  const a = Buffer.from(given ?? "");
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Revokes the login's refresh token at its provider (RFC 7009) so a copy of the file is worthless.
 * Resolves "revoked", "unsupported" (no revocation endpoint, or no refresh token) or the reason it
 * failed; never throws (logging out locally must work with the provider unreachable).
 */
export async function revokeLogin(login: StoredLogin): Promise<"revoked" | "unsupported" | { failed: string }> {
  if (!login.refreshToken) return "unsupported";
  try {
    const config = await discover({ issuer: login.issuer, clientId: login.clientId, scopes: [] });
    if (!config.serverMetadata().revocation_endpoint) return "unsupported";
    await oidc.tokenRevocation(config, login.refreshToken, { token_type_hint: "refresh_token" });
    return "revoked";
  } catch (error) {
    return { failed: printable((error as { error?: string }).error ?? (error as Error).message, 200) };
  }
}
