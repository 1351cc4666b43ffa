// arcagent refuses a bad --max-requests-in-flight before it does anything else, saying what it takes.
import { expect, test } from "bun:test";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..", "..");

test.each([["0"], ["10001"], ["many"], ["1.5"]])("--max-requests-in-flight %s is refused with the range it takes", (value) => {
  const r = Bun.spawnSync([process.execPath, "cmd/arcagent.ts", "--relay", "http://127.0.0.1:1", "--cluster", "c1", "--state-dir", "/nonexistent/arcagent",
    "--max-requests-in-flight", value], { cwd: ROOT, env: { ...process.env, ARC_ENROLL_TOKEN: "" } });
  expect(r.exitCode).not.toBe(0);
  expect(r.stderr.toString()).toContain(`--max-requests-in-flight ${JSON.stringify(value)}: use a whole number of at least 1 and at most 10000`);
});
