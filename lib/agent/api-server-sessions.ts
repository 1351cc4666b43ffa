// HTTP/2 sessions to the API server for ordinary requests: many requests in flight share a few TLS
// connections, as client-go's do, where HTTP/1.1 holds one connection per watch.
import http2 from "node:http2";
import { isIP } from "node:net";
import type { Logger } from "../observe/index.ts";
import { timeouts, widenConnectionWindow } from "../tunnel/index.ts";

/** TLS material for a session; a change (a rotated client certificate) starts new sessions. */
export interface SessionTls {
  ca?: string;
  cert?: string;
  key?: string;
  /** false only for a kubeconfig's insecure-skip-tls-verify. */
  rejectUnauthorized?: boolean;
  /** A kubeconfig's tls-server-name. */
  servername?: string;
}

export interface ApiServerSessionsOptions {
  /** The API server, https only. */
  server: URL;
  logger: Logger;
  /** How long an idle session stays open (ms); default IDLE_SESSION_MS. */
  idleMs?: number;
  /** Every session is PINGed this often (ms); default PING_INTERVAL_MS. */
  pingIntervalMs?: number;
  /** A PING unanswered this long (ms) ends its session; default PING_TIMEOUT_MS. */
  pingTimeoutMs?: number;
}

/** Streams per session until the API server's SETTINGS arrive (RFC 9113 6.5.2 advises at least 100). */
const STREAMS_BEFORE_SETTINGS = 100;
/** An idle session closes after this long; the next request opens another. */
export const IDLE_SESSION_MS = 90_000;
/**
 * A connection that goes silent (packets dropped, no reset) would keep taking requests until the
 * kernel gave up on it, about 15 minutes: every session is PINGed this often, and one that does not
 * answer within PING_TIMEOUT_MS is ended, its requests cut and the next ones sent on a new one
 * (client-go's HTTP/2 health check: 30 s and 15 s).
 */
export const PING_INTERVAL_MS = 30_000;
export const PING_TIMEOUT_MS = 15_000;
/** A session's TLS and HTTP/2 handshake must finish within this. */
const CONNECT_TIMEOUT_MS = 10_000;
/**
 * Each stream's window toward the API server. Small, because Bun 1.4.5's client grants a paused
 * stream's window again each time it is resumed: behind a user who stops reading, the agent held
 * 6-9 MiB per stream with a 1 MiB window (an attacker's review; 20 such requests took the agent
 * past the chart's 256 MiB). A large connection window (the tunnel's) keeps a LIST fast.
 */
const API_SERVER_STREAM_WINDOW_BYTES = 128 * 1024;
/** After the API server refused HTTP/2 (no `h2` in ALPN), it is asked again after this long. */
const RETRY_HTTP2_AFTER_MS = 5 * 60_000;

interface Entry {
  session: http2.ClientHttp2Session;
  tls: SessionTls;
  active: number;
  ready: Promise<void>;
  usable: boolean;
}

/** Thrown by `request` when the API server speaks no HTTP/2: the caller sends the request over HTTP/1.1. */
export class Http2Unavailable extends Error {}

/**
 * A pool of HTTP/2 sessions to the API server. `request(headers, { tls })` opens a stream on a session with
 * room (below the API server's SETTINGS_MAX_CONCURRENT_STREAMS, 100 until they arrive), opening a
 * new session when none has room. Sessions close after `idleMs` idle, on the API server's GOAWAY
 * (once their streams end), and when the TLS material changes. Throws Http2Unavailable when the API
 * server does not negotiate `h2` (then for RETRY_HTTP2_AFTER_MS without asking), and the session's
 * error when it cannot connect.
 */
export class ApiServerSessions {
  private readonly entries = new Set<Entry>();
  private refusedUntil = 0;
  private closed = false;
  private pinger?: ReturnType<typeof setInterval>;
  /** The API server's SETTINGS_MAX_CONCURRENT_STREAMS as last seen: a new session starts at it. */
  private knownLimit?: number;

  constructor(private readonly opts: ApiServerSessionsOptions) {}

  /** Whether to try HTTP/2 now (false for a while after the API server refused it). */
  get available(): boolean {
    return !this.closed && performance.now() >= this.refusedUntil;
  }

  /**
   * Opens a stream with `headers` (HTTP/2 form: `:method`, `:path`, lower-case names) on a session
   * made with `tls`, the credentials the caller read for this request (a rotated client
   * certificate retires the sessions made with the old one).
   */
  async request(headers: http2.OutgoingHttpHeaders, options: { endStream: boolean; tls: SessionTls }): Promise<http2.ClientHttp2Stream> {
    if (!this.available) throw new Http2Unavailable("the API server does not speak HTTP/2");
    const { tls } = options;
    // Once more on a new session when the chosen one went away meanwhile (its GOAWAY arrived
    // while this request waited for it): nothing was sent, so nothing can run twice.
    for (let attempt = 0; ; attempt++) {
      const entry = this.withRoom(tls) ?? this.connect(tls);
      entry.active += 1;
      try {
        await entry.ready;
        if (this.knownLimit === 0) throw this.refuse("the API server allows no HTTP/2 stream (SETTINGS_MAX_CONCURRENT_STREAMS 0)");
        const stream = entry.session.request(headers, { endStream: options.endStream });
        stream.once("close", () => this.release(entry));
        return stream;
      } catch (error) {
        this.release(entry);
        const goneAway = (error as NodeJS.ErrnoException).code === "ERR_HTTP2_GOAWAY_SESSION" || entry.session.closed || entry.session.destroyed;
        if (!goneAway || attempt > 0 || error instanceof Http2Unavailable) throw error;
        this.retire(entry);
      }
    }
  }

  /** HTTP/2 is not to be used for a while: requests go over HTTP/1.1 meanwhile. */
  private refuse(reason: string, cause?: unknown): Http2Unavailable {
    this.refusedUntil = performance.now() + RETRY_HTTP2_AFTER_MS;
    this.opts.logger.info("the API server does not take HTTP/2 requests: they use HTTP/1.1", { reason, retryAfterMs: RETRY_HTTP2_AFTER_MS });
    return new Http2Unavailable(reason, { cause });
  }

  /** Closes every session; streams in flight end. */
  close(): void {
    this.closed = true;
    clearInterval(this.pinger);
    for (const entry of this.entries) entry.session.destroy();
    this.entries.clear();
  }

  private withRoom(tls: SessionTls): Entry | undefined {
    for (const entry of this.entries) {
      if (!entry.usable) continue;
      if (!sameTls(entry.tls, tls)) {
        // Rotated credentials: new requests go to a new session, this one ends with its streams.
        this.retire(entry);
        continue;
      }
      if (entry.active < limitOf(entry.session, this.knownLimit)) return entry;
    }
    return undefined;
  }

  private connect(tls: SessionTls): Entry {
    const hostname = this.opts.server.hostname.replace(/^\[|\]$/g, "");
    const session = http2.connect(this.opts.server.origin, {
      ...tls,
      servername: tls.servername ?? (isIP(hostname) ? undefined : hostname),
      settings: { enablePush: false, initialWindowSize: API_SERVER_STREAM_WINDOW_BYTES },
      maxHeaderListPairs: timeouts.MAX_HEADER_LIST_PAIRS,
    });
    widenConnectionWindow(session, API_SERVER_STREAM_WINDOW_BYTES);
    const entry: Entry = { session, tls, active: 0, usable: true, ready: Promise.resolve() };
    entry.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => session.destroy(new Error(`no HTTP/2 connection to the API server within ${CONNECT_TIMEOUT_MS / 1000}s`)), CONNECT_TIMEOUT_MS);
      session.once("connect", () => {
        clearTimeout(timer);
        resolve();
      });
      session.once("error", (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (/h2 is not supported/.test(error.message)) {
          reject(this.refuse(error.message, error));
        } else {
          reject(error);
        }
      });
    });
    // Rejections reach the requests that wait; this keeps an unawaited one from being unhandled.
    entry.ready.catch(() => {});
    session.on("error", (error) => this.opts.logger.debug("HTTP/2 session to the API server failed", { error }));
    session.once("goaway", () => this.retire(entry));
    session.on("remoteSettings", (settings) => {
      if (settings.maxConcurrentStreams !== undefined && settings.maxConcurrentStreams < 2 ** 31) this.knownLimit = settings.maxConcurrentStreams;
    });
    session.once("close", () => {
      entry.usable = false;
      this.entries.delete(entry);
      if (this.entries.size === 0) {
        clearInterval(this.pinger);
        this.pinger = undefined;
      }
    });
    session.setTimeout(this.opts.idleMs ?? IDLE_SESSION_MS, () => {
      if (entry.active === 0) this.retire(entry);
    });
    this.entries.add(entry);
    this.pinger ??= setInterval(() => this.pingAll(), this.opts.pingIntervalMs ?? PING_INTERVAL_MS).unref();
    return entry;
  }

  /** One sweep for the pool: each connected session is PINGed, and ended if it does not answer. */
  private pingAll(): void {
    const timeoutMs = this.opts.pingTimeoutMs ?? PING_TIMEOUT_MS;
    for (const { session } of this.entries) {
      if (session.connecting || session.closed || session.destroyed) continue;
      const timer = setTimeout(() => session.destroy(new Error(`the API server did not answer an HTTP/2 PING within ${timeoutMs / 1000}s`)), timeoutMs);
      try {
        session.ping(() => clearTimeout(timer));
      } catch (error) {
        // Too many PINGs in flight: the last ones have not been answered either.
        clearTimeout(timer);
        session.destroy(error as Error);
      }
    }
  }

  private release(entry: Entry): void {
    entry.active -= 1;
    if (!entry.usable && entry.active === 0 && !entry.session.closed) entry.session.close();
  }

  /** No new streams; closes once its streams have ended. */
  private retire(entry: Entry): void {
    entry.usable = false;
    if (entry.active === 0 && !entry.session.closed && !entry.session.destroyed) entry.session.close();
  }
}

/**
 * Whether a request's head can go over HTTP/2: Bun's HPACK coder fails the whole session, every
 * request on it, on one value of 64 KiB or more (a `:path` with an 80 KB label selector did), so a
 * request with a value over MAX_TUNNEL_HEADER_VALUE_BYTES goes over HTTP/1.1, which takes up to
 * the API server's 1 MiB. `values` are the path and every header value.
 */
export function fitsHttp2Head(path: string, headers: Readonly<Record<string, string | string[]>>): boolean {
  const limit = timeouts.MAX_TUNNEL_HEADER_VALUE_BYTES;
  if (path.length > limit) return false;
  for (const value of Object.values(headers)) {
    for (const one of Array.isArray(value) ? value : [value]) if (one.length > limit) return false;
  }
  return true;
}

/** The API server's SETTINGS_MAX_CONCURRENT_STREAMS on `session`, else as last seen, else 100. */
function limitOf(session: http2.ClientHttp2Session, knownLimit: number | undefined): number {
  const advertised = session.remoteSettings?.maxConcurrentStreams;
  // Until the server's SETTINGS arrive the engine reports the protocol's default (unlimited).
  return advertised === undefined || advertised >= 2 ** 31 ? knownLimit ?? STREAMS_BEFORE_SETTINGS : advertised;
}

/**
 * Same TLS material: compared field by field, not as one string built per request. The PEMs come
 * from the upstream's cached options, so unchanged ones are the same strings and compare at once.
 */
function sameTls(a: SessionTls, b: SessionTls): boolean {
  return a.ca === b.ca && a.cert === b.cert && a.key === b.key && a.rejectUnauthorized === b.rejectUnauthorized && a.servername === b.servername;
}
