// A client written against @kubernetes/client-node, run as `arcproxy -- bun test/e2e/client-node-program.ts [NAMESPACE]`:
// loads the kubeconfig arcproxy hands it ($KUBECONFIG), lists the ConfigMaps of NAMESPACE and prints their names as JSON.
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";

const kubeconfigPath = process.env.KUBECONFIG;
if (!kubeconfigPath) {
  process.stderr.write("client-node-program: KUBECONFIG is not set (run it through arcproxy -- ...)\n");
  process.exit(2);
}
const namespace = process.argv[2] ?? "team-a";

const kc = new KubeConfig();
kc.loadFromFile(kubeconfigPath);
const core = kc.makeApiClient(CoreV1Api);
try {
  const list = await core.listNamespacedConfigMap({ namespace });
  process.stdout.write(JSON.stringify(list.items.map((cm) => cm.metadata?.name)) + "\n");
} catch (error) {
  process.stderr.write(`client-node-program: listing ConfigMaps in ${namespace} failed: ${(error as Error).message}\n`);
  process.exit(1);
}
