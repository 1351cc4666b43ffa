#!/usr/bin/env bun
// arcagent: runs in the cluster, keeps an outbound tunnel to the relay, calls the API server as each caller.
import { defineCommand } from "citty";
import { loadIssuerConfig, resolveTrustedIssuers } from "../lib/auth/index.ts";
import {
  createAgentMetrics, createFileKeyStore, createSecretKeyStore, DEFAULT_MAX_REQUESTS_IN_FLIGHT, loadUpstream, rotateAgentKey, runAgent, type AgentKeyStore,
} from "../lib/agent/index.ts";
import { createRelayConnection, readCaFile, type RelayConnection } from "../lib/client/index.ts";
import { exitSoonAfterStop, loggerFor, parseDurationMs, parsePositiveInteger, runCli, version, waitForShutdownSignal } from "./common.ts";
import { timeouts } from "../lib/tunnel/index.ts";
import { logLevelArgs, parseHostPort, tunnelLiveness, tunnelLivenessArgs } from "./flags.ts";
import { startMetricsServer } from "../lib/observe/index.ts";
import { ConfigError } from "../lib/errors/index.ts";

/** Where the agent is and where it keeps its key: shared by the agent and `rotate-key`. */
const agentIdentityArgs = {
  relay: { type: "string", required: true, description: "relay URL, e.g. https://relay.example.com" },
  cluster: { type: "string", required: true, description: "this cluster's name on the relay" },
  "state-dir": { type: "string", description: "directory where the agent keeps its key (mode 0700)" },
  "state-secret": { type: "string", description: "NAMESPACE/NAME of the Secret holding the agent's key (in-cluster)" },
  kubeconfig: { type: "string", description: "API server credentials (default: the in-cluster service account)" },
  context: { type: "string", description: "kubeconfig context" },
  "relay-ca": { type: "string", description: "PEM CA file for a relay with a private certificate" },
} as const;

async function relayFrom(args: { relay: string; "relay-ca"?: string }): Promise<RelayConnection> {
  return createRelayConnection(args.relay, args["relay-ca"] ? { ca: await readCaFile(args["relay-ca"]) } : {});
}

function keyStoreFrom(args: { "state-dir"?: string; "state-secret"?: string; kubeconfig?: string; context?: string }): AgentKeyStore {
  if (Boolean(args["state-dir"]) === Boolean(args["state-secret"])) {
    throw new ConfigError("pass exactly one of --state-dir DIR or --state-secret NAMESPACE/NAME");
  }
  return args["state-secret"]
    ? createSecretKeyStore(loadUpstream({ kubeconfig: args.kubeconfig, context: args.context }), args["state-secret"])
    : createFileKeyStore(args["state-dir"]!);
}

const rotateKey = defineCommand({
  meta: { name: "rotate-key", description: "Replace the agent's key at the relay and in its key store; a running agent uses it from its next connection" },
  args: agentIdentityArgs,
  async run({ args }) {
    const keyStore = keyStoreFrom(args);
    const rotated = await rotateAgentKey({ relay: await relayFrom(args), cluster: args.cluster, keyStore });
    process.stdout.write(
      `rotated the agent key of cluster ${rotated.cluster}: ${rotated.previousKid} -> ${rotated.kid} (saved in ${keyStore.describe()})\n` +
        "the relay closes tunnels of the old key within seconds; a running agent reconnects with the new key\n",
    );
  },
});

const main = defineCommand({
  meta: { name: "arcagent", version, description: "cluster-connect agent: dials out to the relay and serves this cluster's API" },
  args: {
    ...agentIdentityArgs,
    "enroll-token": { type: "string", description: "one-time token from `arcrelay cluster add` (first start only; or ARC_ENROLL_TOKEN)" },
    config: { type: "string", description: "YAML file of external OIDC issuers this agent trusts (issuers: [...])" },
    "reconnect-backoff-base": { type: "string", default: "1s", description: "redial n waits a random time up to this times 2^n, from twice this for the first (exponential backoff, full jitter)" },
    "reconnect-backoff-max": { type: "string", default: "10s", description: "no redial waits longer than this" },
    "shutdown-timeout": { type: "string", default: "25s", description: "on SIGTERM: how long requests in flight get to finish (under the pod's 30 s grace)" },
    "metrics-listen": { type: "string", valueHint: "HOST:PORT", description: "serve Prometheus metrics at http://HOST:PORT/metrics, and /readyz (200 while the tunnel is up) for a readiness probe (off when not given)" },
    "max-requests-in-flight": {
      type: "string", default: String(DEFAULT_MAX_REQUESTS_IN_FLIGHT),
      description: "requests (watches included) served at once, 429 beyond; each holds an HTTP/2 stream to the API server, about 10 KiB of memory (26 KiB over HTTP/1.1)",
    },
    ...tunnelLivenessArgs,
    ...logLevelArgs,
  },
  subCommands: { "rotate-key": rotateKey },
  async run({ args }) {
    // citty also runs the parent after a subcommand: the agent itself runs only when none was named.
    if (args._.length > 0) return;
    const logger = loggerFor("arcagent", args["log-level"], args["log-format"]);
    // Above the tunnel's own bound a larger value would mean nothing.
    const maxRequestsInFlight = parsePositiveInteger("max-requests-in-flight", args["max-requests-in-flight"], timeouts.MAX_CONCURRENT_STREAMS);
    const keyStore = keyStoreFrom(args);
    const trustedIssuers = args.config ? resolveTrustedIssuers(await loadIssuerConfig(args.config)) : undefined;
    const upstream = loadUpstream({ kubeconfig: args.kubeconfig, context: args.context, logger });
    const controller = new AbortController();
    const metrics = createAgentMetrics();
    // Ready while the tunnel is up: the chart's readiness probe, so `helm install --wait` and
    // `kubectl get pods` say whether the cluster is reachable through the relay.
    let tunnelUp = false;
    const metricsServer = args["metrics-listen"]
      ? await startMetricsServer({
        ...parseHostPort(args["metrics-listen"], "--metrics-listen"), registry: metrics.registry, logger,
        readiness: () => (tunnelUp ? undefined : "the agent's tunnel to the relay is not up; its log says why"),
      })
      : undefined;
    const agent = runAgent({
      metrics,
      relay: await relayFrom(args),
      cluster: args.cluster,
      keyStore,
      enrollToken: args["enroll-token"] ?? process.env.ARC_ENROLL_TOKEN,
      upstream,
      agentVersion: version,
      logger,
      signal: controller.signal,
      drainTimeoutMs: parseDurationMs("shutdown-timeout", args["shutdown-timeout"], true),
      backoff: {
        baseMs: parseDurationMs("reconnect-backoff-base", args["reconnect-backoff-base"]),
        maxMs: parseDurationMs("reconnect-backoff-max", args["reconnect-backoff-max"]),
      },
      liveness: tunnelLiveness(args),
      trustedIssuers,
      maxRequestsInFlight,
      onState: (state) => { tunnelUp = state === "connected"; },
    });
    void waitForShutdownSignal().then(() => {
      logger.info("stopping: draining the tunnel");
      controller.abort();
    });
    await agent;
    // The tunnel has drained: the sessions to the API server go too, or they hold the process open.
    upstream.http2?.close();
    upstream.agent.destroy();
    await metricsServer?.close();
    exitSoonAfterStop();
  },
});

await runCli(main, "arcagent");
