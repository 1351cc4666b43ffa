// arcproxy: a local kubeconfig endpoint for a cluster behind a cluster-connect relay.
import { readFile } from "node:fs/promises";
import { defineCommand, runMain } from "citty";
import { createLogger, type LogLevel } from "../lib/observe/index.ts";
import { runChildCommand, startProxySession } from "../lib/proxy/index.ts";
import { logLevelArgs, relayArgs, relayTlsArgs } from "./flags.ts";

declare const VERSION: string | undefined;
const version = typeof VERSION === "string" ? VERSION : "dev";

// Everything after the first "--" is the command to run; citty never sees it (so its --help stays kubectl's).
const argv = process.argv.slice(2);
const split = argv.indexOf("--");
const ownArgs = split === -1 ? argv : argv.slice(0, split);
const command = split === -1 ? [] : argv.slice(split + 1);

const main = defineCommand({
  meta: { name: "arcproxy", version, description: "Reach a cluster through a cluster-connect relay with a local kubeconfig; add -- COMMAND ARGS to run one command with it" },
  args: {
    ...relayArgs,
    cluster: { type: "string", required: true, valueHint: "NAME", description: "Cluster name on the relay" },
    token: { type: "string", valueHint: "T", description: "User token (default: $ARC_TOKEN)" },
    port: { type: "string", default: "47011", valueHint: "N", description: "Local port; 0 picks a free one" },
    "kube-token": { type: "string", valueHint: "T", description: "Token mode: your own Kubernetes bearer token (e.g. kubectl create token), forwarded without impersonation (default: $ARC_KUBE_TOKEN)" },
    "kubeconfig-out": { type: "string", valueHint: "FILE", description: "Write the kubeconfig here (default: a temp file)" },
    ...relayTlsArgs,
    ...logLevelArgs,
  },
  async run({ args }) {
    try {
      const token = args.token || process.env.ARC_TOKEN;
      if (!token) throw new Error("no token: pass --token or set ARC_TOKEN (e.g. from arcrelay token create)");
      const port = Number(args.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid --port ${args.port}: expected 0-65535`);
      const ca = args["relay-ca"] ? await readCa(args["relay-ca"]) : undefined;
      const session = await startProxySession({
        relayUrl: args.relay,
        cluster: args.cluster,
        getToken: async () => token,
        kubeToken: args["kube-token"] || process.env.ARC_KUBE_TOKEN || undefined,
        port,
        kubeconfigOut: args["kubeconfig-out"] || undefined,
        tls: { ca, insecureSkipVerify: args["insecure-skip-tls-verify"] },
        // Around a child command, only problems are logged: its own output comes first.
        logger: createLogger({ component: "arcproxy", level: (args["log-level"] ?? (command.length > 0 ? "warn" : "info")) as LogLevel }),
      });
      if (command.length > 0) {
        const env = { ...(process.env as Record<string, string>), KUBECONFIG: session.kubeconfigPath };
        const code = await runChildCommand(command[0]!, command.slice(1), env).finally(() => session.close());
        process.exit(code);
      }
      const stopped = new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
      process.stdout.write(`kubeconfig: ${session.kubeconfigPath}\nexport KUBECONFIG=${session.kubeconfigPath}\n`);
      await stopped;
      await session.close();
      process.exit(0);
    } catch (error) {
      process.stderr.write(`arcproxy: ${(error as Error).message ?? String(error)}\n`);
      process.exit(1);
    }
  },
});

async function readCa(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    throw new Error(`cannot read --relay-ca ${path}: ${(error as Error).message}`);
  }
}

runMain(main, { rawArgs: ownArgs });
