// Keeps one outbound tunnel to the relay: dial, serve until it drops, back off, dial again.
import WebSocket from "ws";
import { signAgentToken } from "../auth/index.ts";
import { refusalError, relayWebSocketUrl, type RelayConnection } from "../client/index.ts";
import { isPeerHangup, Unauthorized } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";
import {
  createWebSocketDuplex, protocol, serveTunnel, timeouts, type TunnelHeaders, type TunnelServer, type TunnelServerStream,
  type WebSocketDuplexOptions,
} from "../tunnel/index.ts";
import type { AgentKeys } from "./agent-state.ts";

export interface ReconnectBackoff {
  /** First retry waits up to this (ms); default 1,000. */
  baseMs: number;
  /** No retry waits longer than this (ms); default 10,000. */
  maxMs: number;
}

export interface ConnectorOptions {
  relay: RelayConnection;
  /** Called before every connection attempt, so a rotated key is used from the next connection on. */
  keys: () => Promise<AgentKeys>;
  /** Appended to the error logged when the relay refuses the agent's key (401). */
  refusedHint?: string;
  agentVersion: string;
  kubernetesVersion?: () => Promise<string | undefined>;
  onStream(stream: TunnelServerStream, headers: TunnelHeaders): void;
  /** What is being served, for the log when a drain runs out of time. */
  inFlight?: () => unknown[];
  logger: Logger;
  /** Aborting it drains: GOAWAY to the relay, streams in flight get `drainTimeoutMs`, then the tunnel closes. */
  signal: AbortSignal;
  /** How long streams in flight may run on after `signal` aborts (ms); default 25,000. */
  drainTimeoutMs?: number;
  backoff?: Partial<ReconnectBackoff>;
  /** Tunnel liveness (ping interval, dead after), ms. */
  liveness?: Pick<WebSocketDuplexOptions, "pingIntervalMs" | "deadAfterMs">;
  /** Reports each connection state change (tests wait on it), with why a tunnel ended. */
  onState?: (state: "connected" | "disconnected", reason?: "closed" | "dead" | "goaway" | "stopping") => void;
  /** Told of each failed attempt to reach the relay. */
  onDialFailure?: (reason: "unauthorized" | "error") => void;
  /** Called once the first tunnel is up (the agent's readiness). */
  onConnected?: () => void;
  /**
   * Asked when the relay refuses the agent's key (401): an error to stop with, or undefined to keep
   * redialling (a key revoked by mistake may be registered again).
   */
  fatalRefusal?: () => Error | undefined;
}

export const DEFAULT_BACKOFF: ReconnectBackoff = { baseMs: 1_000, maxMs: 10_000 };
/**
 * A relay that drains sends GOAWAY to every agent at once; each answers within this window, at a
 * random moment, so a thousand agents arrive at the next relay over seconds, not in one.
 */
export const DRAIN_REDIAL_SPREAD_MS = 3_000;
export const DEFAULT_DRAIN_TIMEOUT_MS = 25_000;
/** After a relay's GOAWAY, failed dials are retried within DRAIN_REDIAL_SPREAD_MS for this long. */
const REDIAL_AFTER_DRAIN_WINDOW_MS = 60_000;
/** A tunnel that stayed up this long resets the backoff. */
const STABLE_AFTER_MS = 30_000;

/**
 * Runs until `signal` aborts and the last tunnel has drained; never throws for network trouble,
 * which is retried with exponential backoff and full jitter (AWS Architecture Blog, "Exponential
 * Backoff And Jitter"): attempt n waits a uniform random time in [0, min(max, base * 2^(n+1))], so
 * hundreds of agents cut off at once do not come back in the same second. When the relay says
 * GOAWAY (it is draining), the agent dials a new tunnel at once while the old one finishes its
 * streams.
 */
export async function runConnector(opts: ConnectorOptions): Promise<void> {
  const backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
  const lingering = new Set<Promise<void>>();
  let attempt = 0;
  let goawayAt = Number.NEGATIVE_INFINITY;
  while (!opts.signal.aborted) {
    // Durations on the monotonic clock: a wall clock stepped by NTP must not reset or stretch them.
    const started = performance.now();
    let redialAtOnce = false;
    try {
      const tunnel = await connectOnce(opts);
      const outcome = await Promise.race([tunnel.server.done.then(() => "closed" as const), tunnel.server.goaway.then(() => "goaway" as const)]);
      if (outcome === "goaway" && !opts.signal.aborted) {
        opts.logger.info("relay is draining (GOAWAY): dialling a new tunnel while this one finishes its streams");
        redialAtOnce = true;
        goawayAt = performance.now();
        const finishing = tunnel.finish();
        lingering.add(finishing);
        void finishing.then(() => lingering.delete(finishing));
      } else {
        await tunnel.finish();
      }
    } catch (error) {
      opts.onDialFailure?.(error instanceof Unauthorized ? "unauthorized" : "error");
      if (error instanceof Unauthorized) {
        const fatal = opts.fatalRefusal?.();
        if (fatal) {
          await Promise.all(lingering);
          throw fatal;
        }
        opts.logger.error(`relay refused the agent's key${opts.refusedHint ? `: ${opts.refusedHint}` : ""}`, { relay: opts.relay.url.base, error });
      } else {
        opts.logger.warn("tunnel to relay failed", { relay: opts.relay.url.base, error });
      }
    }
    if (opts.signal.aborted) break;
    // Only a tunnel that stayed up resets the backoff: a relay (or a middlebox) that accepts the
    // WebSocket and drops it at once must not be redialled at full speed by every agent.
    if (performance.now() - started > STABLE_AFTER_MS) attempt = 0;
    // A drain is answered at once, at a random moment in DRAIN_REDIAL_SPREAD_MS so agents spread
    // out, and so is every failed dial for a while after it: a relay that restarts (one replica)
    // is back within seconds, and a 10 s backoff would keep its users waiting. Otherwise a failure
    // backs off: attempt n waits up to base * 2^(n+1), so even the first retries of agents cut off
    // together spread over two seconds.
    const afterDrain = redialAtOnce || performance.now() - goawayAt < REDIAL_AFTER_DRAIN_WINDOW_MS;
    const waitMs = afterDrain
      ? Math.random() * DRAIN_REDIAL_SPREAD_MS
      : Math.random() * Math.min(backoff.maxMs, backoff.baseMs * 2 ** (attempt + 1));
    if (!afterDrain) attempt = Math.min(attempt + 1, 30);
    opts.logger.debug("redialling after backoff", { waitMs: Math.round(waitMs), attempt });
    await sleep(waitMs, opts.signal);
  }
  await Promise.all(lingering);
}

interface OpenTunnel {
  server: TunnelServer;
  /** Waits for the tunnel to end; drains it first if the agent is shutting down. Never rejects. */
  finish(): Promise<void>;
}

async function connectOnce(opts: ConnectorOptions): Promise<OpenTunnel> {
  const keys = await opts.keys();
  const token = await signAgentToken({ privateJwk: keys.privateJwk, cluster: keys.cluster, audience: opts.relay.url.base });
  const kubeVersion = await opts.kubernetesVersion?.();
  const { proxy } = opts.relay;
  const agent = opts.relay.dedicatedAgent();
  if (proxy) opts.logger.debug("dialling the relay through a proxy", { proxy });
  const ws = new WebSocket(relayWebSocketUrl(opts.relay.url, protocol.AGENT_CONNECT_PATH), [protocol.TUNNEL_SUBPROTOCOL], {
    headers: {
      authorization: `Bearer ${token}`,
      [protocol.AGENT_VERSION_HEADER]: opts.agentVersion,
      ...(kubeVersion ? { [protocol.KUBE_VERSION_HEADER]: kubeVersion } : {}),
    },
    handshakeTimeout: timeouts.TUNNEL_HANDSHAKE_TIMEOUT_MS,
    maxPayload: timeouts.WS_MAX_PAYLOAD_BYTES,
    perMessageDeflate: false,
    ...(agent ? { agent } : {}),
    ...opts.relay.tlsOptions,
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => { if (body.length < 4096) body += c; });
      res.on("end", () => reject(refusalError(res.statusCode ?? 0, body, { relay: opts.relay.url, action: "the relay refused the tunnel" })));
    });
    ws.once("error", reject);
  });
  const log = opts.logger.child({ relay: opts.relay.url.base });
  let dead = false;
  const duplex = createWebSocketDuplex(ws, {
    ...opts.liveness,
    onDead: () => {
      dead = true;
      log.warn("relay stopped answering pings; reconnecting");
    },
  });
  let goaway = false;
  const server = serveTunnel(duplex, opts.onStream, (error) => {
    if (!isPeerHangup(error)) log.warn("tunnel session error", { error });
  });
  void server.goaway.then(() => { goaway = true; });
  log.info("tunnel connected", proxy ? { proxy } : {});
  opts.onState?.("connected");
  opts.onConnected?.();

  const drainTimeoutMs = opts.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
  let draining: Promise<void> | undefined;
  // Once: both the stop signal and finish() may ask for it.
  const onAbort = () => void (draining ??= drainThenClose(server, drainTimeoutMs, log, opts.inFlight));
  opts.signal.addEventListener("abort", onAbort, { once: true });
  return {
    server,
    async finish() {
      if (opts.signal.aborted) onAbort(); // the agent is stopping: this tunnel drains too
      await server.done;
      opts.signal.removeEventListener("abort", onAbort);
      ws.terminate();
      log.info("tunnel closed");
      opts.onState?.("disconnected", opts.signal.aborted ? "stopping" : dead ? "dead" : goaway ? "goaway" : "closed");
    },
  };
}

/** GOAWAY, then wait (bounded) for the streams in flight, then close the session. */
async function drainThenClose(server: TunnelServer, timeoutMs: number, log: Logger, inFlight?: () => unknown[]): Promise<void> {
  server.drain();
  const deadline = performance.now() + timeoutMs;
  if (server.activeStreams > 0) log.info("draining the tunnel", { activeStreams: server.activeStreams, timeoutMs });
  while (server.activeStreams > 0 && performance.now() < deadline) {
    await Promise.race([server.done, new Promise((resolve) => setTimeout(resolve, 100))]);
  }
  if (server.activeStreams > 0) {
    log.warn("drain deadline passed; closing the tunnel with streams still open", { activeStreams: server.activeStreams, inFlight: inFlight?.() });
  }
  await server.close();
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
