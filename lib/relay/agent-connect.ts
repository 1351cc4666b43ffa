// Accepts an agent's WebSocket: authenticate -> upgrade -> register -> serve -> deregister.
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer } from "ws";
import { verifyAgentToken } from "../auth/index.ts";
import { ArcError, isPeerHangup } from "../kube/index.ts";
import type { Logger } from "../observe/index.ts";
import {
  createWebSocketDuplex, firstHeader, openTunnelClient, protocol, timeouts, writeStatusToSocket,
} from "../tunnel/index.ts";
import { bearerToken } from "./user-access.ts";
import type { RelayStore } from "./store/index.ts";
import type { AgentTunnel, TunnelRegistry } from "./tunnel-registry.ts";

/** While a tunnel is up, the relay refreshes the cluster's last-seen time this often. */
const PRESENCE_HEARTBEAT_MS = 20_000;

export interface AgentConnectDeps {
  store: RelayStore;
  registry: TunnelRegistry;
  logger: Logger;
  /** The audience agents put in their connection tokens: the relay's public URL. */
  audience: string;
}

export function createAgentConnectHandler(deps: AgentConnectDeps) {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: timeouts.WS_MAX_PAYLOAD_BYTES,
    perMessageDeflate: false,
    handleProtocols: (offered) => (offered.has(protocol.TUNNEL_SUBPROTOCOL) ? protocol.TUNNEL_SUBPROTOCOL : false),
  });

  return async function handleAgentConnect(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    let cluster: string;
    try {
      ({ cluster } = await verifyAgentToken(bearerToken(req.headers), {
        audience: deps.audience,
        publicKeyOf: async (name) => (await deps.store.getCluster(name))?.agentKey,
      }));
    } catch (error) {
      deps.logger.warn("agent connection refused", { remote: req.socket.remoteAddress, error });
      writeStatusToSocket(socket, error);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const log = deps.logger.child({ cluster });
      const duplex = createWebSocketDuplex(ws, { onDead: () => log.warn("agent tunnel stopped answering pings; closing it") });
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
      log.info("agent connected", { agentVersion: entry.agentVersion, kubernetesVersion: entry.kubernetesVersion, remote: req.socket.remoteAddress });
      void recordPresence(entry, log, deps);
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
