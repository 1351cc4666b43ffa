// Accepts an agent's WebSocket: authenticate -> upgrade -> register -> serve -> deregister.
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { calculateJwkThumbprint } from "jose";
import { BadRequest, ShuttingDown, isPeerHangup, writeStatusToSocket } from "../errors/index.ts";
import { firstHeader } from "../http/index.ts";
import type { Logger } from "../observe/index.ts";
import {
  acceptWebSocket, checkWebSocketHandshake, openTunnelClient, protocol, type LivenessOptions, type WebSocketStream,
} from "../tunnel/index.ts";
import type { AuthRateLimiter } from "./auth-rate-limit.ts";
import { authenticateAgent } from "./agent-routes.ts";
import type { RelayStore } from "./store/index.ts";
import type { AgentTunnel, TunnelRegistry } from "./tunnel-registry.ts";
import { clientAddress } from "./client-address.ts";
import type { DisconnectReason, RelayMetrics } from "./metrics.ts";
import type { PresenceKeeper } from "./presence.ts";
import type { AgentKeyWatch } from "./agent-key-watch.ts";

export interface AgentConnectDeps {
  store: RelayStore;
  registry: TunnelRegistry;
  logger: Logger;
  /** The audience agents put in their connection tokens: the relay's public URL. */
  audience: string;
  /** Failed agent logins spend the address's budget too (authenticateAgent, as on every agent route). */
  rateLimiter?: AuthRateLimiter;
  /** A draining relay takes no new tunnel: the agent dials again (another replica, or this one once back). */
  drain?: { readonly draining: boolean };
  /** Liveness of the tunnels (ping interval, dead after), ms. */
  tunnel?: Pick<LivenessOptions, "pingIntervalMs" | "deadAfterMs">;
  metrics?: RelayMetrics;
  /** Records this replica as the holder of each tunnel it accepts. */
  presence: PresenceKeeper;
  /** Closes a tunnel whose key is revoked or rotated, within seconds, on whichever replica holds it. */
  keyWatch: AgentKeyWatch;
}

/** Why this tunnel ends, for arcrelay_tunnel_disconnects_total; the first cause seen wins. */
interface TunnelFate {
  reason?: DisconnectReason;
}

/**
 * The `upgrade` handler of `/v1/agent/connect`: authenticates the agent's token (signed with its
 * cluster's registered key, audience the relay's public URL; rate-limited per address), accepts
 * the WebSocket with the tunnel's subprotocol, opens the HTTP/2 client over it and registers the
 * tunnel for the cluster (replacing an older one). The tunnel is closed when the cluster's key is
 * revoked or rotated (told by the store's change feed), when it stops answering pings (`tunnel`), or on
 * drain. Refusals are answered on the socket as a Status: 400 (a malformed WebSocket handshake, or
 * one without the tunnel's subprotocol; checked before the token), 401 (bad token), 429 (rate
 * limit), 503 (draining). Never throws.
 */
export function createAgentConnectHandler(deps: AgentConnectDeps) {
  return async function handleAgentConnect(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const refusal = checkWebSocketHandshake(req, protocol.TUNNEL_SUBPROTOCOL);
    if (refusal) {
      writeStatusToSocket(socket, new BadRequest(`agent tunnel handshake refused: ${refusal.message}`));
      return;
    }
    if (deps.drain?.draining) {
      writeStatusToSocket(socket, new ShuttingDown("the relay is shutting down and takes no new tunnel; dial again", { retryAfterSeconds: 1 }));
      return;
    }
    let cluster: string;
    let keyThumbprint: string;
    // An agent that hangs up while its login waits behind others gives its place up.
    const hungUp = new AbortController();
    const onClose = () => hungUp.abort();
    socket.once("close", onClose);
    try {
      const agent = await authenticateAgent(deps, req.headers, clientAddress(req.socket), hungUp.signal);
      cluster = agent.cluster;
      keyThumbprint = await calculateJwkThumbprint(agent.key, "sha256");
    } catch (error) {
      if (isPeerHangup(error)) return;
      deps.logger.warn("agent connection refused", { remote: clientAddress(req.socket), error });
      writeStatusToSocket(socket, error);
      return;
    } finally {
      socket.off("close", onClose);
    }
    const hello: AgentHello = {
      cluster,
      keyThumbprint,
      agentVersion: firstHeader(req.headers[protocol.AGENT_VERSION_HEADER]),
      kubernetesVersion: firstHeader(req.headers[protocol.KUBE_VERSION_HEADER]),
      remote: clientAddress(req.socket),
    };
    if (socket.destroyed) return;
    serveAgentTunnel(deps, hello, (liveness) => acceptWebSocket(req, socket, head, protocol.TUNNEL_SUBPROTOCOL, liveness));
  };
}

/** What a tunnel keeps of the agent's upgrade request: a few strings, not the request itself. */
interface AgentHello {
  cluster: string;
  keyThumbprint: string;
  agentVersion?: string;
  kubernetesVersion?: string;
  remote: string;
}

/**
 * Accepts the WebSocket (`accept`) and serves the tunnel until it ends. Kept apart from the upgrade
 * handler so that the closures living as long as the tunnel hold `hello`, not the upgrade's
 * request, socket and head (a closure keeps the variables of its enclosing scopes that any
 * closure there uses).
 */
function serveAgentTunnel(deps: AgentConnectDeps, hello: AgentHello, accept: (liveness: LivenessOptions) => WebSocketStream): void {
  const { cluster, keyThumbprint } = hello;
  // The cluster goes into each line rather than into a child logger: a pino child per idle tunnel
  // costs memory for the four lines a tunnel ever logs.
  const log = deps.logger;
  const fate: TunnelFate = {};
  const stream = accept({
    ...deps.tunnel,
    onDead: () => {
      fate.reason ??= "dead";
      log.warn("agent tunnel stopped answering pings; closing it", { cluster });
    },
  });
  const tunnel = openTunnelClient(stream, (error) => {
    if (!isPeerHangup(error)) log.warn("tunnel session error", { cluster, error });
  });
  const entry: AgentTunnel = {
    cluster,
    tunnel,
    agentVersion: hello.agentVersion,
    kubernetesVersion: hello.kubernetesVersion,
    connectedAt: new Date(),
  };
  deps.registry.register(entry);
  deps.metrics?.tunnelConnects.inc({ cluster });
  void tunnel.goaway.then(() => {
    fate.reason ??= "draining";
    log.info("agent is moving its tunnel (GOAWAY): requests in flight finish here, new ones wait for its next tunnel", { cluster });
  });
  log.info("agent connected", { cluster, agentVersion: entry.agentVersion, kubernetesVersion: entry.kubernetesVersion, remote: hello.remote });
  const unwatch = deps.keyWatch.track(cluster, keyThumbprint, (reason, why) => {
    fate.reason ??= reason;
    log.info("closing agent tunnel: its key is no longer enrolled", { cluster, reason: why, kid: keyThumbprint });
    void tunnel.close();
  });
  void deps.presence.connected(entry);
  void tunnel.done.finally(async () => {
    unwatch();
    const current = deps.registry.unregister(entry);
    deps.metrics?.tunnelDisconnects.inc({ reason: fate.reason ?? (deps.drain?.draining ? "relay_shutdown" : current ? "closed" : "replaced") });
    if (current) {
      log.info("agent disconnected", { cluster });
      await deps.presence.disconnected(entry);
    }
  });
}
