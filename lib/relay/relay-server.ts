// Starts the relay: store, issuer, HTTP(S) listener dispatching to the API, cluster proxy and agent tunnels.
import { readFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import type { Duplex } from "node:stream";
import { getRequestListener } from "@hono/node-server";
import { builtinIssuerTrust, createUserTokenVerifier, type TrustedIssuer, type UserTokenVerifier } from "../auth/index.ts";
import { NotFound, isLoopbackHost } from "../kube/index.ts";
import type { Logger } from "../observe/index.ts";
import { protocol, writeStatusToSocket } from "../tunnel/index.ts";
import { createAgentConnectHandler } from "./agent-connect.ts";
import { createAuthRateLimiter, type AuthRateLimitOptions } from "./auth-rate-limit.ts";
import { createRelayApp } from "./app.ts";
import { createIssuerKeySource } from "./issuer-keys.ts";
import { isClusterApiTarget } from "./cluster-path.ts";
import { loadRelayIssuer } from "./relay-issuer.ts";
import { createClusterApiProxy } from "./k8s-proxy.ts";
import { openSqliteStore, type RelayStore } from "./store/index.ts";
import { createTunnelRegistry } from "./tunnel-registry.ts";
import { createUserAccess } from "./user-access.ts";

export interface RelayOptions {
  host: string;
  port: number;
  dataDir: string;
  /** The URL users and agents reach; the built-in issuer's `iss`. Defaults to the listen address. */
  publicUrl?: string;
  tls?: { certFile: string; keyFile: string };
  /** External OIDC issuers (Entra ID, Dex, Keycloak, GitHub Actions) trusted beside the built-in one. */
  trustedIssuers?: TrustedIssuer[];
  /**
   * User tokens must name `cluster-connect:<cluster>` in `aud` to reach that cluster, so a token
   * made for one cluster is refused on every other. Off by default (no CLI flag yet).
   */
  bindAudienceToCluster?: boolean;
  /** Failed user authentications allowed per client address (default 20 a minute); `false` turns it off. */
  authRateLimit?: AuthRateLimitOptions | false;
  logger: Logger;
}

export interface RunningRelay {
  url: string;
  port: number;
  store: RelayStore;
  close(): Promise<void>;
}

/**
 * Room for large identity-provider tokens (Entra ID tokens with many groups approach 16 KiB, the
 * parser's default): an oversized token then gets the verifier's 401 that says why, not a bare 431.
 */
const MAX_HEADER_BYTES = 64 * 1024;


export async function startRelay(opts: RelayOptions): Promise<RunningRelay> {
  if (!opts.tls && !isLoopbackHost(opts.host)) {
    throw new TypeError(
      `refusing plain HTTP on ${opts.host}: --insecure-http is only allowed on a loopback address; pass --tls-cert and --tls-key`,
    );
  }
  const store = await openSqliteStore(opts.dataDir);
  const server = opts.tls
    ? https.createServer({ cert: await readFile(opts.tls.certFile), key: await readFile(opts.tls.keyFile), maxHeaderSize: MAX_HEADER_BYTES })
    : http.createServer({ maxHeaderSize: MAX_HEADER_BYTES });
  const port = await listen(server, opts.host, opts.port).catch(async (error: unknown) => {
    await store.close();
    throw error;
  });
  const scheme = opts.tls ? "https" : "http";
  const hostInUrl = opts.host.includes(":") && !opts.host.startsWith("[") ? `[${opts.host}]` : opts.host;
  const url = (opts.publicUrl ?? `${scheme}://${hostInUrl}:${port}`).replace(/\/+$/, "");

  const issuer = await loadRelayIssuer(store, url);
  const external = opts.trustedIssuers ?? [];
  let verifier: UserTokenVerifier;
  try {
    verifier = createUserTokenVerifier({ issuers: [builtinIssuerTrust(issuer), ...external] });
  } catch (error) {
    // e.g. an external issuer configured with the relay's own URL
    server.close();
    await store.close();
    throw error;
  }
  if (external.length > 0) opts.logger.info("trusting external OIDC issuers", { issuers: external.map((t) => t.issuer) });
  const registry = createTunnelRegistry();
  const logger = opts.logger;
  // One failure budget per address across users, agents and enrollment.
  const rateLimiter = opts.authRateLimit === false ? undefined : createAuthRateLimiter({ ...opts.authRateLimit, logger });
  const access = createUserAccess({
    store,
    verifyUserToken: verifier.verifyUserToken,
    bindAudienceToCluster: opts.bindAudienceToCluster ?? false,
    ...(rateLimiter ? { rateLimiter } : {}),
  });
  const clusterApi = createClusterApiProxy({ access, registry, logger });
  const agentConnect = createAgentConnectHandler({ store, registry, logger, audience: url, rateLimiter });
  const issuerKeys = external.length > 0 ? createIssuerKeySource(external) : undefined;
  const app = createRelayApp({ store, registry, access, issuer, logger, issuerKeys, rateLimiter });
  // The relay must not replace the process-wide Request/Response (tests and embedders share them).
  const honoListener = getRequestListener(app.fetch, { overrideGlobalObjects: false });

  server.on("request", (req, res) => {
    if (isClusterApiTarget(req.url ?? "")) void clusterApi.handleRequest(req, res);
    else void honoListener(req, res);
  });
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    const target = req.url ?? "";
    if (target === protocol.AGENT_CONNECT_PATH) void agentConnect(req, socket, head);
    else if (isClusterApiTarget(target)) void clusterApi.handleUpgrade(req, socket, head);
    else writeStatusToSocket(socket, new NotFound(`no upgrade endpoint at ${target.split("?")[0]}`));
  });
  logger.info("relay listening", { url, listen: `${opts.host}:${port}`, tls: Boolean(opts.tls), dataDir: opts.dataDir });

  return {
    url,
    port,
    store,
    async close() {
      server.close();
      await registry.closeAll();
      server.closeAllConnections?.();
      await store.close();
    },
  };
}

function listen(server: http.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EADDRINUSE") reject(new Error(`${host}:${port} is already in use: pick another --listen port`, { cause: error }));
      else reject(error);
    });
    server.listen(port, host, () => resolve((server.address() as { port: number }).port));
  });
}
