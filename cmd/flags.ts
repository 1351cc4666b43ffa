// Flag fragments shared by the cluster-connect commands.
import type { ArgDef } from "citty";

export const logLevelArgs = {
  "log-level": {
    type: "enum",
    options: ["debug", "info", "warn", "error"],
    description: "Log level of the JSON lines on stderr",
  },
} as const satisfies Record<string, ArgDef>;

export const relayArgs = {
  relay: { type: "string", required: true, valueHint: "URL", description: "Relay URL, e.g. https://relay.example.com" },
} as const satisfies Record<string, ArgDef>;

export const relayTlsArgs = {
  "relay-ca": { type: "string", valueHint: "FILE", description: "Extra CA (PEM) to trust for the relay's certificate" },
  "insecure-skip-tls-verify": {
    type: "boolean",
    default: false,
    description: "Do not verify the relay's certificate (tests only: exposes your token)",
  },
} as const satisfies Record<string, ArgDef>;
