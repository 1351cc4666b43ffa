// Starts the real OpenID Connect provider (oidc-provider on Node, test/support/oidc-provider.mjs) and Chromium logins against it.
import { join } from "node:path";

export interface RunningProvider {
  issuer: string;
  stop(): Promise<void>;
}

/** Starts the provider on a free loopback port; resolves once it printed its issuer URL (15 s bound). */
export async function startOidcProvider(opts: { idTokenTtlSeconds?: number } = {}): Promise<RunningProvider> {
  const proc = Bun.spawn(["node", join(import.meta.dir, "oidc-provider.mjs"), "--port", "0", "--id-token-ttl", String(opts.idTokenTtlSeconds ?? 600)], {
    stdout: "pipe", stderr: "ignore",
  });
  const reader = proc.stdout.getReader();
  const timer = setTimeout(() => proc.kill(), 15_000);
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`oidc-provider exited (${await proc.exited}) before it printed its issuer`);
    text += new TextDecoder().decode(value);
  }
  clearTimeout(timer);
  reader.releaseLock();
  const { issuer } = JSON.parse(text.split("\n")[0]!) as { issuer: string };
  return {
    issuer,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

/**
 * Goes through the provider's pages in headless Chromium (test/support/browser-login.mjs, run on
 * Node as playwright-core expects), signing in as `login`; resolves with the last page's text.
 */
export async function browserLogin(url: string, login: string, opts: { cancel?: boolean } = {}): Promise<{ code: number; text: string; stderr: string }> {
  const proc = Bun.spawn(["node", join(import.meta.dir, "browser-login.mjs"), "--url", url, "--login", login, ...(opts.cancel ? ["--cancel"] : [])], {
    stdout: "pipe", stderr: "pipe",
  });
  const [text, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, text: text.trim(), stderr };
}
