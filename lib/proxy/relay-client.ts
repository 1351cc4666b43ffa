// Asks the relay about one cluster before anything else starts, turning its answers into clear errors.
import { callRelay, clusterApiPath, refusalError, type RelayConnection } from "../client/index.ts";
import { BadGateway } from "../errors/index.ts";
import { CLUSTER_INFO_TIMEOUT_MS } from "./timeouts.ts";

/** The relay's view of a cluster (`GET /v1/clusters/{name}`). */
export interface ClusterInfo {
  name: string;
  connected: boolean;
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
    throw refusalError(answer.status, answer.json, {
      relay: relay.url,
      fallback: { 401: "unauthorized", 403: "forbidden", 404: `cluster ${cluster} not found` },
      advice: {
        401: { say: "get a fresh token (arcrelay token create, or your identity provider) and pass --token or set ARC_TOKEN", unless: "token create" },
        403: { say: `ask a relay admin for a cluster-user grant on cluster ${cluster}`, unless: "grant add" },
        404: { say: "check --cluster (clusters are registered with arcrelay cluster add)", unless: "arcrelay cluster" },
      },
    });
  }
  const info = answer.json as Partial<ClusterInfo> | undefined;
  if (!info || typeof info.name !== "string" || typeof info.connected !== "boolean") {
    throw new BadGateway(`relay ${relay.url.base} answered cluster ${cluster} without name/connected; is --relay the relay's URL?`);
  }
  return info as ClusterInfo;
}
