// Renders deploy/agent.yaml, the plain manifest for `kubectl apply`, from the agent's Helm chart,
// so the two never drift (test/deploy/charts.test.ts checks the file is what this renders).
//
//   bun scripts/render-manifests.ts           rewrite deploy/agent.yaml
//   bun scripts/render-manifests.ts --check   exit 1 if it differs
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { tmpdir } from "node:os";
import { helm } from "../test/cluster/helm.ts";

const ROOT = resolve(import.meta.dir, "..");
export const AGENT_MANIFEST = join(ROOT, "deploy", "agent.yaml");
const AGENT_CHART = join(ROOT, "deploy", "helm", "arcagent");

const HEADER = `# cluster-connect agent: everything arcagent needs inside one cluster, for \`kubectl apply\`.
# GENERATED from deploy/helm/arcagent by \`npm run manifests\`; with Helm, install that chart instead.
#
# The agent dials OUT to your relay (wss, port 443); nothing here opens an inbound port.
#
#   1. In the ConfigMap \`arcagent-config\` below, set
#        relayUrl: the relay's public URL, e.g. https://relay.example.com
#        cluster:  the name this cluster was registered under (\`arcrelay cluster add NAME\`)
#      and in the Deployment, set the image you built from Dockerfile.agent (or a published one).
#
#   2. Apply it:
#        kubectl apply --server-side -f deploy/agent.yaml
#
#   3. Hand the agent its single-use enrollment token (printed by \`arcrelay cluster add NAME\`):
#        kubectl -n cluster-connect create secret generic arcagent-enroll --from-literal=token=<TOKEN>
#        kubectl -n cluster-connect rollout restart deployment/arcagent
#
#      On first start the agent generates an Ed25519 key pair, registers the public key with the
#      token and keeps the private key in the Secret \`arcagent-key\`. After that the enrollment
#      token is spent; delete it: kubectl -n cluster-connect delete secret arcagent-enroll
#
# Re-applying this file is safe: it never sets the data of \`arcagent-key\`, so the stored key stays.
# \`kubectl delete -f\` removes the key too; the cluster must then be enrolled again.
`;

/** The manifest text: the chart rendered with placeholders a user fills in. */
export async function renderAgentManifest(): Promise<string> {
  const out = await helm([
    "template", "arcagent", AGENT_CHART, "--namespace", "cluster-connect",
    "--set", "namespace.create=true", "--set", "kubectlManifest=true",
    "--set", "relay.url=https://relay.example.com", "--set", "cluster=my-cluster",
  ], { dir: join(tmpdir(), "cluster-connect-helm") });
  return HEADER + out;
}

if (import.meta.main) {
  const rendered = await renderAgentManifest();
  if (process.argv.includes("--check")) {
    const current = await readFile(AGENT_MANIFEST, "utf8").catch(() => "");
    if (current !== rendered) {
      console.error("deploy/agent.yaml differs from the chart: run npm run manifests");
      process.exit(1);
    }
  } else {
    await writeFile(AGENT_MANIFEST, rendered);
    console.log(`wrote ${AGENT_MANIFEST}`);
  }
}
