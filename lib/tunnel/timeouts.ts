// Every interval and timeout of the tunnel, in one place.

/** How often each end pings the WebSocket; a tunnel through an L7 load balancer must never look idle. */
export const WS_PING_INTERVAL_MS = 15_000;

/** A tunnel whose peer has not answered a ping (nor sent anything) for this long is closed. */
export const WS_DEAD_AFTER_MS = 45_000;

/** The agent's tunnel handshake (WebSocket upgrade and HTTP/2 settings) must finish within this. */
export const TUNNEL_HANDSHAKE_TIMEOUT_MS = 15_000;

/** Waiting for the agent's response headers to an ordinary request. */
export const RESPONSE_HEADERS_TIMEOUT_MS = 60_000;

/** An upgrade (exec, port-forward) must be answered by the API server within this. */
export const UPGRADE_TIMEOUT_MS = 30_000;

/** Largest WebSocket message accepted on the tunnel; HTTP/2 frames are at most 16 KiB by default. */
export const WS_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

/** Upper bound on concurrent streams per tunnel, as HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS. */
export const MAX_CONCURRENT_STREAMS = 1000;

/** Graceful close: how long in-flight streams get before a tunnel is torn down. */
export const TUNNEL_DRAIN_TIMEOUT_MS = 5_000;

/**
 * When one side of a spliced upgrade (exec, port-forward) ends and closes, the other side gets this
 * long to hand its last buffered bytes to its reader before it is closed too.
 */
export const SPLICE_FLUSH_TIMEOUT_MS = 30_000;
