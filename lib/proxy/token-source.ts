// Where arcproxy gets the user token: a static value, a file, a command, or GitHub Actions OIDC.
import type { Logger } from "../observe/index.ts";
import { createRefreshingCredential, readJwtExpiry, type TokenCredential } from "./token-source-cache.ts";
import { createTokenCommand, describeCommand } from "./token-source-command.ts";
import { createFileCredential } from "./token-source-file.ts";
import { createGitHubActionsFetch, type GitHubActionsEnv } from "./token-source-github.ts";
import { COMMAND_TIMEOUT_MS } from "./token-source-timeouts.ts";
import { createLoginCredential } from "./token-source-login.ts";
import { ConfigError } from "../errors/index.ts";

export type { TokenCredential } from "./token-source-cache.ts";

/** Asked once per request: a source caches and refreshes by itself, so a long session never sends an expired token. */
export interface TokenSource {
  getToken(): Promise<string>;
  /** The token with its expiry when known (the JWT's `exp` or the command's expirationTimestamp). */
  getCredential(): Promise<TokenCredential>;
  /** For logs; never contains the token. */
  describe(): string;
  close?(): void;
}

export type TokenSourceSpec =
  | { kind: "static"; token: string }
  /** Re-read when its mtime or size changes, checked at most once per second. */
  | { kind: "file"; path: string }
  /** Run with `sh -c`; stdout is the token or an ExecCredential JSON. `env` undefined inherits ours. */
  | { kind: "command"; command: string; timeoutMs?: number; env?: Record<string, string> }
  /** `env` carries $ACTIONS_ID_TOKEN_REQUEST_URL and $ACTIONS_ID_TOKEN_REQUEST_TOKEN. */
  | { kind: "github-actions"; audience: string; env: GitHubActionsEnv }
  /** The tokens `arcproxy login` stored for `relay`, refreshed with the refresh token; `dir` is the user config folder. */
  | { kind: "login"; relay: string; dir?: string };

export interface TokenSourceOptions {
  /** Clock in ms, for tests; default Date.now. */
  now?: () => number;
  /** Told when a refresh fails but the current token is still good. */
  logger?: Logger;
}

/** Builds the source; throws at once for a spec that can never work (empty token, missing GitHub env). */
export function createTokenSource(spec: TokenSourceSpec, opts: TokenSourceOptions = {}): TokenSource {
  const now = opts.now ?? Date.now;
  switch (spec.kind) {
    case "static": {
      if (!spec.token) throw new ConfigError("the token is empty");
      const credential = { token: spec.token, expiresAt: readJwtExpiry(spec.token) };
      return fromCredential(async () => credential, "static token");
    }
    case "file": {
      if (!spec.path) throw new ConfigError("--token-file needs a path");
      return fromCredential(createFileCredential(spec.path, now), `token file ${spec.path}`);
    }
    case "command": {
      if (!spec.command.trim()) throw new ConfigError("--token-command is empty");
      const timeoutMs = spec.timeoutMs ?? COMMAND_TIMEOUT_MS;
      if (!(timeoutMs > 0)) throw new ConfigError(`token command timeout must be positive, got ${timeoutMs}`);
      const command = createTokenCommand(spec.command, timeoutMs, spec.env);
      const describe = `token ${describeCommand(spec.command)}`;
      const source = fromCredential(createRefreshingCredential(command.run, { now, describe, logger: opts.logger }), describe);
      return { ...source, close: command.kill };
    }
    case "github-actions": {
      const describe = `GitHub Actions ID token (audience ${spec.audience})`;
      const fetchIdToken = createGitHubActionsFetch(spec.audience, spec.env);
      return fromCredential(createRefreshingCredential(fetchIdToken, { now, describe, logger: opts.logger }), describe);
    }
    case "login": {
      const describe = `arcproxy login for ${spec.relay}`;
      return fromCredential(createRefreshingCredential(createLoginCredential(spec.relay, spec.dir, now), { now, describe, logger: opts.logger }), describe);
    }
    default:
      throw new ConfigError(`unknown token source kind ${JSON.stringify((spec as { kind?: unknown }).kind)}`);
  }
}

function fromCredential(getCredential: () => Promise<TokenCredential>, description: string): TokenSource {
  return {
    getCredential,
    async getToken() {
      return (await getCredential()).token;
    },
    describe() {
      return description;
    },
  };
}
