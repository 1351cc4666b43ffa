// The --token-command source with real shell commands: caching to 60 s before expiry, ExecCredential, failures.
import { afterAll, afterEach, beforeAll, expect, setSystemTime, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { createTokenSource } from "../../lib/proxy/index.ts";
import { createLogger } from "../../lib/observe/index.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "token-command-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));
afterEach(() => {
  setSystemTime();
});

function signJwt(expSeconds: number): Promise<string> {
  return new SignJWT({ sub: "ci" }).setProtectedHeader({ alg: "HS256" }).setExpirationTime(expSeconds).sign(new TextEncoder().encode("test-secret-0123456789abcdef"));
}

function manualClock(start = Date.now()) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

/** A command that counts its runs in `<name>.count` and prints `<name>.out`. */
async function countingCommand(name: string, output: string, extra = ""): Promise<{ command: string; runs: () => Promise<number> }> {
  const out = join(dir, `${name}.out`);
  const count = join(dir, `${name}.count`);
  await writeFile(out, output);
  const command = `n=$(cat '${count}' 2>/dev/null || echo 0); echo $((n + 1)) > '${count}'; ${extra} cat '${out}'`;
  return { command, runs: async () => Number((await readFile(count, "utf8").catch(() => "0")).trim()) };
}

test("a JWT on stdout is reused until 60 s before its exp, then the command runs again", async () => {
  const clock = manualClock();
  const exp = Math.floor(clock.now() / 1000) + 120;
  const first = await signJwt(exp);
  const { command, runs } = await countingCommand("jwt", `${first}\n`);
  const source = createTokenSource({ kind: "command", command }, { now: clock.now });

  expect(await source.getToken()).toBe(first);
  clock.advance(30_000);
  expect(await source.getToken()).toBe(first);
  expect(await runs()).toBe(1);

  const second = await signJwt(exp + 600);
  await writeFile(join(dir, "jwt.out"), second);
  clock.advance(31_000); // 59 s before exp
  expect(await source.getToken()).toBe(second);
  expect(await runs()).toBe(2);
  expect((await source.getCredential()).expiresAt).toEqual(new Date((exp + 600) * 1000));
});

test("with the default clock (Date.now): a 2 s token is fetched again after it is half gone", async () => {
  const start = Date.now();
  setSystemTime(start);
  const { command, runs } = await countingCommand("short", await signJwt(Math.floor(start / 1000) + 2));
  const source = createTokenSource({ kind: "command", command });
  await source.getToken();
  await source.getToken();
  expect(await runs()).toBe(1);
  setSystemTime(start + 1100);
  await source.getToken();
  expect(await runs()).toBe(2);
});

test("an ExecCredential on stdout: status.token, cached until 60 s before status.expirationTimestamp", async () => {
  const clock = manualClock();
  const expiresAt = new Date(clock.now() + 90_000);
  const credential = {
    apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential",
    status: { token: "opaque-exec-token", expirationTimestamp: expiresAt.toISOString() },
  };
  const { command, runs } = await countingCommand("exec", JSON.stringify(credential, null, 2));
  const source = createTokenSource({ kind: "command", command }, { now: clock.now });
  expect(await source.getCredential()).toEqual({ token: "opaque-exec-token", expiresAt });
  clock.advance(29_000);
  await source.getToken();
  expect(await runs()).toBe(1);
  clock.advance(2_000);
  await source.getToken();
  expect(await runs()).toBe(2);
});

test("concurrent getToken calls share one run", async () => {
  const { command, runs } = await countingCommand("shared", "shared-token", "sleep 0.2;");
  const source = createTokenSource({ kind: "command", command });
  const tokens = await Promise.all(Array.from({ length: 8 }, () => source.getToken()));
  expect(new Set(tokens)).toEqual(new Set(["shared-token"]));
  expect(await runs()).toBe(1);
});

test("a failing command: the error has its exit status and the tail of its stderr", async () => {
  const source = createTokenSource({ kind: "command", command: "echo 'starting' >&2; echo 'ERROR: please run az login' >&2; exit 3" });
  await expect(source.getToken()).rejects.toThrow("token command echo exited with status 3: starting\nERROR: please run az login");
});

test("a command that hangs is killed after its timeout, with whatever it started", async () => {
  const source = createTokenSource({ kind: "command", command: "sleep 30; echo late", timeoutMs: 200 });
  const started = Date.now();
  await expect(source.getToken()).rejects.toThrow("token command sleep did not finish within 0.2s");
  expect(Date.now() - started).toBeLessThan(2000);
});

test.each([
  ["", "printed nothing on stdout"],
  ["two words", "printed more than one word"],
  ['{"status":{}}', "printed JSON without status.token"],
  ['{"status":{"token":"t","expirationTimestamp":"soon"}}', "expirationTimestamp is not an RFC 3339 time"],
  ["{not json", "is not JSON"],
])("unusable output %p is an error that says why", async (output, message) => {
  const out = join(dir, "bad.out");
  await writeFile(out, output);
  const source = createTokenSource({ kind: "command", command: `cat '${out}'` });
  await expect(source.getToken()).rejects.toThrow(message);
});

test("a failed refresh keeps the current token while it is still valid, then fails", async () => {
  const clock = manualClock();
  const exp = Math.floor(clock.now() / 1000) + 100;
  const failFlag = join(dir, "fail-now");
  const token = await signJwt(exp);
  const out = join(dir, "fallback.out");
  await writeFile(out, token);
  const lines: string[] = [];
  const logger = createLogger({ component: "test", level: "warn", write: (line) => lines.push(line) });
  const source = createTokenSource({ kind: "command", command: `[ -e '${failFlag}' ] && { echo 'vault sealed' >&2; exit 1; }; cat '${out}'` }, { now: clock.now, logger });
  expect(await source.getToken()).toBe(token);

  await writeFile(failFlag, "");
  clock.advance(50_000); // refresh due (60 s before exp), token still valid for 50 s
  expect(await source.getToken()).toBe(token);
  expect(lines).toHaveLength(1);
  expect(JSON.parse(lines[0]!)).toMatchObject({ level: "warn", msg: "token refresh failed; using the current token until it expires" });
  expect(lines[0]).not.toContain(token);
  clock.advance(51_000); // now expired
  await expect(source.getToken()).rejects.toThrow("vault sealed");
});
