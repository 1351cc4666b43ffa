// The loopback HTTPS listener kubectl talks to: checks the session token, then hands each request to the relay.
import https from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { Logger } from "../observe/index.ts";
import { forwardRequest, type ForwardContext } from "./request-forward.ts";
import { RetryMemo } from "./relay-retry.ts";
import { createSessionToken, createSessionUnauthorized, isSessionAuthorized } from "./session-auth.ts";
import { writeStatusResponse, writeStatusToSocket } from "../errors/index.ts";
import { MAX_REQUEST_HEADER_BYTES, createSelfSignedCertificate, renderParseErrorResponse } from "../http/index.ts";
import type { RelayConnection } from "../client/index.ts";
import { CLOSE_GRACE_MS, LOCAL_HEADERS_TIMEOUT_MS, LOCAL_KEEP_ALIVE_TIMEOUT_MS } from "./timeouts.ts";
import { forwardUpgrade } from "./upgrade-forward.ts";

export interface LocalProxyOptions {
  /** The relay, owned by the caller (who closes it after the listener). */
  relay: RelayConnection;
  cluster: string;
  /** Called for every request, so a token source can refresh an expiring token. */
  getToken: () => Promise<string>;
  /** Token mode: forward this Kubernetes token instead of having the agent impersonate. */
  kubeToken?: string;
  /** 0 picks a free port. */
  port: number;
  host?: "127.0.0.1";
  /** How long a request is sent again while the relay restarts (ms); default 30,000. */
  relayRetryMs?: number;
  logger: Logger;
}

export interface LocalProxy {
  port: number;
  /** The bearer token every local request must carry. */
  sessionToken: string;
  /** The CA that signs the listener's certificate (for the kubeconfig). */
  caPem: string;
  close(): Promise<void>;
}

/** Starts the listener; rejects with a readable message when the port is taken. */
export async function startLocalProxy(opts: LocalProxyOptions): Promise<LocalProxy> {
  const host = opts.host ?? "127.0.0.1";
  const { certPem, keyPem, caPem } = await createSelfSignedCertificate({ commonName: "arcproxy session" });
  const sessionToken = createSessionToken();
  const logger = opts.logger.child({ cluster: opts.cluster });
  const ctx: ForwardContext = {
    relay: opts.relay, cluster: opts.cluster, getToken: opts.getToken, kubeToken: opts.kubeToken, relayRetryMs: opts.relayRetryMs, retryMemo: new RetryMemo(), logger,
  };

  // The API server's own limit on request line plus headers, not node's 16 KiB default: a long
  // label selector must get through, and an oversized one a 431 Status that says which limit.
  const server = https.createServer({ cert: certPem, key: keyPem, maxHeaderSize: MAX_REQUEST_HEADER_BYTES }, function handleRequest(req, res) {
    if (!isSessionAuthorized(req.headers.authorization, sessionToken)) {
      writeStatusResponse(res, createSessionUnauthorized());
      return;
    }
    forwardRequest(req, res, ctx).catch((error) => {
      logger.error("forwarding failed", { error });
      writeStatusResponse(res, error);
    });
  });
  // No total request timeout: watches and logs -f live as long as the user wants.
  server.requestTimeout = 0;
  server.headersTimeout = LOCAL_HEADERS_TIMEOUT_MS;
  server.keepAliveTimeout = LOCAL_KEEP_ALIVE_TIMEOUT_MS;

  const upgraded = new Set<Duplex>();
  server.on("upgrade", function handleUpgrade(req, socket: Duplex, head: Buffer) {
    upgraded.add(socket);
    socket.on("close", () => upgraded.delete(socket));
    if (!isSessionAuthorized(req.headers.authorization, sessionToken)) {
      writeStatusToSocket(socket, createSessionUnauthorized());
      return;
    }
    forwardUpgrade(req, socket, head, ctx).catch((error) => {
      logger.error("upgrade forwarding failed", { error });
      writeStatusToSocket(socket, error);
    });
  });
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) => {
    if (socket.writable && error.code !== "ECONNRESET") socket.end(renderParseErrorResponse(error, "arcproxy"));
    else socket.destroy();
  });

  await listen(server, opts.port, host);
  const port = (server.address() as { port: number }).port;
  logger.info("local proxy listening", { address: `https://${host}:${port}`, relay: opts.relay.url.base });

  let closing: Promise<void> | undefined;
  return {
    port,
    sessionToken,
    caPem,
    close() {
      return (closing ??= closeServer(server, upgraded).then(() => {
        logger.info("local proxy stopped");
      }));
    },
  };
}

function listen(server: https.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EADDRINUSE") {
        reject(new Error(`port ${port} is already in use on ${host}: pass --port N or --port 0 for a free port`, { cause: error }));
      } else {
        reject(new Error(`cannot listen on ${host}:${port}: ${error.message}`, { cause: error }));
      }
    });
    server.listen(port, host, () => resolve());
  });
}

// Stop accepting, let requests in flight finish for a moment, then cut what is left (watches, exec).
async function closeServer(server: https.Server, upgraded: Set<Duplex>): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const grace = setTimeout(() => {
    server.closeAllConnections();
    for (const socket of upgraded) socket.destroy();
  }, CLOSE_GRACE_MS);
  for (const socket of upgraded) socket.destroy();
  await closed;
  clearTimeout(grace);
}
