// lib/ folders depend downward only: the table in docs/architecture.md, enforced.
import { expect, test } from "bun:test";
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";

const LIB = join(import.meta.dir, "..", "..", "lib");

/** What each folder may import (besides itself); the order is the layering, lowest first. */
const ALLOWED: Record<string, string[]> = {
  types: [],
  errors: [],
  observe: [],
  kube: ["errors"],
  tunnel: [],
  http: ["errors", "tunnel"],
  client: ["errors", "kube", "http"],
  auth: ["errors", "kube", "observe"],
  agent: ["errors", "observe", "kube", "tunnel", "http", "client", "auth"],
  proxy: ["errors", "observe", "kube", "tunnel", "http", "client"],
  relay: ["errors", "observe", "kube", "tunnel", "http", "client", "auth"],
};

async function sources(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith(".ts")).map((e) => join(e.parentPath, e.name));
}

test("every lib/ folder is in the layer table", async () => {
  const folders = (await readdir(LIB, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  expect(folders).toEqual(Object.keys(ALLOWED).sort());
});

test("no lib/ file imports from a folder above it (or from cmd/ or test/)", async () => {
  const violations: string[] = [];
  for (const file of await sources(LIB)) {
    const folder = relative(LIB, file).split("/")[0]!;
    const text = await readFile(file, "utf8");
    for (const match of text.matchAll(/from "(\.[^"]+)"/g)) {
      const target = relative(LIB, join(file, "..", match[1]!));
      const targetFolder = target.split("/")[0]!;
      if (target.startsWith("..")) violations.push(`${relative(LIB, file)} imports ${match[1]} (outside lib/)`);
      else if (targetFolder !== folder && !ALLOWED[folder]!.includes(targetFolder)) violations.push(`${relative(LIB, file)} imports ${target}`);
    }
  }
  expect(violations).toEqual([]);
});
