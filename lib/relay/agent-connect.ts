// Accepts an agent's WebSocket: authenticate -> upgrade -> register -> serve -> deregister.
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { calculateJwkThumbprint } from "jose";
import { BadRequest, ShuttingDown, isPeerHangup, writeStatusToSocket } from "../errors/index.ts";
import { firstHeader } from "../http/index.ts";
import type { Logger } from "../observe/index.ts";
import {
  acceptWebSocket, checkWebSocketHandshake, openTunnelClient, protocol, type LivenessOptions, type TunnelClientEvents,
  type WebSocketStream,
} from "../tunnel/index.ts";
import type { AuthRateLimiter } from "./auth-rate-limit.ts";
import { authenticateAgent } from "./agent-routes.ts";
import type { RelayStore } from "./store/index.ts";
import type { AgentTunnel, TunnelRegistry } from "./tunnel-registry.ts";
import { clientAddress } from "./client-address.ts";
import type { DisconnectReason, RelayMetrics } from "./metrics.ts";
import type { PresenceKeeper } from "./presence.ts";
import type { AgentKeyWatch, KeyLossReason, KeyWatcher } from "./agent-key-watch.ts";

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
      writeStatusToSocket(socket, new BadRequest(`agent tunnel handshake refused: ${refusal}`));
      return;
    }
    if (refusedWhileDraining(deps, socket)) return;
    let cluster: string;
    let keyThumbprint: string;
    // An agent that hangs up (or half-closes) while its login waits behind others gives its place up.
    const hungUp = new AbortController();
    const onClose = () => hungUp.abort();
    socket.once("close", onClose);
    socket.once("end", onClose);
    try {
      const agent = await authenticateAgent(deps, req.headers, clientAddress(req), hungUp.signal);
      cluster = agent.cluster;
      keyThumbprint = await calculateJwkThumbprint(agent.key, "sha256");
    } catch (error) {
      if (isPeerHangup(error)) return;
      deps.logger.warn("agent connection refused", { remote: clientAddress(req), error });
      writeStatusToSocket(socket, error);
      return;
    } finally {
      socket.off("close", onClose);
      socket.off("end", onClose);
    }
    const hello: AgentHello = {
      cluster,
      keyThumbprint,
      agentVersion: firstHeader(req.headers[protocol.AGENT_VERSION_HEADER]),
      kubernetesVersion: firstHeader(req.headers[protocol.KUBE_VERSION_HEADER]),
      remote: clientAddress(req),
    };
    // The login took time: an agent that has given up on this dial meanwhile (its handshake timed
    // out, it restarted) must not have it accepted, or the tunnel would replace its live one.
    if (socket.destroyed || !socket.readable || !socket.writable) {
      socket.destroy();
      return;
    }
    // Checked again: a drain that began during the login has already sent GOAWAY to every tunnel.
    if (refusedWhileDraining(deps, socket)) return;
    serveAgentTunnel(deps, hello, (liveness) => acceptWebSocket(req, socket, head, protocol.TUNNEL_SUBPROTOCOL, liveness));
  };
}

/** A draining relay takes no new tunnel: 503 with Retry-After, and the agent dials again (another replica, or this one once back). */
function refusedWhileDraining(deps: AgentConnectDeps, socket: Duplex): boolean {
  if (!deps.drain?.draining) return false;
  writeStatusToSocket(socket, new ShuttingDown("the relay is shutting down and takes no new tunnel; dial again", { retryAfterSeconds: 1 }));
  return true;
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
 * handler so that what lives as long as the tunnel holds `hello`, not the upgrade's request,
 * socket and head (a closure keeps the variables of its enclosing scopes that any closure there
 * uses).
 */
function serveAgentTunnel(deps: AgentConnectDeps, hello: AgentHello, accept: (liveness: LivenessOptions) => WebSocketStream): void {
  new ServedAgentTunnel(deps, hello, accept);
}

/**
 * One agent's tunnel from accept to end, as one object whose methods hear its events (the HTTP/2
 * session's, the liveness sweep's, the key watch's): a relay holds one per idle agent, and a
 * closure and a promise reaction per event would cost more. Logs carry the cluster in each line
 * rather than through a child logger, for the same reason.
 */
class ServedAgentTunnel implements TunnelClientEvents, KeyWatcher {
  readonly keyThumbprint: string;
  private readonly entry: AgentTunnel;
  /** Why this tunnel ends, for arcrelay_tunnel_disconnects_total; the first cause seen wins. */
  private reason?: DisconnectReason;

  constructor(private readonly deps: AgentConnectDeps, hello: AgentHello, accept: (liveness: LivenessOptions) => WebSocketStream) {
    const { cluster } = hello;
    this.keyThumbprint = hello.keyThumbprint;
    const stream = accept({ ...deps.tunnel, onDead: this.dead.bind(this) });
    this.entry = {
      cluster,
      tunnel: openTunnelClient(stream, this),
      agentVersion: hello.agentVersion,
      kubernetesVersion: hello.kubernetesVersion,
      connectedAt: new Date(),
    };
    deps.registry.register(this.entry);
    deps.metrics?.tunnelConnects.inc({ cluster });
    deps.logger.info("agent connected", { cluster, agentVersion: hello.agentVersion, kubernetesVersion: hello.kubernetesVersion, remote: hello.remote });
    deps.keyWatch.track(cluster, this);
    void deps.presence.connected(this.entry);
  }

  /** The liveness sweep's verdict: the agent stopped answering pings. */
  dead(): void {
    this.reason ??= "dead";
    this.deps.logger.warn("agent tunnel stopped answering pings; closing it", { cluster: this.entry.cluster });
  }

  sessionError(error: Error): void {
    if (!isPeerHangup(error)) this.deps.logger.warn("tunnel session error", { cluster: this.entry.cluster, error });
  }

  goaway(): void {
    this.reason ??= "draining";
    this.deps.logger.info("agent is moving its tunnel (GOAWAY): requests in flight finish here, new ones wait for its next tunnel", { cluster: this.entry.cluster });
  }

  keyLost(reason: KeyLossReason, why: string): void {
    this.reason ??= reason;
    this.deps.logger.info("closing agent tunnel: its key is no longer enrolled", { cluster: this.entry.cluster, reason: why, kid: this.keyThumbprint });
    // A revoked agent serves nothing more, its open watches and execs included; a rotated key's
    // tunnel lets them finish while the agent dials again with the new key.
    void (reason === "key_revoked" ? this.entry.tunnel.terminate() : this.entry.tunnel.close());
  }

  closed(): void {
    const { deps, entry } = this;
    deps.keyWatch.untrack(entry.cluster, this);
    const current = deps.registry.unregister(entry);
    deps.metrics?.tunnelDisconnects.inc({ reason: this.reason ?? (deps.drain?.draining ? "relay_shutdown" : current ? "closed" : "replaced") });
    if (current) {
      deps.logger.info("agent disconnected", { cluster: entry.cluster });
      void deps.presence.disconnected(entry);
    }
  }
}
