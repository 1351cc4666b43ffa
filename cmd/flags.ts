// Flag fragments shared by the cluster-connect commands.
import type { ArgDef } from "citty";
import { parseDurationMs } from "./common.ts";
import { ConfigError } from "../lib/errors/index.ts";

export const logLevelArgs = {
  "log-level": {
    type: "enum",
    options: ["debug", "info", "warn", "error"],
    description: "Log level of the lines on stderr",
  },
  "log-format": {
    type: "enum",
    options: ["json", "text"],
    description: "json (for machines) or text (for people); default text on a terminal, else json",
  },
} as const satisfies Record<string, ArgDef>;

export const relayArgs = {
  relay: { type: "string", valueHint: "URL", description: "Relay URL, e.g. https://relay.example.com (default: $ARC_RELAY, else the remembered one)" },
} as const satisfies Record<string, ArgDef>;

export const relayTlsArgs = {
  "relay-ca": { type: "string", valueHint: "FILE", description: "Extra CA (PEM) to trust for the relay's certificate" },
  "insecure-skip-tls-verify": {
    type: "boolean",
    default: false,
    description: "Do not verify the relay's certificate (tests only: exposes your token)",
  },
} as const satisfies Record<string, ArgDef>;

export const clusterArgs = {
  cluster: { type: "string", required: true, valueHint: "NAME", description: "Cluster name on the relay" },
} as const satisfies Record<string, ArgDef>;

/** Where arcproxy gets the user token; at most one of the first four, else $ARC_TOKEN. */
export const tokenSourceArgs = {
  token: { type: "string", valueHint: "T", description: "User token (default: $ARC_TOKEN)" },
  "token-file": { type: "string", valueHint: "FILE", description: "Read the user token from FILE, again whenever it changes (e.g. a rotated, mounted token)" },
  "token-command": { type: "string", valueHint: "CMD", description: "Run CMD (sh -c) for the user token: stdout is the token or an ExecCredential JSON; run again before the token expires" },
  "token-source": { type: "enum", options: ["github-actions"], description: "github-actions: the job's OIDC ID token (needs `permissions: id-token: write`)" },
  audience: { type: "string", valueHint: "AUD", description: "Audience of the GitHub Actions ID token (default: cluster-connect)" },
} as const satisfies Record<string, ArgDef>;

/** Tunnel liveness, on relay and agent: both ends ping, and close a tunnel that went silent. */
export const tunnelLivenessArgs = {
  "tunnel-ping-interval": { type: "string", default: "2s", valueHint: "DURATION", description: "How often each end pings the tunnel" },
  "tunnel-dead-after": { type: "string", default: "6s", valueHint: "DURATION", description: "Close (and redial) a tunnel silent for this long" },
} as const satisfies Record<string, ArgDef>;

/** The liveness flags as options, in ms; the dead-after must exceed the ping interval. */
export function tunnelLiveness(args: { "tunnel-ping-interval": string; "tunnel-dead-after": string }): { pingIntervalMs: number; deadAfterMs: number } {
  const pingIntervalMs = parseDurationMs("tunnel-ping-interval", args["tunnel-ping-interval"]);
  const deadAfterMs = parseDurationMs("tunnel-dead-after", args["tunnel-dead-after"]);
  if (deadAfterMs <= pingIntervalMs) {
    throw new ConfigError(`--tunnel-dead-after (${args["tunnel-dead-after"]}) must be longer than --tunnel-ping-interval (${args["tunnel-ping-interval"]})`);
  }
  return { pingIntervalMs, deadAfterMs };
}

/** `HOST:PORT` (`[v6]:PORT` for IPv6) of a listen flag; throws ConfigError naming `flag`. */
export function parseHostPort(value: string, flag: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  if (!match || port > 65535) throw new ConfigError(`${flag} ${JSON.stringify(value)}: use HOST:PORT, e.g. 0.0.0.0:8443`);
  return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
}
