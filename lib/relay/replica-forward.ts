// The user-facing replica's half of a forwarded request: the request, stream or upgrade, sent on
// to the replica that holds the cluster's tunnel, over its internal endpoint (pinned TLS, shared secret).
import https from "node:https";
import type { ClientRequest, IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { isIP } from "node:net";
import { AgentNotConnected, BadGateway, UpstreamTimeout } from "../errors/index.ts";
import { hasRequestBody, renderResponseHead, withoutContentLength, responseHeaders, responseOver, type HeaderMap } from "../http/index.ts";
import { protocol, splice, timeouts } from "../tunnel/index.ts";
import type { ForwardObserver } from "./tunnel-forward.ts";
import type { ReplicaRecord } from "./store/index.ts";

/** The replica that holds the tunnel answers within the agent's head timeout; this is our backstop (ms). */
const REPLICA_HEAD_TIMEOUT_MS = timeouts.RESPONSE_HEADERS_TIMEOUT_MS + 5_000;
/** A TLS connection to another replica is up within this, or the replica counts as unreachable (ms). */
const REPLICA_CONNECT_TIMEOUT_MS = 3_000;
/** Idle keep-alive connections to one replica are closed after this (ms); below the endpoint's own 65 s. */
const REPLICA_KEEP_ALIVE_MS = 30_000;
/** Methods whose repetition changes nothing (RFC 9110 9.2.1). */
const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);

export interface ReplicaForwardTarget {
  holder: ReplicaRecord;
  secret: string;
  cluster: string;
  requestId: string;
  /** The user's request target (`/v1/clusters/{cluster}/k8s/...`), sent on as is. */
  url: string;
  /** The caller's headers as relayRequestHeaders passes them toward an agent. */
  headers: HeaderMap;
}

/**
 * Nothing reached the other replica, or it said it does not hold the tunnel (REPLICA_MISS_HEADER):
 * the request can be routed again. `unreachable` says the replica itself did not answer.
 */
export class ReplicaMissed extends AgentNotConnected {
  /** `draining`: the replica is stopping, and its tunnels are moving to the others. */
  constructor(message: string, readonly unreachable: boolean, options?: { cause?: unknown; draining?: boolean }) {
    // Nothing reached an agent: a client may send it again, once the tunnel is found again.
    super(message, { ...(options?.cause !== undefined ? { cause: options.cause } : {}), retryAfterSeconds: 1 });
    this.draining = options?.draining ?? false;
  }

  readonly draining: boolean;
}

const agents = new Map<string, https.Agent>();
/** Pools kept at most: replicas come and go with every rollout (new pod names), so the oldest pool goes first. */
const MAX_AGENTS = 64;
/** One keep-alive pool per replica endpoint (id, URL and certificate): a restarted replica gets a new one. */
function agentFor(holder: ReplicaRecord): https.Agent {
  const key = `${holder.replicaId}\n${holder.internalUrl}\n${holder.certificatePem}`;
  let agent = agents.get(key);
  if (!agent) {
    for (const [other, old] of agents) {
      if (other.startsWith(`${holder.replicaId}\n`)) {
        old.destroy();
        agents.delete(other);
      }
    }
    agent = new https.Agent({ keepAlive: true, timeout: REPLICA_KEEP_ALIVE_MS, ca: holder.certificatePem });
    agents.set(key, agent);
    // Map order is insertion order: the first key is the pool made longest ago. Its requests in
    // flight keep their sockets; only the idle ones close.
    while (agents.size > MAX_AGENTS) {
      const [oldest, pool] = agents.entries().next().value as [string, https.Agent];
      for (const sockets of Object.values(pool.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
      agents.delete(oldest);
    }
  }
  return agent;
}

function openRequest(target: ReplicaForwardTarget, method: string, extra: HeaderMap): ClientRequest {
  const endpoint = new URL(target.holder.internalUrl);
  const host = endpoint.hostname.replace(/^\[|\]$/g, "");
  const request = https.request({
    protocol: "https:",
    hostname: host,
    port: endpoint.port || 443,
    method,
    path: target.url,
    // Exactly this replica's own certificate, nothing else: the address could be anyone's next week.
    ca: target.holder.certificatePem,
    agent: agentFor(target.holder),
    // The answer's head as the tunnel carried it to the holder (node:http's 16 KiB default cut an
    // API server's large response headers on this hop only).
    maxHeaderSize: timeouts.MAX_HEADER_LIST_BYTES,
    ...(isIP(host) ? {} : { servername: host }),
    headers: { ...target.headers, ...extra, [protocol.REQUEST_ID_HEADER]: target.requestId, [protocol.REPLICA_SECRET_HEADER]: target.secret },
  });
  return request;
}

/**
 * Sends the request on and resolves with the other replica's response head; rejects with
 * ReplicaMissed when nothing reached it (refused, unreachable for REPLICA_CONNECT_TIMEOUT_MS, a
 * certificate other than its own, a kept-alive connection it had just closed) or it does not hold
 * the tunnel, UpstreamTimeout past REPLICA_HEAD_TIMEOUT_MS, BadGateway when it failed after the
 * request reached it.
 */
function exchange(target: ReplicaForwardTarget, request: ClientRequest, upgrade: boolean, method: string): Promise<{ response: IncomingMessage; socket?: Duplex; head?: Buffer }> {
  // Users read this: the replica's name, never its internal address (logged by the caller).
  const where = `relay replica "${target.holder.replicaId}", which holds cluster "${target.cluster}"'s tunnel,`;
  return new Promise((resolve, reject) => {
    let connected = false;
    const connectTimer = setTimeout(() => {
      if (!connected) request.destroy(Object.assign(new Error("connect timeout"), { code: "ETIMEDOUT" }));
    }, REPLICA_CONNECT_TIMEOUT_MS);
    const headTimer = setTimeout(() => {
      request.destroy();
      reject(new UpstreamTimeout(`${where} did not answer within ${REPLICA_HEAD_TIMEOUT_MS / 1000}s (request id ${target.requestId}); retry`));
    }, REPLICA_HEAD_TIMEOUT_MS);
    const settle = () => {
      clearTimeout(connectTimer);
      clearTimeout(headTimer);
    };
    request.on("socket", (socket: import("node:net").Socket) => {
      const tls = socket as import("node:tls").TLSSocket;
      if (!tls.connecting && tls.encrypted && (tls as { authorized?: boolean }).authorized) connected = true;
      else tls.once("secureConnect", () => (connected = true));
    });
    request.once("error", (error: NodeJS.ErrnoException) => {
      settle();
      // Before the TLS handshake ended, the request never reached the replica. A reset on a reused
      // connection is Node's keep-alive race (the replica closed it just then) or the replica
      // dying with the request in hand: sent again only when that is harmless (RFC 9110 9.2.1).
      if (!connected || (request.reusedSocket && error.code === "ECONNRESET" && SAFE_METHODS.has(method))) {
        reject(new ReplicaMissed(`${where} cannot be reached (${error.code ?? error.message}) (request id ${target.requestId})`, true, { cause: error }));
      } else {
        reject(new BadGateway(`${where} dropped the request before answering (request id ${target.requestId}); retry`, { cause: error }));
      }
    });
    const onHead = (response: IncomingMessage, socket?: Duplex, head?: Buffer) => {
      settle();
      const miss = response.headers[protocol.REPLICA_MISS_HEADER];
      if (miss !== undefined) {
        response.resume();
        socket?.destroy();
        const draining = miss === "draining";
        reject(new ReplicaMissed(`${where} ${draining ? "is stopping" : "no longer holds it"} (request id ${target.requestId})`, false, { draining }));
        return;
      }
      resolve({ response, ...(socket ? { socket, head: head ?? Buffer.alloc(0) } : {}) });
    };
    request.once("response", (response: IncomingMessage) => onHead(response));
    if (upgrade) request.once("upgrade", (response: IncomingMessage, socket: Duplex, head: Buffer) => onHead(response, socket, head));
  });
}

/** The other replica's head as the user's replica writes it: its end-to-end headers, its not-forwarded mark. */
function passedHeaders(response: IncomingMessage, requestId: string): HeaderMap {
  const headers = responseHeaders("replica-to-relay", response.rawHeaders);
  if (response.headers[protocol.NOT_FORWARDED_HEADER] !== undefined) headers[protocol.NOT_FORWARDED_HEADER] = "true";
  headers[protocol.REQUEST_ID_HEADER] = requestId;
  return headers;
}

/**
 * Forwards an ordinary request (a GET, a watch, a body of any size) to the replica holding the
 * tunnel, streaming both ways with backpressure (pipe). Resolves when the user's response has
 * closed; a response the other replica cut is cut for the user too, never ended as if complete.
 * Rejects as exchange() does, before anything was written to `res` (the caller answers with a
 * Status, or routes again on ReplicaMissed).
 */
export async function forwardToReplica(target: ReplicaForwardTarget, req: IncomingMessage, res: ServerResponse, observe?: ForwardObserver): Promise<void> {
  const hasBody = hasRequestBody(req.headers);
  const request = openRequest(target, req.method ?? "GET", {});
  const gone = () => request.destroy();
  res.once("close", gone);
  if (hasBody) {
    req.pipe(request);
    if (observe) req.on("data", (chunk: Buffer) => observe.bytesIn(chunk.length));
  } else {
    request.end();
  }
  let response: IncomingMessage;
  try {
    ({ response } = await exchange(target, request, false, req.method ?? "GET"));
  } catch (error) {
    req.unpipe(request);
    res.off("close", gone);
    throw error;
  }
  const status = response.statusCode ?? 502;
  res.writeHead(status, passedHeaders(response, target.requestId));
  res.flushHeaders();
  observe?.head(status);
  if (observe) response.on("data", (chunk: Buffer) => observe.bytesOut(chunk.length));
  response.pipe(res, { end: false });
  response.once("end", () => res.end());
  response.once("aborted", () => res.destroy());
  response.once("error", () => res.destroy());
  await responseOver(res);
}

/**
 * Forwards an upgrade (exec, attach, port-forward, cp) to the replica holding the tunnel: on its
 * 101 the user's socket and the replica's are spliced; its refusal is relayed as is. Resolves when
 * both sockets are closed. Rejects as exchange() does, before anything was written to `socket`.
 */
export async function forwardUpgradeToReplica(target: ReplicaForwardTarget, req: IncomingMessage, socket: Duplex, head: Buffer, observe?: ForwardObserver): Promise<void> {
  const upgrade = String(req.headers["upgrade"] ?? "");
  const request = openRequest({ ...target, headers: withoutContentLength(target.headers) }, req.method ?? "GET", { connection: "Upgrade", upgrade });
  const gone = () => request.destroy();
  socket.once("close", gone);
  request.end();
  let result: Awaited<ReturnType<typeof exchange>>;
  try {
    result = await exchange(target, request, true, req.method ?? "GET");
  } catch (error) {
    socket.off("close", gone);
    throw error;
  }
  const { response } = result;
  const status = response.statusCode ?? 502;
  observe?.head(status);
  if (result.socket) {
    socket.write(renderResponseHead(101, "Switching Protocols", { connection: "Upgrade", upgrade, ...passedHeaders(response, target.requestId) }));
    if (result.head && result.head.length > 0) socket.write(result.head);
    if (head.length > 0) result.socket.write(head);
    if (observe) {
      socket.on("data", (chunk: Buffer) => observe.bytesIn(chunk.length));
      result.socket.on("data", (chunk: Buffer) => observe.bytesOut(chunk.length));
    }
    await splice(socket, result.socket);
    return;
  }
  socket.write(renderResponseHead(status, response.statusMessage || "Upgrade Refused", { ...passedHeaders(response, target.requestId), connection: "close" }));
  response.pipe(socket);
  await new Promise<void>((resolve) => (socket.destroyed ? resolve() : socket.once("close", () => resolve())));
}
