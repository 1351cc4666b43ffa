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
    // A flag only a subcommand has, written before it: its value is not taken for a command.
    [["--output", "clusters", "clusters"], ["clusters", "--output", "clusters"]],
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

  test("a parent's flag after the subcommand, and camelCase spellings, are taken as before", () => {
    expect(() => checkCommandLine(main, ["clusters", "--verbose", "--cluster", "x"], "tool")).not.toThrow();
    expect(() => checkCommandLine(main, ["clusters", "--Relay=R"], "tool")).toThrow("unknown flag");
    expect(() => checkCommandLine(main, ["--noVerbose"], "tool")).not.toThrow();
  });

  test("a word where the command takes none is refused (citty dropped it: `grant remove ID` ran as if no id were given)", () => {
    expect(() => checkCommandLine(main, ["clusters", "prod"], "tool")).toThrow('tool clusters takes no argument "prod", only flags: tool clusters --help lists them');
    // A boolean takes no value: `--verbose false` was read as true, with "false" dropped.
    expect(() => checkCommandLine(main, ["clusters", "--verbose", "false"], "tool")).toThrow('takes no argument "false"');
    expect(() => checkCommandLine(main, ["clusters", "-o", "json", "--relay", "R"], "tool")).not.toThrow();
    expect(() => checkCommandLine(main, ["config", "set-relay", "https://relay"], "tool")).not.toThrow();
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

  test("arcrelay --data-dir D cluster list: a subcommand's flag before the command, as the newcomer typed it", () => {
    const r = Bun.spawnSync([process.execPath, "cmd/arcrelay.ts", "--data-dir", "/nonexistent-arc-dir", "cluster", "list"], { cwd: ROOT, env: { PATH: process.env.PATH ?? "" } });
    expect(r.stderr.toString()).toBe("arcrelay: /nonexistent-arc-dir holds no relay store: pass the --data-dir that arcrelay serve uses (it makes the store at its first start)\n");
  });

  test("arcrelay cluster list --log-level debug (a flag of another command, always ignored there) is not refused", () => {
    const r = Bun.spawnSync([process.execPath, "cmd/arcrelay.ts", "cluster", "list", "--log-level", "debug", "--data-dir", "/nonexistent-arc-dir"], { cwd: ROOT, env: { PATH: process.env.PATH ?? "" } });
    expect(r.stderr.toString()).toContain("holds no relay store");
  });

  test("arcagent rotate-key --log-level debug (a parent's flag) is not refused, nor --dataDir style spellings", () => {
    const r = Bun.spawnSync([process.execPath, "cmd/arcagent.ts", "rotate-key", "--relay", "http://127.0.0.1:9", "--cluster", "c", "--stateDir", "/nonexistent-arc-state", "--log-level", "debug"], { cwd: ROOT, env: { PATH: process.env.PATH ?? "" } });
    expect(r.stderr.toString()).not.toContain("unknown flag");
    expect(r.stderr.toString()).toContain("no agent key in /nonexistent-arc-state");
  });

  test("a mistyped flag names itself, in plain text when piped", () => {
    const r = arcproxy(["--relay", "http://127.0.0.1:9", "--clustr", "prod"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toBe("arcproxy: unknown flag --clustr (did you mean --cluster?): arcproxy --help lists its flags\n");
  });
});
