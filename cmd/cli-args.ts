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

/** Whether `--name` takes the next token as its value (a string or enum flag written without `=`). */
function takesValue(args: ArgsDef, token: string): boolean {
  if (!token.startsWith("-") || token.includes("=")) return false;
  const name = token.replace(/^--?/, "");
  const def = args[name] ?? Object.values(args).find((d) => aliasesOf(d).includes(name));
  return def !== undefined && def.type !== "boolean" && def.type !== "positional";
}

function aliasesOf(def: ArgsDef[string]): string[] {
  const alias = (def as { alias?: string | string[] }).alias;
  return alias === undefined ? [] : Array.isArray(alias) ? alias : [alias];
}

/**
 * The command line with the subcommand first, as citty expects it: `arcproxy --relay R clusters`
 * is read as `arcproxy clusters --relay R` (citty took the first word that is not a flag as the
 * command, and the flags before it were lost). A flag's value is never taken for a command.
 * Returns `argv` unchanged when no subcommand is named.
 */
export function subcommandFirst(main: AnyCommand, argv: readonly string[]): string[] {
  const commands = subCommandsOf(main);
  const args = argsOf(main);
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token.startsWith("-")) {
      if (takesValue(args, token)) i++;
      continue;
    }
    if (!(token in commands)) return [...argv];
    return [token, ...subcommandFirst(commands[token]!, [...argv.slice(0, i), ...argv.slice(i + 1)])];
  }
  return [...argv];
}

/**
 * Refuses a `--flag` the named command does not have (citty ignores it, or takes the word after
 * it for a command: `--clustr prod` was "Unknown command prod"), with the nearest flag it has,
 * and a command that only groups others named alone (`arcproxy config`), listing them. Only
 * long flags are checked; `--no-NAME` counts for a boolean NAME. `argv` is subcommandFirst's
 * output, before any `--`. Throws ConfigError saying where the command's flags are listed.
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
  const args = argsOf(cmd);
  const known = new Set<string>(["help", "version"]);
  for (const [name, def] of Object.entries(args)) {
    known.add(name);
    for (const alias of aliasesOf(def)) known.add(alias);
    if (def.type === "boolean") known.add(`no-${name}`);
  }
  for (; i < argv.length; i++) {
    const token = argv[i]!;
    if (!token.startsWith("--")) continue;
    const name = token.slice(2).split("=", 1)[0]!;
    if (known.has(name)) {
      if (takesValue(args, token)) i++;
      continue;
    }
    const near = suggestNames(name, [...known].filter((n) => n.length > 1));
    throw new ConfigError(`unknown flag --${name}${near.length ? ` (did you mean --${near[0]}?)` : ""}: ${path.join(" ")} --help lists its flags`);
  }
}
