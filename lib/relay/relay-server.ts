// Starts the relay: store, issuer, HTTP(S) listener dispatching to the API, cluster proxy and agent tunnels.
import { readFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type { Duplex } from "node:stream";
import { getRequestListener } from "@hono/node-server";
import { ISSUER_KEYS_SETTING, builtinIssuerTrust, createUserTokenVerifier, type TrustedIssuer, type UserTokenVerifier } from "../auth/index.ts";
import { NotFound, writeStatusToSocket, ConfigError } from "../errors/index.ts";
import { MAX_REQUEST_HEADER_BYTES, renderParseErrorResponse } from "../http/index.ts";
import { isLoopbackHost } from "../kube/index.ts";
import { startMetricsServer, type Logger, type MetricsServer } from "../observe/index.ts";
import { protocol } from "../tunnel/index.ts";
import { createAgentConnectHandler } from "./agent-connect.ts";
import { createAuthRateLimiter, type AuthRateLimitOptions } from "./auth-rate-limit.ts";
import { createRelayApp } from "./app.ts";
import { createRelayDrain } from "./drain.ts";
import { createIssuerKeySource } from "./issuer-keys.ts";
import { isClusterApiTarget } from "./cluster-path.ts";
import { loadRelayIssuer } from "./relay-issuer.ts";
import { createClusterApiProxy } from "./k8s-proxy.ts";
import { openPostgresStore, openSqliteStore, type RelayStore } from "./store/index.ts";
import { createTunnelRegistry } from "./tunnel-registry.ts";
import { createUserAccess } from "./user-access.ts";
import { rememberClientAddress, type TrustedProxies } from "./client-address.ts";
import { buildClientConfig } from "./client-config.ts";
import { loadDownloadCatalog, type DownloadCatalog } from "./downloads.ts";
import { createRelayMetrics, instrumentStore, type RelayMetrics } from "./metrics.ts";
import { openAuditLog, type AuditLog } from "./audit-log.ts";
import { createClusterActivity } from "./activity.ts";
import { hostname } from "node:os";
import { startChangeFeed, type ChangeFeed } from "./change-feed.ts";
import { createPresenceKeeper, PRESENCE_EXPIRY_MS } from "./presence.ts";
import { createAgentKeyWatch } from "./agent-key-watch.ts";
import { createReplicaSet, type ReplicaSet } from "./replica-set.ts";
import { startReplicaEndpoint, type ReplicaEndpoint } from "./replica-endpoint.ts";
import { defaultInternalUrl, DEFAULT_INTERNAL_PORT } from "./internal-url.ts";
import { createSelfSignedCertificate } from "../http/index.ts";

export interface RelayOptions {
  host: string;
  port: number;
  /** The SQLite store (and the downloads signing key) live here; unused (may be "") with `databaseUrl`. */
  dataDir: string;
  /** PostgreSQL instead of the SQLite file (`--database-url`, or ARC_DATABASE_URL to keep the password out of the process list). */
  databaseUrl?: string;
  /** The URL users and agents reach; the built-in issuer's `iss`. Defaults to the listen address. */
  publicUrl?: string;
  tls?: { certFile: string; keyFile: string };
  /** External OIDC issuers (Entra ID, Dex, Keycloak, GitHub Actions) trusted beside the built-in one. */
  trustedIssuers?: TrustedIssuer[];
  /**
   * User tokens must name `cluster-connect:<cluster>` in `aud` to reach that cluster, so a token
   * made for one cluster is refused on every other. Off by default (no CLI flag yet).
   */
  bindAudienceToCluster?: boolean;
  /** Failed user authentications allowed per client address (default 20 a minute); `false` turns it off. */
  authRateLimit?: AuthRateLimitOptions | false;
  /**
   * Proxies in front of the relay whose X-Forwarded-For names the client (`--trusted-proxies`,
   * parseTrustedProxies): the address the per-address budget, the logs and the audit log use.
   * Without it the client is whoever connected, and every user behind an L7 load balancer shares
   * the balancer's budget.
   */
  trustedProxies?: TrustedProxies;
  /** How long a request waits for a cluster's agent to (re)connect, ms (default 5,000; `--agent-wait`). */
  agentWaitMs?: number;
  /** Requests one user may have in flight (default 100; `--max-requests-per-user`): a stalled reader holds up to STREAM_WINDOW_BYTES (1 MiB) per request at the relay, so this bounds one user's share of memory. */
  maxRequestsPerUser?: number;
  /** Tunnel liveness (`--tunnel-ping-interval`, `--tunnel-dead-after`), ms. */
  tunnel?: { pingIntervalMs?: number; deadAfterMs?: number };
  /** Published at /.well-known/cluster-connect (default "dev"). */
  version?: string;
  /** The oldest arcproxy this relay works with (`--min-arcproxy-version`); published beside the version. */
  minArcproxyVersion?: string;
  /** Folder of release binaries to serve, laid out as `bun run build:all` writes dist/ (`--downloads-dir`). */
  downloadsDir?: string;
  /** This relay's name among replicas (`--replica-id`), shown on the status page; default the host name (a pod's name). */
  replicaId?: string;
  /**
   * With `databaseUrl`: where other replicas send requests for the tunnels this one holds
   * (`--internal-listen`, TLS with a certificate made at start; default 0.0.0.0:8444), and the URL
   * they use (`--internal-url`; default https://<this host's first non-loopback address>:<port>,
   * the pod's IP in a Deployment).
   */
  internalListen?: { host: string; port: number };
  internalUrl?: string;
  /** Audit log (`--audit-log PATH`, `-` for stdout), rotated past `maxBytes` (default 100 MiB); off when absent. */
  auditLog?: { path: string; maxBytes?: number };
  /** Serve Prometheus metrics at http://HOST:PORT/metrics on a listener of its own (`--metrics-listen`); off when absent. */
  metricsListen?: { host: string; port: number };
  logger: Logger;
}

export interface RunningRelay {
  /** The public URL (--public-url), or, without one, where it listens. */
  url: string;
  /** Where it listens, `host:port` (IPv6 in brackets). */
  listen: string;
  port: number;
  store: RelayStore;
  /** The relay's metrics (always collected; served only with `metricsListen`). */
  metrics: RelayMetrics;
  /** With `metricsListen`: where Prometheus scrapes. */
  metricsUrl?: string;
  /** With `downloadsDir`: the signing key users pin (hex SHA-256 of its SPKI DER) and how many files are served. */
  downloads?: { publicKeySha256: string; publicPem: string; files: number; version: string };
  /**
   * Graceful stop: health checks fail at once; after `delayMs` (default 2,000; `--shutdown-delay`,
   * time for a load balancer to notice) no new request or tunnel is taken, agents are told to dial
   * again (GOAWAY), JSON watches end at their next event; requests in flight get up to
   * `timeoutMs` (default 30,000; `--shutdown-timeout`) to finish; then everything is closed.
   */
  shutdown(options?: { delayMs?: number; timeoutMs?: number }): Promise<void>;
  /** Immediate stop: everything in flight is cut. */
  close(): Promise<void>;
}

export const DEFAULT_AGENT_WAIT_MS = 5_000;
export const DEFAULT_MAX_REQUESTS_PER_USER = 100;
export const DEFAULT_SHUTDOWN_DELAY_MS = 2_000;
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;
/** A client has this long to send a complete request head (slowloris bound). */
const HEADERS_TIMEOUT_MS = 60_000;
/** An idle keep-alive connection is closed after this; above common load balancers' 60 s. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** TCP keepalive probes on every connection start after this much silence. */
const TCP_KEEPALIVE_MS = 30_000;


/**
 * Starts a relay: opens the SQLite store in `dataDir` (created 0700) and the built-in issuer, and
 * listens on `host:port` over TLS (`tls`), or plain HTTP on a loopback address only. One listener
 * serves the admin API, enrollment and agent routes (hono), the agents' WebSocket tunnels
 * (`/v1/agent/connect`) and users' Kubernetes requests (`/v1/clusters/{name}/k8s/...`, streamed,
 * upgrades included). Timeouts: a request head within 60 s, idle keep-alive 65 s, TCP keepalive
 * after 30 s; a request waits `agentWaitMs` (5 s) for a reconnecting agent.
 *
 * Resolves once listening, with the URL, the store, `shutdown()` (graceful drain) and `close()`.
 * Throws ConfigError for plain HTTP on a non-loopback address, an Error naming the address when
 * it is taken, and the store's error (with the file's path) when the data dir cannot be used.
 */
export async function startRelay(opts: RelayOptions): Promise<RunningRelay> {
  if (!opts.tls && !isLoopbackHost(opts.host)) {
    throw new ConfigError(
      `refusing plain HTTP on ${opts.host}: --insecure-http is only allowed on a loopback address; pass --tls-cert and --tls-key`,
    );
  }
  let tunnelCount = () => 0;
  const metrics = createRelayMetrics({ tunnels: () => tunnelCount() });
  const publicUrl = opts.publicUrl ? normalizePublicUrl(opts.publicUrl) : "";
  const store = instrumentStore(
    opts.databaseUrl ? await openPostgresStore(opts.databaseUrl) : await openSqliteStore(opts.dataDir),
    metrics.storeOperationDuration,
  );
  // The API server's own limit: a long label selector or a large token passes here as it passes there.
  const server = opts.tls
    ? https.createServer({ cert: await readFile(opts.tls.certFile), key: await readFile(opts.tls.keyFile), maxHeaderSize: MAX_REQUEST_HEADER_BYTES })
    : http.createServer({ maxHeaderSize: MAX_REQUEST_HEADER_BYTES });
  // No total request time: watches, logs -f and exec sessions last as long as the user wants.
  server.requestTimeout = 0;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  // Long quiet streams (an idle exec, a watch with nothing to say) must not look dead to a NAT
  // or a load balancer between the user and the relay.
  server.on("connection", (socket: import("node:net").Socket) => {
    rememberClientAddress(socket, opts.trustedProxies);
    socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
  });
  // With TLS, requests arrive on the TLS socket, not the TCP one 'connection' saw.
  server.on("secureConnection", (socket: import("node:net").Socket) => rememberClientAddress(socket, opts.trustedProxies));
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    if (socket.writable && error.code !== "ECONNRESET") socket.end(renderParseErrorResponse(error, "arcrelay"));
    else socket.destroy();
  });
  // Handlers exist before the port is open: a request that arrives while the issuer and the
  // downloads are still loading waits for them instead of hanging unanswered on a server with no
  // 'request' listener (a health check that came early then waited out its client's timeout).
  let routes!: { request: (req: http.IncomingMessage, res: http.ServerResponse) => void; upgrade: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void };
  let routesReady!: () => void;
  const routesSet = new Promise<void>((resolve) => (routesReady = resolve));
  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (routes) routes.request(req, res);
    else void routesSet.then(() => routes.request(req, res));
  });
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    if (routes) routes.upgrade(req, socket, head);
    else void routesSet.then(() => routes.upgrade(req, socket, head));
  });
  // A start that fails after the port opened answers what waited (by closing it) and frees the port and the store.
  let stopFeed: (() => Promise<void>) | undefined;
  const abandon = async (error: unknown): Promise<never> => {
    routes = { request: (_req, res) => res.destroy(), upgrade: (_req, socket) => socket.destroy() };
    routesReady();
    server.close();
    server.closeAllConnections?.();
    await stopFeed?.();
    await store.close();
    throw error;
  };
  const port = await listen(server, opts.host, opts.port).catch(async (error: unknown) => {
    await store.close();
    throw error;
  });
  const scheme = opts.tls ? "https" : "http";
  const hostInUrl = opts.host.includes(":") && !opts.host.startsWith("[") ? `[${opts.host}]` : opts.host;
  // Normalised as a --public-url is, so a relay on a default port (80, 443) names itself as agents
  // spell it (http://host, not http://host:80): they sign for that spelling.
  const url = opts.publicUrl ? publicUrl : normalizePublicUrl(`${scheme}://${hostInUrl}:${port}`);

  const replicaId = opts.replicaId ?? hostname();
  let feed: ChangeFeed;
  try {
    feed = await startChangeFeed(store, opts.logger);
    stopFeed = feed.stop;
  } catch (error) {
    return abandon(new ConfigError(`the relay store refused to report changes (LISTEN): ${(error as Error).message}`, { cause: error }));
  }
  const issuer = await loadRelayIssuer(store, url, { replicaId, logger: opts.logger }).catch(abandon);
  const external = opts.trustedIssuers ?? [];
  let verifier: UserTokenVerifier;
  try {
    verifier = createUserTokenVerifier({ issuers: [builtinIssuerTrust(issuer), ...external] });
  } catch (error) {
    // e.g. an external issuer configured with the relay's own URL
    return abandon(error);
  }
  // A rotation on any replica (or by the CLI) reaches this one through the feed: reload the keys and
  // verify with the new set. The periodic resync reads them too, but replaces nothing that did not change.
  feed.subscribe((change) => {
    if (change.table !== "*" && !(change.table === "settings" && change.key === ISSUER_KEYS_SETTING)) return;
    void issuer.reload().then((changed) => {
      if (!changed) return;
      verifier = createUserTokenVerifier({ issuers: [builtinIssuerTrust(issuer), ...external] });
      opts.logger.info("the built-in issuer's keys changed; verifying with the new set", { kids: issuer.jwks().keys.map((k) => k.kid) });
    }, (error: unknown) => opts.logger.error("could not reload the built-in issuer's keys; verifying with the previous set", { error }));
  });
  if (external.length > 0) opts.logger.info("trusting external OIDC issuers", { issuers: external.map((t) => t.issuer) });
  const registry = createTunnelRegistry();
  tunnelCount = () => registry.list().length;
  const logger = opts.logger;
  // One failure budget per address across users, agents and enrollment.
  let replicas: ReplicaSet | undefined;
  let internal: ReplicaEndpoint | undefined;
  const drain = createRelayDrain();
  if (opts.databaseUrl) {
    try {
      replicas = await createReplicaSet({ store, feed, replicaId, logger: opts.logger });
      const listenOn = opts.internalListen ?? { host: "0.0.0.0", port: DEFAULT_INTERNAL_PORT };
      const cert = await createSelfSignedCertificate({ commonName: `arcrelay replica ${replicaId}`, hosts: [new URL(opts.internalUrl ?? defaultInternalUrl(listenOn)).hostname.replace(/^\[|\]$/g, "")], validityMs: 10 * 365 * 86_400_000 });
      // The second check of a forwarded request: the same verifier and grants, no per-address budget
      // (the address is the other replica's; the first replica spent the user's).
      const internalAccess = createUserAccess({
        store, feed, bindAudienceToCluster: opts.bindAudienceToCluster ?? false,
        verifyUserToken: (token) => verifier.verifyUserToken(token),
        cachedIdentity: (token) => verifier.cachedIdentity(token),
      });
      internal = await startReplicaEndpoint({
        ...listenOn, certPem: cert.certPem, keyPem: cert.keyPem, secret: replicas.secret, registry, drain, logger: opts.logger, replicas,
        authorize: async (headers, cluster) => {
          await internalAccess.authorize(await internalAccess.authenticate(headers), cluster, "cluster-user");
        },
        agentWaitMs: opts.agentWaitMs ?? DEFAULT_AGENT_WAIT_MS,
      });
      const internalUrl = opts.internalUrl ?? defaultInternalUrl(internal.listening);
      // A process of this id that died (a container restarted in its pod) left its tunnels on
      // record; renewed by this one's heartbeat, they would stay "present" and draw requests for
      // good. Removed first (this process holds no tunnel yet), and the other replicas hear the
      // delete and the insert, so they also pin the new certificate at once.
      if ((await store.listReplicas(new Date())).some((r) => r.replicaId === replicaId)) {
        opts.logger.warn("a replica of this id was still registered: its tunnels are forgotten now; if it was not this replica's last process but another one running, give each its own --replica-id", { replicaId });
      }
      await store.removeReplica(replicaId);
      await store.recordReplica({ replicaId, internalUrl, certificatePem: cert.certPem, expiresAt: new Date(Date.now() + PRESENCE_EXPIRY_MS) });
      opts.logger.info("replica registered: other replicas forward requests for the tunnels it holds", { replicaId, internalUrl, listen: `${internal.listening.host}:${internal.listening.port}` });
    } catch (error) {
      await internal?.close();
      return abandon(error);
    }
  }
  // Replicas share one failure budget per address: each takes its part of it (see auth-rate-limit.ts).
  const rateLimiter = opts.authRateLimit === false
    ? undefined
    : createAuthRateLimiter({
      ...opts.authRateLimit, logger, onRefused: (reason) => metrics.authenticationFailures.inc({ reason }),
      ...(replicas ? { replicas: replicas.size } : {}),
    });
  const access = createUserAccess({
    store,
    feed,
    // Through `verifier` as it is now: a key rotation replaces it (and its cache of verified tokens).
    verifyUserToken: (token) => verifier.verifyUserToken(token),
    cachedIdentity: (token) => verifier.cachedIdentity(token),
    bindAudienceToCluster: opts.bindAudienceToCluster ?? false,
    ...(rateLimiter ? { rateLimiter } : {}),
  });
  let downloads: DownloadCatalog | undefined;
  let metricsServer: MetricsServer | undefined;
  let audit: AuditLog | undefined;
  try {
    audit = opts.auditLog ? await openAuditLog({ ...opts.auditLog, logger }) : undefined;
    downloads = opts.downloadsDir
      ? await loadDownloadCatalog({ dir: opts.downloadsDir, dataDir: opts.dataDir, relay: url, relayVersion: opts.version ?? "dev", logger, ...(opts.databaseUrl ? { sharedSettings: store } : {}) })
      : undefined;
    metricsServer = opts.metricsListen ? await startMetricsServer({ ...opts.metricsListen, registry: metrics.registry, logger }) : undefined;
  } catch (error) {
    return abandon(error);
  }
  let ready = true;
  const activity = createClusterActivity();
  const clusterApi = createClusterApiProxy({
    access, registry, logger, drain,
    agentWaitMs: opts.agentWaitMs ?? DEFAULT_AGENT_WAIT_MS,
    maxRequestsPerUser: opts.maxRequestsPerUser ?? DEFAULT_MAX_REQUESTS_PER_USER,
    metrics,
    activity,
    ...(audit ? { audit } : {}),
    ...(replicas ? { replicas } : {}),
  });
  const presence = createPresenceKeeper({ store, replicaId, logger });
  const keyWatch = createAgentKeyWatch({ store, feed, logger });
  const agentConnect = createAgentConnectHandler({ store, registry, logger, audience: url, rateLimiter, drain, tunnel: opts.tunnel, metrics, presence, keyWatch });
  const issuerKeys = external.length > 0 ? createIssuerKeySource(external) : undefined;
  const clientConfig = buildClientConfig({ relay: url, version: opts.version ?? "dev", minArcproxyVersion: opts.minArcproxyVersion, trustedIssuers: external });
  const app = createRelayApp({ store, registry, access, issuer, logger, issuerKeys, rateLimiter, clientConfig, downloads, statusPage: { activity, replicaId }, isReady: () => ready && !drain.draining });
  // The relay must not replace the process-wide Request/Response (tests and embedders share them).
  const honoListener = getRequestListener(app.fetch, { overrideGlobalObjects: false });

  routes = {
    request(req, res) {
      if (isClusterApiTarget(req.url ?? "")) void clusterApi.handleRequest(req, res);
      else void honoListener(req, res);
    },
    upgrade(req, socket, head) {
      const target = req.url ?? "";
      if (target === protocol.AGENT_CONNECT_PATH) void agentConnect(req, socket, head);
      else if (isClusterApiTarget(target)) void clusterApi.handleUpgrade(req, socket, head);
      else writeStatusToSocket(socket, new NotFound(`no upgrade endpoint at ${target.split("?")[0]}`));
    },
  };
  routesReady();
  logger.info("relay listening", {
    url, listen: `${opts.host}:${port}`, tls: Boolean(opts.tls), ...(opts.databaseUrl ? {} : { dataDir: opts.dataDir }),
    // What an operator checks first when every client seems to share one budget.
    ...(opts.trustedProxies ? { trustedProxies: opts.trustedProxies.rules } : {}),
  });

  let closing: Promise<void> | undefined;
  const closeNow = () => (closing ??= (async () => {
    drain.begin();
    server.close();
    server.closeAllConnections?.();
    await internal?.close();
    // A clean stop hands its clusters back at once: other replicas route again without waiting for the expiry.
    await presence.stop({ forget: true });
    await registry.closeAll();
    await feed.stop();
    await metricsServer?.close();
    await audit?.close();
    await store.close();
  })());
  return {
    url,
    listen: `${hostInUrl}:${port}`,
    port,
    store,
    metrics,
    ...(metricsServer ? { metricsUrl: metricsServer.url } : {}),
    ...(downloads
      ? { downloads: { publicKeySha256: downloads.publicKeySha256, publicPem: downloads.publicPem, files: downloads.document.files.length, version: downloads.document.version } }
      : {}),
    async shutdown(options = {}) {
      const delayMs = options.delayMs ?? DEFAULT_SHUTDOWN_DELAY_MS;
      const timeoutMs = options.timeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS;
      ready = false;
      logger.info("draining: health checks now fail", { delayMs, timeoutMs, tunnels: registry.list().length, inFlight: drain.inFlight });
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      drain.begin();
      server.close();
      server.closeIdleConnections?.();
      registry.drainAll();
      const settled = await drain.settled(timeoutMs);
      if (settled) logger.info("drained: every request finished");
      else logger.warn("drain deadline passed; cutting what is still open", { inFlight: drain.inFlight });
      await closeNow();
    },
    close: closeNow,
  };
}

function listen(server: http.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EADDRINUSE") reject(new Error(`${host}:${port} is already in use: pick another --listen port`, { cause: error }));
      else reject(error);
    });
    server.listen(port, host, () => resolve((server.address() as { port: number }).port));
  });
}

/**
 * The public URL as every client will compare it: the WHATWG URL serialisation (lower-case host,
 * no default port) without a trailing slash. Throws ConfigError for anything but a plain http(s)
 * URL: user info, a query or a fragment would end up in tokens' `iss` and in install.sh.
 */
function normalizePublicUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`--public-url ${JSON.stringify(value)} is not a URL; use e.g. https://relay.example.com`);
  }
  if ((url.protocol !== "https:" && url.protocol !== "http:") || url.username || url.password || url.search || url.hash) {
    throw new ConfigError(`--public-url ${JSON.stringify(value)}: use a plain http(s) URL without user info, query or fragment, e.g. https://relay.example.com`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}
