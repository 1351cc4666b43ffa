// Adding a grant, as both `arcrelay grant add --data-dir` and the admin API do it.
import { NotFound } from "../errors/index.ts";
import { suggestNames } from "../kube/index.ts";
import type { GrantRecord, RelayStore, Role } from "./store/index.ts";

/**
 * Adds a grant (the store's addGrant: adding it twice changes nothing). `cluster` must be
 * registered, or "*": a grant on a mistyped name would succeed and give nobody anything, and the
 * user would be told to ask for the same grant again. Throws NotFound naming the cluster, the
 * registered names nearest to it, and the command that registers it.
 */
export async function addGrantToRegistered(store: RelayStore, grant: { principal: string; cluster: string; role: Role }): Promise<GrantRecord> {
  if (grant.cluster !== "*" && !(await store.getCluster(grant.cluster))) {
    const near = suggestNames(grant.cluster, (await store.listClusters()).map((c) => c.name));
    throw new NotFound(
      `cluster ${JSON.stringify(grant.cluster)} is not registered${near.length ? ` (did you mean ${near.join(", ")}?)` : ""}: ` +
        `grant on a registered cluster (arcrelay cluster list), register it first (arcrelay cluster add ${grant.cluster}), or grant on '*'`,
    );
  }
  return store.addGrant(grant);
}
