// Parses `/v1/clusters/{cluster}/k8s{kube path}` from a raw request target, without decoding tricks.
import { BadRequest } from "../errors/index.ts";
import { validateClusterName } from "../kube/index.ts";

const PREFIX = "/v1/clusters/";
const K8S_SEGMENT = "/k8s";

export interface ClusterRequestTarget {
  cluster: string;
  /** The Kubernetes path with query, always starting with `/`. */
  kubePath: string;
}

/** True when the target is meant for a cluster's Kubernetes API (the caller then parses it). */
export function isClusterApiTarget(target: string): boolean {
  if (!target.startsWith(PREFIX)) return false;
  const rest = target.slice(PREFIX.length);
  const slash = rest.indexOf("/");
  return slash >= 0 && (rest.slice(slash) === K8S_SEGMENT || rest.startsWith(K8S_SEGMENT + "/", slash) || rest.startsWith(K8S_SEGMENT + "?", slash));
}

/**
 * The cluster segment is taken from the raw target and must already be a valid DNS label: an
 * encoded `..`, `%2F` or a look-alike character is refused, never decoded into something else.
 */
export function parseClusterApiTarget(target: string): ClusterRequestTarget {
  const rest = target.slice(PREFIX.length);
  const slash = rest.indexOf("/");
  const cluster = validateClusterName(rest.slice(0, slash));
  let kubePath = rest.slice(slash + K8S_SEGMENT.length);
  if (kubePath === "" || kubePath.startsWith("?")) kubePath = "/" + kubePath;
  if (!kubePath.startsWith("/")) throw new BadRequest(`invalid Kubernetes path in ${JSON.stringify(target.slice(0, 200))}`);
  return { cluster, kubePath };
}
