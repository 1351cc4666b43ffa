// Every interval, timeout and size bound of the tunnel, in one place (the README's timeout table lists them).

/**
 * How often each end pings the WebSocket (default; `--tunnel-ping-interval`). Short enough that a
 * tunnel black-holed by a load balancer or a NAT is noticed within seconds, and that an L7 load
 * balancer never sees it idle.
 */
export const WS_PING_INTERVAL_MS = 2_000;

/**
 * A tunnel whose peer has sent nothing, not even a pong, for this long is closed on this end
 * (default; `--tunnel-dead-after`). With the ping interval this bounds detection to about 8 s, so
 * an agent is redialling within 10 s of its tunnel going silent.
 */
export const WS_DEAD_AFTER_MS = 6_000;

/** The agent's tunnel handshake (TCP, TLS, proxy CONNECT, WebSocket upgrade) must finish within this. */
export const TUNNEL_HANDSHAKE_TIMEOUT_MS = 15_000;

/** Waiting for the agent's response headers to an ordinary request (watches answer headers at once). */
export const RESPONSE_HEADERS_TIMEOUT_MS = 60_000;

/** An upgrade (exec, port-forward) must be answered by the API server within this. */
export const UPGRADE_TIMEOUT_MS = 30_000;

/**
 * After the socket closes, HTTP/2 gets this long to read what the peer sent last (a response's
 * final frames) before the stream is destroyed anyway. Bounded because a session that is not
 * reading (every stream backpressured) would otherwise never take those bytes, and a dead
 * tunnel's streams would never end.
 */
export const CLOSE_READ_GRACE_MS = 1_000;

/** Largest WebSocket message accepted on the tunnel; HTTP/2 frames are at most 16 KiB by default. */
export const WS_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

/**
 * Upper bound on concurrent streams per tunnel (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS): room for
 * the thousands of watches that controllers keep through one tunnel.
 */
export const MAX_CONCURRENT_STREAMS = 10_000;

/**
 * Each stream's flow-control window (SETTINGS_INITIAL_WINDOW_SIZE): what a stream may have in
 * flight, and so what one reader that stops reading holds in the relay's memory. 1 MiB keeps a
 * single download at full speed over a 50 ms link (20 MB/s).
 */
export const STREAM_WINDOW_BYTES = 1024 * 1024;

/**
 * The connection's flow-control window. Bun returns connection credit as data arrives, not as it is
 * read, so this bounds the bytes in flight on the link, not what stalled readers hold (the stream
 * window does that, per stream).
 */
export const CONNECTION_WINDOW_BYTES = 64 * 1024 * 1024;

/**
 * What one tunnel's HTTP/2 session may hold queued (node:http2's maxSessionMemory, in MB; Node's
 * default is 10, and Bun refuses streams with ENHANCE_YOUR_CALM when it is left unset). Bun 1.4.5
 * does not enforce it as a bound (an attack review measured 1 GB held by 1,000 stalled streams of
 * one tunnel), so the relay bounds memory with its per-user request limit instead
 * (`--max-requests-per-user`, each stalled request holding up to STREAM_WINDOW_BYTES).
 */
export const MAX_SESSION_MEMORY_MB = 128;

/**
 * Largest header list one HTTP/2 request may carry through the tunnel (SETTINGS_MAX_HEADER_LIST_SIZE):
 * above the 1 MiB that the relay and the API server accept, so the edge's limit is the one users meet.
 */
export const MAX_HEADER_LIST_BYTES = 2 * 1024 * 1024;

/**
 * Header fields one HTTP/2 header block may carry through the tunnel and from the API server
 * (node:http2's maxHeaderListPairs, pseudo-headers included). Its default, 128, reset any request
 * of more than 124 headers with ENHANCE_YOUR_CALM, which the user read as a 502 from the agent,
 * while the relay's edge takes 190 and kube-apiserver counts none. This holds the edge's fields,
 * MAX_LONG_HEADER_PIECES and what the relay and agent add; MAX_HEADER_LIST_BYTES bounds the memory.
 */
export const MAX_HEADER_LIST_PAIRS = 512;

/**
 * Bun's HPACK coder fails the whole session on one header value of 64 KiB or more, so longer
 * values (a `:path` with a long label selector) cross the tunnel in pieces of at most this size.
 */
export const MAX_TUNNEL_HEADER_VALUE_BYTES = 32 * 1024;

/** Graceful close: how long in-flight streams get before a tunnel is torn down. */
export const TUNNEL_DRAIN_TIMEOUT_MS = 5_000;

/**
 * When one side of a spliced upgrade (exec, port-forward) ends and closes, the other side gets this
 * long to hand its last buffered bytes to its reader before it is closed too.
 */
export const SPLICE_FLUSH_TIMEOUT_MS = 30_000;
