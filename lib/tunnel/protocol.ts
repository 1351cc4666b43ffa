// Header names that carry the tunnel's own signals between relay and agent, beside the user's request.

/** Set by the relay on every request; the agent logs it and passes it to the API server as an extra. */
export const REQUEST_ID_HEADER = "x-arc-request-id";

/** Relay -> agent: the request is an HTTP/1.1 Upgrade; the value is the original `Upgrade` header. */
export const UPGRADE_HEADER = "x-arc-upgrade";

/**
 * Agent -> relay: the API server answered the upgrade with this status (101). HTTP/2 has no 101,
 * so the stream itself answers 200 and the real status rides here.
 */
export const UPGRADE_STATUS_HEADER = "x-arc-upgrade-status";

/**
 * Client -> relay -> agent, token mode: the caller's own Kubernetes bearer token (e.g. a
 * service-account token). The agent forwards it as `Authorization` and impersonates nobody.
 */
export const KUBE_TOKEN_HEADER = "x-arc-kube-token";

/**
 * Relay -> client, on a refusal that reached nothing beyond the relay (draining, agent not
 * connected): any request may be sent again. An API server's own 503 never carries it.
 */
export const NOT_FORWARDED_HEADER = "x-arc-not-forwarded";

/** Agent -> relay on connect: versions shown by `arcrelay cluster list`. */
export const AGENT_VERSION_HEADER = "x-arc-agent-version";
export const KUBE_VERSION_HEADER = "x-arc-kubernetes-version";

/** What clients (arcproxy) learn about the relay before anything else: lib/relay/client-config.ts. */
export const CLIENT_CONFIG_PATH = "/.well-known/cluster-connect";
/** The clusters the caller may reach, with their status (arcproxy clusters). */
export const CLUSTERS_PATH = "/v1/clusters";

/** Path of the agent's WebSocket endpoint on the relay. */
export const AGENT_CONNECT_PATH = "/v1/agent/connect";
export const AGENT_ENROLL_PATH = "/v1/agent/enroll";
export const AGENT_ROTATE_KEY_PATH = "/v1/agent/rotate-key";
/** Agents behind a firewall fetch an external issuer's signing keys here (`?issuer=`). */
export const AGENT_ISSUER_KEYS_PATH = "/v1/agent/issuer-keys";

/** WebSocket subprotocol of the tunnel; a mismatch means the two ends are incompatible versions. */
export const TUNNEL_SUBPROTOCOL = "arc-tunnel.v1";

/**
 * Relay -> agent: the caller's request to impersonate someone (kubectl --as), checked at the relay
 * edge and encoded by lib/http/impersonation-request.ts. The agent decides whether it is allowed.
 */
export const IMPERSONATE_HEADER = "x-arc-impersonate";

/**
 * Replica -> replica, on the internal endpoint only: the secret the replicas share through their
 * database, which is the whole of what makes a request "from a replica". Never accepted on the
 * public port (x-arc-* is dropped from every caller there).
 */
export const REPLICA_SECRET_HEADER = "x-arc-replica-secret";
/**
 * Replica -> replica, on a 503: `absent` ("I do not hold this cluster's tunnel, any more") or
 * `draining` ("I am stopping"); nothing reached an agent, and the replica that asked routes the
 * request again (around a draining one).
 */
export const REPLICA_MISS_HEADER = "x-arc-replica-miss";
