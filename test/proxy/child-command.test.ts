import { expect, test } from "bun:test";
import { runChildCommand } from "../../lib/proxy/index.ts";

const env = { PATH: process.env.PATH ?? "/usr/bin:/bin" };

test.each([
  [["-c", "exit 0"], 0],
  [["-c", "exit 7"], 7],
  [["-c", "kill -TERM $$"], 128 + 15],
])("sh %j exits with %d", async (args, code) => {
  expect(await runChildCommand("sh", args, env)).toBe(code);
});

test("the child sees exactly the env it is given (KUBECONFIG)", async () => {
  expect(await runChildCommand("sh", ["-c", 'test "$KUBECONFIG" = /tmp/k && test -z "$HOME_NOT_SET"'], { ...env, KUBECONFIG: "/tmp/k" })).toBe(0);
});

test("a missing command says so", async () => {
  expect(runChildCommand("no-such-command-arc", [], env)).rejects.toThrow("command not found: no-such-command-arc");
});
