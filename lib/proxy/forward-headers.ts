// Decides which headers cross the proxy: hop-by-hop ones stop here, the session token becomes the user token.
import { HOP_BY_HOP_HEADERS, protocol } from "../tunnel/index.ts";

/** Token mode's header (lib/tunnel/protocol.ts): the caller's own Kubernetes token, for the agent. */
const KUBE_TOKEN_HEADER = protocol.KUBE_TOKEN_HEADER;

export type HeaderPair = [name: string, value: string];

/** Pairs from node's flat `rawHeaders`, without hop-by-hop fields and those `Connection` names. */
export function stripHopByHop(rawHeaders: readonly string[]): HeaderPair[] {
  const named = new Set<string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== "connection") continue;
    for (const token of rawHeaders[i + 1]!.split(",")) named.add(token.trim().toLowerCase());
  }
  // An upgrade names itself in Connection; the upgrade path re-adds both fields on purpose.
  named.delete("upgrade");
  const pairs: HeaderPair[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const lower = rawHeaders[i]!.toLowerCase();
    if (HOP_BY_HOP_HEADERS.has(lower) || named.has(lower)) continue;
    pairs.push([rawHeaders[i]!, rawHeaders[i + 1]!]);
  }
  return pairs;
}

/**
 * Headers for the relay: end-to-end fields from the client, with the session `Authorization`
 * replaced by the user's token. For an upgrade, `Connection: Upgrade` and the client's
 * `Upgrade` value are kept (Sec-WebSocket-* and X-Stream-Protocol-Version pass as end-to-end).
 */
export function buildRelayRequestHeaders(rawHeaders: readonly string[], userToken: string, upgrade?: string, kubeToken?: string): HeaderPair[] {
  const pairs = stripHopByHop(rawHeaders).filter(([name]) => {
    const lower = name.toLowerCase();
    return lower !== "authorization" && lower !== KUBE_TOKEN_HEADER;
  });
  pairs.push(["Authorization", `Bearer ${userToken}`]);
  if (kubeToken) pairs.push([KUBE_TOKEN_HEADER, kubeToken]);
  if (upgrade) pairs.push(["Connection", "Upgrade"], ["Upgrade", upgrade]);
  return pairs;
}

/** Pairs as a node header object; repeated fields become arrays so none is lost. */
export function toHeaderObject(pairs: readonly HeaderPair[]): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of pairs) {
    const key = name.toLowerCase();
    const existing = headers[key];
    if (existing === undefined) headers[key] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else headers[key] = [existing, value];
  }
  return headers;
}
