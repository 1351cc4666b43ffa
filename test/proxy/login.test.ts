// arcproxy login against a real OpenID Connect provider (oidc-provider) through real headless Chromium; then the token is used, refreshed and removed.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveTrustedIssuers } from "../../lib/auth/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { loginFilePath, type StoredLogin } from "../../lib/proxy/index.ts";
import { startRelay, type RunningRelay } from "../../lib/relay/index.ts";
import { browserLogin, startOidcProvider, type RunningProvider } from "../support/oidc-provider.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(60_000);
const ARCPROXY = join(import.meta.dir, "..", "..", "cmd", "arcproxy.ts");

let dir: string;
let provider: RunningProvider;
let relay: RunningRelay;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-login-"));
  provider = await startOidcProvider();
  relay = await startRelay({
    host: "127.0.0.1", port: 0, dataDir: join(dir, "relay"), logger: silentLogger,
    trustedIssuers: resolveTrustedIssuers([{
      issuer: provider.issuer, audiences: ["arcproxy"], usernameClaim: "email", algorithms: ["RS256", "ES256", "EdDSA"],
      login: { clientId: "arcproxy", scopes: ["openid", "email", "profile"] },
    }]),
  });
  await relay.store.addCluster("edge");
  await relay.store.addGrant({ principal: "user:alice@example.com", cluster: "edge", role: "cluster-user" });
}, 60_000);

afterAll(async () => {
  await relay?.close();
  await provider?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A fresh user: own HOME, a $BROWSER that records the URL it is asked to open (Chromium is driven by the test). */
async function freshUser(name: string) {
  const home = join(dir, name);
  const opened = join(home, "browser-url");
  await Bun.write(join(home, "browser.sh"), `#!/bin/sh\nprintf '%s' "$1" > "${opened}"\n`);
  await chmod(join(home, "browser.sh"), 0o755);
  const env = { PATH: process.env.PATH ?? "", HOME: home, BROWSER: join(home, "browser.sh") };
  const spawn = (args: string[]) => Bun.spawn([process.execPath, ARCPROXY, ...args], { stdout: "pipe", stderr: "pipe", env });
  const run = (args: string[]) => {
    const proc = spawn(args);
    return {
      proc,
      done: Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]).then(([stdout, stderr, code]) => ({ stdout, stderr, code })),
    };
  };
  const configDir = join(home, ".config", "cluster-connect");
  return { home, opened, run, spawn, configDir, loginFile: loginFilePath(relay.url, configDir) };
}

async function loginInBrowser(user: Awaited<ReturnType<typeof freshUser>>, args: string[] = ["login", "--relay", relay.url], opts: { cancel?: boolean } = {}) {
  const login = user.run(args);
  await waitFor("arcproxy to open the browser", async () => (await Bun.file(user.opened).exists()), 20_000);
  const browser = await browserLogin(await readFile(user.opened, "utf8"), "alice", opts);
  return { browser, result: await login.done };
}

describe("arcproxy login (browser)", () => {
  let user: Awaited<ReturnType<typeof freshUser>>;
  beforeAll(async () => {
    user = await freshUser("alice");
  });

  test("signs in through Chromium, checks the token with the relay, stores it 0600 and remembers the relay", async () => {
    const { browser, result } = await loginInBrowser(user);
    expect(browser.stderr).toBe("");
    expect(browser.text).toBe(`Logged in to ${relay.url} as alice@example.com. You can close this tab and return to the terminal.`);
    expect(result.stderr).toContain("Your browser has been opened to log in");
    expect(result.stdout).toBe(
      `Logged in to ${relay.url} as alice@example.com (${provider.issuer}); token saved in ${user.loginFile}\nYou may reach: edge. Next: arcproxy --cluster edge\n`,
    );
    expect(result.code).toBe(0);
    expect((await stat(user.loginFile)).mode & 0o777).toBe(0o600);
    expect((await stat(join(user.configDir, "logins"))).mode & 0o777).toBe(0o700);
    const stored = JSON.parse(await readFile(user.loginFile, "utf8")) as StoredLogin;
    expect(stored).toMatchObject({ relay: relay.url, issuer: provider.issuer, clientId: "arcproxy", subject: "alice@example.com" });
    expect(stored.refreshToken).toBeString();
    expect(await readFile(join(user.configDir, "config.yaml"), "utf8")).toBe(`relay: ${relay.url}\n`);
  });

  test("then `arcproxy clusters` needs no flag, no token and no relay", async () => {
    const r = await user.run(["clusters", "-o", "json"]).done;
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toEqual([expect.objectContaining({ name: "edge", connected: false })]);
  });

  test("an ID token past its expiry is refreshed with the refresh token, and the new one is stored", async () => {
    const before = JSON.parse(await readFile(user.loginFile, "utf8")) as StoredLogin;
    // The token itself is still good at the relay; only arcproxy's view of it says it expired, so
    // the refresh is what this tests (the real expiry is in test/e2e/newcomer.e2e.test.ts).
    await writeFile(user.loginFile, JSON.stringify({ ...before, expiresAt: new Date(Date.now() - 1000).toISOString() }), { mode: 0o600 });
    const r = await user.run(["clusters"]).done;
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("edge");
    const after = JSON.parse(await readFile(user.loginFile, "utf8")) as StoredLogin;
    // (the ID token itself may come back byte for byte the same: RS256 is deterministic and iat has whole seconds)
    expect(Date.parse(after.expiresAt)).toBeGreaterThan(Date.now());
    expect((await stat(user.loginFile)).mode & 0o777).toBe(0o600);
  });

  test("an expired or revoked refresh token says to log in again and leaves the file as it was", async () => {
    const good = await readFile(user.loginFile, "utf8");
    const stale = JSON.stringify({ ...JSON.parse(good), refreshToken: "revoked-long-ago", expiresAt: new Date(Date.now() - 1000).toISOString() });
    await writeFile(user.loginFile, stale, { mode: 0o600 });
    try {
      const r = await user.run(["clusters"]).done;
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`arcproxy: your login to ${relay.url} has expired; run arcproxy login (the provider said invalid_grant)\n`);
      expect(await readFile(user.loginFile, "utf8")).toBe(stale);
    } finally {
      await writeFile(user.loginFile, good, { mode: 0o600 });
    }
  });

  test("logout revokes the refresh token at the provider and removes the tokens; then arcproxy says to log in", async () => {
    const stored = JSON.parse(await readFile(user.loginFile, "utf8")) as StoredLogin;
    const out = await user.run(["logout"]).done;
    expect(out.stdout).toBe(`Logged out of ${relay.url} (alice@example.com); the refresh token is revoked at the provider\n`);
    // A copy of the file is worth nothing now: the provider refuses its refresh token.
    const copyDir = join(dir, "copy");
    await Bun.write(loginFilePath(relay.url, copyDir), JSON.stringify({ ...stored, expiresAt: new Date(Date.now() - 1000).toISOString() }));
    const { readLogin, refreshLogin } = await import("../../lib/proxy/index.ts");
    await expect(refreshLogin((await readLogin(relay.url, copyDir))!)).rejects.toThrow("the provider said invalid_grant");
    expect(await Bun.file(user.loginFile).exists()).toBe(false);
    const r = await user.run(["clusters"]).done;
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`arcproxy: no token: run arcproxy login --relay ${relay.url} (or pass --token, or set ARC_TOKEN)\n`);
    expect((await user.run(["logout"]).done).stdout).toBe(`Not logged in to ${relay.url}; nothing to remove\n`);
  });

  test("another local process hitting the callback first (wrong state) neither ends nor breaks the login", async () => {
    const other = await freshUser("forged-callback");
    // This $BROWSER first sends a forged callback to arcproxy's loopback server, then hands the URL on.
    await Bun.write(join(other.home, "browser.sh"), `#!/bin/sh
redirect=$(printf '%s' "$1" | sed -n 's/.*redirect_uri=\\([^&]*\\).*/\\1/p' | sed 's/%3A/:/g; s/%2F/\\//g')
curl -s -o /dev/null "$redirect?code=forged&state=forged"
curl -s -o /dev/null "$redirect?error=access_denied"
printf '%s' "$1" > "${other.opened}"
`);
    const { browser, result } = await loginInBrowser(other);
    expect(browser.text).toContain("Logged in to");
    expect(result.code).toBe(0);
    expect(await Bun.file(other.loginFile).exists()).toBe(true);
  });

  test("cancelling on the provider's page fails the login with the provider's reason and stores nothing", async () => {
    const other = await freshUser("cancel");
    const { browser, result } = await loginInBrowser(other, undefined, { cancel: true });
    expect(browser.text).toContain("Login failed: access_denied");
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`arcproxy: login at ${provider.issuer} failed: access_denied`);
    expect(await Bun.file(other.loginFile).exists()).toBe(false);
  });
});

describe("arcproxy login --device", () => {
  test("prints where to go and the code; the user signs in elsewhere; the token is stored", async () => {
    const user = await freshUser("device");
    const login = { proc: user.spawn(["login", "--device", "--relay", relay.url]) };
    let stderr = "";
    const reader = login.proc.stderr.getReader();
    let url: string | undefined;
    while (!url) {
      const { value, done } = await reader.read();
      if (done) break;
      stderr += new TextDecoder().decode(value);
      url = /visit (\S+) and enter the code (\S+)/.exec(stderr)?.[1];
    }
    reader.releaseLock();
    expect(url).toStartWith(`${provider.issuer}/device`);
    const browser = await browserLogin(url!, "alice");
    expect(browser.stderr).toBe("");
    const [stdout, code] = await Promise.all([new Response(login.proc.stdout).text(), login.proc.exited]);
    expect(stdout).toStartWith(`Logged in to ${relay.url} as alice@example.com`);
    expect(code).toBe(0);
    expect(await Bun.file(user.loginFile).exists()).toBe(true);
  });
});

describe("a relay without a login issuer", () => {
  test("arcproxy login says what the relay's admin must configure", async () => {
    const bare = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "bare"), logger: silentLogger });
    try {
      const user = await freshUser("bare");
      const r = await user.run(["login", "--relay", bare.url]).done;
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`arcproxy: relay ${bare.url} offers no login: its admin adds login: {clientId: ...} to an issuer in arcrelay's --config, or use --token / ARC_TOKEN\n`);
    } finally {
      await bare.close();
    }
  });
});
