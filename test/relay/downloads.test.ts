// The relay serves release binaries from --downloads-dir, signed; install.sh and arcproxy update install nothing that does not verify.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHash, generateKeyPairSync } from "node:crypto";
import { CompactSign, importPKCS8 } from "jose";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRelayConnection, serializeDownloadsDocument, verifyDownloadsDocument, DOWNLOADS_PATHS, type DownloadsDocument } from "../../lib/client/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { ArcproxyTooOld, checkArcproxyVersion, compareVersions, publicKeySha256, updateSelf } from "../../lib/proxy/index.ts";
import { startRelay, type RunningRelay } from "../../lib/relay/index.ts";

setDefaultTimeout(30_000);
const ROOT = join(import.meta.dir, "..", "..");

let dir: string;
let downloads: string;
let relay: RunningRelay;

/**
 * A stand-in for the compiled arcproxy (building the real one for every platform takes minutes;
 * test/e2e/newcomer.e2e.test.ts installs the real one): a script that records how install.sh called it.
 */
function fakeArcproxy(tag: string): string {
  return `#!/bin/sh\n# fake arcproxy ${tag}\necho "$@" >> "$HOME/arcproxy-calls"\n`;
}

async function layout(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, ".."), { recursive: true });
    await writeFile(join(root, path), text, { mode: 0o755 });
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-downloads-"));
  downloads = join(dir, "dist");
  await layout(downloads, {
    "VERSION": "1.2.3\n",
    "linux-amd64/arcproxy": fakeArcproxy("linux-amd64"),
    "linux-arm64/arcproxy": fakeArcproxy("linux-arm64"),
    "darwin-arm64/arcproxy": fakeArcproxy("darwin-arm64"),
    "windows-amd64/arcproxy.exe": fakeArcproxy("windows-amd64"),
    "linux-amd64/arcagent": fakeArcproxy("agent"),
    "linux-amd64/notes.txt": "not a binary",
    "images/arcrelay.tar": "not a platform folder",
  });
  relay = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "data"), downloadsDir: downloads, version: "1.2.3", minArcproxyVersion: "1.2.0", logger: silentLogger });
});

afterAll(async () => {
  await relay?.close();
  await rm(dir, { recursive: true, force: true });
});

const sha256 = (text: string | Buffer) => createHash("sha256").update(text).digest("hex");

describe("the relay's downloads", () => {
  test("GET /v1/downloads/ lists each binary with os, arch, version, size and sha256, and nothing else in the folder", async () => {
    const doc = (await (await fetch(`${relay.url}/v1/downloads/`)).json()) as DownloadsDocument;
    expect(doc.relay).toBe(relay.url);
    expect(doc.version).toBe("1.2.3");
    expect(doc.files.map((f) => `${f.name} ${f.os}-${f.arch}`)).toEqual([
      "arcproxy darwin-arm64", "arcagent linux-amd64", "arcproxy linux-amd64", "arcproxy linux-arm64", "arcproxy windows-amd64",
    ]);
    const linux = doc.files.find((f) => f.name === "arcproxy" && f.os === "linux" && f.arch === "amd64")!;
    const bytes = fakeArcproxy("linux-amd64");
    expect(linux).toEqual({ name: "arcproxy", os: "linux", arch: "amd64", version: "1.2.3", size: bytes.length, sha256: sha256(bytes), path: "/v1/downloads/arcproxy/linux-amd64" });
  });

  test("GET /v1/downloads/arcproxy/<os>-<arch> streams the file with its length and checksum; .exe for windows", async () => {
    const res = await fetch(`${relay.url}/v1/downloads/arcproxy/linux-arm64`);
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body).toBe(fakeArcproxy("linux-arm64"));
    expect(res.headers.get("content-length")).toBe(String(body.length));
    expect(res.headers.get("x-checksum-sha256")).toBe(sha256(body));
    const win = await fetch(`${relay.url}/v1/downloads/arcproxy/windows-amd64`);
    expect(win.headers.get("content-disposition")).toBe('attachment; filename="arcproxy.exe"');
    expect(await win.text()).toBe(fakeArcproxy("windows-amd64"));
  });

  test("an unknown name or platform is a 404 Status that says where the list is", async () => {
    for (const path of ["/v1/downloads/arcproxy/plan9-amd64", "/v1/downloads/kubectl/linux-amd64", "/v1/downloads/arcproxy/..%2f..%2fdata"]) {
      const res = await fetch(`${relay.url}${path}`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { message: string }).message).toContain("/v1/downloads/");
    }
  });

  test("the signed list verifies with the key at the well-known URL and says the same as the plain list", async () => {
    const jws = await (await fetch(`${relay.url}${DOWNLOADS_PATHS.signed}`)).text();
    const { keys } = (await (await fetch(`${relay.url}${DOWNLOADS_PATHS.publicKey}`)).json()) as { keys: import("jose").JWK[] };
    expect(keys).toHaveLength(1);
    expect(keys[0]!.d).toBeUndefined();
    expect(publicKeySha256(keys[0]!)).toBe(relay.downloads!.publicKeySha256);
    const doc = await verifyDownloadsDocument(jws, keys[0]!, relay.url);
    expect(doc.files).toEqual(((await (await fetch(`${relay.url}/v1/downloads/`)).json()) as DownloadsDocument).files);
    await expect(verifyDownloadsDocument(jws, keys[0]!, "https://other.example.com")).rejects.toThrow("is for " + relay.url);
    const [h, p, s] = jws.split(".");
    const forged = `${h}.${Buffer.from(Buffer.from(p!, "base64url").toString().replace(/"size":\d+/, '"size":1')).toString("base64url")}.${s}`;
    await expect(verifyDownloadsDocument(forged, keys[0]!, relay.url)).rejects.toThrow("does not verify");
  });

  test("the signing key lives in the data dir (0600) and survives a restart", async () => {
    const file = join(dir, "data", "downloads-signing-key.jwk");
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const again = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "data"), downloadsDir: downloads, logger: silentLogger });
    try {
      expect(again.downloads!.publicKeySha256).toBe(relay.downloads!.publicKeySha256);
    } finally {
      await again.close();
    }
  });

  test("without --downloads-dir every download route is a 404 that names the flag", async () => {
    const plain = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "plain"), logger: silentLogger });
    try {
      for (const path of ["/v1/downloads/", DOWNLOADS_PATHS.signed, DOWNLOADS_PATHS.publicKey, "/v1/downloads/arcproxy/linux-amd64"]) {
        const res = await fetch(`${plain.url}${path}`);
        expect(res.status).toBe(404);
        expect(((await res.json()) as { message: string }).message).toContain("--downloads-dir");
      }
    } finally {
      await plain.close();
    }
  });

  test("a folder with no binaries stops the relay at start with what to put there", async () => {
    await mkdir(join(dir, "empty"), { recursive: true });
    await expect(startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "e"), downloadsDir: join(dir, "empty"), logger: silentLogger })).rejects.toThrow("holds no binaries");
  });
});

/** Runs the install.sh the relay serves, as `curl -fsSL URL/install.sh | sh` does, in a fresh HOME. */
/**
 * Runs the relay's install.sh with sh. `terminal`: on a pseudo-terminal (util-linux `script`), as
 * `curl ... | sh` typed by a person runs, where install.sh shows a progress bar.
 */
async function runInstall(opts: { from?: RunningRelay; scriptUrl?: string; env?: Record<string, string>; terminal?: boolean } = {}) {
  const home = await mkdtemp(join(tmpdir(), "arc-install-home-"));
  const script = await (await fetch(opts.scriptUrl ?? `${(opts.from ?? relay).url}/install.sh`)).text();
  const scriptFile = join(home, "install.sh");
  await writeFile(scriptFile, script);
  const proc = Bun.spawn(opts.terminal ? ["script", "-qec", `sh ${scriptFile}`, "/dev/null"] : ["sh", scriptFile], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, ARC_INSTALL_DIR: join(home, "bin"), ...opts.env },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const installed = await readFile(join(home, "bin", "arcproxy"), "utf8").catch(() => undefined);
  const calls = await readFile(join(home, "arcproxy-calls"), "utf8").catch(() => "");
  return { home, stdout, stderr, code, installed, calls };
}

describe("install.sh", () => {
  test("installs the verified arcproxy for this machine and has it remember the relay and its key", async () => {
    const r = await runInstall();
    expect(r.stderr).toContain(`arcproxy 1.2.3 installed to ${join(r.home, "bin", "arcproxy")}`);
    expect(r.code).toBe(0);
    expect(r.installed).toBe(fakeArcproxy("linux-amd64"));
    expect(((await stat(join(r.home, "bin", "arcproxy"))).mode & 0o111) !== 0).toBe(true);
    expect(r.calls.trim()).toBe(`config set-relay ${relay.url} --downloads-key-sha256 ${relay.downloads!.publicKeySha256}`);
    // This relay offers no login: the next step named is a token from its admin, not arcproxy login.
    expect(r.stderr).toContain("next, set ARC_TOKEN to a token from the relay's admin (arcrelay token create)");
  });

  test("installs the build for ARC_OS/ARC_ARCH, and says what the relay has for a platform it lacks", async () => {
    expect((await runInstall({ env: { ARC_ARCH: "arm64" } })).installed).toBe(fakeArcproxy("linux-arm64"));
    const r = await runInstall({ env: { ARC_OS: "darwin", ARC_ARCH: "amd64" } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("the relay serves no arcproxy for darwin-amd64");
  });

  test("a pinned key that is not the relay's is refused and nothing is installed", async () => {
    const r = await runInstall({ env: { ARC_DOWNLOADS_KEY_SHA256: "0".repeat(64) } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`not the pinned ARC_DOWNLOADS_KEY_SHA256 ${"0".repeat(64)}; nothing was installed`);
    expect(r.installed).toBeUndefined();
  });

  test("an openssl that cannot verify Ed25519 (macOS's LibreSSL) is named with what to install; ARC_OPENSSL picks an OpenSSL 3", async () => {
    // A stand-in for LibreSSL's `openssl` (Debian has no LibreSSL package): it answers `version` as
    // macOS's does and, like LibreSSL's pkeyutl, knows no -rawin.
    const bin = await mkdtemp(join(tmpdir(), "arc-libressl-"));
    await writeFile(join(bin, "openssl"), `#!/bin/sh\nif [ "$1" = version ]; then echo "LibreSSL 3.3.6"; exit 0; fi\necho "usage: pkeyutl [-verify] [-pubin] [-inkey file] [-sigfile file]" >&2\nexit 1\n`, { mode: 0o755 });
    const path = `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`;
    const refused = await runInstall({ env: { PATH: path } });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("needs OpenSSL 3 (this machine has: LibreSSL 3.3.6)");
    expect(refused.stderr).toContain("set ARC_OPENSSL to its path");
    expect(refused.installed).toBeUndefined();
    const wrongPick = await runInstall({ env: { PATH: path, ARC_OPENSSL: join(bin, "openssl") } });
    expect(wrongPick.stderr).toContain(`ARC_OPENSSL=${join(bin, "openssl")} is not an OpenSSL 3`);
    expect(wrongPick.installed).toBeUndefined();
    const realOpenssl = Bun.which("openssl")!;
    const picked = await runInstall({ env: { PATH: path, ARC_OPENSSL: realOpenssl } });
    expect(picked.stderr).toContain("arcproxy 1.2.3 installed to");
    expect(picked.installed).toBe(fakeArcproxy("linux-amd64"));
    await rm(bin, { recursive: true, force: true });
  });

  test("a download that does not end (a cache or proxy gone wrong) is cut one byte past the signed size and refused", async () => {
    // A stand-in relay (the real one serves no byte past the signed size): the real install.sh,
    // a list signed with a key of its own, and an endless body for the binary.
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const binary = Buffer.from(fakeArcproxy("endless"));
    const chunk = new Uint8Array(1 << 20);
    let base = "";
    const standIn: ReturnType<typeof Bun.serve> = Bun.serve({
      port: 0, hostname: "127.0.0.1",
      async fetch(req: Request): Promise<Response> {
        const url = new URL(req.url);
        if (url.pathname === "/install.sh") {
          const script = await readFile(join(ROOT, "lib", "relay", "install.sh"), "utf8");
          return new Response(script.replace("@ARC_RELAY@", base).replace("@ARC_DOWNLOADS_KEY_PEM@", publicKey.export({ type: "spki", format: "pem" }).toString().trim()));
        }
        if (url.pathname === "/v1/downloads/index.jws") {
          const doc = serializeDownloadsDocument({ relay: base, version: "9.9.9", issuedAt: new Date().toISOString(), files: [
            { name: "arcproxy", os: "linux", arch: "amd64", version: "9.9.9", size: binary.length, sha256: sha256(binary), path: "/v1/downloads/arcproxy/linux-amd64" },
          ] });
          const key = await importPKCS8(privateKey.export({ type: "pkcs8", format: "pem" }).toString(), "EdDSA");
          return new Response(await new CompactSign(new TextEncoder().encode(doc)).setProtectedHeader({ alg: "EdDSA", typ: "cluster-connect-downloads+jws" }).sign(key));
        }
        if (url.pathname === "/v1/downloads/arcproxy/linux-amd64") return new Response(new ReadableStream({ pull(c) { c.enqueue(chunk); } }));
        return new Response("not found", { status: 404 });
      },
    });
    base = `http://127.0.0.1:${standIn.port}`;
    try {
      const r = await runInstall({ scriptUrl: `${base}/install.sh`, env: { ARC_OS: "linux", ARC_ARCH: "amd64" } });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`the downloaded arcproxy is ${binary.length + 1} bytes, the signed list says ${binary.length}; nothing was installed`);
      expect(r.installed).toBeUndefined();
    } finally {
      standIn.stop(true);
    }
  });

  test("with busybox's wget and no curl (Alpine), on a terminal: installs (busybox wget has no --show-progress)", async () => {
    // A PATH of this machine's tools without curl or GNU wget, and busybox as wget.
    const bin = await mkdtemp(join(tmpdir(), "arc-busybox-wget-"));
    for (const dir of ["/usr/bin", "/bin"]) {
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        if (name !== "curl" && name !== "wget") await symlink(join(dir, name), join(bin, name)).catch(() => undefined);
      }
    }
    await symlink(Bun.which("busybox")!, join(bin, "wget"));
    try {
      const r = await runInstall({ terminal: true, env: { PATH: bin } });
      expect({ code: r.code, installed: r.installed }).toEqual({ code: 0, installed: fakeArcproxy("linux-amd64") });
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  });

  test("an OpenSSL 3 that lists Ed25519 but cannot run it (a FIPS-only build) is refused when chosen", async () => {
    // A stand-in: the machine's OpenSSL for everything but pkeyutl -verify, which fails as a FIPS-only provider does.
    const bin = await mkdtemp(join(tmpdir(), "arc-fips-"));
    const wrapper = join(bin, "openssl");
    await writeFile(wrapper, `#!/bin/sh\nif [ "$1" = pkeyutl ]; then echo "pkeyutl: unsupported algorithm" >&2; exit 1; fi\nexec ${Bun.which("openssl")} "$@"\n`, { mode: 0o755 });
    try {
      const r = await runInstall({ env: { ARC_OPENSSL: wrapper } });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`ARC_OPENSSL=${wrapper} is not an OpenSSL 3 that can verify Ed25519 signatures and hash SHA-256`);
      expect(r.installed).toBeUndefined();
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  });

  test("a list signed by another key (another relay's install.sh) does not verify and nothing is installed", async () => {
    const other = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "other"), downloadsDir: downloads, logger: silentLogger });
    try {
      const r = await runInstall({ from: other, env: { ARC_RELAY: relay.url } });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("does not verify with key");
      expect(r.installed).toBeUndefined();
    } finally {
      await other.close();
    }
  });

  test("a binary changed after the relay signed it (other bytes, same size; or other size) is refused and nothing is installed", async () => {
    const file = join(downloads, "linux-amd64", "arcproxy");
    const original = await readFile(file, "utf8");
    try {
      await writeFile(file, original.replace("linux-amd64", "LINUX-AMD64"));
      const same = await runInstall();
      expect(same.code).toBe(1);
      expect(same.stderr).toMatch(/has SHA-256 [0-9a-f]{64}, the signed list says [0-9a-f]{64}; nothing was installed/);
      expect(same.installed).toBeUndefined();
      await writeFile(file, original + "# appended\n");
      const longer = await runInstall();
      expect(longer.code).toBe(1);
      expect(longer.stderr).toContain("install.sh: could not download");
      const status = (await (await fetch(`${relay.url}/v1/downloads/arcproxy/linux-amd64`)).json()) as { message: string; code: number };
      expect(status.code).toBe(503);
      expect(status.message).toContain("changed since the relay signed its list of downloads; the relay's admin restarts the relay");
      expect(longer.installed).toBeUndefined();
    } finally {
      await writeFile(file, original);
    }
  });

  test("the copy kept in the repository needs a relay, and refuses plain http off loopback", async () => {
    const run = async (env: Record<string, string>) => {
      const proc = Bun.spawn(["sh", join(ROOT, "install.sh")], { stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH ?? "", HOME: dir, ...env } });
      return { stderr: await new Response(proc.stderr).text(), code: await proc.exited };
    };
    expect(await run({})).toEqual({ code: 1, stderr: expect.stringContaining("no relay") });
    expect(await run({ ARC_RELAY: "http://relay.example.com" })).toEqual({ code: 1, stderr: expect.stringContaining("must be an https:// URL") });
    // Look-alikes of loopback, user info and shell characters never pass as a relay.
    expect(await run({ ARC_RELAY: "http://localhost.evil.example" })).toEqual({ code: 1, stderr: expect.stringContaining("must be an https:// URL") });
    expect(await run({ ARC_RELAY: "http://127.0.0.1@evil.example" })).toEqual({ code: 1, stderr: expect.stringContaining("must be a plain URL") });
    expect(await run({ ARC_RELAY: "https://relay.example.com/$(touch /tmp/pwned)" })).toEqual({ code: 1, stderr: expect.stringContaining("must be a plain URL") });
  });

  test("the copy kept in the repository fetches the relay's key when run with ARC_RELAY", async () => {
    const home = await mkdtemp(join(tmpdir(), "arc-install-home-"));
    const proc = Bun.spawn(["sh", join(ROOT, "install.sh")], {
      stdout: "pipe", stderr: "pipe",
      env: { PATH: process.env.PATH ?? "", HOME: home, ARC_RELAY: relay.url, ARC_INSTALL_DIR: join(home, "bin"), ARC_DOWNLOADS_KEY_SHA256: relay.downloads!.publicKeySha256 },
    });
    const stderr = await new Response(proc.stderr).text();
    expect(stderr).toContain("installed");
    expect(await proc.exited).toBe(0);
    expect(await readFile(join(home, "bin", "arcproxy"), "utf8")).toBe(fakeArcproxy("linux-amd64"));
  });
});

describe("arcproxy update", () => {
  const platform = { os: "linux", arch: "amd64" };
  const conn = () => createRelayConnection(relay.url, {});

  test("replaces the file with the relay's verified binary, atomically, keeping it executable", async () => {
    const target = join(dir, "update-bin", "arcproxy");
    await layout(join(dir, "update-bin"), { arcproxy: "old arcproxy" });
    const progress: number[] = [];
    const result = await updateSelf({ relay: conn(), target, currentVersion: "1.0.0", platform, onProgress: (received) => progress.push(received) });
    expect(result).toEqual({ updated: true, version: "1.2.3", sha256: sha256(fakeArcproxy("linux-amd64")), keySha256: relay.downloads!.publicKeySha256 });
    expect(await readFile(target, "utf8")).toBe(fakeArcproxy("linux-amd64"));
    expect((await stat(target)).mode & 0o777).toBe(0o755);
    expect(progress.at(-1)).toBe(fakeArcproxy("linux-amd64").length);
  });

  test("an older version than the running one is refused unless forced (a rolled-back relay, a replayed list)", async () => {
    const target = join(dir, "update-older", "arcproxy");
    await layout(join(dir, "update-older"), { arcproxy: "newer arcproxy" });
    await expect(updateSelf({ relay: conn(), target, currentVersion: "2.0.0", platform })).rejects.toThrow("serves arcproxy 1.2.3, older than this 2.0.0; nothing was changed (pass --force");
    expect(await readFile(target, "utf8")).toBe("newer arcproxy");
    expect((await updateSelf({ relay: conn(), target, currentVersion: "2.0.0", platform, force: true })).updated).toBe(true);
  });

  test("the relay's current version is not downloaded again", async () => {
    const target = join(dir, "update-same", "arcproxy");
    await layout(join(dir, "update-same"), { arcproxy: "current" });
    expect((await updateSelf({ relay: conn(), target, currentVersion: "1.2.3", platform })).updated).toBe(false);
    expect(await readFile(target, "utf8")).toBe("current");
  });

  test("a binary that does not match the signed list, or a relay whose key is not the pinned one, changes nothing", async () => {
    const target = join(dir, "update-bad", "arcproxy");
    await layout(join(dir, "update-bad"), { arcproxy: "old arcproxy" });
    const file = join(downloads, "linux-amd64", "arcproxy");
    const original = await readFile(file, "utf8");
    try {
      await writeFile(file, original.replace("linux-amd64", "LINUX-AMD64"));
      await expect(updateSelf({ relay: conn(), target, currentVersion: "1.0.0", platform })).rejects.toThrow("the signed list says");
    } finally {
      await writeFile(file, original);
    }
    await expect(updateSelf({ relay: conn(), target, currentVersion: "1.0.0", platform, pinnedKeySha256: "f".repeat(64) })).rejects.toThrow("remembered at install; nothing was changed");
    expect(await readFile(target, "utf8")).toBe("old arcproxy");
    expect((await import("node:fs/promises")).readdir(join(dir, "update-bad"))).resolves.toEqual(["arcproxy"]);
  });

  test("the CLI refuses to replace a run from sources and names what to do", async () => {
    const proc = Bun.spawn([process.execPath, join(ROOT, "cmd", "arcproxy.ts"), "update", "--relay", relay.url], { stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH ?? "", HOME: dir } });
    expect(await new Response(proc.stderr).text()).toContain("this arcproxy is not a compiled release");
    expect(await proc.exited).toBe(1);
  });

  test("the CLI replaces --path and says which version and key", async () => {
    const target = join(dir, "update-cli", "arcproxy");
    await layout(join(dir, "update-cli"), { arcproxy: "old" });
    await chmod(target, 0o700);
    const proc = Bun.spawn([process.execPath, join(ROOT, "cmd", "arcproxy.ts"), "update", "--relay", relay.url, "--path", target], { stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH ?? "", HOME: dir } });
    const stdout = await new Response(proc.stdout).text();
    expect(await proc.exited).toBe(0);
    expect(stdout).toBe(`arcproxy 1.2.3 installed at ${target} (SHA-256 ${sha256(fakeArcproxy(process.arch === "arm64" ? "linux-arm64" : "linux-amd64"))}, list signed by key ${relay.downloads!.publicKeySha256})\n`);
  });
});

describe("the relay's public URL", () => {
  test("is normalised as clients compare it, and refused with user info or a query", async () => {
    const odd = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "odd"), publicUrl: "https://Relay.Example.COM:443/", logger: silentLogger });
    try {
      expect(odd.url).toBe("https://relay.example.com");
    } finally {
      await odd.close();
    }
    await expect(startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "odd2"), publicUrl: "https://user:pw@relay.example.com", logger: silentLogger })).rejects.toThrow("without user info, query or fragment");
  });
});

describe("the relay's minimum arcproxy version", () => {
  test("versions compare part by part, a pre-release below its release, build metadata ignored", () => {
    expect(compareVersions("1.10.0", "1.9.9")).toBe(1);
    expect(compareVersions("v1.2.0", "1.2")).toBe(0);
    expect(compareVersions("1.2.0-rc.1", "1.2.0")).toBe(-1);
    expect(compareVersions("1.2.0+abc", "1.2.0+def")).toBe(0);
    expect(compareVersions("0.9.9", "1.0.0")).toBe(-1);
    expect(compareVersions("1.2.0-rc.10", "1.2.0-rc.2")).toBe(1);
    expect(compareVersions("1.2.0-alpha", "1.2.0-alpha.1")).toBe(-1);
    expect(compareVersions("1.2.0-1", "1.2.0-alpha")).toBe(-1);
  });

  test("an older arcproxy is told the version it needs and the command to run; a newer one and a source build pass", async () => {
    const error = await checkArcproxyVersion(conn(), "1.1.9").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ArcproxyTooOld);
    expect((error as Error).message).toBe(`relay ${relay.url} needs arcproxy 1.2.0 or newer; this is 1.1.9. Run: arcproxy update (or curl -fsSL ${relay.url}/install.sh | sh)`);
    await checkArcproxyVersion(conn(), "1.2.0");
    await checkArcproxyVersion(conn(), "dev");
  });
  const conn = () => createRelayConnection(relay.url, {});
});
