// One request to the relay over node:http(s): the streaming path (kubectl's requests and upgrades)
// and small JSON calls share its TLS, proxy, timeouts and the way a failure is classified.
import http, { type IncomingMessage, type OutgoingHttpHeaders } from "node:http";
import https from "node:https";
import type { Duplex, Readable } from "node:stream";
import { BadGateway, UpstreamTimeout } from "../errors/index.ts";
import { MAX_REQUEST_HEADER_BYTES } from "../http/index.ts";
import { RELAY_TCP_KEEPALIVE_MS, type RelayConnection } from "./relay-connection.ts";

/** Default wait for a response head (ms): generous, as a big LIST is serialised before its first byte. */
export const RELAY_RESPONSE_HEAD_TIMEOUT_MS = 120_000;
/** Default bound of a whole JSON call (ms): connect, send, read. */
export const RELAY_CALL_TIMEOUT_MS = 15_000;
/** Default cap of a JSON answer; anything bigger is not the relay we expect. */
export const MAX_RELAY_ANSWER_BYTES = 1024 * 1024;

/**
 * A failure before the relay answered. `neverSent`: the relay cannot have seen the request (the
 * connection was refused or the name did not resolve), so any request may be sent again.
 * `broken`: the connection broke (a relay that restarts), so an idempotent request may. Neither
 * holds for a TLS failure, which sending again cannot fix.
 */
export class RelayUnreachable extends BadGateway {
  override readonly code = "ERR_ARC_RELAY_UNREACHABLE";
  constructor(message: string, readonly neverSent: boolean, readonly broken: boolean, options?: { cause?: unknown }) {
    super(message, options);
  }
}

const NOT_CONNECTED = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN"]);
const BROKEN = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED"]);

export interface RelayRequest {
  method: string;
  /** Path and query relative to the relay's base URL, starting with "/". */
  path: string;
  headers: OutgoingHttpHeaders;
  /** A whole body (replayable), a stream (sent once), or none. */
  body?: Buffer | Readable;
  /** An HTTP/1.1 Upgrade (headers carry Connection and Upgrade): a 101 resolves with the socket. */
  upgrade?: boolean;
  /** Bound on the wait for the response head (ms); default RELAY_RESPONSE_HEAD_TIMEOUT_MS. */
  headTimeoutMs?: number;
}

export type RelayAnswer =
  | { kind: "response"; response: IncomingMessage }
  | { kind: "upgrade"; response: IncomingMessage; socket: Duplex; head: Buffer };

/** Sockets to the relay whose TCP keepalive this module has set. */
const keptAlive = new WeakSet<object>();

/**
 * Sends `request` to the relay and resolves with the response head (its body still to be read), or
 * for a 101 with the upgraded socket. Only the wait for the head is bounded: a watch or an exec
 * session may then stay quiet for minutes. `signal` aborts the request (the client went away).
 * Rejects with RelayUnreachable (502) when the connection fails before an answer and
 * UpstreamTimeout (504) when no head comes within `headTimeoutMs`.
 */
export function openRelayRequest(conn: RelayConnection, request: RelayRequest, signal?: AbortSignal): Promise<RelayAnswer> {
  const transport = conn.url.secure ? https : http;
  const timeoutMs = request.headTimeoutMs ?? RELAY_RESPONSE_HEAD_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const req = transport.request({
      method: request.method,
      host: conn.url.hostname,
      port: conn.url.port,
      path: conn.url.basePath + request.path,
      // The pooled agent would hand a taken-over socket back to the pool.
      agent: request.upgrade ? conn.dedicatedAgent() ?? false : conn.agent,
      ...conn.tlsOptions,
      headers: request.headers,
      // Responses may carry headers as long as requests may (an echoed Audit-ID); node's default is 16 KiB.
      maxHeaderSize: MAX_REQUEST_HEADER_BYTES,
    });
    let connected = false;
    req.once("socket", (socket) => {
      // Through a NAT or load balancer a quiet watch must not look idle. Once per socket: a reused
      // one has it (and the pool sets it again as it takes a socket back), each a system call. Not
      // keyed on `connecting`: a socket through an HTTPS proxy arrives connected (its CONNECT done).
      if (!keptAlive.has(socket)) {
        socket.setKeepAlive?.(true, RELAY_TCP_KEEPALIVE_MS);
        keptAlive.add(socket);
      }
      if (!socket.connecting) connected = true;
      else socket.once("connect", () => { connected = true; });
    });
    const headTimer = setTimeout(() => {
      req.destroy(new UpstreamTimeout(`relay ${conn.url.base} sent no response within ${timeoutMs / 1000}s`));
    }, timeoutMs);
    const onAbort = () => req.destroy();
    signal?.addEventListener("abort", onAbort, { once: true });
    const settle = () => {
      clearTimeout(headTimer);
    };
    req.once("response", (response) => {
      settle();
      response.once("close", () => signal?.removeEventListener("abort", onAbort));
      resolve({ kind: "response", response });
    });
    req.once("upgrade", (response, socket, head) => {
      settle();
      socket.once("close", () => signal?.removeEventListener("abort", onAbort));
      resolve({ kind: "upgrade", response, socket, head });
    });
    req.once("error", (error: NodeJS.ErrnoException) => {
      settle();
      signal?.removeEventListener("abort", onAbort);
      if (error instanceof UpstreamTimeout) return reject(error);
      const neverSent = !connected && NOT_CONNECTED.has(error.code ?? "");
      reject(new RelayUnreachable(`cannot reach relay ${conn.url.base}: ${error.message}`, neverSent, BROKEN.has(error.code ?? ""), { cause: error }));
    });
    if (request.body === undefined) req.end();
    else if (Buffer.isBuffer(request.body)) req.end(request.body);
    else {
      request.body.once("error", () => req.destroy());
      request.body.pipe(req);
    }
  });
}

export interface RelayCall {
  method?: string;
  path: string;
  /** Sent as `Authorization: Bearer`. */
  token?: string;
  /** Sent as the JSON body. */
  json?: unknown;
  /** Bound on the whole call (ms); default RELAY_CALL_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Cap of the answer (bytes); default MAX_RELAY_ANSWER_BYTES. */
  maxAnswerBytes?: number;
  signal?: AbortSignal;
}

export interface RelayCallResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The parsed JSON answer; undefined when it is not JSON. */
  json: unknown;
}

/**
 * One small JSON exchange with the relay (admin API, cluster info, enrollment, key rotation,
 * discovery). Resolves with any HTTP status; the caller turns a refusal into an error with
 * refusalError. Rejects with RelayUnreachable (502), UpstreamTimeout (504) when the whole call
 * takes longer than `timeoutMs`, and BadGateway when the answer exceeds `maxAnswerBytes`.
 */
export async function callRelay(conn: RelayConnection, call: RelayCall): Promise<RelayCallResult> {
  const timeoutMs = call.timeoutMs ?? RELAY_CALL_TIMEOUT_MS;
  const maxBytes = call.maxAnswerBytes ?? MAX_RELAY_ANSWER_BYTES;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const forward = () => controller.abort();
  call.signal?.addEventListener("abort", forward, { once: true });
  const body = call.json === undefined ? undefined : Buffer.from(JSON.stringify(call.json));
  const timedOut = () => new UpstreamTimeout(`relay ${conn.url.base} did not answer ${call.method ?? "GET"} ${call.path} within ${timeoutMs / 1000}s`);
  try {
    const answer = await openRelayRequest(conn, {
      method: call.method ?? "GET",
      path: call.path,
      headers: {
        accept: "application/json",
        ...(call.token ? { authorization: `Bearer ${call.token}` } : {}),
        ...(body ? { "content-type": "application/json", "content-length": String(body.length) } : {}),
      },
      ...(body ? { body } : {}),
      headTimeoutMs: timeoutMs,
    }, controller.signal).catch((error: unknown) => {
      throw controller.signal.aborted && !call.signal?.aborted ? timedOut() : error;
    });
    if (answer.kind !== "response") {
      answer.socket.destroy();
      throw new BadGateway(`relay ${conn.url.base} switched protocols on ${call.path}; is the URL the relay's?`);
    }
    const { response } = answer;
    const text = await new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) response.destroy(new BadGateway(`relay ${conn.url.base} answered ${call.path} with more than ${maxBytes} bytes; is the URL the relay's?`));
        else chunks.push(chunk);
      });
      response.once("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      response.once("error", reject);
      response.once("close", () => {
        if (!response.complete) reject(controller.signal.aborted ? timedOut() : new RelayUnreachable(`relay ${conn.url.base} cut its answer to ${call.path}`, false, true));
      });
    });
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { status: response.statusCode ?? 0, headers: response.headers, text, json };
  } finally {
    clearTimeout(timer);
    call.signal?.removeEventListener("abort", forward);
  }
}
