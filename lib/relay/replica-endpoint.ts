// The internal endpoint of a replica: requests other replicas forward to the tunnels this one holds.
import { createHash, timingSafeEqual } from "node:crypto";
import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { AgentNotConnected, NotFound, Unauthorized, writeStatusResponse, writeStatusToSocket } from "../errors/index.ts";
import { MAX_REQUEST_HEADER_BYTES, firstHeader, isWatchRequest, replicaRequestHeaders, requestIdOf } from "../http/index.ts";
import type { Logger } from "../observe/index.ts";
import { protocol } from "../tunnel/index.ts";
import { isClusterApiTarget, parseClusterApiTarget } from "./cluster-path.ts";
import type { RelayDrain } from "./drain.ts";
import { markNotForwarded } from "./not-forwarded.ts";
import { forwardHttpRequest, forwardUpgrade, type ForwardTarget } from "./tunnel-forward.ts";
import type { AgentTunnel, TunnelRegistry } from "./tunnel-registry.ts";
import type { ReplicaSet } from "./replica-set.ts";
import { firstDefined } from "./first-defined.ts";

export interface ReplicaEndpoint {
  /** https://HOST:PORT as bound (the port resolved when 0 was asked for). */
  listening: { host: string; port: number };
  close(): Promise<void>;
}

export interface ReplicaEndpointOptions {
  host: string;
  port: number;
  certPem: string;
  keyPem: string;
  /** The secret every replica shares (from the database); compared in constant time. */
  secret: string;
  registry: TunnelRegistry;
  drain: RelayDrain;
  logger: Logger;
  /** How long a forwarded request waits for a tunnel that is reconnecting to this replica (ms). */
  agentWaitMs: number;
  /** Ends that wait at once when the cluster's tunnel turns up on another replica. */
  replicas: Pick<ReplicaSet, "waitForHolder">;
  /**
   * Checks the user's token and grant again (the sending replica did already), so that the
   * replicas' secret alone, should it leak, opens no cluster to someone without a grant. Throws
   * Unauthorized or Forbidden, answered as a Status.
   */
  authorize(headers: IncomingMessage["headers"], cluster: string): Promise<void>;
}

/**
 * Listens on `host:port` with TLS (the replica's self-signed certificate, which other replicas
 * pin from the database). Every request must carry REPLICA_SECRET_HEADER with the shared secret
 * (else 401 Status), and target `/v1/clusters/{cluster}/k8s/...`; the headers are the ones the
 * user-facing replica passed (replicaRequestHeaders checks them again); the user's token and grant
 * are checked again here (`authorize`), and the agent verifies the token once more. A cluster whose tunnel
 * is not here (within `agentWaitMs`, or sooner once another replica holds it) is answered 503 with
 * REPLICA_MISS_HEADER `absent`, and every request while this replica drains with `draining`, so
 * the sender routes again (around this replica, when draining). Resolves once listening; throws naming the address when it is taken.
 */
export async function startReplicaEndpoint(opts: ReplicaEndpointOptions): Promise<ReplicaEndpoint> {
  const expected = createHash("sha256").update(opts.secret).digest();
  const fromReplica = (req: IncomingMessage) => {
    const offered = firstHeader(req.headers[protocol.REPLICA_SECRET_HEADER]) ?? "";
    return timingSafeEqual(createHash("sha256").update(offered).digest(), expected);
  };
  // Room for what the public port accepts (MAX_REQUEST_HEADER_BYTES) plus what the sending replica
  // adds: a request under the public limit must never be refused here (it would look like a dead replica).
  const server = https.createServer({ cert: opts.certPem, key: opts.keyPem, maxHeaderSize: 2 * MAX_REQUEST_HEADER_BYTES });
  server.requestTimeout = 0; // watches and exec sessions last as long as the user wants
  server.headersTimeout = 60_000;
  // Longer than the senders' 30 s idle timeout, so the sender closes an idle connection first (no keep-alive race).
  server.keepAliveTimeout = 65_000;

  async function route(req: IncomingMessage): Promise<ForwardTarget> {
    const requestId = requestIdOf(req.headers);
    if (!fromReplica(req)) {
      opts.logger.warn("refused a request on the internal endpoint without the replicas' secret", { remote: req.socket.remoteAddress, requestId });
      throw new Unauthorized("this is a relay replica's internal endpoint: only other replicas of the same relay may call it");
    }
    const url = req.url ?? "/";
    if (!isClusterApiTarget(url)) throw new NotFound(`no internal endpoint at ${url.split("?")[0]}`);
    const { cluster, kubePath } = parseClusterApiTarget(url);
    await opts.authorize(req.headers, cluster);
    if (opts.drain.draining) throw new ReplicaMiss(`this replica is stopping (request id ${requestId})`, "draining");
    // The tunnel may be reconnecting to this replica, or moving to another: whichever comes first.
    const stop = new AbortController();
    const found = opts.registry.get(cluster) ?? await firstDefined<AgentTunnel | "moved">([
      opts.registry.waitFor(cluster, opts.agentWaitMs, stop.signal),
      opts.replicas.waitForHolder(cluster, opts.agentWaitMs, stop.signal).then((holder) => (holder ? "moved" : undefined)),
    ]).finally(() => stop.abort());
    if (!found || found === "moved") throw new ReplicaMiss(`this replica does not hold cluster "${cluster}"'s tunnel (request id ${requestId})`, "absent");
    const entry = found;
    return { tunnel: entry.tunnel, cluster, requestId, path: kubePath, headers: replicaRequestHeaders(req.rawHeaders) };
  }

  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const over = opts.drain.track();
      const requestId = requestIdOf(req.headers);
      try {
        const target = await route(req);
        const watch = isWatchRequest(req.method, req.url ?? "");
        await forwardHttpRequest(target, req, res, watch ? { endWatch: opts.drain.watchEnd } : {});
      } catch (error) {
        if (error instanceof ReplicaMiss && !res.headersSent) res.setHeader(protocol.REPLICA_MISS_HEADER, error.why);
        markNotForwarded(res, error);
        if (!res.headersSent) writeStatusResponse(res, error, requestId);
      } finally {
        over();
      }
    })();
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    void (async () => {
      const over = opts.drain.track();
      const requestId = requestIdOf(req.headers);
      try {
        const target = await route(req);
        await forwardUpgrade(target, req, socket, head);
      } catch (error) {
        if (error instanceof ReplicaMiss && socket.writable) {
          socket.end(`HTTP/1.1 503 Service Unavailable\r\n${protocol.REPLICA_MISS_HEADER}: ${error.why}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
        } else {
          writeStatusToSocket(socket, error, requestId);
        }
      } finally {
        over();
      }
    })();
  });
  server.on("clientError", (_error: Error, socket: Duplex) => socket.destroy());

  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EADDRINUSE") reject(new Error(`${opts.host}:${opts.port} is already in use: pick another --internal-listen port`, { cause: error }));
      else reject(error);
    });
    server.listen(opts.port, opts.host, () => resolve((server.address() as { port: number }).port));
  });
  return {
    listening: { host: opts.host, port },
    async close() {
      server.close();
      server.closeAllConnections?.();
    },
  };
}

/** Not held here (`absent`), or this replica is stopping (`draining`): the sender routes again. */
class ReplicaMiss extends AgentNotConnected {
  constructor(message: string, readonly why: "absent" | "draining") {
    super(message);
  }
}
