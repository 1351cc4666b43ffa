// Writes self-contained kubeconfig files (certificates embedded as data) for test API servers and agents.
import { readFile, writeFile } from "node:fs/promises";
import { stringify } from "yaml";

const CLUSTER = "cluster-connect-test";

export type KubeconfigUser = { token: string } | { certFile: string; keyFile: string };

export async function writeKubeconfig(
  path: string,
  opts: { server: string; caFile?: string; userName: string; user: KubeconfigUser; namespace?: string },
): Promise<void> {
  const b64 = async (file: string) => (await readFile(file)).toString("base64");
  const user =
    "token" in opts.user
      ? { token: opts.user.token }
      : { "client-certificate-data": await b64(opts.user.certFile), "client-key-data": await b64(opts.user.keyFile) };
  const context = { cluster: CLUSTER, user: opts.userName, ...(opts.namespace && { namespace: opts.namespace }) };
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: CLUSTER,
        // Without a CA the server is a plain-http test upstream; client-node insists on this flag for http.
        cluster: opts.caFile
          ? { server: opts.server, "certificate-authority-data": await b64(opts.caFile) }
          : { server: opts.server, "insecure-skip-tls-verify": true },
      },
    ],
    users: [{ name: opts.userName, user }],
    contexts: [{ name: opts.userName, context }],
    "current-context": opts.userName,
  };
  await writeFile(path, stringify(config), { mode: 0o600 });
}
