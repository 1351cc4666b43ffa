// Which headers cross each hop of a request and its response, and what each hop sets: the one
// place that decides it (see the table test in test/http/header-policy.test.ts).
import { BadRequest } from "../errors/index.ts";
import { protocol } from "../tunnel/index.ts";
import { toHeaderMap, toWireValue, type HeaderMap, type HeaderSource } from "./header-map.ts";
import { decodeImpersonationRequest, encodeImpersonationRequest, type ImpersonationRequest } from "./impersonation-request.ts";

/**
 * Connection-specific headers (RFC 9110 7.6.1, RFC 9113 8.2.2): meaningless past one hop and
 * forbidden in HTTP/2. `Host` is the next hop's; Content-Length and Transfer-Encoding framing is
 * redone by each hop (Content-Length itself is end-to-end and kept).
 */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
  "te", "trailer", "transfer-encoding", "upgrade", "host", "http2-settings",
]);

/** What a header is, for the policy. */
export type HeaderClass =
  /** HTTP/2 pseudo-header (`:path`): set by the hop that sends, never copied. */
  | "pseudo"
  | "hop-by-hop"
  /** `Authorization`: whoever holds it is the caller. */
  | "authorization"
  /** `Impersonate-User`, `-Group`, `-Uid`, `-Extra-*` (Kubernetes user impersonation). */
  | "impersonation"
  /**
   * `X-Remote-User`, `-Group`, `-Extra-*`: the API server's front-proxy identity headers, believed
   * from a client certificate it trusts. Never forwarded, whoever sends them.
   */
  | "front-proxy"
  /** `Cookie`: credentials of some other web application; the Kubernetes API uses none. */
  | "cookie"
  /**
   * `X-Forwarded-*`, `Forwarded`, `X-Real-Ip` and `Audit-ID`: the API server writes them into its
   * audit log (sourceIPs, auditID) as facts about the request; only a hop that knows them sets them.
   */
  | "forwarding"
  /** Token mode's `x-arc-kube-token`: the caller's own Kubernetes credential, for the agent to use. */
  | "kube-token"
  /** The tunnel's own signals (`x-arc-*`, including the pieces of a long header): set by us only. */
  | "tunnel"
  | "end-to-end";

/** Classifies a header name, in any casing (HTTP/1.1 names are case-insensitive, RFC 9110 5.1). */
export function classifyHeader(name: string): HeaderClass {
  const lower = name.toLowerCase();
  if (lower.startsWith(":")) return "pseudo";
  if (HOP_BY_HOP_HEADERS.has(lower)) return "hop-by-hop";
  if (lower === "authorization") return "authorization";
  if (lower.startsWith("impersonate-")) return "impersonation";
  if (lower.startsWith("x-remote-")) return "front-proxy";
  if (lower === "cookie") return "cookie";
  if (lower.startsWith("x-forwarded-") || lower === "forwarded" || lower === "x-real-ip" || lower === "audit-id") return "forwarding";
  if (lower === protocol.KUBE_TOKEN_HEADER) return "kube-token";
  if (lower.startsWith("x-arc-")) return "tunnel";
  return "end-to-end";
}

/**
 * The hops a request takes: kubectl -> arcproxy -> relay (or kubectl -> relay with the exec
 * plugin) -> tunnel -> agent -> API server. Token mode is its own hop at the agent because the
 * caller's credential, not the agent's, meets the API server.
 */
export type RequestHop = "arcproxy-to-relay" | "relay-to-agent" | "replica-to-agent" | "agent-to-api-server" | "agent-to-api-server-token-mode";
export type ResponseHop = "api-server-to-agent" | "relay-to-client" | "replica-to-relay" | "arcproxy-to-client";

/**
 * What each hop does with each class of request header. `pass`: copied unchanged. `drop`: never
 * copied (a hop may still set its own value, by the functions below). `consume`: read and
 * re-expressed by the hop in a form of its own (the caller's impersonation request, checked and
 * carried to the agent as one `x-arc-impersonate` header).
 */
export const REQUEST_POLICY: Readonly<Record<RequestHop, Readonly<Record<HeaderClass, "pass" | "drop" | "consume">>>> = {
  // arcproxy sets the user token in place of its session secret, and token mode's header from its flag.
  "arcproxy-to-relay": {
    "pseudo": "drop", "hop-by-hop": "drop", "authorization": "drop", "impersonation": "pass", "front-proxy": "drop",
    "cookie": "drop", "forwarding": "drop", "kube-token": "drop", "tunnel": "drop", "end-to-end": "pass",
  },
  // The agent verifies the caller's token again, so it passes; the relay sets the tunnel headers.
  "relay-to-agent": {
    "pseudo": "drop", "hop-by-hop": "drop", "authorization": "pass", "impersonation": "consume", "front-proxy": "drop",
    "cookie": "drop", "forwarding": "drop", "kube-token": "pass", "tunnel": "drop", "end-to-end": "pass",
  },
  // A replica passing on what another replica sent it (relayRequestHeaders' output, over the
  // authenticated internal endpoint): the same as relay-to-agent; the checked impersonation
  // request crosses as x-arc-impersonate and is decoded and checked again (replicaRequestHeaders).
  "replica-to-agent": {
    "pseudo": "drop", "hop-by-hop": "drop", "authorization": "pass", "impersonation": "drop", "front-proxy": "drop",
    "cookie": "drop", "forwarding": "drop", "kube-token": "pass", "tunnel": "drop", "end-to-end": "pass",
  },
  // Identity is the agent's to set: its credential plus the verified (or authorised) Impersonate-*.
  "agent-to-api-server": {
    "pseudo": "drop", "hop-by-hop": "drop", "authorization": "drop", "impersonation": "drop", "front-proxy": "drop",
    "cookie": "drop", "forwarding": "drop", "kube-token": "drop", "tunnel": "drop", "end-to-end": "pass",
  },
  // The caller's own token becomes Authorization; its impersonation request goes to the API
  // server as Impersonate-*, which authorises it for that token itself.
  "agent-to-api-server-token-mode": {
    "pseudo": "drop", "hop-by-hop": "drop", "authorization": "drop", "impersonation": "drop", "front-proxy": "drop",
    "cookie": "drop", "forwarding": "drop", "kube-token": "drop", "tunnel": "drop", "end-to-end": "pass",
  },
};

/** Response headers: only hop-by-hop ones and the tunnel's own stop; the relay sets its request id. */
export const RESPONSE_POLICY: Readonly<Record<ResponseHop, Readonly<Record<HeaderClass, "pass" | "drop">>>> = {
  "api-server-to-agent": {
    "pseudo": "drop", "hop-by-hop": "drop", "authorization": "pass", "impersonation": "pass", "front-proxy": "pass",
    "cookie": "pass", "forwarding": "pass", "kube-token": "drop", "tunnel": "drop", "end-to-end": "pass",
  },
  "relay-to-client": {
    "pseudo": "drop", "hop-by-hop": "drop", "authorization": "pass", "impersonation": "pass", "front-proxy": "pass",
    "cookie": "pass", "forwarding": "pass", "kube-token": "drop", "tunnel": "drop", "end-to-end": "pass",
  },
  // The replica that holds the tunnel answered the one the user reached; that one sets its own
  // x-arc-* (the request id, and whether nothing was forwarded, read from the replica's answer).
  "replica-to-relay": {
    "pseudo": "drop", "hop-by-hop": "drop", "authorization": "pass", "impersonation": "pass", "front-proxy": "pass",
    "cookie": "pass", "forwarding": "pass", "kube-token": "drop", "tunnel": "drop", "end-to-end": "pass",
  },
  // The relay's x-arc-request-id reaches kubectl's -v output and the user's bug report.
  "arcproxy-to-client": {
    "pseudo": "drop", "hop-by-hop": "drop", "authorization": "pass", "impersonation": "pass", "front-proxy": "pass",
    "cookie": "pass", "forwarding": "pass", "kube-token": "drop", "tunnel": "pass", "end-to-end": "pass",
  },
};

/**
 * Copies the headers of `source` that `rules` pass. Names listed in `Connection` are hop-by-hop
 * too (RFC 9110 7.6.1). Names come out lower-case; repeated fields stay arrays.
 */
function applyRules(source: HeaderSource, rules: Readonly<Record<HeaderClass, string>>): HeaderMap {
  const headers = toHeaderMap(source);
  const named = connectionTokens(headers["connection"]);
  const out: HeaderMap = {};
  for (const [name, value] of Object.entries(headers)) {
    if (named.has(name) || rules[classifyHeader(name)] !== "pass") continue;
    out[name] = value;
  }
  return out;
}

function connectionTokens(value: string | string[] | undefined): Set<string> {
  const text = Array.isArray(value) ? value.join(",") : value ?? "";
  return new Set(text.split(",").map((t) => t.trim().toLowerCase()).filter(Boolean));
}

/** An Upgrade survives each hop only because the hop re-adds both fields itself. */
function withUpgrade(headers: HeaderMap, upgrade: string | undefined): HeaderMap {
  return upgrade ? { ...headers, connection: "Upgrade", upgrade } : headers;
}

/**
 * arcproxy -> relay: the client's end-to-end headers and impersonation request, the user's token
 * as `Authorization` (in place of arcproxy's session secret), token mode's Kubernetes token, and
 * for an upgrade `Connection: Upgrade` plus the client's `Upgrade` value.
 */
export function arcproxyRequestHeaders(source: HeaderSource, opts: { userToken: string; kubeToken?: string; upgrade?: string; requestId?: string }): HeaderMap {
  const headers = applyRules(source, REQUEST_POLICY["arcproxy-to-relay"]);
  headers["authorization"] = `Bearer ${opts.userToken}`;
  // The id arcproxy logs under is the one the relay, the agent and the API server's audit log use.
  if (opts.requestId) headers[protocol.REQUEST_ID_HEADER] = opts.requestId;
  if (opts.kubeToken) headers[protocol.KUBE_TOKEN_HEADER] = opts.kubeToken;
  return withUpgrade(headers, opts.upgrade);
}

/**
 * relay -> agent: the caller's headers as the policy passes them, and its impersonation request
 * (parsed and validated at the relay's edge by parseImpersonationRequest) as `x-arc-impersonate`.
 * The stream's own signals (request id, upgrade) are stamped by the bridge, lib/relay/tunnel-forward.ts.
 */
export function relayRequestHeaders(source: HeaderSource, impersonation?: ImpersonationRequest): HeaderMap {
  const headers = applyRules(source, REQUEST_POLICY["relay-to-agent"]);
  if (impersonation) headers[protocol.IMPERSONATE_HEADER] = encodeImpersonationRequest(impersonation);
  return headers;
}

/**
 * replica -> agent: what the replica that took the user's request sent (its relayRequestHeaders),
 * as the policy passes it, and its impersonation request decoded and checked again (a malformed
 * one throws BadRequest, as decodeImpersonationRequest does).
 */
export function replicaRequestHeaders(source: HeaderSource): HeaderMap {
  const headers = applyRules(source, REQUEST_POLICY["replica-to-agent"]);
  const carried = toHeaderMap(source)[protocol.IMPERSONATE_HEADER];
  const impersonation = decodeImpersonationRequest(Array.isArray(carried) ? carried.join(",") : carried);
  if (impersonation) headers[protocol.IMPERSONATE_HEADER] = encodeImpersonationRequest(impersonation);
  return headers;
}

/** Who the agent's request to the API server runs as. */
export type ApiServerIdentity =
  /**
   * The agent's own credential (`credentials`: its Authorization header, if it uses a token) with
   * Impersonate-* of `user`: the verified caller, or the target the caller was authorised to
   * impersonate. `extra` keys are Kubernetes user-extra keys (lower-case).
   */
  | { kind: "impersonate"; credentials: Record<string, string>; user: string; groups: readonly string[]; uid?: string; extra: Readonly<Record<string, readonly string[]>> }
  /** Token mode: the caller's own Kubernetes token, and its impersonation request for the API server to judge. */
  | { kind: "token"; token: string; impersonation?: ImpersonationRequest };

/**
 * agent -> API server: the request's end-to-end headers, then the identity, then for an upgrade
 * `Connection: Upgrade`. Values are written as UTF-8 bytes, as client-go sends them (the API
 * server reads them so).
 */
export function apiServerRequestHeaders(source: HeaderSource, identity: ApiServerIdentity, upgrade?: string): HeaderMap {
  if (identity.kind === "token") {
    const headers = applyRules(source, REQUEST_POLICY["agent-to-api-server-token-mode"]);
    headers["authorization"] = `Bearer ${identity.token}`;
    if (identity.impersonation) Object.assign(headers, impersonationHeaders(identity.impersonation));
    return withUpgrade(headers, upgrade);
  }
  const headers = applyRules(source, REQUEST_POLICY["agent-to-api-server"]);
  for (const [name, value] of Object.entries(identity.credentials)) headers[name.toLowerCase()] = value;
  Object.assign(headers, impersonationHeaders({ user: identity.user, groups: identity.groups, uid: identity.uid }));
  for (const [key, values] of Object.entries(identity.extra)) {
    if (values.length > 0) headers[`impersonate-extra-${encodeExtraKey(key)}`] = values.map(toWireValue);
  }
  return withUpgrade(headers, upgrade);
}

function impersonationHeaders(request: { user: string; groups: readonly string[]; uid?: string }): HeaderMap {
  // The last line of defence: a name the API server would read differently (Go trims white space
  // around header values) or a line break never leaves the agent.
  for (const name of [request.user, ...request.groups, ...(request.uid !== undefined ? [request.uid] : [])]) {
    if (name.length === 0 || name.trim() !== name || /[\u0000-\u001f\u007f]/.test(name)) {
      throw new BadRequest(`refusing to impersonate ${JSON.stringify(name.slice(0, 100))}: empty, control characters or white space at either end`);
    }
  }
  return {
    "impersonate-user": toWireValue(request.user),
    ...(request.groups.length > 0 ? { "impersonate-group": request.groups.map(toWireValue) } : {}),
    ...(request.uid !== undefined ? { "impersonate-uid": toWireValue(request.uid) } : {}),
  };
}

/**
 * Kubernetes reads `Impersonate-Extra-<key>` with the key lower-cased and %-decoded
 * (k8s.io/apiserver endpoints/filters/impersonation.go): characters not legal in a header name
 * are %-encoded.
 */
function encodeExtraKey(key: string): string {
  return key.replace(/[^a-z0-9!#$&'*+.^_`|~-]/g, (c) => encodeURIComponent(c).replace(/[!'()*]/g, (x) => `%${x.charCodeAt(0).toString(16).toUpperCase()}`));
}

/** Responses: the policy's end-to-end headers for `hop`. */
export function responseHeaders(hop: ResponseHop, source: HeaderSource): HeaderMap {
  return applyRules(source, RESPONSE_POLICY[hop]);
}
