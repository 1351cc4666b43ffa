// Serves /v1/clusters/{cluster}/k8s/...: authenticate, authorize, route to the cluster's tunnel.
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { AgentNotConnected, ArcError, isPeerHangup, statusResponse } from "../kube/index.ts";
import type { Logger } from "../observe/index.ts";
import {
  endToEndHeaders, forwardHttpRequest, forwardUpgrade, protocol, renderResponseHead, writeStatusToSocket,
  type ForwardTarget, type HeaderMap,
} from "../tunnel/index.ts";
import { AuthRateLimited } from "./auth-rate-limit.ts";
import { parseClusterApiTarget } from "./cluster-path.ts";
import type { TunnelRegistry } from "./tunnel-registry.ts";
import type { UserAccess } from "./user-access.ts";

export interface ClusterApiProxy {
  handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void>;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void>;
}

export function createClusterApiProxy(deps: { access: UserAccess; registry: TunnelRegistry; logger: Logger }): ClusterApiProxy {
  async function resolveTarget(req: IncomingMessage, requestId: string): Promise<ForwardTarget> {
    const { cluster, kubePath } = parseClusterApiTarget(req.url ?? "/");
    const identity = await deps.access.authenticate(req.headers, req.socket.remoteAddress);
    await deps.access.authorize(identity, cluster, "cluster-user");
    const entry = deps.registry.get(cluster);
    if (!entry) {
      throw new AgentNotConnected(
        `cluster "${cluster}" is offline: its agent is not connected to the relay; check the arcagent pod in that cluster (arcrelay cluster list shows when it was last seen)`,
      );
    }
    deps.logger.debug("request", { cluster, requestId, user: identity.user, method: req.method, path: kubePath.split("?")[0] });
    return { tunnel: entry.tunnel, cluster, requestId, path: kubePath, headers: relayedHeaders(req) };
  }

  function logFailure(error: unknown, req: IncomingMessage, requestId: string): void {
    if (isPeerHangup(error)) return;
    const fields = { requestId, method: req.method, path: (req.url ?? "").split("?")[0], address: req.socket.remoteAddress, error };
    if (error instanceof ArcError && error.status < 500) deps.logger.info("request refused", fields);
    else deps.logger.warn("request failed", fields);
  }

  return {
    async handleRequest(req, res) {
      const requestId = randomUUID();
      res.setHeader("x-arc-request-id", requestId);
      try {
        const target = await resolveTarget(req, requestId);
        await forwardHttpRequest(target, req, res);
      } catch (error) {
        logFailure(error, req, requestId);
        if (!res.headersSent) {
          const { code, body, headers } = statusResponse(error, requestId);
          res.writeHead(code, { ...headers, ...retryAfter(error) }).end(body);
        }
      }
    },
    async handleUpgrade(req, socket, head) {
      const requestId = randomUUID();
      try {
        const target = await resolveTarget(req, requestId);
        await forwardUpgrade(target, req, socket, head);
      } catch (error) {
        logFailure(error, req, requestId);
        if (error instanceof AuthRateLimited) writeRateLimitedToSocket(socket, error, requestId);
        else writeStatusToSocket(socket, error, requestId);
      }
    },
  };
}

// The relay passes the caller's token on (the agent verifies it again) but drops impersonation
// headers already here, as defence in depth: the agent strips them too.
function relayedHeaders(req: IncomingMessage): HeaderMap {
  const headers = endToEndHeaders(req.headers);
  for (const name of Object.keys(headers)) {
    if (name === protocol.KUBE_TOKEN_HEADER) continue;
    if (name.startsWith("impersonate-") || name.startsWith("x-arc-") || name.startsWith("x-remote-")) delete headers[name];
  }
  return headers;
}

function retryAfter(error: unknown): Record<string, string> {
  return error instanceof AuthRateLimited ? { "retry-after": String(error.retryAfterSeconds) } : {};
}

/** writeStatusToSocket with a `Retry-After`, which client-go honours before retrying a 429. */
function writeRateLimitedToSocket(socket: Duplex, error: AuthRateLimited, requestId: string): void {
  if (socket.destroyed || socket.writableEnded) return;
  const { code, body, headers } = statusResponse(error, requestId);
  const head = renderResponseHead(code, "Too Many Requests", {
    ...headers, ...retryAfter(error), "content-length": String(Buffer.byteLength(body)), connection: "close",
  });
  socket.end(head + body);
}
