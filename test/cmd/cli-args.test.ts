// The command line as users type it: a subcommand after the flags, a mistyped flag, a command group named alone.
import { describe, expect, test } from "bun:test";
import { defineCommand } from "citty";
import { join } from "node:path";
import { checkCommandLine, subcommandFirst } from "../../cmd/cli-args.ts";

const ROOT = join(import.meta.dir, "..", "..");
const sub = defineCommand({ meta: { name: "clusters" }, args: { relay: { type: "string" }, output: { type: "string", alias: "o" } }, run() {} });
const set = defineCommand({ meta: { name: "set-relay" }, args: { url: { type: "positional" } }, run() {} });
const config = defineCommand({ meta: { name: "config" }, subCommands: { "set-relay": set } });
const main = defineCommand({
  meta: { name: "tool" },
  args: { relay: { type: "string" }, cluster: { type: "string" }, verbose: { type: "boolean" } },
  subCommands: { clusters: sub, config },
  default: "clusters",
});

describe("subcommandFirst", () => {
  test.each([
    [["--relay", "R", "clusters"], ["clusters", "--relay", "R"]],
    [["--verbose", "clusters", "-o", "json"], ["clusters", "--verbose", "-o", "json"]],
    [["clusters", "--relay", "R"], ["clusters", "--relay", "R"]],
    // A flag's value is never taken for a command: a cluster named "clusters".
    [["--cluster", "clusters", "--relay", "R"], ["--cluster", "clusters", "--relay", "R"]],
    [["--relay=R", "config", "set-relay", "U"], ["config", "set-relay", "--relay=R", "U"]],
    [["--relay", "R"], ["--relay", "R"]],
  ])("%j reads as %j", (argv, expected) => {
    expect(subcommandFirst(main, argv)).toEqual(expected);
  });
});

describe("checkCommandLine", () => {
  test("a mistyped flag is refused with the nearest one and where the flags are listed", () => {
    expect(() => checkCommandLine(main, ["--clustr", "prod"], "tool")).toThrow("unknown flag --clustr (did you mean --cluster?): tool --help lists its flags");
    expect(() => checkCommandLine(main, ["clusters", "--rely", "R"], "tool")).toThrow("unknown flag --rely (did you mean --relay?): tool clusters --help lists its flags");
  });

  test("known flags, aliases, --no- for a boolean, --flag=value and positionals pass", () => {
    expect(() => checkCommandLine(main, ["--cluster", "prod", "--no-verbose", "--relay=R"], "tool")).not.toThrow();
    expect(() => checkCommandLine(main, ["clusters", "-o", "json", "--output", "table"], "tool")).not.toThrow();
    expect(() => checkCommandLine(main, ["config", "set-relay", "https://relay.example.com"], "tool")).not.toThrow();
  });

  test("a command group named alone lists its commands", () => {
    expect(() => checkCommandLine(main, ["config"], "tool")).toThrow("tool config needs a command: set-relay (tool config --help says what each does)");
  });
});

describe("the real binaries", () => {
  const arcproxy = (args: string[]) => Bun.spawnSync([process.execPath, "cmd/arcproxy.ts", ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? "", HOME: "/nonexistent" } });

  test("arcproxy --relay R clusters uses the relay it was given (the flag before the command was lost)", () => {
    const r = arcproxy(["--relay", "http://127.0.0.1:9", "clusters"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toBe("arcproxy: no token: run arcproxy login --relay http://127.0.0.1:9 (or pass --token, or set ARC_TOKEN)\n");
  });

  test("a mistyped flag names itself, in plain text when piped", () => {
    const r = arcproxy(["--relay", "http://127.0.0.1:9", "--clustr", "prod"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toBe("arcproxy: unknown flag --clustr (did you mean --cluster?): arcproxy --help lists its flags\n");
  });
});
