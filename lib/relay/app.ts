// The relay's HTTP API on hono: health, OIDC discovery and JWKS, cluster details, agent enrollment, admin API.
import { Hono, type Context } from "hono";
import { limitAuthentication, type AuthRateLimiter } from "./auth-rate-limit.ts";
import type { BuiltinIssuer } from "../auth/index.ts";
import { ArcError, BadRequest, NotFound, toStatus } from "../errors/index.ts";
import { validateClusterName } from "../kube/index.ts";
import type { Logger } from "../observe/index.ts";
import { protocol } from "../tunnel/index.ts";
import { registerAgentRoutes } from "./agent-routes.ts";
import type { IssuerKeySource } from "./issuer-keys.ts";
import { ADMIN_API_PATH, createAdminApi } from "./admin-api.ts";
import { enrollAgent } from "./enrollment.ts";
import type { RelayStore } from "./store/index.ts";
import type { TunnelRegistry } from "./tunnel-registry.ts";
import { remoteAddressOf, type UserAccess } from "./user-access.ts";

export interface RelayAppDeps {
  store: RelayStore;
  registry: TunnelRegistry;
  access: UserAccess;
  issuer: BuiltinIssuer;
  logger: Logger;
  /** Enrollment bodies are tiny; anything larger is refused before parsing. */
  maxBodyBytes?: number;
  /** Keys of the external issuers, for agents that cannot reach them. */
  issuerKeys?: IssuerKeySource;
  /** Failed enrollments spend the caller's address budget, like failed logins. */
  rateLimiter?: AuthRateLimiter;
  /** False once the relay began to drain; default always true. */
  isReady?: () => boolean;
}

export function createRelayApp(options: RelayAppDeps): Hono {
  const deps = { ...options, isReady: options.isReady ?? (() => true) };
  const app = new Hono();
  const maxBody = deps.maxBodyBytes ?? 16 * 1024;

  // Readiness: fails as soon as a drain begins, so a load balancer moves away first (/healthz is
  // the name the README and older probes use). Liveness stays ok while the process serves at all.
  const ready = (c: Context) => (deps.isReady() ? c.text("ok") : c.text("draining", 503));
  app.get("/healthz", ready);
  app.get("/readyz", ready);
  app.get("/livez", (c) => c.text("ok"));
  app.get("/.well-known/openid-configuration", (c) => c.json(deps.issuer.discovery()));
  app.get("/.well-known/jwks.json", (c) => c.json(deps.issuer.jwks()));

  app.get("/v1/clusters/:name", async (c) => {
    const name = validateClusterName(c.req.param("name"));
    const identity = await deps.access.authenticate(c.req.raw.headers, remoteAddressOf(c.env));
    await deps.access.authorize(identity, name, "cluster-user");
    const record = await deps.store.getCluster(name);
    if (!record) throw new NotFound(`cluster "${name}" is not registered with this relay`);
    const tunnel = deps.registry.get(name);
    return c.json({
      name,
      connected: tunnel !== undefined,
      agentVersion: tunnel?.agentVersion ?? record.agentVersion,
      kubernetesVersion: tunnel?.kubernetesVersion ?? record.kubernetesVersion,
      lastSeen: record.lastSeen?.toISOString(),
    });
  });

  app.post(protocol.AGENT_ENROLL_PATH, async (c) => {
    const length = Number(c.req.header("content-length") ?? NaN);
    if (!(length <= maxBody)) throw new BadRequest(`enrollment request must have a Content-Length of at most ${maxBody} bytes`);
    const body = await c.req.json().catch((cause: unknown) => {
      throw new BadRequest("enrollment request body must be JSON", { cause });
    });
    await limitAuthentication(deps.rateLimiter, remoteAddressOf(c.env), () => enrollAgent(deps.store, body ?? {}));
    deps.logger.info("agent enrolled", { cluster: body.cluster });
    return c.json({ enrolled: true, cluster: body.cluster }, 201);
  });

  registerAgentRoutes(app, deps);

  app.route(ADMIN_API_PATH, createAdminApi({ ...deps, maxBodyBytes: maxBody }));

  app.notFound((c) => c.json(toStatus(new NotFound(`no route for ${c.req.method} ${c.req.path}`)), 404));
  app.onError((error, c) => {
    const requestId = crypto.randomUUID();
    if (error instanceof ArcError && error.status < 500) deps.logger.info("request refused", { path: c.req.path, requestId, error });
    else deps.logger.error("request failed", { path: c.req.path, requestId, error });
    const status = toStatus(error, requestId);
    if (status.details) c.header("retry-after", String(status.details.retryAfterSeconds));
    return c.json(status, status.code as 400);
  });
  return app;
}
