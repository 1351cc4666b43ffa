// What the command line says before citty reads it: which command it names, and flags no command has.
import type { ArgsDef, CommandDef } from "citty";
import { ConfigError } from "../lib/errors/index.ts";
import { suggestNames } from "../lib/kube/index.ts";

// citty lets `args` and `subCommands` be values, functions or promises; ours are plain objects.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any command, whatever its args (as runCli takes it)
type AnyCommand = CommandDef<any>;

function argsOf(cmd: AnyCommand): ArgsDef {
  return (typeof cmd.args === "object" && cmd.args !== null ? cmd.args : {}) as ArgsDef;
}

function subCommandsOf(cmd: AnyCommand): Record<string, AnyCommand> {
  return (typeof cmd.subCommands === "object" && cmd.subCommands !== null ? cmd.subCommands : {}) as Record<string, AnyCommand>;
}

function aliasesOf(def: ArgsDef[string]): string[] {
  const alias = (def as { alias?: string | string[] }).alias;
  return alias === undefined ? [] : Array.isArray(alias) ? alias : [alias];
}

/** A flag's name as written, in the kebab case the commands declare (citty takes `--dataDir` for `--data-dir`). */
function flagName(token: string): string {
  return token.replace(/^--?/, "").split("=", 1)[0]!.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * The flags of `cmd` and every command under it: every name a user may write (aliases, `no-NAME`
 * for booleans, help and version), and the names of those that take a value.
 */
function flagsOf(cmd: AnyCommand, flags = { all: new Set<string>(["help", "version"]), values: new Set<string>() }) {
  for (const [name, def] of Object.entries(argsOf(cmd))) {
    if (def.type === "positional") continue;
    const names = [name, ...aliasesOf(def)];
    for (const n of names) flags.all.add(n);
    if (def.type === "boolean") flags.all.add(`no-${name}`);
    else for (const n of names) flags.values.add(n);
  }
  for (const sub of Object.values(subCommandsOf(cmd))) flagsOf(sub, flags);
  return flags;
}

/** Whether `token` is a flag that takes the next token as its value (written without `=`). */
function takesValue(values: ReadonlySet<string>, token: string): boolean {
  return token.startsWith("-") && !token.includes("=") && values.has(flagName(token));
}

/**
 * The command line with the subcommand first, as citty expects it: `arcproxy --relay R clusters`
 * is read as `arcproxy clusters --relay R` (citty took the first word that is not a flag as the
 * command, and the flags before it were lost). A flag's value is never taken for a command, the
 * value of a flag only a subcommand has included (`arcrelay --data-dir D cluster list`).
 * Returns `argv` unchanged when no subcommand is named.
 */
export function subcommandFirst(main: AnyCommand, argv: readonly string[], values: ReadonlySet<string> = flagsOf(main).values): string[] {
  const commands = subCommandsOf(main);
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token.startsWith("-")) {
      if (takesValue(values, token)) i++;
      continue;
    }
    if (!(token in commands)) return [...argv];
    return [token, ...subcommandFirst(commands[token]!, [...argv.slice(0, i), ...argv.slice(i + 1)], values)];
  }
  return [...argv];
}

/**
 * Refuses a `--flag` no command of the binary has (citty ignores it, or takes the word after it
 * for a command: `--clustr prod` was "Unknown command prod"), with the nearest flag there is, and
 * a command that only groups others named alone (`arcproxy config`), listing them. A flag another
 * command has (`--log-level` on `arcrelay cluster list`) was always ignored without complaint and
 * still is. Only long flags are checked; camelCase spellings count as citty reads them. A word
 * where the command takes none (no positional argument) is refused too. `argv` is
 * subcommandFirst's output, before any `--`. Throws ConfigError saying where the flags are listed.
 */
export function checkCommandLine(main: AnyCommand, argv: readonly string[], binary: string): void {
  let cmd = main;
  const path = [binary];
  let i = 0;
  for (; i < argv.length && subCommandsOf(cmd)[argv[i]!]; i++) {
    cmd = subCommandsOf(cmd)[argv[i]!]!;
    path.push(argv[i]!);
  }
  const groups = Object.keys(subCommandsOf(cmd)).filter((name) => !(subCommandsOf(cmd)[name]!.meta as { hidden?: boolean } | undefined)?.hidden);
  if (groups.length > 0 && cmd.run === undefined && (cmd as { default?: string }).default === undefined) {
    throw new ConfigError(`${path.join(" ")} needs a command: ${groups.join(", ")} (${path.join(" ")} --help says what each does)`);
  }
  const { all: known, values } = flagsOf(main);
  const takesWords = Object.values(argsOf(cmd)).some((def) => def.type === "positional");
  for (; i < argv.length; i++) {
    const token = argv[i]!;
    if (!token.startsWith("-") && !takesWords) {
      // citty drops a word no positional argument takes: `grant remove ID` went on as if no id were given.
      throw new ConfigError(`${path.join(" ")} takes no argument ${JSON.stringify(token)}, only flags: ${path.join(" ")} --help lists them`);
    }
    if (!token.startsWith("--")) {
      if (takesValue(values, token)) i++;
      continue;
    }
    const name = flagName(token);
    if (known.has(name)) {
      if (takesValue(values, token)) i++;
      continue;
    }
    const near = suggestNames(name, [...known].filter((n) => n.length > 1));
    throw new ConfigError(`unknown flag --${name}${near.length ? ` (did you mean --${near[0]}?)` : ""}: ${path.join(" ")} --help lists its flags`);
  }
}
