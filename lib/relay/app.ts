// The relay's HTTP API on hono: health, OIDC discovery and JWKS, cluster details, agent enrollment, admin API.
import { Hono, type Context } from "hono";
import { limitAuthentication, type AuthRateLimiter } from "./auth-rate-limit.ts";
import type { BuiltinIssuer } from "../auth/index.ts";
import { ArcError, NotFound, isPeerHangup, toStatus } from "../errors/index.ts";
import { validateClusterName } from "../kube/index.ts";
import type { Logger } from "../observe/index.ts";
import { protocol } from "../tunnel/index.ts";
import { registerAgentRoutes } from "./agent-routes.ts";
import type { IssuerKeySource } from "./issuer-keys.ts";
import { ADMIN_API_PATH, createAdminApi } from "./admin-api.ts";
import { enrollAgent } from "./enrollment.ts";
import { readJsonBody } from "./json-body.ts";
import type { RelayStore } from "./store/index.ts";
import type { TunnelRegistry } from "./tunnel-registry.ts";
import { remoteAddressOf, type UserAccess } from "./user-access.ts";
import type { ClientConfig } from "./client-config.ts";
import type { DownloadCatalog } from "./downloads.ts";
import { registerDownloadRoutes } from "./downloads-routes.ts";
import { registerStatusPage } from "./status-page.ts";
import type { ClusterActivity } from "./activity.ts";

export interface RelayAppDeps {
  store: RelayStore;
  registry: TunnelRegistry;
  access: UserAccess;
  issuer: BuiltinIssuer;
  logger: Logger;
  /** Cap of every JSON body (enrollment, key rotation, admin), default 16 KiB; larger is 413. */
  maxBodyBytes?: number;
  /** Keys of the external issuers, for agents that cannot reach them. */
  issuerKeys?: IssuerKeySource;
  /**
   * Failed enrollments and agent tokens spend the caller's address budget, like failed logins
   * (user logins are limited by `access`, which holds the same limiter).
   */
  rateLimiter?: AuthRateLimiter;
  /** Served at /.well-known/cluster-connect; default: the relay's URL and version "dev", no login issuers. */
  clientConfig?: ClientConfig;
  /** The status page at `/` (for relay and cluster admins); absent, `/` is a 404. */
  statusPage?: { activity: ClusterActivity; replicaId: string };
  /** Release binaries (`--downloads-dir`); without it the download routes answer 404 saying so. */
  downloads?: DownloadCatalog;
  /** False once the relay began to drain; default always true. */
  isReady?: () => boolean;
}

/**
 * The relay's hono routes beside the Kubernetes proxy and the tunnel: `/healthz` `/readyz`
 * (failing once draining) and `/livez`; the built-in issuer's OIDC discovery and JWKS;
 * `GET /v1/clusters/{name}` (what arcproxy asks at start); agent enrollment, key rotation and
 * issuer keys; and the admin API under `/v1/admin`. Every JSON body is capped at `maxBodyBytes`
 * (16 KiB, 413 beyond); every credential goes through the rate limiter; every error is a
 * Kubernetes Status.
 */
export function createRelayApp(options: RelayAppDeps): Hono {
  const deps = { ...options, isReady: options.isReady ?? (() => true) };
  const app = new Hono();

  // Readiness: fails as soon as a drain begins, so a load balancer moves away first (/healthz is
  // the name the README and older probes use). Liveness stays ok while the process serves at all.
  const ready = (c: Context) => (deps.isReady() ? c.text("ok") : c.text("draining", 503));
  app.get("/healthz", ready);
  app.get("/readyz", ready);
  app.get("/livez", (c) => c.text("ok"));
  app.get("/.well-known/openid-configuration", (c) => c.json(deps.issuer.discovery()));
  app.get("/.well-known/jwks.json", (c) => c.json(deps.issuer.jwks()));

  app.get(protocol.CLIENT_CONFIG_PATH, (c) => c.json(deps.clientConfig ?? { relay: deps.issuer.issuer, version: "dev", loginIssuers: [] }));

  /** What arcproxy shows of a cluster: whether its agent is connected, its versions, when it was last seen. */
  // Connected: this replica holds the tunnel, or the store names another replica that does (its
  // presence not expired), as the status page decides. Only the local tunnel said so before, so a
  // replica without it called the cluster offline while it served it (found by the newcomer).
  const clusterView = async (name: string, heldElsewhere: (name: string) => Promise<boolean>) => {
    const record = await deps.store.getCluster(name);
    if (!record) return undefined;
    const tunnel = deps.registry.get(name);
    return {
      name,
      connected: tunnel !== undefined || await heldElsewhere(name),
      // An agent key is on record: the cluster is enrolled (its agent may be away); else it awaits enrollment.
      enrolled: record.agentKey !== undefined,
      agentVersion: tunnel?.agentVersion ?? record.agentVersion,
      kubernetesVersion: tunnel?.kubernetesVersion ?? record.kubernetesVersion,
      lastSeen: record.lastSeen?.toISOString(),
    };
  };

  app.get(protocol.CLUSTERS_PATH, async (c) => {
    const identity = await deps.access.authenticate(c.req.raw.headers, remoteAddressOf(c.env), c.req.raw.signal);
    const names = await deps.access.reachableClusters(identity, "cluster-user");
    const holders = new Set((await deps.store.listPresence(new Date())).map((p) => p.cluster));
    const held = async (name: string) => holders.has(name);
    return c.json((await Promise.all(names.map((name) => clusterView(name, held)))).filter((v) => v !== undefined));
  });

  app.get("/v1/clusters/:name", async (c) => {
    const name = validateClusterName(c.req.param("name"));
    const identity = await deps.access.authenticate(c.req.raw.headers, remoteAddressOf(c.env), c.req.raw.signal);
    await deps.access.authorize(identity, name, "cluster-user");
    const view = await clusterView(name, async (held) => (await deps.store.findTunnelHolder(held, new Date())) !== undefined);
    if (!view) throw new NotFound(`cluster "${name}" is not registered with this relay`);
    return c.json(view);
  });

  app.post(protocol.AGENT_ENROLL_PATH, async (c) => {
    // The secret is in the body, so the body is read (bounded) before the attempt, not after.
    const body = await readJsonBody(c, {
      what: `the enrollment request (POST ${protocol.AGENT_ENROLL_PATH})`,
      expected: '{"cluster": NAME, "token": <from arcrelay cluster add>, "publicKey": <Ed25519 public JWK>}',
      maxBytes: deps.maxBodyBytes,
    });
    const cluster = await limitAuthentication(deps.rateLimiter, remoteAddressOf(c.env), () => enrollAgent(deps.store, body), c.req.raw.signal);
    deps.logger.info("agent enrolled", { cluster });
    return c.json({ enrolled: true, cluster }, 201);
  });

  registerAgentRoutes(app, deps);
  registerDownloadRoutes(app, deps.issuer.issuer, deps.downloads);
  if (deps.statusPage) {
    registerStatusPage(app, { store: deps.store, registry: deps.registry, access: deps.access, relayUrl: deps.issuer.issuer, ...deps.statusPage });
  }

  app.route(ADMIN_API_PATH, createAdminApi(deps));

  app.notFound((c) => c.json(toStatus(new NotFound(`no route for ${c.req.method} ${c.req.path}`)), 404));
  app.onError((error, c) => {
    const requestId = crypto.randomUUID();
    // A client that hung up while it waited (for its turn to authenticate) reads no answer.
    if (isPeerHangup(error)) deps.logger.debug("client went away", { path: c.req.path, requestId });
    else if (error instanceof ArcError && error.status < 500) deps.logger.info("request refused", { path: c.req.path, requestId, error });
    else deps.logger.error("request failed", { path: c.req.path, requestId, error });
    const status = toStatus(error, requestId);
    if (status.details) c.header("retry-after", String(status.details.retryAfterSeconds));
    return c.json(status, status.code as 400);
  });
  return app;
}
