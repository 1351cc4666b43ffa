// The relay's Prometheus metrics (prom-client): tunnels, requests, bytes, waits, authentication, store latency.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/**
 * Why a tunnel went away, as `arcrelay_tunnel_disconnects_total{reason}` counts it: a bounded set,
 * never free text.
 */
export type DisconnectReason = "closed" | "dead" | "replaced" | "key_revoked" | "key_rotated" | "draining" | "relay_shutdown";

/** How a request was carried, as the `kind` label says it. */
export type RequestKind = "request" | "watch" | "upgrade";

/**
 * Every metric the relay exports, on a registry of its own (not prom-client's global one, so
 * that two relays in one process, as in tests, never mix). Names follow Prometheus conventions
 * (https://prometheus.io/docs/practices/naming/): `arcrelay_` prefix, base units (`_seconds`,
 * `_bytes`), `_total` for counters. Labels are bounded: cluster names (registered clusters only),
 * verbs, codes; never a user, a path or a request id.
 */
export interface RelayMetrics {
  registry: Registry;
  tunnelsConnected: Gauge;
  tunnelConnects: Counter<"cluster">;
  tunnelDisconnects: Counter<"reason">;
  requests: Counter<"cluster" | "verb" | "code" | "kind">;
  /** Time from the request's arrival to the response head (or the refusal). */
  requestDuration: Histogram<"kind">;
  bytes: Counter<"direction">;
  activeStreams: Gauge<"kind">;
  agentWaits: Counter<"outcome">;
  /** Requests sent on to the replica holding the tunnel, by outcome: forwarded, rerouted (the holder was gone or moved it). */
  replicaForwards: Counter<"outcome">;
  authenticationFailures: Counter<"reason">;
  storeOperationDuration: Histogram<"operation">;
}

/** Creates the relay's metrics; `tunnels()` is read at scrape time for the connected-tunnels gauge. */
export function createRelayMetrics(opts: { tunnels: () => number; processMetrics?: boolean }): RelayMetrics {
  const registry = new Registry();
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: "arcrelay_" });
  const registers = [registry];
  return {
    registry,
    tunnelsConnected: new Gauge({
      name: "arcrelay_tunnels_connected", help: "Agent tunnels connected to this relay.", registers,
      collect() {
        this.set(opts.tunnels());
      },
    }),
    tunnelConnects: new Counter({ name: "arcrelay_tunnel_connects_total", help: "Agent tunnels accepted, by cluster.", labelNames: ["cluster"], registers }),
    tunnelDisconnects: new Counter({ name: "arcrelay_tunnel_disconnects_total", help: "Agent tunnels that went away, by reason.", labelNames: ["reason"], registers }),
    requests: new Counter({
      name: "arcrelay_requests_total", help: "Kubernetes requests through the relay, by cluster, verb (HTTP method), status code and kind (request, watch, upgrade).",
      labelNames: ["cluster", "verb", "code", "kind"], registers,
    }),
    requestDuration: new Histogram({
      name: "arcrelay_request_duration_seconds", help: "Time from a request's arrival to its response head, by kind.",
      labelNames: ["kind"], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60], registers,
    }),
    bytes: new Counter({ name: "arcrelay_request_bytes_total", help: "Bytes of request and response bodies and upgraded streams, by direction (in: from users, out: to users).", labelNames: ["direction"], registers }),
    activeStreams: new Gauge({ name: "arcrelay_active_streams", help: "Requests and upgrades in flight, by kind.", labelNames: ["kind"], registers }),
    agentWaits: new Counter({ name: "arcrelay_agent_waits_total", help: "Requests that waited for a cluster's agent to connect, by outcome (connected, timeout).", labelNames: ["outcome"], registers }),
    replicaForwards: new Counter({
      name: "arcrelay_replica_forwards_total", help: "Requests sent on to the replica holding the cluster's tunnel, by outcome (forwarded; rerouted: that replica was gone or had moved the tunnel).",
      labelNames: ["outcome"], registers,
    }),
    authenticationFailures: new Counter({ name: "arcrelay_authentication_failures_total", help: "Refused credentials, by reason (unauthorized, rate_limited).", labelNames: ["reason"], registers }),
    storeOperationDuration: new Histogram({
      name: "arcrelay_store_operation_duration_seconds", help: "Latency of store operations, by operation.",
      labelNames: ["operation"], buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1], registers,
    }),
  };
}

/**
 * Wraps every method of `store` so its latency lands in `arcrelay_store_operation_duration_seconds`
 * under the method's name. The store itself stays unaware of metrics.
 */
export function instrumentStore<T extends object>(store: T, histogram: Histogram<"operation">): T {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== "function" || typeof property !== "string" || property === "close") return value;
      return (...args: unknown[]) => {
        const end = histogram.startTimer({ operation: property });
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (result instanceof Promise) return result.finally(() => end());
        end();
        return result;
      };
    },
  });
}
