#!/usr/bin/env bun
// arcproxy: a local kubeconfig endpoint for a cluster behind a cluster-connect relay; also a kubectl exec credential plugin.
import { rename, rm, writeFile } from "node:fs/promises";
import { defineCommand } from "citty";
import { createRelayConnection, readCaFile } from "../lib/client/index.ts";
import { ConfigError } from "../lib/errors/index.ts";
import { defaultKubeconfigPath } from "../lib/kube/index.ts";
import {
  buildCredentialKubeconfig, buildExecCredential, buildTokenSourceArgs, createTokenSource, resolveSelfCommand,
  listClusters, readUserConfig, resolveRelayUrl, resolveTokenSourceSpec, runChildCommand, startProxySession, type KubeconfigTarget,
} from "../lib/proxy/index.ts";
import { childCommand, loggerFor, parseDurationMs, runCli, version, waitForShutdownSignal } from "./common.ts";
import { clusterArgs, logLevelArgs, relayArgs, relayTlsArgs, tokenSourceArgs } from "./flags.ts";
import { formatReachableClusters } from "./tables.ts";

/** The port of `arcproxy --cluster x` when none is given (as a kubeconfig made earlier expects). */
const DEFAULT_PORT = 47011;

const proxyArgs = {
  ...relayArgs,
  ...clusterArgs,
  ...tokenSourceArgs,
  port: { type: "string", valueHint: "N", description: "Local port (default 47011; with -- COMMAND a free one); 0 picks a free one" },
  "kube-token": { type: "string", valueHint: "T", description: "Token mode: your own Kubernetes bearer token (e.g. kubectl create token), forwarded without impersonation (default: $ARC_KUBE_TOKEN)" },
  "kubeconfig-out": { type: "string", valueHint: "FILE|-", description: "Merge the context into FILE instead of $KUBECONFIG / ~/.kube/config (created and removed if new); - prints a kubeconfig instead" },
  context: { type: "string", valueHint: "NAME", description: "Name of the context added to the kubeconfig (default: the cluster's name)" },
  "ready-file": { type: "string", valueHint: "PATH", description: "Write this file (JSON: kubeconfig, context, port) once requests can be served; removed on exit" },
  "relay-retry": { type: "string", default: "30s", valueHint: "DURATION", description: "While the relay restarts, send requests again (when safe) and resume watches for this long" },
  ...relayTlsArgs,
  ...logLevelArgs,
} as const;

const proxy = defineCommand({
  meta: { name: "proxy", hidden: true, description: "The default: serve a local kubeconfig endpoint" },
  args: proxyArgs,
  async run({ args }) {
    const command = childCommand();
    // Listening from the start: a SIGTERM that comes as soon as the ready file or the kubeconfig
    // appears must still remove the context again, never kill the process with it in place.
    const stopped = command.length > 0 ? undefined : waitForShutdownSignal();
    // Around a child command, only problems are logged: its own output comes first.
    const logger = loggerFor("arcproxy", args["log-level"] ?? (command.length > 0 ? "warn" : "info"));
    // A one-shot command needs no port anyone else knows: two CI jobs on one runner must not collide.
    const port = Number(args.port ?? (command.length > 0 ? "0" : String(DEFAULT_PORT)));
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--port ${JSON.stringify(args.port)}: use a port number 0-65535 (0 picks a free one)`);
    const out = args["kubeconfig-out"];
    const kubeconfig: KubeconfigTarget = command.length > 0 ? { kind: "temp" }
      : out === "-" ? { kind: "none" }
      : { kind: "merge", path: out || defaultKubeconfigPath(), ...(args.context ? { context: args.context } : {}) };
    const source = createTokenSource(resolveTokenSourceSpec(args, process.env), { logger });
    logger.debug("token source", { source: source.describe() });
    const session = await startProxySession({
      relayUrl: resolveRelayUrl(args.relay, process.env, await readUserConfig()),
      cluster: args.cluster,
      // Asked on every request, so the source can hand out a fresh token as the old one nears expiry.
      getToken: () => source.getToken(),
      kubeToken: args["kube-token"] || process.env.ARC_KUBE_TOKEN || undefined,
      port,
      kubeconfig,
      tls: { ca: args["relay-ca"] ? await readCaFile(args["relay-ca"]) : undefined, insecureSkipVerify: args["insecure-skip-tls-verify"] },
      relayRetryMs: parseDurationMs("relay-retry", args["relay-retry"], true),
      logger,
    });
    const ready = args["ready-file"];
    const finish = async (code: number) => {
      await session.close();
      if (ready) await rm(ready, { force: true });
      source.close?.();
      process.exit(code);
    };
    if (ready) await writeReadyFile(ready, { kubeconfig: session.kubeconfigPath ?? null, context: session.context, port: session.port, pid: process.pid });
    if (command.length > 0) {
      const env = { ...(process.env as Record<string, string>), KUBECONFIG: session.kubeconfigPath! };
      const code = await runChildCommand(command[0]!, command.slice(1), env).catch(async (error: unknown) => {
        await session.close();
        throw error;
      });
      return finish(code);
    }
    if (kubeconfig.kind === "none") process.stdout.write(session.kubeconfigYaml);
    else process.stdout.write(`context "${session.context}" added to ${session.kubeconfigPath} and made current; Ctrl-C removes it\n`);
    await stopped;
    await finish(0);
  },
});

/** Written atomically, so a script polling for the file never reads half of it. */
async function writeReadyFile(path: string, content: Record<string, unknown>): Promise<void> {
  const temp = `${path}.${process.pid}.tmp`;
  await writeFile(temp, JSON.stringify(content) + "\n", { mode: 0o600 });
  await rename(temp, path);
}

const credential = defineCommand({
  meta: { name: "credential", description: "kubectl exec credential plugin: print an ExecCredential with the user token (see arcproxy kubeconfig)" },
  args: { ...relayArgs, ...clusterArgs, ...tokenSourceArgs },
  async run({ args }) {
    const source = createTokenSource(resolveTokenSourceSpec(args, process.env));
    const json = buildExecCredential(await source.getCredential());
    source.close?.();
    process.stdout.write(json + "\n");
    process.exit(0);
  },
});

const kubeconfig = defineCommand({
  meta: { name: "kubeconfig", description: "Print a kubeconfig that reaches the cluster through the relay directly, with arcproxy credential as its exec plugin" },
  args: { ...relayArgs, ...clusterArgs, "relay-ca": relayTlsArgs["relay-ca"], ...tokenSourceArgs },
  async run({ args }) {
    resolveTokenSourceSpec(args, process.env);
    process.stdout.write(buildCredentialKubeconfig({
      relayUrl: resolveRelayUrl(args.relay, process.env, await readUserConfig()),
      cluster: args.cluster,
      caPem: args["relay-ca"] ? await readCaFile(args["relay-ca"]) : undefined,
      self: resolveSelfCommand(process.execPath, import.meta.path),
      tokenArgs: buildTokenSourceArgs(args, process.cwd()),
    }));
    process.exit(0);
  },
});

const clusters = defineCommand({
  meta: { name: "clusters", description: "List the clusters you may reach through the relay, with their status" },
  args: {
    ...relayArgs, ...tokenSourceArgs, "relay-ca": relayTlsArgs["relay-ca"],
    output: { type: "enum", options: ["table", "json"], default: "table", alias: "o", description: "table or json" },
  },
  async run({ args }) {
    const source = createTokenSource(resolveTokenSourceSpec(args, process.env));
    const relay = createRelayConnection(resolveRelayUrl(args.relay, process.env, await readUserConfig()), {
      ...(args["relay-ca"] ? { ca: await readCaFile(args["relay-ca"]) } : {}),
    });
    try {
      const list = await listClusters(relay, await source.getToken());
      process.stdout.write((args.output === "json" ? JSON.stringify(list, null, 2) : formatReachableClusters(list)) + "\n");
    } finally {
      relay.close();
      source.close?.();
    }
    process.exit(0);
  },
});

// The proxy is the default; its flags are declared here too so citty can tell a flag's value from a subcommand name.
const main = defineCommand({
  meta: { name: "arcproxy", version, description: "Reach a cluster through a cluster-connect relay with a local kubeconfig; add -- COMMAND ARGS to run one command with it" },
  // --cluster is the proxy's to require: `arcproxy clusters` has none.
  args: { ...proxyArgs, cluster: { ...clusterArgs.cluster, required: false } },
  subCommands: { proxy, credential, kubeconfig, clusters },
  default: "proxy",
});

await runCli(main, "arcproxy");
