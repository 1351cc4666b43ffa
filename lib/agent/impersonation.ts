// Builds the headers the API server sees: the caller's request minus anything that could choose an identity.
import type { Identity } from "../auth/index.ts";
import { endToEndHeaders, protocol, type HeaderMap, type TunnelHeaders } from "../tunnel/index.ts";

/** Extra key the API server records in audit logs: `Impersonate-Extra-Arc-Request-Id`. */
export const REQUEST_ID_EXTRA = "impersonate-extra-arc-request-id";

/**
 * Strips `Authorization`, every `Impersonate-*` (any casing: HTTP/2 names arrive lower-case),
 * front-proxy `X-Remote-*` identity headers and the tunnel's own headers, then sets the caller's
 * verified identity. `credentials` are the agent's own (its service-account token).
 */
export function buildImpersonatedHeaders(
  incoming: TunnelHeaders,
  identity: Identity,
  requestId: string,
  credentials: Record<string, string>,
): HeaderMap {
  const headers = stripIdentityHeaders(endToEndHeaders(incoming));
  return {
    ...headers,
    ...lowerCaseKeys(credentials),
    "impersonate-user": utf8HeaderValue(identity.user),
    ...(identity.groups.length > 0 ? { "impersonate-group": identity.groups.map(utf8HeaderValue) } : {}),
    [REQUEST_ID_EXTRA]: requestId,
  };
}

/** Token mode: the caller's own Kubernetes credential goes through, nothing is impersonated. */
export function buildPassThroughHeaders(incoming: TunnelHeaders, kubeToken: string): HeaderMap {
  return { ...stripIdentityHeaders(endToEndHeaders(incoming)), authorization: `Bearer ${kubeToken}` };
}

export function stripIdentityHeaders(headers: HeaderMap): HeaderMap {
  const out: HeaderMap = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (
      lower === "authorization" || lower === "proxy-authorization" || lower === "cookie" ||
      lower.startsWith("impersonate-") || lower.startsWith("x-remote-") || lower.startsWith("x-arc-")
    ) continue;
    out[lower] = value;
  }
  return out;
}

/**
 * node:http writes header values as Latin-1; the API server reads the raw bytes as UTF-8 (as
 * client-go sends them). Re-encoding keeps "josé" and "開発" intact on the wire.
 */
function utf8HeaderValue(value: string): string {
  return Buffer.from(value, "utf8").toString("latin1");
}

function lowerCaseKeys(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k.toLowerCase(), v]));
}

export const tunnelRequestIdHeader = protocol.REQUEST_ID_HEADER;
