// The one folder where builds done for development and tests are cached (Go binaries, buildah storage).

import { homedir } from "node:os";
import { join } from "node:path";

/** `$CLUSTER_CONNECT_CACHE`, else `~/.cache/cluster-connect`. */
export function cacheRoot(): string {
  return process.env.CLUSTER_CONNECT_CACHE ?? join(homedir(), ".cache", "cluster-connect");
}
