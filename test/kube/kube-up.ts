// `bun run kube:up -- --dir DIR`: starts a real etcd + kube-apiserver, applies
// deploy/agent.yaml, writes DIR/admin.kubeconfig and DIR/agent.kubeconfig
// (ServiceAccount cluster-connect/arcagent), prints `ready`, and runs until
// SIGINT/SIGTERM.
import { defineCommand, runMain } from "citty";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createServiceAccountKubeconfig, startKubeCluster } from "./cluster.ts";

const AGENT_MANIFEST = resolve(import.meta.dir, "../../deploy/agent.yaml");
const AGENT_NAMESPACE = "cluster-connect";
const AGENT_SERVICE_ACCOUNT = "arcagent";

// Used only while deploy/agent.yaml does not exist: the identity without RBAC.
const FALLBACK_MANIFEST = `apiVersion: v1
kind: Namespace
metadata:
  name: ${AGENT_NAMESPACE}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: ${AGENT_SERVICE_ACCOUNT}
  namespace: ${AGENT_NAMESPACE}
`;

const main = defineCommand({
  meta: { name: "kube-up", description: "Run a real kube-apiserver + etcd for local testing" },
  args: {
    dir: { type: "string", required: true, description: "Directory for PKI, data, logs and kubeconfigs" },
  },
  async run({ args }) {
    const dir = resolve(args.dir);
    await mkdir(dir, { recursive: true });
    const log = (line: string) => console.error(line);
    let manifest = AGENT_MANIFEST;
    if (!existsSync(manifest)) {
      log(`[kube] ${AGENT_MANIFEST} not found; creating only the namespace and ServiceAccount`);
      manifest = join(dir, "agent-fallback.yaml");
      await writeFile(manifest, FALLBACK_MANIFEST);
    }

    const cluster = await startKubeCluster({ dir, log, manifests: [manifest] });
    // Persistent handlers (not `once`): `bun run` forwards signals, so we may
    // get each one twice; repeats must not fall through to proc.ts's hard kill.
    const stopped = new Promise<string>((done) => {
      for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => done(sig));
    });
    try {
      const agentKubeconfig = join(dir, "agent.kubeconfig");
      await createServiceAccountKubeconfig(cluster, {
        namespace: AGENT_NAMESPACE,
        serviceAccount: AGENT_SERVICE_ACCOUNT,
        out: agentKubeconfig,
      });
      log(`[kube] server:           ${cluster.server}`);
      log(`[kube] admin kubeconfig: ${cluster.adminKubeconfig}`);
      log(`[kube] agent kubeconfig: ${agentKubeconfig}`);
      log(`[kube] kubectl:          ${cluster.kubectl}`);
      console.log("ready");

      const reason = await Promise.race([stopped, cluster.exited.then((msg) => `error: ${msg}`)]);
      log(`[kube] ${reason}; stopping`);
      await cluster.stop();
      log("[kube] stopped");
      process.exit(reason.startsWith("error:") ? 1 : 0);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  },
});

await runMain(main);
