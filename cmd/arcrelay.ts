#!/usr/bin/env bun
// arcrelay: the service where agents' tunnels and users' requests meet.
import { defineCommand, type ArgDef } from "citty";
import { loadIssuerConfig, parsePrincipal, parseRole, resolveTrustedIssuers, rotateIssuerKeys } from "../lib/auth/index.ts";
import { validateClusterName, validateGroupName, validateUserName } from "../lib/kube/index.ts";
import {
  clusterAudience, hasSqliteStore, loadStoredIssuer, openPostgresStore, openSqliteStore, parseTrustedProxies, startRelay, withAdminOperations,
  type AdminTarget, type RelayStore,
} from "../lib/relay/index.ts";
import { exitSoonAfterStop, loggerFor, parseDurationMs, parsePositiveInteger, parseDurationSeconds, runCli, repeatedFlag, version, waitForShutdownSignal } from "./common.ts";
import { logLevelArgs, parseHostPort, relayTlsArgs, tunnelLiveness, tunnelLivenessArgs } from "./flags.ts";
import { formatClusterTable, formatGrantTable } from "./tables.ts";
import { ConfigError } from "../lib/errors/index.ts";

const serve = defineCommand({
  meta: { name: "serve", description: "Run the relay" },
  args: {
    listen: { type: "string", description: "HOST:PORT to listen on", default: "127.0.0.1:8443" },
    "data-dir": { type: "string", description: "directory of the relay's embedded store (not needed with --database-url)" },
    "public-url": { type: "string", description: "URL users and agents reach (default: from --listen)" },
    "tls-cert": { type: "string", description: "PEM certificate file" },
    "tls-key": { type: "string", description: "PEM private key file" },
    "insecure-http": { type: "boolean", description: "plain HTTP; loopback addresses only" },
    config: { type: "string", description: "YAML file of external OIDC issuers to trust (issuers: [...])" },
    "bind-audience-to-cluster": { type: "boolean", description: "user tokens must name cluster-connect:<cluster> in aud (token create --cluster)" },
    "trusted-proxies": { type: "string", valueHint: "CIDR,...", description: "load balancers or Ingress controllers in front of the relay (addresses or CIDR ranges): their X-Forwarded-For names the client for the per-address login budget, logs and the audit log" },
    "agent-wait": { type: "string", default: "5s", description: "how long a request waits for a cluster's agent to (re)connect before 503" },
    "max-requests-per-user": { type: "string", default: "100", description: "requests one user may have in flight at once (429 beyond); each may hold up to 1 MiB at the relay while its reader is stalled" },
    "shutdown-delay": { type: "string", default: "2s", description: "on SIGTERM: health checks fail this long before new work is refused (load balancer notice time)" },
    "shutdown-timeout": { type: "string", default: "30s", description: "on SIGTERM: how long requests in flight get to finish before they are cut" },
    "min-arcproxy-version": { type: "string", valueHint: "VERSION", description: "the oldest arcproxy users may run (published at /.well-known/cluster-connect)" },
    "database-url": { type: "string", valueHint: "URL", description: "PostgreSQL (postgres://...) instead of the SQLite file, for several replicas (default: $ARC_DATABASE_URL)" },
    "replica-id": { type: "string", valueHint: "ID", description: "this relay's name among replicas, on the status page (default: the host name, a pod's name)" },
    "internal-listen": { type: "string", valueHint: "HOST:PORT", description: "with --database-url: where other replicas forward requests for the tunnels this one holds, TLS (default 0.0.0.0:8444)" },
    "internal-url": { type: "string", valueHint: "URL", description: "with --database-url: the https URL other replicas reach --internal-listen at (default: https://<this host's address, a pod's IP>:PORT)" },
    "audit-log": { type: "string", valueHint: "PATH|-", description: "one JSON line per request (a Kubernetes audit Event) to PATH, rotated by size, or - for stdout" },
    "audit-log-max-size": { type: "string", default: "100", valueHint: "MiB", description: "rotate the audit log past this many MiB (3 old files kept)" },
    "metrics-listen": { type: "string", valueHint: "HOST:PORT", description: "serve Prometheus metrics at http://HOST:PORT/metrics, a listener of its own (off when not given)" },
    "downloads-dir": { type: "string", valueHint: "DIR", description: "serve these release binaries (<os>-<arch>/arcproxy, as 'bun run build:all' writes dist/), signed, with /install.sh" },
    ...tunnelLivenessArgs,
    ...logLevelArgs,
  },
  async run({ args }) {
    const { host, port } = parseHostPort(args.listen, "--listen");
    if (Boolean(args["tls-cert"]) !== Boolean(args["tls-key"])) throw new ConfigError("--tls-cert and --tls-key go together");
    if (!args["tls-cert"] && !args["insecure-http"]) throw new ConfigError("pass --tls-cert and --tls-key, or --insecure-http on a loopback address");
    const databaseUrl = args["database-url"] || process.env.ARC_DATABASE_URL || undefined;
    if (!databaseUrl && !args["data-dir"]) throw new ConfigError("pass --data-dir DIR (the embedded store), or --database-url URL (or ARC_DATABASE_URL) for replicas on PostgreSQL");
    const trustedIssuers = args.config ? resolveTrustedIssuers(await loadIssuerConfig(args.config)) : undefined;
    const maxRequestsPerUser = parsePositiveInteger("max-requests-per-user", args["max-requests-per-user"]);
    const shutdown = {
      delayMs: parseDurationMs("shutdown-delay", args["shutdown-delay"], true),
      timeoutMs: parseDurationMs("shutdown-timeout", args["shutdown-timeout"], true),
    };
    const relay = await startRelay({
      host, port, dataDir: args["data-dir"] ?? "", publicUrl: args["public-url"],
      tls: args["tls-cert"] ? { certFile: args["tls-cert"], keyFile: args["tls-key"]! } : undefined,
      trustedIssuers,
      bindAudienceToCluster: Boolean(args["bind-audience-to-cluster"]),
      agentWaitMs: parseDurationMs("agent-wait", args["agent-wait"], true),
      maxRequestsPerUser,
      ...(args["trusted-proxies"] ? { trustedProxies: parseTrustedProxies(args["trusted-proxies"]) } : {}),
      tunnel: tunnelLiveness(args),
      version,
      minArcproxyVersion: args["min-arcproxy-version"],
      downloadsDir: args["downloads-dir"],
      ...(databaseUrl ? { databaseUrl } : {}),
      ...(args["replica-id"] ? { replicaId: args["replica-id"] } : {}),
      ...(args["internal-listen"] ? { internalListen: parseHostPort(args["internal-listen"], "--internal-listen") } : {}),
      ...(args["internal-url"] ? { internalUrl: parseInternalUrl(args["internal-url"]) } : {}),
      ...(args["audit-log"] ? { auditLog: { path: args["audit-log"], maxBytes: parseMiB("audit-log-max-size", args["audit-log-max-size"]) } } : {}),
      ...(args["metrics-listen"] ? { metricsListen: parseHostPort(args["metrics-listen"], "--metrics-listen") } : {}),
      logger: loggerFor("arcrelay", args["log-level"], args["log-format"]),
    });
    process.stdout.write(`arcrelay ${version} serving ${relay.url}${relay.url.endsWith(`//${relay.listen}`) ? "" : ` (listening on ${relay.listen})`}\n`);
    if (relay.downloads) {
      // What a user pins out of band (ARC_DOWNLOADS_KEY_SHA256), so install.sh trusts no key it was merely handed.
      process.stdout.write(
        `serving ${relay.downloads.files} downloads (version ${relay.downloads.version}) at ${relay.url}/v1/downloads/, install with: curl -fsSL ${relay.url}/install.sh | sh\n` +
          `downloads signing key SHA-256 ${relay.downloads.publicKeySha256}:\n${relay.downloads.publicPem}`,
      );
    }
    // A second signal cuts the drain short: everything open is closed at once.
    await waitForShutdownSignal(() => void relay.close().then(() => process.exit(0)));
    await relay.shutdown(shutdown);
    exitSoonAfterStop();
  },
});

/** Local on --data-dir, or remote through the relay's admin API with --relay and a token. */
const adminTargetArgs = {
  "data-dir": { type: "string", description: "the relay's data dir (on the relay host; or use --relay)" },
  "database-url": { type: "string", valueHint: "URL", description: "the relays' PostgreSQL (instead of --data-dir; default: $ARC_DATABASE_URL)" },
  relay: { type: "string", valueHint: "URL", description: "relay URL, to manage a relay remotely (instead of --data-dir)" },
  token: { type: "string", valueHint: "T", description: "user token with --relay (default: $ARC_TOKEN)" },
  "relay-ca": relayTlsArgs["relay-ca"],
} as const satisfies Record<string, ArgDef>;

function adminTarget(args: { "data-dir"?: string; "database-url"?: string; relay?: string; token?: string; "relay-ca"?: string }): AdminTarget {
  const databaseUrl = args["database-url"] || (!args["data-dir"] && !args.relay ? process.env.ARC_DATABASE_URL : undefined);
  if ([args["data-dir"], databaseUrl, args.relay].filter(Boolean).length !== 1) {
    throw new ConfigError("pass exactly one of --data-dir DIR (on the relay host), --database-url URL (the relays' PostgreSQL) or --relay URL (remotely, with --token or ARC_TOKEN)");
  }
  if (databaseUrl) return { databaseUrl };
  if (args["data-dir"]) {
    if (args.token || args["relay-ca"]) throw new ConfigError("--token and --relay-ca go with --relay, not with --data-dir");
    return { dataDir: existingDataDir(args["data-dir"]) };
  }
  const token = args.token || process.env.ARC_TOKEN;
  if (!token) throw new ConfigError("--relay needs a user token with an admin grant: pass --token or set ARC_TOKEN");
  return { relayUrl: args.relay!, token, caFile: args["relay-ca"] };
}

const clusterAdd = defineCommand({
  meta: { name: "add", description: "Register a cluster; prints its one-time enrollment token last" },
  args: {
    name: { type: "positional", required: true, description: "cluster name" },
    ttl: { type: "string", description: "enrollment token lifetime", default: "1h" },
    ...adminTargetArgs,
  },
  async run({ args }) {
    const name = validateClusterName(args.name);
    const ttlSeconds = parseDurationSeconds("ttl", args.ttl);
    const result = await withAdminOperations(adminTarget(args), (ops) => ops.addCluster(name, ttlSeconds));
    process.stdout.write(`cluster "${result.cluster}" registered; enrollment token (single use, expires ${result.expiresAt.toISOString()}):\n${result.token}\n`);
  },
});

const clusterEnrollToken = defineCommand({
  meta: { name: "enroll-token", description: "A new one-time enrollment token for a registered cluster" },
  args: {
    name: { type: "positional", required: true, description: "cluster name" },
    ttl: { type: "string", description: "token lifetime", default: "1h" },
    ...adminTargetArgs,
  },
  async run({ args }) {
    const name = validateClusterName(args.name);
    const ttlSeconds = parseDurationSeconds("ttl", args.ttl);
    const result = await withAdminOperations(adminTarget(args), (ops) => ops.createEnrollmentToken(name, ttlSeconds));
    process.stdout.write(`enrollment token for "${name}" (single use, expires ${result.expiresAt.toISOString()}):\n${result.token}\n`);
  },
});

const clusterList = defineCommand({
  meta: { name: "list", description: "Clusters with connected/offline, versions and last seen" },
  args: { ...adminTargetArgs, output: { type: "string", alias: "o", description: "table or json", default: "table" } },
  async run({ args }) {
    const rows = await withAdminOperations(adminTarget(args), (ops) => ops.listClusters());
    process.stdout.write((args.output === "json" ? JSON.stringify(rows, null, 2) : formatClusterTable(rows)) + "\n");
  },
});

const clusterRemove = defineCommand({
  meta: { name: "remove", description: "Unregister a cluster (its agent can no longer connect)" },
  args: { name: { type: "positional", required: true }, ...adminTargetArgs },
  async run({ args }) {
    const name = validateClusterName(args.name);
    await withAdminOperations(adminTarget(args), (ops) => ops.removeCluster(name));
    process.stdout.write(`cluster "${name}" removed\n`);
  },
});

const clusterRevokeAgent = defineCommand({
  meta: { name: "revoke-agent", description: "Forget a cluster's agent key and drop its tunnel; the agent must enroll again" },
  args: { name: { type: "positional", required: true, description: "cluster name" }, ...adminTargetArgs },
  async run({ args }) {
    const name = validateClusterName(args.name);
    const result = await withAdminOperations(adminTarget(args), (ops) => ops.revokeAgent(name));
    const tunnel = result.tunnelClosed === undefined ? "" : result.tunnelClosed ? "; its tunnel was closed" : "; it had no open tunnel";
    process.stdout.write(`agent key of cluster "${name}" revoked${tunnel}; enroll again with a new token (arcrelay cluster enroll-token ${name})\n`);
  },
});

/**
 * A data dir an admin command may use: one that holds the store `arcrelay serve` made. A mistyped
 * --data-dir would otherwise get a new, empty store of its own: an empty list, or a cluster and
 * a token the running relay never hears of. Throws ConfigError naming the directory.
 */
function existingDataDir(dir: string): string {
  if (!hasSqliteStore(dir)) {
    throw new ConfigError(`${dir} holds no relay store: pass the --data-dir that arcrelay serve uses (it makes the store at its first start)`);
  }
  return dir;
}

/** The store a local command works on: --data-dir's SQLite file or --database-url's PostgreSQL (or ARC_DATABASE_URL). */
const localStoreArgs = {
  "data-dir": { type: "string", description: "the relay's data dir (on the relay host)" },
  "database-url": { type: "string", valueHint: "URL", description: "the relays' PostgreSQL (instead of --data-dir; default: $ARC_DATABASE_URL)" },
} as const satisfies Record<string, ArgDef>;

async function withLocalStore<T>(args: { "data-dir"?: string; "database-url"?: string }, fn: (store: RelayStore) => Promise<T>): Promise<T> {
  const databaseUrl = args["database-url"] || (!args["data-dir"] ? process.env.ARC_DATABASE_URL : undefined);
  if (Boolean(databaseUrl) === Boolean(args["data-dir"])) throw new ConfigError("pass exactly one of --data-dir DIR (on the relay host) or --database-url URL (the relays' PostgreSQL)");
  const store = databaseUrl ? await openPostgresStore(databaseUrl) : await openSqliteStore(existingDataDir(args["data-dir"]!));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

const issuerRotateKey = defineCommand({
  meta: {
    name: "rotate-key",
    description: "Sign new user tokens with a new key; the old key keeps verifying until its tokens have expired (31 days), or not at all with --drop-old",
  },
  args: {
    "drop-old": { type: "boolean", description: "the old key was leaked: tokens it signed stop working now", default: false },
    ...localStoreArgs,
  },
  async run({ args }) {
    const rotated = await withLocalStore(args, (store) => rotateIssuerKeys(store, { dropOld: args["drop-old"] }));
    process.stdout.write(`the built-in issuer now signs with key ${rotated.kid}; keys that verify: ${rotated.verifying.join(", ")}; every relay replica takes them within seconds\n`);
  },
});

const tokenCreate = defineCommand({
  meta: { name: "create", description: "Print a user token from the relay's built-in issuer (last line)" },
  args: {
    user: { type: "string", required: true, description: "Kubernetes user name" },
    group: { type: "string", description: "Kubernetes group (repeatable)" },
    ttl: { type: "string", description: "lifetime, e.g. 1h, 12h, 7d", default: "1h" },
    "public-url": { type: "string", description: "issuer URL, if the relay has not been served from this data dir yet" },
    cluster: { type: "string", description: "bind the token to this cluster (repeatable), for relays run with --bind-audience-to-cluster" },
    ...localStoreArgs,
  },
  async run({ args, rawArgs }) {
    const user = validateUserName(args.user);
    const groups = repeatedFlag(rawArgs, "group").map(validateGroupName);
    const extraAudiences = repeatedFlag(rawArgs, "cluster").map((c) => clusterAudience(validateClusterName(c)));
    const ttlSeconds = parseDurationSeconds("ttl", args.ttl);
    const token = await withLocalStore(args, async (s) =>
      (await loadStoredIssuer(s, args["public-url"])).signUserToken({ user, groups, ttlSeconds, extraAudiences }));
    process.stdout.write(token + "\n");
  },
});

const grantArgs = {
  principal: { type: "string", description: "user:NAME, group:NAME or sub:PATTERN" },
  cluster: { type: "string", description: "cluster name or '*'" },
  role: { type: "string", description: "cluster-user, cluster-admin or relay-admin" },
  ...adminTargetArgs,
} as const;

const grantAdd = defineCommand({
  meta: { name: "add", description: "Grant a principal a role on a cluster" },
  args: { ...grantArgs, role: { ...grantArgs.role, default: "cluster-user" } },
  async run({ args }) {
    if (!args.principal || !args.cluster) throw new ConfigError("grant add needs --principal and --cluster");
    parsePrincipal(args.principal);
    const cluster = args.cluster === "*" ? "*" : validateClusterName(args.cluster);
    const role = parseRole(args.role);
    const grant = await withAdminOperations(adminTarget(args), (ops) => ops.addGrant({ principal: args.principal!, cluster, role }));
    process.stdout.write(`granted ${grant.role} on ${grant.cluster} to ${grant.principal} (id ${grant.id})\n`);
  },
});

const grantList = defineCommand({
  meta: { name: "list", description: "List grants" },
  args: { cluster: grantArgs.cluster, ...adminTargetArgs, output: { type: "string", alias: "o", description: "table or json", default: "table" } },
  async run({ args }) {
    const grants = await withAdminOperations(adminTarget(args), (ops) => ops.listGrants(args.cluster || undefined));
    process.stdout.write((args.output === "json" ? JSON.stringify(grants, null, 2) : formatGrantTable(grants)) + "\n");
  },
});

const grantRemove = defineCommand({
  meta: { name: "remove", description: "Remove grants matching --id, or --principal/--cluster/--role" },
  args: { id: { type: "string" }, ...grantArgs },
  async run({ args }) {
    if (!args.id && !args.principal) throw new ConfigError("grant remove needs --id or --principal");
    const match = { id: args.id, principal: args.principal, cluster: args.cluster, role: args.role ? parseRole(args.role) : undefined };
    const removed = await withAdminOperations(adminTarget(args), (ops) => ops.removeGrants(match));
    process.stdout.write(`removed ${removed} grant(s)\n`);
    if (removed === 0) process.exitCode = 1;
  },
});

const main = defineCommand({
  meta: { name: "arcrelay", version, description: "cluster-connect relay: agents dial out to it, users reach clusters through it" },
  subCommands: {
    serve,
    cluster: defineCommand({
      meta: { name: "cluster", description: "Manage clusters" },
      subCommands: {
        add: clusterAdd, list: clusterList, remove: clusterRemove, "enroll-token": clusterEnrollToken, "revoke-agent": clusterRevokeAgent,
      },
    }),
    token: defineCommand({ meta: { name: "token", description: "User tokens" }, subCommands: { create: tokenCreate } }),
    issuer: defineCommand({ meta: { name: "issuer", description: "The built-in token issuer" }, subCommands: { "rotate-key": issuerRotateKey } }),
    grant: defineCommand({ meta: { name: "grant", description: "Access grants" }, subCommands: { add: grantAdd, list: grantList, remove: grantRemove } }),
  },
});

await runCli(main, "arcrelay");

function parseMiB(flag: string, value: string): number {
  const mib = Number(value);
  if (!Number.isInteger(mib) || mib < 1) throw new ConfigError(`--${flag} ${JSON.stringify(value)}: use a whole number of MiB, at least 1`);
  return mib * 1024 * 1024;
}

/** --internal-url: https only (the replicas pin each other's certificates); throws ConfigError otherwise. */
function parseInternalUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`--internal-url ${JSON.stringify(value)} is not a URL; use e.g. https://10.0.0.12:8444`);
  }
  if (url.protocol !== "https:" || url.username || url.password || (url.pathname !== "/" && url.pathname !== "") || url.search || url.hash) {
    throw new ConfigError(`--internal-url ${JSON.stringify(value)}: use https://HOST:PORT with nothing else, e.g. https://10.0.0.12:8444`);
  }
  return url.origin;
}
