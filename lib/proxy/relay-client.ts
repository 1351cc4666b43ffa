// Asks the relay about one cluster before anything else starts, turning its answers into clear errors.
import { callRelay, clusterApiPath, refusalError, type RelayConnection } from "../client/index.ts";
import { ArcError, BadGateway, Forbidden, NotFound } from "../errors/index.ts";
import { suggestNames } from "../kube/index.ts";
import { protocol } from "../tunnel/index.ts";
import { CLUSTER_INFO_TIMEOUT_MS } from "./timeouts.ts";

/** The relay's view of a cluster (`GET /v1/clusters/{name}`). */
export interface ClusterInfo {
  name: string;
  connected: boolean;
  /** False while no agent has enrolled (older relays omit it). */
  enrolled?: boolean;
  kubernetesVersion?: string;
  agentVersion?: string;
  lastSeen?: string;
}

/**
 * Fetches the record of `cluster` within CLUSTER_INFO_TIMEOUT_MS (15 s). Throws the ArcError for
 * the relay's refusal with what to do next (401: get a token; 403: ask for a grant; 404: check the
 * name), RelayUnreachable or UpstreamTimeout when the relay cannot be asked, and BadGateway when
 * the answer is not a cluster record (a URL that is not the relay's).
 */
export async function fetchClusterInfo(relay: RelayConnection, cluster: string, token: string): Promise<ClusterInfo> {
  const path = clusterApiPath(cluster).replace(/\/k8s$/, "");
  const answer = await callRelay(relay, { path, token, timeoutMs: CLUSTER_INFO_TIMEOUT_MS });
  if (answer.status !== 200) {
    const refusal = refusalError(answer.status, answer.json, {
      relay: relay.url,
      fallback: { 401: "unauthorized", 403: "forbidden", 404: `cluster ${cluster} not found` },
      advice: {
        401: { say: "get a fresh token (arcrelay token create, or your identity provider) and pass --token or set ARC_TOKEN", unless: "token create" },
        403: { say: `ask a relay admin for a cluster-user grant on cluster ${cluster}`, unless: "grant add" },
        404: { say: "check --cluster (clusters are registered with arcrelay cluster add)", unless: "arcrelay cluster" },
      },
    });
    throw refusal instanceof NotFound || refusal instanceof Forbidden ? await withSuggestions(refusal, relay, cluster, token) : refusal;
  }
  const info = answer.json as Partial<ClusterInfo> | undefined;
  if (!info || typeof info.name !== "string" || typeof info.connected !== "boolean") {
    throw new BadGateway(`relay ${relay.url.base} answered cluster ${cluster} without name/connected; is --relay the relay's URL?`);
  }
  return info as ClusterInfo;
}

/**
 * The clusters the token's user may reach (`GET /v1/clusters`), sorted by name. Throws the relay's
 * refusal as an ArcError, RelayUnreachable/UpstreamTimeout, or BadGateway for an answer that is
 * not a list of clusters.
 */
export async function listClusters(relay: RelayConnection, token: string): Promise<ClusterInfo[]> {
  const answer = await callRelay(relay, { path: protocol.CLUSTERS_PATH, token, timeoutMs: CLUSTER_INFO_TIMEOUT_MS });
  if (answer.status !== 200) {
    throw refusalError(answer.status, answer.json, {
      relay: relay.url,
      advice: { 401: { say: "get a fresh token (arcrelay token create, or your identity provider) and pass --token or set ARC_TOKEN", unless: "token create" } },
    });
  }
  if (!Array.isArray(answer.json) || !answer.json.every((c) => typeof (c as ClusterInfo)?.name === "string" && typeof (c as ClusterInfo).connected === "boolean")) {
    throw new BadGateway(`relay ${relay.url.base} answered ${protocol.CLUSTERS_PATH} with something other than a list of clusters; is --relay the relay's URL?`);
  }
  return answer.json as ClusterInfo[];
}

/** The refusal, with the names the user may have meant; unchanged if the list cannot be had. */
async function withSuggestions(refusal: ArcError, relay: RelayConnection, cluster: string, token: string): Promise<ArcError> {
  const known = await listClusters(relay, token).then((list) => list.map((c) => c.name), () => []);
  const near = suggestNames(cluster, known);
  if (near.length === 0) return refusal;
  const Refusal = refusal.constructor as new (message: string) => ArcError;
  return new Refusal(`${refusal.message}; did you mean ${near.join(", ")}? (arcproxy clusters lists them)`);
}

