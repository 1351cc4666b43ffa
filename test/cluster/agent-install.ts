// Puts the agent into a test cluster as users do: the image built from Dockerfile.agent (on a
// local stand-in for the distroless base), imported into the node, installed with the real helm
// from deploy/helm/arcagent.
import { join, resolve } from "node:path";
import { buildDistrolessStandin } from "../../scripts/distroless-standin.ts";
import { cacheRoot } from "../../scripts/cache-root.ts";
import { buildProductImages, type BuiltImage, type ImageName } from "../../scripts/image-build.ts";
import { kubectl, type KubeCluster } from "./cluster.ts";
import { freePorts } from "./control-plane.ts";
import { helm } from "./helm.ts";

export const AGENT_NAMESPACE = "cluster-connect";
export const AGENT_RELEASE = "arcagent";
export const AGENT_CHART = resolve(import.meta.dir, "../../deploy/helm/arcagent");
const AGENT_READY_TIMEOUT_MS = 90_000;

export interface AgentInstallOptions {
  relayUrl: string;
  cluster: string;
  enrollToken: string;
  log?: (line: string) => void;
  /** Extra `--set` values, e.g. { logLevel: "debug" }. */
  values?: Record<string, string>;
}

const built = new Map<ImageName, Promise<BuiltImage>>();

/**
 * Builds our image `name` from its Dockerfile (once per process, on the local stand-in for the
 * distroless base) and makes it available on the cluster's node; returns its reference.
 */
export async function provideImage(cluster: KubeCluster, name: ImageName, log?: (line: string) => void): Promise<string> {
  if (!built.has(name)) {
    built.set(name, (async () => {
      const base = await buildDistrolessStandin(log);
      const outDir = join(cacheRoot(), "images", "product");
      const [image] = await buildProductImages({ names: [name], baseImage: base, outDir, log: log ?? (() => {}) });
      return image!;
    })());
  }
  const image = await built.get(name)!;
  await cluster.node!.importImage(image.archive);
  return image.tag;
}

/**
 * Installs the agent chart into the namespace cluster-connect: hostNetwork, so a relay listening on
 * 127.0.0.1 is reachable; the API server by address, since the test cluster runs no kube-proxy.
 * Resolves once the agent's tunnel is up (its log says so).
 */
export async function installAgentChart(cluster: KubeCluster, opts: AgentInstallOptions): Promise<void> {
  const log = opts.log ?? (() => {});
  const image = await provideImage(cluster, "arcagent", log);
  const [repository, tag] = image.split(/:(?=[^:]+$)/) as [string, string];
  const server = new URL(cluster.server);
  const [metricsPort] = await freePorts(1);
  const values: Record<string, string> = {
    "relay.url": opts.relayUrl,
    cluster: opts.cluster,
    "enrollment.token": opts.enrollToken,
    "image.repository": repository,
    "image.tag": tag,
    "image.pullPolicy": "Never",
    hostNetwork: "true",
    // On the host's network the metrics port is the host's: a fixed 9090 clashed with an agent of
    // another test cluster on the same machine (the demo beside kube:up), and the pod crash-looped.
    "metrics.port": String(metricsPort),
    "apiServer.host": server.hostname,
    "apiServer.port": server.port,
    ...opts.values,
  };
  await helm([
    "upgrade", "--install", AGENT_RELEASE, AGENT_CHART, "--namespace", AGENT_NAMESPACE, "--create-namespace",
    ...Object.entries(values).flatMap(([k, v]) => ["--set-string", `${k}=${v}`]),
    "--wait", "--timeout", `${AGENT_READY_TIMEOUT_MS / 1000}s`,
  ], { cluster, dir: cluster.dir, log });
  const pod = await waitForAgentPod(cluster);
  await waitForAgentTunnel(cluster, pod);
  log(`[kube] agent ${image} running in namespace ${AGENT_NAMESPACE}, its tunnel up`);
}

/**
 * Waits until the agent in `pod` logs that its tunnel is up. A Running pod alone says little: the
 * chart has no readiness probe (the agent only dials out), and an agent that exits at once (its
 * metrics port taken on the host network) is Running for a moment between restarts. Throws with
 * the agent's log when it restarted or the tunnel is not up within AGENT_READY_TIMEOUT_MS.
 */
async function waitForAgentTunnel(cluster: KubeCluster, pod: string): Promise<void> {
  const deadline = Date.now() + AGENT_READY_TIMEOUT_MS;
  for (;;) {
    const logs = await kubectl(cluster, ["logs", "-n", AGENT_NAMESPACE, pod]).catch((e: Error) => e.message);
    if (logs.includes("tunnel connected")) return;
    const status = JSON.parse(await kubectl(cluster, ["get", "pod", "-n", AGENT_NAMESPACE, pod, "-o", "json"])) as {
      status: { containerStatuses?: { restartCount: number }[] };
    };
    const restarted = (status.status.containerStatuses ?? []).some((c) => c.restartCount > 0);
    if (restarted || Date.now() > deadline) {
      const previous = restarted ? await kubectl(cluster, ["logs", "-n", AGENT_NAMESPACE, pod, "--previous"]).catch((e: Error) => e.message) : "";
      throw new Error(`the agent's tunnel is not up (${restarted ? "the agent restarted" : `after ${AGENT_READY_TIMEOUT_MS / 1000}s`}); its log:\n${previous}${logs}`);
    }
    await Bun.sleep(250);
  }
}

/** Waits until an agent pod (app.kubernetes.io/name=arcagent) is Running; returns its name. */
export async function waitForAgentPod(cluster: KubeCluster, notName?: string): Promise<string> {
  const deadline = Date.now() + AGENT_READY_TIMEOUT_MS;
  for (;;) {
    const pods = JSON.parse(await kubectl(cluster, ["get", "pods", "-n", AGENT_NAMESPACE, "-l", "app.kubernetes.io/name=arcagent", "-o", "json"])) as {
      items: { metadata: { name: string; deletionTimestamp?: string }; status: { phase?: string } }[];
    };
    const running = pods.items.find((p) => p.status.phase === "Running" && !p.metadata.deletionTimestamp && p.metadata.name !== notName);
    if (running) return running.metadata.name;
    if (Date.now() > deadline) {
      const described = await kubectl(cluster, ["describe", "pods", "-n", AGENT_NAMESPACE, "-l", "app.kubernetes.io/name=arcagent"]).catch((e: Error) => e.message);
      throw new Error(`no agent pod Running after ${AGENT_READY_TIMEOUT_MS / 1000}s:\n${described}`);
    }
    await Bun.sleep(250);
  }
}
