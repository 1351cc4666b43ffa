// Opens a URL in the user's browser: $BROWSER when set (as git, gh and kubelogin honour it), else the platform's opener.
import { spawn } from "node:child_process";

/**
 * Starts the browser on `url` and resolves whether it could be started: `$BROWSER` (a command; the
 * URL is its last argument), else `open` (macOS), `rundll32 url.dll,FileProtocolHandler` (Windows,
 * which unlike `start` needs no shell), `xdg-open` elsewhere. A missing opener (a headless machine)
 * resolves false; the caller prints the URL in every case. Never throws.
 */
export function openBrowser(url: string, env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): Promise<boolean> {
  const [command, ...args] = env.BROWSER
    ? [...env.BROWSER.split(" ").filter(Boolean), url]
    : platform === "darwin" ? ["open", url]
    : platform === "win32" ? ["rundll32", "url.dll,FileProtocolHandler", url]
    : ["xdg-open", url];
  return new Promise((resolve) => {
    try {
      const child = spawn(command!, args, { stdio: "ignore", detached: true });
      child.once("error", () => resolve(false));
      child.once("spawn", () => {
        child.unref();
        resolve(true);
      });
    } catch {
      resolve(false); // a command that cannot even be spawned: the URL is printed instead
    }
  });
}
