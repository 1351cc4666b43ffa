// Go toolchain download: platform names, zip extraction with modes, and one real download.
import { afterAll, describe, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { zipSync } from "fflate";
import { extractZip, findGo, GO_TOOLCHAIN_VERSION, goEnv, goPlatform } from "./go-toolchain.ts";

const tmpDirs: string[] = [];
const makeTmp = async () => {
  const dir = await mkdtemp(join(tmpdir(), "go-toolchain-test-"));
  tmpDirs.push(dir);
  return dir;
};
afterAll(async () => {
  for (const dir of tmpDirs) await rm(dir, { recursive: true, force: true });
});

describe("goPlatform", () => {
  test.each([
    ["linux", "x64", "linux", "amd64"],
    ["linux", "arm64", "linux", "arm64"],
    ["darwin", "arm64", "darwin", "arm64"],
    ["darwin", "x64", "darwin", "amd64"],
    ["win32", "x64", "windows", "amd64"],
  ])("%s/%s downloads the %s-%s toolchain", (platform, arch, os, goArch) => {
    expect(goPlatform(platform, arch)).toEqual({ os, arch: goArch });
  });

  test("an unsupported platform says to install Go by hand", () => {
    expect(() => goPlatform("freebsd", "x64")).toThrow(/install Go/);
    expect(() => goPlatform("linux", "ia32")).toThrow(/install Go/);
  });
});

describe("extractZip", () => {
  const prefix = "golang.org/toolchain@v0.0.1-go1.0.0.test-test/";
  const text = (s: string) => new TextEncoder().encode(s);

  test("writes files under the prefix; bin/ and pkg/tool/ are executable, the rest not", async () => {
    const zip = zipSync({
      [`${prefix}VERSION`]: text("go1.0.0\n"),
      [`${prefix}bin/go`]: text("#!/bin/sh\necho go\n"),
      [`${prefix}pkg/tool/test_test/compile`]: [text("compiler"), { level: 0 }],
      [`${prefix}src/deep/dir/file.go`]: text("package dir\n".repeat(100)),
    });
    const dest = join(await makeTmp(), "go");
    const { files, h1 } = extractZip(zip, dest, prefix);
    expect(files).toBe(4);
    expect(h1).toMatch(/^h1:[A-Za-z0-9+/]{43}=$/);
    expect(await readFile(join(dest, "src/deep/dir/file.go"), "utf8")).toBe("package dir\n".repeat(100));
    const mode = (p: string) => statSync(join(dest, p)).mode & 0o777;
    expect(mode("bin/go") & 0o111).toBe(0o111);
    expect(mode("pkg/tool/test_test/compile") & 0o111).toBe(0o111);
    expect(mode("VERSION") & 0o111).toBe(0);
    expect(await Bun.$`${join(dest, "bin/go")}`.text()).toBe("go\n");
  });

  test("keeps the Unix execute bit a zip entry records outside bin/", async () => {
    // fflate writes "made by Unix" (version 0x0314) and takes the mode from `attrs`.
    const zip = zipSync({ [`${prefix}misc/run.sh`]: [text("#!/bin/sh\n"), { attrs: 0o100755 * 0x10000, os: 3 }] });
    const dest = join(await makeTmp(), "go");
    extractZip(zip, dest, prefix);
    expect(statSync(join(dest, "misc/run.sh")).mode & 0o111).toBe(0o111);
  });

  test("the h1 hash is the one `go mod download` reports for the same module zip", async () => {
    // Sum printed by `GOPROXY=file://... go mod download -json example.com/m@v1.0.0` for this zip.
    const p = "example.com/m@v1.0.0/";
    const zip = zipSync({
      [`${p}go.mod`]: text("module example.com/m\n"),
      [`${p}b/c.txt`]: text("hello\n"),
      [`${p}a.go`]: text("package m\n"),
    });
    expect(extractZip(zip, join(await makeTmp(), "m"), p).h1).toBe("h1:qHvXKdr42nf4s5at+A9mh8vLl0m73AArCcPMqZJukVw=");
  });

  test("the h1 hash does not depend on the order of entries in the zip", async () => {
    const a = { [`${prefix}b`]: text("B"), [`${prefix}a/x`]: text("X") };
    const b = { [`${prefix}a/x`]: text("X"), [`${prefix}b`]: text("B") };
    const dir = await makeTmp();
    expect(extractZip(zipSync(a), join(dir, "1"), prefix).h1).toBe(extractZip(zipSync(b), join(dir, "2"), prefix).h1);
  });

  test("rejects entries outside the prefix and paths that climb out", async () => {
    const dest = join(await makeTmp(), "go");
    expect(() => extractZip(zipSync({ "other/file": text("x") }), dest, prefix)).toThrow(/unexpected zip entry/);
    expect(() => extractZip(zipSync({ [`${prefix}../evil`]: text("x") }), dest, prefix)).toThrow(/unexpected zip entry/);
  });

  test("a truncated download is not a zip", () => {
    const zip = zipSync({ [`${prefix}bin/go`]: text("go") });
    expect(() => extractZip(zip.subarray(0, zip.length - 30), "/nonexistent", prefix)).toThrow(/not a zip/);
  });
});

test(
  `with no usable go installed, findGo downloads go${GO_TOOLCHAIN_VERSION} from the module proxy and it runs`,
  async () => {
    const cacheRoot = await makeTmp();
    const lines: string[] = [];
    const go = await findGo({ forceDownload: true, cacheRoot, log: (l) => lines.push(l) });
    expect(go.startsWith(join(cacheRoot, "toolchain"))).toBe(true);
    const proc = Bun.spawnSync([go, "version"], { env: { ...process.env, ...goEnv() } });
    expect(proc.stdout.toString()).toContain(`go version go${GO_TOOLCHAIN_VERSION} `);
    expect(lines.join("\n")).toMatch(/verified h1:|checksum database not reachable/);
    // A second call reuses the cache instead of downloading again.
    const again: string[] = [];
    expect(await findGo({ forceDownload: true, cacheRoot, log: (l) => again.push(l) })).toBe(go);
    expect(again).toEqual([]);
  },
  180_000,
);
