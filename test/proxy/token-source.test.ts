// Static and file token sources against real files: rotation is picked up, mistakes name the path.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtemp, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { createTokenSource } from "../../lib/proxy/index.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "token-source-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function signJwt(expSeconds: number, sub = "alice"): Promise<string> {
  return new SignJWT({ sub }).setProtectedHeader({ alg: "HS256" }).setExpirationTime(expSeconds).sign(new TextEncoder().encode("test-secret-0123456789abcdef"));
}

/** A clock the test moves by hand. */
function manualClock(start = Date.now()) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

test("static: the token as given, with the JWT's exp as expiry", async () => {
  const exp = Math.floor(Date.now() / 1000) + 600;
  const jwt = await signJwt(exp);
  const source = createTokenSource({ kind: "static", token: jwt });
  expect(await source.getToken()).toBe(jwt);
  expect((await source.getCredential()).expiresAt?.getTime()).toBe(exp * 1000);
  expect(source.describe()).toBe("static token");
  expect(source.describe()).not.toContain(jwt);
});

test("static: an opaque token has no expiry", async () => {
  const source = createTokenSource({ kind: "static", token: "opaque-token" });
  expect(await source.getCredential()).toEqual({ token: "opaque-token", expiresAt: undefined });
});

test("file: trims, and picks up a rotated file once a second has passed", async () => {
  const path = join(dir, "rotating");
  await writeFile(path, "  first-token\n");
  const clock = manualClock();
  const source = createTokenSource({ kind: "file", path }, { now: clock.now });
  expect(await source.getToken()).toBe("first-token");

  await writeFile(path, "second-token-longer\n");
  clock.advance(500);
  expect(await source.getToken()).toBe("first-token"); // within the second: no stat yet
  clock.advance(600);
  expect(await source.getToken()).toBe("second-token-longer");
  expect(source.describe()).toBe(`token file ${path}`);
});

test("file: rotation by rename (as Kubernetes swaps a mounted token) is picked up without waiting on the real clock", async () => {
  const path = join(dir, "renamed");
  await writeFile(path, "old-token");
  const clock = manualClock();
  const source = createTokenSource({ kind: "file", path }, { now: clock.now });
  expect(await source.getToken()).toBe("old-token");
  const next = join(dir, "renamed.next");
  await writeFile(next, "new-token");
  await Bun.$`mv ${next} ${path}`.quiet();
  clock.advance(1000);
  expect(await source.getToken()).toBe("new-token");
});

test("file: a missing file is an error naming the path, and recovers when the file appears", async () => {
  const path = join(dir, "later");
  const clock = manualClock();
  const source = createTokenSource({ kind: "file", path }, { now: clock.now });
  await expect(source.getToken()).rejects.toThrow(`token file ${path} does not exist`);
  await writeFile(path, "arrived");
  expect(await source.getToken()).toBe("arrived");
  await unlink(path);
  clock.advance(1000);
  await expect(source.getToken()).rejects.toThrow(`token file ${path} does not exist`);
});

test("file: an empty (whitespace only) file is an error naming the path", async () => {
  const path = join(dir, "empty");
  await writeFile(path, " \n\n");
  const source = createTokenSource({ kind: "file", path });
  await expect(source.getToken()).rejects.toThrow(`token file ${path} is empty`);
});

test("file: the JWT's exp is the credential's expiry", async () => {
  const path = join(dir, "jwt");
  const exp = Math.floor(Date.now() / 1000) + 300;
  await writeFile(path, (await signJwt(exp)) + "\n");
  const source = createTokenSource({ kind: "file", path });
  expect((await source.getCredential()).expiresAt).toEqual(new Date(exp * 1000));
});

test.each([
  [{ kind: "static", token: "" }, "the token is empty"],
  [{ kind: "file", path: "" }, "--token-file needs a path"],
  [{ kind: "command", command: "  " }, "--token-command is empty"],
] as const)("a spec that can never work fails at creation: %p", (spec, message) => {
  expect(() => createTokenSource(spec)).toThrow(message);
});
