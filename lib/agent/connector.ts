// Keeps one outbound tunnel to the relay: dial, serve until it drops, back off, dial again.
import WebSocket from "ws";
import { signAgentToken } from "../auth/index.ts";
import { isPeerHangup, Unauthorized } from "../kube/index.ts";
import type { Logger } from "../observe/index.ts";
import { createWebSocketDuplex, protocol, serveTunnel, timeouts, type TunnelHeaders, type TunnelServerStream } from "../tunnel/index.ts";
import type { AgentKeys } from "./agent-state.ts";
import { relayWebSocketUrl, type RelayEndpoint } from "./relay-endpoint.ts";

export interface ConnectorOptions {
  relay: RelayEndpoint;
  /** Called before every connection attempt, so a rotated key is used from the next connection on. */
  keys: () => Promise<AgentKeys>;
  /** Appended to the error logged when the relay refuses the agent's key (401). */
  refusedHint?: string;
  agentVersion: string;
  kubernetesVersion?: () => Promise<string | undefined>;
  onStream(stream: TunnelServerStream, headers: TunnelHeaders): void;
  logger: Logger;
  signal: AbortSignal;
  /** Reports each connection state change (tests wait on it). */
  onState?: (state: "connected" | "disconnected") => void;
}

const BACKOFF_INITIAL_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** A tunnel that stayed up this long resets the backoff. */
const STABLE_AFTER_MS = 30_000;

/** Runs until `signal` aborts; never throws for network trouble, which is retried with backoff. */
export async function runConnector(opts: ConnectorOptions): Promise<void> {
  let backoff = BACKOFF_INITIAL_MS;
  while (!opts.signal.aborted) {
    const started = Date.now();
    try {
      await connectOnce(opts);
    } catch (error) {
      if (error instanceof Unauthorized) {
        opts.logger.error(`relay refused the agent's key${opts.refusedHint ? `: ${opts.refusedHint}` : ""}`, { relay: opts.relay.url, error, retryInMs: backoff });
      } else {
        opts.logger.warn("tunnel to relay failed", { relay: opts.relay.url, error, retryInMs: backoff });
      }
    }
    if (opts.signal.aborted) break;
    if (Date.now() - started > STABLE_AFTER_MS) backoff = BACKOFF_INITIAL_MS;
    await sleep(backoff * (0.75 + Math.random() * 0.5), opts.signal);
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
  }
}

async function connectOnce(opts: ConnectorOptions): Promise<void> {
  const keys = await opts.keys();
  const token = await signAgentToken({ privateJwk: keys.privateJwk, cluster: keys.cluster, audience: opts.relay.url });
  const kubeVersion = await opts.kubernetesVersion?.();
  const ws = new WebSocket(relayWebSocketUrl(opts.relay, protocol.AGENT_CONNECT_PATH), [protocol.TUNNEL_SUBPROTOCOL], {
    headers: {
      authorization: `Bearer ${token}`,
      [protocol.AGENT_VERSION_HEADER]: opts.agentVersion,
      ...(kubeVersion ? { [protocol.KUBE_VERSION_HEADER]: kubeVersion } : {}),
    },
    handshakeTimeout: timeouts.TUNNEL_HANDSHAKE_TIMEOUT_MS,
    maxPayload: timeouts.WS_MAX_PAYLOAD_BYTES,
    perMessageDeflate: false,
    ...(opts.relay.ca ? { ca: opts.relay.ca } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => { if (body.length < 4096) body += c; });
      res.on("end", () => {
        const message = `relay refused the tunnel (${res.statusCode}): ${statusMessage(body)}`;
        reject(res.statusCode === 401 ? new Unauthorized(message) : new Error(message));
      });
    });
    ws.once("error", reject);
  });
  const log = opts.logger.child({ relay: opts.relay.url });
  const duplex = createWebSocketDuplex(ws, { onDead: () => log.warn("relay stopped answering pings; reconnecting") });
  const server = serveTunnel(duplex, opts.onStream, (error) => {
    if (!isPeerHangup(error)) log.warn("tunnel session error", { error });
  });
  log.info("tunnel connected");
  opts.onState?.("connected");
  const onAbort = () => void server.close();
  opts.signal.addEventListener("abort", onAbort, { once: true });
  await server.done;
  opts.signal.removeEventListener("abort", onAbort);
  ws.terminate();
  log.info("tunnel closed");
  opts.onState?.("disconnected");
}

function statusMessage(body: string): string {
  try {
    return (JSON.parse(body) as { message?: string }).message ?? body;
  } catch {
    return body.slice(0, 200);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
