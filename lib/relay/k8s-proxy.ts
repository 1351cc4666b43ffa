// Serves /v1/clusters/{cluster}/k8s/...: authenticate, authorize, route to the cluster's tunnel.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { AgentNotConnected, ArcError, ShuttingDown, TooManyRequests, isPeerHangup, toStatus, writeStatusResponse, writeStatusToSocket } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";
import {
  checkForwardedHeaderFields, hasRequestBody, isWatchRequest, onResponseOver, parseImpersonationRequest, relayRequestHeaders, requestIdOf,
} from "../http/index.ts";
import { protocol } from "../tunnel/index.ts";
import { parseClusterApiTarget } from "./cluster-path.ts";
import type { RelayDrain } from "./drain.ts";
import type { TunnelRegistry } from "./tunnel-registry.ts";
import { forwardHttpRequest, forwardUpgrade, type ForwardTarget } from "./tunnel-forward.ts";
import type { UserAccess } from "./user-access.ts";
import { clientAddress, sourceIPs } from "./client-address.ts";
import { markNotForwarded } from "./not-forwarded.ts";
import type { RelayMetrics, RequestKind } from "./metrics.ts";
import { kubernetesVerb, redactRequestUri, type AuditEvent, type AuditLog } from "./audit-log.ts";
import type { Identity } from "../auth/index.ts";
import type { ClusterActivity } from "./activity.ts";
import type { ReplicaSet } from "./replica-set.ts";
import type { AgentTunnel } from "./tunnel-registry.ts";
import type { ReplicaRecord } from "./store/index.ts";
import { firstDefined } from "./first-defined.ts";
import { ReplicaMissed, forwardToReplica, forwardUpgradeToReplica, type ReplicaForwardTarget } from "./replica-forward.ts";

export interface ClusterApiProxy {
  handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void>;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void>;
}

export interface ClusterApiProxyDeps {
  access: UserAccess;
  registry: TunnelRegistry;
  logger: Logger;
  drain: RelayDrain;
  /** How long a request waits for a cluster's agent to (re)connect before a 503 (ms). */
  agentWaitMs: number;
  /** Requests and upgrades one user may have in flight at once; beyond it, 429. */
  maxRequestsPerUser: number;
  metrics?: RelayMetrics;
  /** One record per request (and per watch or session start and end); none when absent. */
  audit?: AuditLog;
  /** In flight, rate and refusals per cluster, for the status page. */
  activity?: ClusterActivity;
  /** With replicas (a shared database): a cluster whose tunnel another replica holds is forwarded there. */
  replicas?: ReplicaSet;
}

/** Where a request goes: a tunnel here, or the replica that holds it. */
type Route =
  | { kind: "local"; target: ForwardTarget }
  | { kind: "replica"; target: ReplicaForwardTarget };

/** A forwarded request is routed again at most this many times when the holder moved or died. */
const MAX_REROUTES = 2;

/** Clients should retry a refusal from a draining relay this soon (seconds). */
const DRAIN_RETRY_AFTER_SECONDS = 1;
/** ... and a request for a cluster whose agent is restarting (seconds). */
const AGENT_RETRY_AFTER_SECONDS = 2;
/** An agent whose tunnel went away this recently is taken to be restarting (ms). */
const AGENT_RESTART_WINDOW_MS = 60_000;

/**
 * The relay's Kubernetes API front: for every request, refuses work while draining, authenticates
 * and authorizes the caller, waits up to `agentWaitMs` for the cluster's tunnel, and forwards.
 * Every refusal is a Kubernetes Status carrying the cluster, the request id and what to do next.
 */
export function createClusterApiProxy(deps: ClusterApiProxyDeps): ClusterApiProxy {
  const perUser = new Map<string, number>();

  async function resolveTarget(req: IncomingMessage, requestId: string, gone: AbortSignal, measure: RequestMeasure): Promise<{ route: Route; user: string }> {
    if (deps.drain.draining) {
      throw new ShuttingDown("the relay is restarting and takes no new requests; retry in a second (another replica, or this one once it is back)", {
        retryAfterSeconds: DRAIN_RETRY_AFTER_SECONDS,
      });
    }
    const { cluster, kubePath } = parseClusterApiTarget(req.url ?? "/");
    checkForwardedHeaderFields(req.rawHeaders, `cluster "${cluster}" (request id ${requestId})`);
    const identity = await deps.access.authenticate(req.headers, clientAddress(req), gone);
    measure.identity = identity;
    const record = await deps.access.authorize(identity, cluster, "cluster-user");
    // kubectl --as: read and checked here (400 for a malformed request); the agent decides whether it is allowed.
    const headers = relayRequestHeaders(req.rawHeaders, parseImpersonationRequest(req.rawHeaders));
    // No agent ever enrolled: nothing to wait for, and "offline" would send the user looking for a pod that is not there.
    if (!record.agentKey && !deps.registry.get(cluster)) {
      throw new AgentNotConnected(
        `cluster "${cluster}" is offline: no agent is enrolled for it (none yet, or its key was revoked) (request id ${requestId}); ` +
          `its admin installs arcagent in that cluster with a token from arcrelay cluster enroll-token ${cluster}`,
        // As below: nothing reached the cluster, so a client may send it again while an agent is expected back.
        deps.registry.expectedBack(cluster, AGENT_RESTART_WINDOW_MS) ? { retryAfterSeconds: AGENT_RETRY_AFTER_SECONDS } : undefined,
      );
    }
    const found = await findRoute(cluster, gone);
    if (!found) {
      throw new AgentNotConnected(
        `cluster "${cluster}" is offline: its agent has not been connected to the relay for the last ${deps.agentWaitMs / 1000}s ` +
          `(request id ${requestId}); check the arcagent pod in that cluster (kubectl -n cluster-connect logs deploy/arcagent) ` +
          `and when it was last seen (arcrelay cluster list)`,
        // Nothing reached the cluster, so any request may be sent again: when its agent is probably
        // restarting, Retry-After has arcproxy and client-go do so, which carries kubectl over the
        // restart; a cluster offline for longer fails fast.
        deps.registry.expectedBack(cluster, AGENT_RESTART_WINDOW_MS) ? { retryAfterSeconds: AGENT_RETRY_AFTER_SECONDS } : undefined,
      );
    }
    deps.logger.debug("request", { cluster, requestId, user: identity.user, method: req.method, path: kubePath.split("?")[0], ...("holder" in found ? { replica: found.holder.replicaId } : {}) });
    measure.route(cluster, kubePath);
    return { route: toRoute(found, { cluster, requestId, path: kubePath, url: req.url ?? "/", headers }), user: identity.user };
  }

  /**
   * The cluster's tunnel here, or the live replica that holds it; else waits up to agentWaitMs for
   * either (an agent reconnecting here or to another replica). Undefined when none came in time
   * or the client went away.
   */
  async function findRoute(cluster: string, gone: AbortSignal): Promise<{ entry: AgentTunnel } | { holder: ReplicaRecord } | undefined> {
    const entry = deps.registry.get(cluster);
    if (entry) return { entry };
    const holder = await deps.replicas?.holderOf(cluster);
    if (holder) return { holder };
    const stop = new AbortController();
    const cancel = () => stop.abort();
    gone.addEventListener("abort", cancel, { once: true });
    try {
      const found = await firstDefined<{ entry: AgentTunnel } | { holder: ReplicaRecord }>([
        deps.registry.waitFor(cluster, deps.agentWaitMs, stop.signal).then((e) => (e ? { entry: e } : undefined)),
        ...(deps.replicas ? [deps.replicas.waitForHolder(cluster, deps.agentWaitMs, stop.signal).then((h) => (h ? { holder: h } : undefined))] : []),
      ]);
      deps.metrics?.agentWaits.inc({ outcome: found ? "connected" : "timeout" });
      return found;
    } finally {
      gone.removeEventListener("abort", cancel);
      stop.abort();
    }
  }

  function toRoute(found: { entry: AgentTunnel } | { holder: ReplicaRecord }, r: { cluster: string; requestId: string; path: string; url: string; headers: ForwardTarget["headers"] }): Route {
    if ("entry" in found) return { kind: "local", target: { tunnel: found.entry.tunnel, cluster: r.cluster, requestId: r.requestId, path: r.path, headers: r.headers } };
    return { kind: "replica", target: { holder: found.holder, secret: deps.replicas!.secret, cluster: r.cluster, requestId: r.requestId, url: r.url, headers: r.headers } };
  }

  /**
   * Sends the request where `route` says; when the replica named there could not be reached or no
   * longer holds the tunnel, and nothing of the request was consumed (no body), routes it again
   * (at most MAX_REROUTES times).
   */
  async function dispatch(route: Route, send: (route: Route) => Promise<void>, canReroute: boolean, gone: AbortSignal): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        if (route.kind === "replica") deps.metrics?.replicaForwards.inc({ outcome: "forwarded" });
        return await send(route);
      } catch (error) {
        if (!(error instanceof ReplicaMissed) || route.kind !== "replica" || !canReroute || attempt >= MAX_REROUTES) throw error;
        deps.metrics?.replicaForwards.inc({ outcome: "rerouted" });
        // Unreachable or draining: not routed to again until its record changes or expires.
        if (error.unreachable || error.draining) deps.replicas?.unreachable(route.target.holder);
        deps.logger.info("routing a request again: the replica that held the tunnel is gone or moved it", {
          cluster: route.target.cluster, requestId: route.target.requestId, replica: route.target.holder.replicaId, internalUrl: route.target.holder.internalUrl,
          unreachable: error.unreachable, draining: error.draining,
        });
        const found = await findRoute(route.target.cluster, gone);
        if (!found) throw error;
        const { cluster, requestId, url, headers } = route.target;
        route = toRoute(found, { cluster, requestId, url, headers, path: parseClusterApiTarget(url).kubePath });
      }
    }
  }

  /** Counts the user's request; throws 429 beyond the limit. Returns the release function. */
  function admit(user: string, requestId: string): () => void {
    const current = perUser.get(user) ?? 0;
    if (current >= deps.maxRequestsPerUser) {
      throw new TooManyRequests(
        `user "${user}" has ${current} requests in flight through this relay, the most allowed (request id ${requestId}); ` +
          "wait for some to finish, or ask the relay admin to raise --max-requests-per-user",
        { retryAfterSeconds: 1 },
      );
    }
    perUser.set(user, current + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (perUser.get(user) ?? 1) - 1;
      if (left <= 0) perUser.delete(user);
      else perUser.set(user, left);
    };
  }

  function logFailure(error: unknown, req: IncomingMessage, requestId: string, measure: RequestMeasure): void {
    if (isPeerHangup(error)) return;
    const status = toStatus(error, requestId);
    if (req.headers.authorization !== undefined) deps.activity?.refused({ cluster: measure.cluster || clusterNameOf(req.url ?? ""), user: measure.identity?.user ?? "", code: status.code, message: status.message });
    const fields = { requestId, method: req.method, path: (req.url ?? "").split("?")[0], address: clientAddress(req), error };
    if (error instanceof ArcError && error.status < 500) deps.logger.info("request refused", fields);
    else deps.logger.warn("request failed", fields);
  }

  return {
    async handleRequest(req, res) {
      const requestId = requestIdOf(req.headers);
      res.setHeader(protocol.REQUEST_ID_HEADER, requestId);
      const over = deps.drain.track();
      const gone = abortOnClose(res, () => res.writableFinished);
      const watch = isWatchRequest(req.method, req.url ?? "");
      const measure = measureRequest(deps, req, requestId, watch ? "watch" : "request");
      onResponseOver(res, () => measure.done(res.statusCode));
      let release: (() => void) | undefined;
      try {
        const { route, user } = await resolveTarget(req, requestId, gone, measure);
        release = admit(user, requestId);
        const hasBody = hasRequestBody(req.headers);
        await dispatch(route, (r) => r.kind === "local"
          ? forwardHttpRequest(r.target, req, res, { ...(watch ? { endWatch: deps.drain.watchEnd } : {}), observe: measure })
          : forwardToReplica(r.target, req, res, measure), !hasBody, gone);
      } catch (error) {
        logFailure(error, req, requestId, measure);
        markNotForwarded(res, error);
        if (!res.headersSent) writeStatusResponse(res, error, requestId);
      } finally {
        release?.();
        over();
      }
    },
    async handleUpgrade(req, socket, head) {
      const requestId = requestIdOf(req.headers);
      const over = deps.drain.track();
      const gone = abortOnClose(socket);
      const measure = measureRequest(deps, req, requestId, "upgrade");
      let code = 0;
      socket.once("close", () => measure.done(code));
      let release: (() => void) | undefined;
      try {
        const { route, user } = await resolveTarget(req, requestId, gone, measure);
        release = admit(user, requestId);
        const observe = { ...measure, head: (status: number) => { code = status; measure.head(status); } };
        await dispatch(route, (r) => r.kind === "local"
          ? forwardUpgrade(r.target, req, socket, head, observe)
          : forwardUpgradeToReplica(r.target, req, socket, head, observe), true, gone);
      } catch (error) {
        logFailure(error, req, requestId, measure);
        code = toStatus(error).code;
        writeStatusToSocket(socket, error, requestId);
      } finally {
        release?.();
        over();
      }
    },
  };
}

/**
 * Aborts when the client goes away before its answer is through (`finished`; an upgraded socket
 * has none, so its close always aborts); a response that closes after it is complete aborts nothing (every request closes, and an abort builds a
 * DOMException with a stack: 2.9% of the relay's CPU).
 */
function abortOnClose(emitter: NodeJS.EventEmitter, finished?: () => boolean): AbortSignal {
  const controller = new AbortController();
  emitter.once("close", () => { if (!finished?.()) controller.abort(); });
  return controller.signal;
}

/** The longest request URI an audit record keeps (a 1 MiB label selector is cut, not stored). */
const MAX_AUDITED_URI = 4096;

/** One request's figures, for the relay's metrics and its audit log. */
type RequestMeasure = ReturnType<typeof measureRequest>;

/**
 * One request's figures: in flight while it lasts, time to its response head, bytes both ways,
 * and at the end one count by cluster (once routed to a tunnel, so only registered clusters become
 * label values), verb, code and kind, and its audit records (for watches and upgrades one when the
 * response starts, and one when it ends; for the rest one at the end).
 */
function measureRequest(deps: ClusterApiProxyDeps, req: IncomingMessage, requestId: string, kind: RequestKind) {
  const metrics = deps.metrics;
  const verb = req.method ?? "GET";
  const started = performance.now();
  const receivedAt = new Date();
  let headSeen = false;
  let finished = false;
  let bytesIn = 0;
  let bytesOut = 0;
  metrics?.activeStreams.inc({ kind });
  // A request with no credential at all is refused before anything: it is counted, not audited
  // and not listed, so anonymous floods cannot rotate real records out of the audit log.
  const anonymous = req.headers.authorization === undefined;
  const audit = (stage: AuditEvent["stage"], code: number) => {
    if (!deps.audit || (anonymous && !measure.identity)) return;
    const identity = measure.identity;
    deps.audit.write({
      kind: "Event", apiVersion: "audit.k8s.io/v1", level: "Metadata", auditID: requestId, stage,
      requestURI: redactRequestUri(measure.uri || (req.url ?? "")).slice(0, MAX_AUDITED_URI),
      verb: kubernetesVerb(verb, req.url ?? "", kind === "upgrade"),
      user: identity
        ? { username: identity.user, groups: identity.groups, extra: { "cluster-connect.io/issuer": [identity.issuer] } }
        : { username: "" },
      sourceIPs: sourceIPs(req),
      ...(req.headers["user-agent"] ? { userAgent: String(req.headers["user-agent"]).slice(0, 256) } : {}),
      responseStatus: { code },
      requestReceivedTimestamp: receivedAt.toISOString(),
      stageTimestamp: new Date().toISOString(),
      annotations: {
        "cluster-connect.io/cluster": measure.cluster,
        "cluster-connect.io/kind": kind,
        ...(stage === "ResponseComplete"
          ? { "cluster-connect.io/duration-seconds": ((performance.now() - started) / 1000).toFixed(3), "cluster-connect.io/bytes-in": String(bytesIn), "cluster-connect.io/bytes-out": String(bytesOut) }
          : {}),
      },
    });
  };
  const measure = {
    cluster: "",
    uri: "",
    identity: undefined as Identity | undefined,
    /** Reached a tunnel: the cluster is a label value and an activity key from now on. */
    route(cluster: string, uri: string) {
      measure.cluster = cluster;
      measure.uri = uri;
      deps.activity?.started(cluster);
    },
    head(status?: number) {
      if (headSeen) return;
      headSeen = true;
      metrics?.requestDuration.observe({ kind }, (performance.now() - started) / 1000);
      // A session (exec, port-forward) or a watch is audited when it starts, and again when it ends.
      if (status !== undefined && kind !== "request" && !finished) audit("ResponseStarted", status);
    },
    bytesIn(n: number) {
      bytesIn += n;
      metrics?.bytes.inc({ direction: "in" }, n);
    },
    bytesOut(n: number) {
      bytesOut += n;
      metrics?.bytes.inc({ direction: "out" }, n);
    },
    done(code: number) {
      if (finished) return;
      finished = true;
      measure.head(); // a refusal's head is its end
      metrics?.activeStreams.dec({ kind });
      metrics?.requests.inc({ cluster: measure.cluster, verb, code: String(code), kind });
      if (measure.cluster) deps.activity?.finished(measure.cluster);
      audit("ResponseComplete", code);
    },
  };
  return measure;
}

/** The cluster a refused request named, for the status page (only a valid name; else empty). */
function clusterNameOf(url: string): string {
  try {
    return parseClusterApiTarget(url).cluster;
  } catch {
    return "";
  }
}
