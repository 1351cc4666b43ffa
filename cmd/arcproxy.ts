#!/usr/bin/env bun
// arcproxy: a local kubeconfig endpoint for a cluster behind a cluster-connect relay; also a kubectl exec credential plugin.
import { rename, rm, writeFile } from "node:fs/promises";
import { defineCommand } from "citty";
import { SingleBar } from "cli-progress";
import { createRelayConnection, parseRelayUrl, readCaFile } from "../lib/client/index.ts";
import { ConfigError } from "../lib/errors/index.ts";
import { defaultKubeconfigPath } from "../lib/kube/index.ts";
import {
  buildCredentialKubeconfig, buildExecCredential, buildTokenSourceArgs, createTokenSource, resolveSelfCommand,
  listClusters, readUserConfig, resolveRelayUrl, resolveTokenSourceSpec, runChildCommand, startProxySession, type KubeconfigTarget,
  updateSelf, userConfigDir, writeUserConfig, runLogin, runLogout, openBrowser, checkArcproxyVersion,
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
    const logger = loggerFor("arcproxy", args["log-level"] ?? (command.length > 0 ? "warn" : "info"), args["log-format"]);
    // A one-shot command needs no port anyone else knows: two CI jobs on one runner must not collide.
    const port = Number(args.port ?? (command.length > 0 ? "0" : String(DEFAULT_PORT)));
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--port ${JSON.stringify(args.port)}: use a port number 0-65535 (0 picks a free one)`);
    const out = args["kubeconfig-out"];
    const kubeconfig: KubeconfigTarget = command.length > 0 ? { kind: "temp" }
      : out === "-" ? { kind: "none" }
      : { kind: "merge", path: out || defaultKubeconfigPath(), ...(args.context ? { context: args.context } : {}) };
    const relayUrl = resolveRelayUrl(args.relay, process.env, await readUserConfig());
    const source = createTokenSource(resolveTokenSourceSpec(args, process.env, relayUrl), { logger });
    logger.debug("token source", { source: source.describe() });
    const session = await startProxySession({
      relayUrl,
      cluster: args.cluster,
      // Asked on every request, so the source can hand out a fresh token as the old one nears expiry.
      getToken: () => source.getToken(),
      kubeToken: args["kube-token"] || process.env.ARC_KUBE_TOKEN || undefined,
      port,
      kubeconfig,
      tls: { ca: args["relay-ca"] ? await readCaFile(args["relay-ca"]) : undefined, insecureSkipVerify: args["insecure-skip-tls-verify"] },
      relayRetryMs: parseDurationMs("relay-retry", args["relay-retry"], true),
      version,
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
    const relayUrl = resolveRelayUrl(args.relay, process.env, await readUserConfig());
    const source = createTokenSource(resolveTokenSourceSpec(args, process.env, relayUrl));
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
    const relayUrl = resolveRelayUrl(args.relay, process.env, await readUserConfig());
    resolveTokenSourceSpec(args, process.env, relayUrl);
    if (new URL(relayUrl).protocol === "http:") {
      // client-go runs no exec plugin for a plain-http server (checked with kubectl 1.32): the
      // kubeconfig would reach the relay with no credential at all.
      process.stderr.write(
        `arcproxy: warning: kubectl runs no credential plugin for a plain-http server, so this kubeconfig will reach ${relayUrl} unauthenticated; ` +
          "serve the relay over TLS (arcrelay serve --tls-cert/--tls-key), or use arcproxy --cluster NAME, whose local endpoint adds the token\n",
      );
    }
    process.stdout.write(buildCredentialKubeconfig({
      relayUrl,
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
    const relayUrl = resolveRelayUrl(args.relay, process.env, await readUserConfig());
    const source = createTokenSource(resolveTokenSourceSpec(args, process.env, relayUrl));
    const relay = createRelayConnection(relayUrl, {
      ...(args["relay-ca"] ? { ca: await readCaFile(args["relay-ca"]) } : {}),
    });
    try {
      const token = await source.getToken();
      await checkArcproxyVersion(relay, version);
      const list = await listClusters(relay, token);
      process.stdout.write((args.output === "json" ? JSON.stringify(list, null, 2) : formatReachableClusters(list)) + "\n");
    } finally {
      relay.close();
      source.close?.();
    }
    process.exit(0);
  },
});

const setRelay = defineCommand({
  meta: { name: "set-relay", description: "Remember the relay, so --relay is not needed (install.sh and arcproxy login do this)" },
  args: {
    url: { type: "positional", required: true, description: "relay URL" },
    "downloads-key-sha256": { type: "string", valueHint: "HEX", description: "pin the relay's downloads signing key (printed by arcrelay serve); arcproxy update refuses another" },
  },
  async run({ args }) {
    const relay = parseRelayUrl(args.url, "the relay URL").base;
    const pin = args["downloads-key-sha256"]?.toLowerCase();
    if (pin !== undefined && !/^[0-9a-f]{64}$/.test(pin)) throw new ConfigError("--downloads-key-sha256: give the 64 hex digits arcrelay serve prints");
    const current = await readUserConfig();
    // A pin belongs to its relay: naming another relay without one drops the old pin.
    const keep = current.relay === relay && !pin ? current.downloadsKeySha256 : pin;
    await writeUserConfig({ ...current, relay, ...(keep ? { downloadsKeySha256: keep } : { downloadsKeySha256: undefined }) });
    process.stdout.write(`relay ${relay} remembered in ${userConfigDir()}\n`);
    process.exit(0);
  },
});

const viewConfig = defineCommand({
  meta: { name: "view", description: "Print arcproxy's remembered settings" },
  async run() {
    process.stdout.write(JSON.stringify({ dir: userConfigDir(), ...(await readUserConfig()) }, null, 2) + "\n");
    process.exit(0);
  },
});

const config = defineCommand({
  meta: { name: "config", description: "arcproxy's remembered settings (the relay)" },
  subCommands: { "set-relay": setRelay, view: viewConfig },
});

const update = defineCommand({
  meta: { name: "update", description: "Replace this arcproxy with the relay's current one, verified against the relay's signed list" },
  args: {
    ...relayArgs,
    "relay-ca": relayTlsArgs["relay-ca"],
    path: { type: "string", valueHint: "FILE", description: "the arcproxy file to replace (default: this executable)" },
    force: { type: "boolean", description: "install even when the relay's version is this one or older" },
  },
  async run({ args }) {
    const remembered = await readUserConfig();
    const relayUrl = resolveRelayUrl(args.relay, process.env, remembered);
    // Run from sources, execPath is bun itself: never replace that.
    if (!args.path && (version === "dev" || !/arcproxy(\.exe)?$/i.test(process.execPath))) {
      throw new ConfigError(`this arcproxy is not a compiled release (it runs as ${process.execPath}); pass --path FILE or install with curl -fsSL ${relayUrl}/install.sh | sh`);
    }
    const target = args.path ?? process.execPath;
    const relay = createRelayConnection(relayUrl, { ...(args["relay-ca"] ? { ca: await readCaFile(args["relay-ca"]) } : {}) });
    const bar = process.stderr.isTTY ? new SingleBar({ format: "arcproxy [{bar}] {percentage}% {value}/{total} bytes", stream: process.stderr }) : undefined;
    let barStarted = false;
    try {
      const result = await updateSelf({
        relay, target, currentVersion: version, force: Boolean(args.force),
        // The pin was made for the remembered relay; another relay has a key of its own.
        pinnedKeySha256: remembered.relay === relayUrl ? remembered.downloadsKeySha256 : undefined,
        onProgress: bar
          ? (received, total) => {
            if (!barStarted) bar.start(total, 0);
            barStarted = true;
            bar.update(received);
          }
          : undefined,
      });
      bar?.stop();
      // Trust on first use: a relay remembered without a pin is pinned to the key that signed this update.
      if (remembered.relay === relayUrl && !remembered.downloadsKeySha256) await writeUserConfig({ ...remembered, downloadsKeySha256: result.keySha256 });
      process.stdout.write(result.updated
        ? `arcproxy ${result.version} installed at ${target} (SHA-256 ${result.sha256}, list signed by key ${result.keySha256})\n`
        : `arcproxy ${version} is the relay's current version; nothing to do (--force downloads it again)\n`);
    } finally {
      bar?.stop();
      relay.close();
    }
    process.exit(0);
  },
});

const login = defineCommand({
  meta: { name: "login", description: "Log in through your browser (or --device) at the relay's identity provider; arcproxy then uses and refreshes the token" },
  args: {
    ...relayArgs,
    "relay-ca": relayTlsArgs["relay-ca"],
    device: { type: "boolean", description: "device login (RFC 8628) for a machine without a browser: enter a code on another device" },
    issuer: { type: "string", valueHint: "URL", description: "which of the relay's login issuers, when it has several" },
  },
  async run({ args }) {
    const relayUrl = resolveRelayUrl(args.relay, process.env, await readUserConfig());
    const relay = createRelayConnection(relayUrl, { ...(args["relay-ca"] ? { ca: await readCaFile(args["relay-ca"]) } : {}) });
    try {
      await checkArcproxyVersion(relay, version);
      const result = await runLogin({
        relay, device: Boolean(args.device), issuer: args.issuer, openBrowser,
        notify: (line) => process.stderr.write(line + "\n"),
      });
      const reachable = result.clusters.map((c) => c.name);
      process.stdout.write(
        `Logged in to ${relayUrl} as ${result.login.subject ?? "you"} (${result.login.issuer}); token saved in ${result.path}\n` +
          (reachable.length ? `You may reach: ${reachable.join(", ")}. Next: arcproxy --cluster ${reachable[0]}\n` : "You may reach no cluster yet: ask a relay admin for a grant\n"),
      );
    } finally {
      relay.close();
    }
    process.exit(0);
  },
});

const logout = defineCommand({
  meta: { name: "logout", description: "Remove the tokens arcproxy login stored for the relay" },
  args: { ...relayArgs },
  async run({ args }) {
    const relayUrl = resolveRelayUrl(args.relay, process.env, await readUserConfig());
    const result = await runLogout(relayUrl);
    const revoked = result.revocation === "revoked" ? "; the refresh token is revoked at the provider"
      : typeof result.revocation === "object" ? `; the provider could not revoke the refresh token (${result.revocation.failed}), so it lasts until it expires` : "";
    process.stdout.write(result.removed ? `Logged out of ${relayUrl}${result.subject ? ` (${result.subject})` : ""}${revoked}\n` : `Not logged in to ${relayUrl}; nothing to remove\n`);
    process.exit(0);
  },
});

// The proxy is the default; its flags are declared here too so citty can tell a flag's value from a subcommand name.
const main = defineCommand({
  meta: { name: "arcproxy", version, description: "Reach a cluster through a cluster-connect relay with a local kubeconfig; add -- COMMAND ARGS to run one command with it" },
  // --cluster is the proxy's to require: `arcproxy clusters` has none.
  args: { ...proxyArgs, cluster: { ...clusterArgs.cluster, required: false } },
  subCommands: { proxy, credential, kubeconfig, clusters, config, update, login, logout },
  default: "proxy",
});

await runCli(main, "arcproxy");
