// Every interval and timeout of the user-side proxy, in one place.

/** Dialing the relay (TCP + TLS) and getting a response head back for a plain request. */
export const RELAY_CONNECT_TIMEOUT_MS = 15_000;

/**
 * How long the relay may take to send the response head of a forwarded request. Generous:
 * a big LIST is serialized before its first byte. Once the head has arrived the response may
 * stay silent for as long as it likes (a quiet watch), so no idle timeout applies after it.
 */
export const RELAY_RESPONSE_HEAD_TIMEOUT_MS = 120_000;

/** Cluster-info lookup at start-up: one small JSON answer. */
export const CLUSTER_INFO_TIMEOUT_MS = 15_000;

/** Local listener: time a client has to send a complete request head. */
export const LOCAL_HEADERS_TIMEOUT_MS = 60_000;

/** Local listener: how long an idle keep-alive connection from kubectl stays open. */
export const LOCAL_KEEP_ALIVE_TIMEOUT_MS = 30_000;

/** close(): how long open streams (watches, exec sessions) get before they are cut. */
export const CLOSE_GRACE_MS = 2_000;

/**
 * How long arcproxy keeps sending a request again while the relay restarts (connection refused, or
 * 503 with Retry-After from a draining relay), and resuming a watch the relay ended.
 */
export const RELAY_RETRY_WINDOW_MS = 30_000;
