// A client written against @kubernetes/client-node, run as `arcproxy -- bun test/e2e/client-node-program.ts [NAMESPACE]`:
// loads the kubeconfig arcproxy hands it ($KUBECONFIG), lists the ConfigMaps of NAMESPACE and prints their names as JSON.
import { CoreV1Api, KubeConfig, ResponseContext, wrapHttpLibrary, type RequestContext } from "@kubernetes/client-node";

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
  const list = await core.listNamespacedConfigMap({ namespace }, bunTransport(kc));
  process.stdout.write(JSON.stringify(list.items.map((cm) => cm.metadata?.name)) + "\n");
} catch (error) {
  process.stderr.write(`client-node-program: listing ConfigMaps in ${namespace} failed: ${(error as Error).message}\n`);
  process.exit(1);
}

/**
 * Under Bun, client-node's TLS settings are lost: it passes the kubeconfig's CA to undici's fetch as
 * a `dispatcher`, and Bun's built-in `undici` ignores it (oven-sh/bun#19754, #7332; fix proposed in
 * oven-sh/bun#35609), so every request fails with "unable to verify the first certificate".
 * Until then, requests go through Bun's own fetch with the CA and any client certificate as `tls`; everything else
 * (URL, headers, the kubeconfig's token, decoding) is still client-node's. Under Node: undefined.
 */
function bunTransport(config: KubeConfig) {
  if (!process.versions.bun) return undefined;
  const cluster = config.getCurrentCluster();
  const user = config.getCurrentUser();
  const pem = (data?: string, file?: string) => (data ? Buffer.from(data, "base64").toString("utf8") : file ? Bun.file(file) : undefined);
  const tls = { ca: pem(cluster?.caData, cluster?.caFile), cert: pem(user?.certData, user?.certFile), key: pem(user?.keyData, user?.keyFile) };
  const httpApi = wrapHttpLibrary({
    async send(request: RequestContext): Promise<ResponseContext> {
      const res = await fetch(request.getUrl(), {
        method: request.getHttpMethod().toString(),
        headers: request.getHeaders(),
        body: request.getBody(),
        tls,
      });
      const headers: Record<string, string> = {};
      res.headers.forEach((value, name) => (headers[name] = value));
      return new ResponseContext(res.status, headers, {
        text: () => res.text(),
        binary: async () => Buffer.from(await res.arrayBuffer()),
        stream: () => res.body,
      });
    },
  });
  return { httpApi };
}
