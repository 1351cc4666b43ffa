// Accepts an agent's WebSocket: authenticate -> upgrade -> register -> serve -> deregister.
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { calculateJwkThumbprint, type JWK } from "jose";
import { WebSocketServer } from "ws";
import { verifyAgentToken } from "../auth/index.ts";
import { ArcError, ShuttingDown, isPeerHangup, writeStatusToSocket } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";
import {
  createWebSocketDuplex, firstHeader, openTunnelClient, protocol, timeouts, type WebSocketDuplexOptions,
} from "../tunnel/index.ts";
import { limitAuthentication, type AuthRateLimiter } from "./auth-rate-limit.ts";
import { bearerToken } from "./user-access.ts";
import type { RelayStore } from "./store/index.ts";
import type { AgentTunnel, TunnelRegistry } from "./tunnel-registry.ts";

/** While a tunnel is up, the relay refreshes the cluster's last-seen time this often. */
const PRESENCE_HEARTBEAT_MS = 20_000;
/**
 * While a tunnel is up, the relay re-reads the cluster's agent key this often and closes the tunnel
 * once that key was revoked or rotated away, so a stolen or retired key loses its tunnel within seconds.
 */
const AGENT_KEY_CHECK_MS = 3_000;

export interface AgentConnectDeps {
  store: RelayStore;
  registry: TunnelRegistry;
  logger: Logger;
  /** The audience agents put in their connection tokens: the relay's public URL. */
  audience: string;
  /** Failed agent logins spend the address's budget too. */
  rateLimiter?: AuthRateLimiter;
  /** A draining relay takes no new tunnel: the agent dials again (another replica, or this one once back). */
  drain?: { readonly draining: boolean };
  /** Liveness of the tunnels (ping interval, dead after), ms. */
  tunnel?: Pick<WebSocketDuplexOptions, "pingIntervalMs" | "deadAfterMs">;
}

export function createAgentConnectHandler(deps: AgentConnectDeps) {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: timeouts.WS_MAX_PAYLOAD_BYTES,
    perMessageDeflate: false,
    handleProtocols: (offered) => (offered.has(protocol.TUNNEL_SUBPROTOCOL) ? protocol.TUNNEL_SUBPROTOCOL : false),
  });

  return async function handleAgentConnect(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    if (deps.drain?.draining) {
      writeStatusToSocket(socket, new ShuttingDown("the relay is shutting down and takes no new tunnel; dial again", { retryAfterSeconds: 1 }));
      return;
    }
    let cluster: string;
    let keyThumbprint: string;
    try {
      let verifiedWith: JWK | undefined;
      ({ cluster } = await limitAuthentication(deps.rateLimiter, req.socket.remoteAddress, () =>
        verifyAgentToken(bearerToken(req.headers), {
          audience: deps.audience,
          publicKeyOf: async (name) => (verifiedWith = (await deps.store.getCluster(name))?.agentKey),
        })));
      keyThumbprint = await calculateJwkThumbprint(verifiedWith!, "sha256");
    } catch (error) {
      deps.logger.warn("agent connection refused", { remote: req.socket.remoteAddress, error });
      writeStatusToSocket(socket, error);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const log = deps.logger.child({ cluster });
      const duplex = createWebSocketDuplex(ws, { ...deps.tunnel, onDead: () => log.warn("agent tunnel stopped answering pings; closing it") });
      const tunnel = openTunnelClient(duplex, (error) => {
        if (!isPeerHangup(error)) log.warn("tunnel session error", { error });
      });
      const entry: AgentTunnel = {
        cluster,
        tunnel,
        agentVersion: firstHeader(req.headers[protocol.AGENT_VERSION_HEADER]),
        kubernetesVersion: firstHeader(req.headers[protocol.KUBE_VERSION_HEADER]),
        connectedAt: new Date(),
      };
      deps.registry.register(entry);
      void tunnel.goaway.then(() => log.info("agent is moving its tunnel (GOAWAY): requests in flight finish here, new ones wait for its next tunnel"));
      log.info("agent connected", { agentVersion: entry.agentVersion, kubernetesVersion: entry.kubernetesVersion, remote: req.socket.remoteAddress });
      void recordPresence(entry, log, deps);
      watchAgentKey(entry, keyThumbprint, log, deps);
    });
  };
}

async function recordPresence(entry: AgentTunnel, log: Logger, deps: AgentConnectDeps): Promise<void> {
  const record = (connected: boolean) =>
    deps.store
      .recordAgentSeen(entry.cluster, { agentVersion: entry.agentVersion, kubernetesVersion: entry.kubernetesVersion, at: new Date(), connected })
      .catch((error: unknown) => log.error("could not record agent presence in the store", { error: error instanceof ArcError ? error.message : error }));
  await record(true);
  const timer = setInterval(() => void record(true), PRESENCE_HEARTBEAT_MS);
  timer.unref?.();
  await entry.tunnel.done;
  clearInterval(timer);
  if (deps.registry.unregister(entry)) {
    log.info("agent disconnected");
    await record(false);
  }
}

/** Closes the tunnel once the key it authenticated with is no longer the cluster's agent key. */
function watchAgentKey(entry: AgentTunnel, keyThumbprint: string, log: Logger, deps: AgentConnectDeps): void {
  let checking = false;
  const check = async () => {
    if (checking || entry.tunnel.closed) return;
    checking = true;
    try {
      const key = (await deps.store.getCluster(entry.cluster))?.agentKey;
      const why = !key
        ? "the cluster's agent key was revoked (or the cluster removed)"
        : (await calculateJwkThumbprint(key, "sha256")) !== keyThumbprint
          ? "the cluster's agent key was rotated"
          : undefined;
      if (why) {
        log.info("closing agent tunnel: its key is no longer enrolled", { reason: why, kid: keyThumbprint });
        clearInterval(timer);
        await entry.tunnel.close();
      }
    } catch (error) {
      log.warn("could not re-check the agent key in the store; keeping the tunnel", { error: error instanceof ArcError ? error.message : error });
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => void check(), AGENT_KEY_CHECK_MS);
  timer.unref?.();
  void entry.tunnel.done.then(() => clearInterval(timer), () => clearInterval(timer));
}
