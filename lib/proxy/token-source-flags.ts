// Turns arcproxy's token flags into a TokenSourceSpec, and back into flags for a kubeconfig's exec plugin.
import { isAbsolute, resolve } from "node:path";
import type { TokenSourceSpec } from "./token-source.ts";
import { ConfigError } from "../errors/index.ts";

export const DEFAULT_AUDIENCE = "cluster-connect";

/** The token flags as citty parses them. */
export interface TokenSourceFlags {
  token?: string;
  "token-file"?: string;
  "token-command"?: string;
  "token-source"?: string;
  audience?: string;
}

/** The variables the token flags fall back on; cmd/ passes process.env. */
export interface TokenSourceEnv {
  readonly [name: string]: string | undefined;
  ARC_TOKEN?: string;
  ACTIONS_ID_TOKEN_REQUEST_URL?: string;
  ACTIONS_ID_TOKEN_REQUEST_TOKEN?: string;
}

const NO_TOKEN = "no token: run arcproxy login, pass --token or set ARC_TOKEN (e.g. from arcrelay token create)";
const SOURCE_FLAGS = ["token", "token-file", "token-command", "token-source"] as const;

type Choice =
  | { kind: "static"; token: string }
  | { kind: "file"; path: string }
  | { kind: "command"; command: string }
  | { kind: "github-actions"; audience: string }
  | { kind: "env" };

/**
 * Exactly one of --token, --token-file, --token-command, --token-source may be given; with none,
 * $ARC_TOKEN is the token, else (given `relay`) the login `arcproxy login` stored for that relay.
 * Throws ConfigError naming the flags otherwise.
 */
export function resolveTokenSourceSpec(flags: TokenSourceFlags, env: TokenSourceEnv, relay?: string): TokenSourceSpec {
  const choice = chooseTokenSource(flags);
  switch (choice.kind) {
    case "env":
      if (env.ARC_TOKEN) return { kind: "static", token: env.ARC_TOKEN };
      // With a relay known, what `arcproxy login` stored for it; its absence is reported on first use.
      if (relay) return { kind: "login", relay };
      throw new ConfigError(NO_TOKEN);
    case "github-actions":
      return {
        kind: "github-actions",
        audience: choice.audience,
        env: { requestUrl: env.ACTIONS_ID_TOKEN_REQUEST_URL, requestToken: env.ACTIONS_ID_TOKEN_REQUEST_TOKEN },
      };
    default:
      return choice;
  }
}

/**
 * The token flags for `arcproxy credential` run later by kubectl, from another directory:
 * a relative --token-file becomes absolute. A literal --token is refused, since it would be
 * stored in clear in the kubeconfig; with no flag the plugin reads $ARC_TOKEN where kubectl runs.
 */
export function buildTokenSourceArgs(flags: TokenSourceFlags, cwd: string): string[] {
  const choice = chooseTokenSource(flags);
  switch (choice.kind) {
    case "static":
      throw new Error(
        "--token would be written into the kubeconfig in clear: use --token-file, --token-command or " +
          "--token-source github-actions, or leave all out and set ARC_TOKEN where kubectl runs",
      );
    case "file":
      return ["--token-file", isAbsolute(choice.path) ? choice.path : resolve(cwd, choice.path)];
    case "command":
      return ["--token-command", choice.command];
    case "github-actions":
      return ["--token-source", "github-actions", "--audience", choice.audience];
    case "env":
      return [];
  }
}

function chooseTokenSource(flags: TokenSourceFlags): Choice {
  const given = SOURCE_FLAGS.filter((name) => flags[name] !== undefined && flags[name] !== "");
  if (given.length > 1) {
    throw new ConfigError(`pass one token source, not ${given.map((name) => `--${name}`).join(" and ")}`);
  }
  if (flags.audience !== undefined && flags["token-source"] !== "github-actions") {
    throw new ConfigError("--audience applies to --token-source github-actions only");
  }
  if (flags.token) return { kind: "static", token: flags.token };
  if (flags["token-file"]) return { kind: "file", path: flags["token-file"] };
  if (flags["token-command"]) return { kind: "command", command: flags["token-command"] };
  const source = flags["token-source"];
  if (source === "github-actions") return { kind: "github-actions", audience: flags.audience || DEFAULT_AUDIENCE };
  if (source) throw new ConfigError(`unknown --token-source ${JSON.stringify(source)}: the one supported is github-actions`);
  return { kind: "env" };
}
