// The agent's Prometheus metrics (prom-client): its tunnel and the requests it serves.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { TunnelServerStream } from "../tunnel/index.ts";
import { protocol } from "../tunnel/index.ts";

/**
 * Every metric the agent exports, on a registry of its own, `arcagent_` prefix, base units
 * (https://prometheus.io/docs/practices/naming/). Labels are bounded: verbs, codes, kinds,
 * reasons; never a user, a path or a request id.
 */
export interface AgentMetrics {
  registry: Registry;
  tunnelConnected: Gauge;
  tunnelConnects: Counter;
  tunnelDisconnects: Counter<"reason">;
  dialFailures: Counter<"reason">;
  requests: Counter<"verb" | "code" | "kind">;
  /** Time from a stream's arrival to the response head it sent back (the API server's answer, or a refusal). */
  requestDuration: Histogram<"kind">;
  activeStreams: Gauge<"kind">;
}

/** Creates the agent's metrics with process metrics (`processMetrics: false` leaves them out, for tests in one process). */
export function createAgentMetrics(opts: { processMetrics?: boolean } = {}): AgentMetrics {
  const registry = new Registry();
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: "arcagent_" });
  const registers = [registry];
  return {
    registry,
    tunnelConnected: new Gauge({ name: "arcagent_tunnel_connected", help: "1 while the agent's tunnel to the relay is up.", registers }),
    tunnelConnects: new Counter({ name: "arcagent_tunnel_connects_total", help: "Tunnels to the relay established.", registers }),
    tunnelDisconnects: new Counter({ name: "arcagent_tunnel_disconnects_total", help: "Tunnels that ended, by reason (closed, dead, goaway, stopping).", labelNames: ["reason"], registers }),
    dialFailures: new Counter({ name: "arcagent_tunnel_dial_failures_total", help: "Failed attempts to reach the relay, by reason (unauthorized, error).", labelNames: ["reason"], registers }),
    requests: new Counter({ name: "arcagent_requests_total", help: "Requests served for the relay, by verb (HTTP method), status code and kind (request, watch, upgrade).", labelNames: ["verb", "code", "kind"], registers }),
    requestDuration: new Histogram({
      name: "arcagent_request_duration_seconds", help: "Time from a request's arrival to its response head, by kind.",
      labelNames: ["kind"], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers,
    }),
    activeStreams: new Gauge({ name: "arcagent_active_streams", help: "Requests and upgrades being served, by kind.", labelNames: ["kind"], registers }),
  };
}

/**
 * Measures one tunnel stream: in flight while open; the first response head it sends gives the
 * duration and the code (for an upgrade, the API server's real status the agent carries in a
 * header); counted once when the stream closes.
 */
export function measureStream(metrics: AgentMetrics | undefined, stream: TunnelServerStream, verb: string, kind: "request" | "watch" | "upgrade"): void {
  if (!metrics) return;
  const started = performance.now();
  let code = "0";
  metrics.activeStreams.inc({ kind });
  const respond = stream.respond.bind(stream);
  stream.respond = ((headers: Record<string, unknown>, options?: unknown) => {
    if (code === "0") {
      code = String(headers[protocol.UPGRADE_STATUS_HEADER] ?? headers[":status"] ?? "0");
      metrics.requestDuration.observe({ kind }, (performance.now() - started) / 1000);
    }
    return (respond as (h: unknown, o?: unknown) => void)(headers, options);
  }) as typeof stream.respond;
  stream.once("close", () => {
    metrics.activeStreams.dec({ kind });
    metrics.requests.inc({ verb, code, kind });
  });
}
