// The Prometheus scrape endpoint on a listener of its own (--metrics-listen), never on the public port.
import http from "node:http";
import type { Registry } from "prom-client";
import type { Logger } from "./logger.ts";

export interface MetricsServer {
  /** `http://HOST:PORT/metrics` */
  url: string;
  close(): Promise<void>;
}

/** What `GET /readyz` reports: undefined when ready, else why not (one line, for `kubectl describe pod`). */
export type Readiness = () => string | undefined;

/**
 * Serves `GET /metrics` (the registry in Prometheus' text format; OpenMetrics when the scraper
 * asks for it is left to prom-client's content type) on `host:port` (0 picks a free port), and,
 * with `readiness`, `GET /readyz` for a kubelet readiness probe (200 "ok", or 503 with the
 * reason); 404 for anything else. Plain HTTP, as Prometheus scrapes and the kubelet probes by
 * default: bind it to an address only they reach (a pod IP, loopback). Bounds: a request head
 * within 10 s, an answer within 10 s. Throws an Error naming the address when it is taken.
 */
export async function startMetricsServer(opts: { host: string; port: number; registry: Registry; logger: Logger; readiness?: Readiness }): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (req.method === "GET" && path === "/readyz" && opts.readiness) {
      const notReady = opts.readiness();
      res.writeHead(notReady === undefined ? 200 : 503, { "content-type": "text/plain" }).end(`${notReady ?? "ok"}\n`);
      return;
    }
    if (req.method !== "GET" || path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end(`only GET /metrics${opts.readiness ? " and /readyz" : ""} here\n`);
      return;
    }
    opts.registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": opts.registry.contentType }).end(text),
      (error: unknown) => {
        opts.logger.error("metrics collection failed", { error });
        res.writeHead(500, { "content-type": "text/plain" }).end("metrics collection failed\n");
      },
    );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(error.code === "EADDRINUSE" ? new Error(`${opts.host}:${opts.port} is already in use: pick another --metrics-listen port`, { cause: error }) : error));
    server.listen(opts.port, opts.host, () => resolve((server.address() as { port: number }).port));
  });
  const hostInUrl = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  opts.logger.info("metrics listening", { url: `http://${hostInUrl}:${port}/metrics` });
  return {
    url: `http://${hostInUrl}:${port}/metrics`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
