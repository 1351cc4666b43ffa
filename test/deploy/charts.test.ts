// The Helm charts in deploy/helm, checked with the real helm (built from its Go module) and, for
// Pod Security, by a real API server's admission: lint, required values, the generated plain
// manifest, and the agent's pod passing the "restricted" level.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import { AGENT_MANIFEST, renderAgentManifest } from "../../scripts/render-manifests.ts";
import { applyManifest, kubectl, startKubeCluster, type KubeCluster } from "../cluster/cluster.ts";
import { helm, runHelm } from "../cluster/helm.ts";

setDefaultTimeout(60_000);
const CHARTS = resolve(import.meta.dir, "../../deploy/helm");
const AGENT = join(CHARTS, "arcagent");
const RELAY = join(CHARTS, "arcrelay");
const AGENT_VALUES = ["--set", "relay.url=https://relay.example.com", "--set", "cluster=prod"];
const RELAY_VALUES = ["--set", "publicUrl=https://relay.example.com", "--set", "tls.existingSecret=arcrelay-tls"];

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "charts-test-"));
}, 30 * 60_000); // the first helm call builds helm from its Go module

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

type Manifest = { kind: string; metadata: { name: string; namespace?: string }; spec?: Record<string, any>; data?: Record<string, string> };

async function render(chart: string, args: string[]): Promise<Manifest[]> {
  const out = await helm(["template", "rel", chart, "--namespace", "cluster-connect", ...args], { dir });
  return parseAllDocuments(out).map((d) => d.toJSON()).filter(Boolean) as Manifest[];
}

describe("helm lint", () => {
  test.each([["arcagent", AGENT, AGENT_VALUES], ["arcrelay", RELAY, RELAY_VALUES]])("%s lints clean in strict mode", async (_, chart, values) => {
    const r = await runHelm(["lint", "--strict", chart, ...values], { dir });
    expect(r.stdout + r.stderr).toContain("0 chart(s) failed");
    expect(r.code).toBe(0);
  }, 30 * 60_000);
});

describe("the agent chart", () => {
  test.each([
    [[], "relay.url is required"],
    [["--set", "relay.url=https://r.example.com"], "cluster is required"],
    [["--set", "relay.url=ftp://r.example.com", "--set", "cluster=prod"], "must start with https://"],
    [["--set", "relay.url=https://r.example.com", "--set", "cluster=Prod_1"], "must be a DNS label"],
    [[...AGENT_VALUES, "--set", "enrollment.token=t", "--set", "enrollment.existingSecret=s"], "not both"],
    [[...AGENT_VALUES, "--namespace", "default"], "namespace of its own"],
  ])("refuses bad values with a message that says what to set (%j)", async (args, message) => {
    const r = await runHelm(["template", "rel", AGENT, "--namespace", "cluster-connect", ...args], { dir });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
  });

  test("renders least privilege: impersonation only, one Secret, one token mounted into one container", async () => {
    const docs = await render(AGENT, AGENT_VALUES);
    const role = docs.find((d) => d.kind === "ClusterRole") as unknown as { rules: unknown[] };
    // Impersonation of callers (and of kubectl --as targets), the extras it records, and the one
    // question it asks the API server before honouring --as; nothing else cluster-wide.
    expect(role.rules).toEqual([
      { apiGroups: [""], resources: ["users", "groups", "serviceaccounts"], verbs: ["impersonate"] },
      { apiGroups: ["authentication.k8s.io"], resources: ["uids", "userextras/arc-request-id", "userextras/arc-original-user", "userextras/arc-original-groups"], verbs: ["impersonate"] },
      { apiGroups: ["authorization.k8s.io"], resources: ["subjectaccessreviews"], verbs: ["create"] },
    ]);
    const keyRole = docs.find((d) => d.kind === "Role") as unknown as { rules: { resourceNames: string[]; verbs: string[] }[] };
    expect(keyRole.rules).toEqual([{ apiGroups: [""], resources: ["secrets"], resourceNames: ["rel-arcagent-key"], verbs: ["get", "update"] }] as never);
    const deployment = docs.find((d) => d.kind === "Deployment")!;
    const pod = deployment.spec!.template.spec;
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.hostNetwork).toBeUndefined();
    const container = pod.containers[0];
    expect(container.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
    expect(container.args).toEqual(expect.arrayContaining(["--state-secret", "$(POD_NAMESPACE)/rel-arcagent-key"]));
    const token = pod.volumes.find((v: { name: string }) => v.name === "kube-api-access").projected.sources[0].serviceAccountToken;
    expect(token.expirationSeconds).toBeLessThanOrEqual(3607);
    expect(docs.some((d) => d.kind === "Secret" && d.metadata.name === "rel-arcagent-enroll")).toBe(false);
  });

  test("proxy credentials can come from a Secret instead of the pod spec", async () => {
    const docs = await render(AGENT, [...AGENT_VALUES, "--set", "proxy.existingSecret=egress"]);
    const container = docs.find((d) => d.kind === "Deployment")!.spec!.template.spec.containers[0];
    expect(container.envFrom).toEqual([{ secretRef: { name: "egress" } }]);
    expect(JSON.stringify(container.env)).not.toContain("PROXY");
  });

  test("cluster-scoped objects carry the namespace in their name", async () => {
    const docs = await render(AGENT, AGENT_VALUES);
    expect(docs.filter((d) => d.kind.startsWith("Cluster")).map((d) => d.metadata.name)).toEqual(["cluster-connect-rel-arcagent-impersonator", "cluster-connect-rel-arcagent-impersonator"]);
  });

  test("proxy, extra CA, issuers and an enrollment token become env, mounted files and a Secret", async () => {
    const docs = await render(AGENT, [...AGENT_VALUES,
      "--set", "proxy.httpsProxy=http://user:pw@proxy.corp:3128", "--set", "proxy.noProxy=10.0.0.1\\,.svc",
      "--set", "relay.caBundle=-----BEGIN CERTIFICATE-----", "--set", "enrollment.token=arcenroll_x",
      "--set", "issuers[0].issuer=https://login.example.com", "--set", "issuers[0].audiences[0]=cluster-connect"]);
    const container = docs.find((d) => d.kind === "Deployment")!.spec!.template.spec.containers[0];
    const env = Object.fromEntries(container.env.filter((e: { value?: string }) => e.value).map((e: { name: string; value: string }) => [e.name, e.value]));
    expect(env).toMatchObject({ HTTPS_PROXY: "http://user:pw@proxy.corp:3128", NO_PROXY: "10.0.0.1,.svc" });
    expect(container.args).toEqual(expect.arrayContaining(["--relay-ca", "/etc/arcagent/relay-ca/ca.crt", "--config", "/etc/arcagent/config/agent.yaml"]));
    expect(docs.find((d) => d.kind === "Secret" && d.metadata.name === "rel-arcagent-enroll")).toMatchObject({ stringData: { token: "arcenroll_x" } });
    const config = docs.find((d) => d.kind === "ConfigMap" && d.metadata.name === "rel-arcagent-config")!;
    expect(config.data!["agent.yaml"]).toContain("issuer: https://login.example.com");
  });

  test("the agent serves at most maxRequestsInFlight requests at once (2000 by default), as its flag", async () => {
    const argsOf = async (extra: string[]) => (await render(AGENT, [...AGENT_VALUES, ...extra])).find((d) => d.kind === "Deployment")!.spec!.template.spec.containers[0].args as string[];
    const flagValue = (args: string[]) => args[args.indexOf("--max-requests-in-flight") + 1];
    expect(flagValue(await argsOf([]))).toBe("2000");
    expect(flagValue(await argsOf(["--set", "maxRequestsInFlight=5000"]))).toBe("5000");
  });

  test("the agent is ready while its tunnel is up (/readyz on the metrics port), so helm --wait waits for it; no probe without metrics", async () => {
    const containerOf = async (extra: string[]) => (await render(AGENT, [...AGENT_VALUES, ...extra])).find((d) => d.kind === "Deployment")!.spec!.template.spec.containers[0];
    const container = await containerOf([]);
    expect(container.readinessProbe).toEqual({ httpGet: { path: "/readyz", port: "metrics" }, periodSeconds: 5, failureThreshold: 2 });
    expect(container.livenessProbe).toBeUndefined();
    expect((await containerOf(["--set", "metrics.enabled=false"])).readinessProbe).toBeUndefined();
  });

  test("deploy/agent.yaml is exactly what the chart renders (npm run manifests)", async () => {
    expect(await readFile(AGENT_MANIFEST, "utf8")).toBe(await renderAgentManifest());
  });
});

describe("the relay chart", () => {
  test.each([
    [["--set", "tls.existingSecret=t"], "publicUrl is required"],
    [["--set", "publicUrl=https://r.example.com"], "tls.existingSecret is required"],
    [["--set", "publicUrl=http://r.example.com", "--set", "tls.existingSecret=t"], "must start with https://"],
    [["--set", "publicUrl=https://r.example.com", "--set", "tls.existingSecret=t", "--set", "replicaCount=3"], "replicaCount above 1 needs database.existingSecret"],
    [["--set", "publicUrl=https://r.example.com", "--set", "tls.existingSecret=t", "--set", "networkPolicy.metricsFrom=[{namespaceSelector: {}}]"], "networkPolicy.metricsFrom must be a list"],
    [["--set", "publicUrl=https://r.example.com", "--set", "tls.existingSecret=t", "--set", "service.externalTrafficPolicy=Local"], "service.externalTrafficPolicy applies to a LoadBalancer or NodePort Service, not ClusterIP"],
  ])("refuses bad values with a message that says what to set (%j)", async (args, message) => {
    const r = await runHelm(["template", "rel", RELAY, ...args], { dir });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
  });

  test("serves TLS from the Secret, keeps its data on a claim that survives uninstall, and probes readiness and liveness apart", async () => {
    const docs = await render(RELAY, RELAY_VALUES);
    const pod = docs.find((d) => d.kind === "Deployment")!.spec!.template.spec;
    expect(pod.containers[0].args).toEqual(expect.arrayContaining(["--tls-cert", "/etc/arcrelay/tls/tls.crt", "--public-url", "https://relay.example.com"]));
    expect(pod.containers[0].readinessProbe.httpGet).toEqual({ path: "/readyz", port: "https", scheme: "HTTPS" });
    expect(pod.containers[0].livenessProbe.httpGet).toEqual({ path: "/livez", port: "https", scheme: "HTTPS" });
    expect(pod.securityContext.fsGroup).toBe(65532);
    expect(docs.find((d) => d.kind === "PersistentVolumeClaim")).toMatchObject({ metadata: { annotations: { "helm.sh/resource-policy": "keep" } } });
  });
});

describe("the relay chart's NetworkPolicy", () => {
  const policyOf = async (args: string[]) => (await render(RELAY, [...RELAY_VALUES, ...args])).find((d) => d.kind === "NetworkPolicy");

  test("opens the public port to all, the internal port to the relay's own pods, metrics to the cluster's namespaces", async () => {
    const docs = await render(RELAY, RELAY_VALUES);
    const policy = docs.find((d) => d.kind === "NetworkPolicy")!;
    const podLabels = docs.find((d) => d.kind === "Deployment")!.spec!.template.metadata.labels;
    expect(podLabels).toMatchObject(policy.spec!.podSelector.matchLabels);
    expect(policy.spec!.policyTypes).toEqual(["Ingress"]);
    expect(policy.spec!.ingress).toEqual([
      { ports: [{ port: "https", protocol: "TCP" }] },
      { from: [{ podSelector: { matchLabels: policy.spec!.podSelector.matchLabels } }], ports: [{ port: "internal", protocol: "TCP" }] },
      { from: [{ namespaceSelector: {} }], ports: [{ port: "metrics", protocol: "TCP" }] },
    ]);
  });

  test("lets only metricsFrom scrape, nobody with an empty list or metrics off, and is left out when disabled", async () => {
    const monitoring = [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }];
    const narrowed = await policyOf(["--set-json", `networkPolicy.metricsFrom=${JSON.stringify(monitoring)}`]);
    expect(narrowed!.spec!.ingress.at(-1)).toEqual({ from: monitoring, ports: [{ port: "metrics", protocol: "TCP" }] });
    for (const args of [["--set-json", "networkPolicy.metricsFrom=[]"], ["--set", "metrics.enabled=false"]]) {
      const ports = (await policyOf(args))!.spec!.ingress.flatMap((rule: { ports: Array<{ port: string }> }) => rule.ports.map((p) => p.port));
      expect(ports).toEqual(["https", "internal"]);
    }
    expect(await policyOf(["--set", "networkPolicy.enabled=false"])).toBeUndefined();
  });
});

describe("the relay chart with replicas on PostgreSQL", () => {
  test("runs replicaCount pods that read the database URL from the Secret, name themselves by pod, reach each other by pod IP, and roll one at a time", async () => {
    const docs = await render(RELAY, [...RELAY_VALUES, "--set", "database.existingSecret=arcrelay-db", "--set", "replicaCount=3"]);
    const deployment = docs.find((d) => d.kind === "Deployment")!;
    expect(deployment.spec!.replicas).toBe(3);
    expect(deployment.spec!.strategy).toEqual({ type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
    const container = deployment.spec!.template.spec.containers[0];
    expect(container.args).toEqual(expect.arrayContaining(["--replica-id", "$(POD_NAME)", "--internal-listen", "0.0.0.0:8444", "--internal-url", "https://$(POD_IP):8444"]));
    expect(container.env).toEqual(expect.arrayContaining([
      { name: "ARC_DATABASE_URL", valueFrom: { secretKeyRef: { name: "arcrelay-db", key: "url" } } },
      { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
    ]));
    // The password never appears in the pod spec's arguments.
    expect(container.args.join(" ")).not.toContain("postgres://");
    expect(container.ports).toEqual(expect.arrayContaining([{ name: "internal", containerPort: 8444, protocol: "TCP" }]));
    // No claim: the state is in the database, and one ReadWriteOnce volume could not serve three pods.
    expect(docs.find((d) => d.kind === "PersistentVolumeClaim")).toBeUndefined();
  });
});

describe("metrics and downloads in the charts", () => {
  test.each([["arcagent", AGENT, AGENT_VALUES], ["arcrelay", RELAY, RELAY_VALUES]])("%s serves Prometheus metrics on a port of its own by default, and not with metrics.enabled=false", async (_, chart, values) => {
    const on = (await render(chart, values)).find((d) => d.kind === "Deployment")!.spec!.template.spec.containers[0];
    expect(on.args).toEqual(expect.arrayContaining(["--metrics-listen", "0.0.0.0:9090"]));
    expect(on.ports).toEqual(expect.arrayContaining([{ name: "metrics", containerPort: 9090, protocol: "TCP" }]));
    const off = (await render(chart, [...values, "--set", "metrics.enabled=false"])).find((d) => d.kind === "Deployment")!.spec!.template.spec.containers[0];
    expect(off.args).not.toContain("--metrics-listen");
  });

  test("the relay serves the arcproxy builds its image carries", async () => {
    const relay = (await render(RELAY, RELAY_VALUES)).find((d) => d.kind === "Deployment")!.spec!.template.spec.containers[0];
    expect(relay.args).toEqual(expect.arrayContaining(["--downloads-dir", "/usr/share/cluster-connect/downloads"]));
  });

  test("a LoadBalancer Service can keep the client's address (externalTrafficPolicy: Local), Kubernetes' default otherwise", async () => {
    const serviceOf = async (args: string[]) => (await render(RELAY, [...RELAY_VALUES, ...args])).find((d) => d.kind === "Service")!.spec!;
    expect((await serviceOf([])).externalTrafficPolicy).toBeUndefined();
    const local = await serviceOf(["--set", "service.type=LoadBalancer", "--set", "service.externalTrafficPolicy=Local"]);
    expect(local).toMatchObject({ type: "LoadBalancer", externalTrafficPolicy: "Local" });
  });

  test("the relay believes X-Forwarded-For only from the trustedProxies given, none by default", async () => {
    const argsOf = async (args: string[]) => (await render(RELAY, [...RELAY_VALUES, ...args])).find((d) => d.kind === "Deployment")!.spec!.template.spec.containers[0].args as string[];
    expect(await argsOf([])).not.toContain("--trusted-proxies");
    const args = await argsOf(["--set-json", `trustedProxies=["10.0.0.0/8","fd00::/8"]`]);
    expect(args[args.indexOf("--trusted-proxies") + 1]).toBe("10.0.0.0/8,fd00::/8");
  });
});

describe("Pod Security, as a real API server's admission decides it", () => {
  let cluster: KubeCluster;
  beforeAll(async () => {
    cluster = await startKubeCluster({ dir: join(dir, "kube"), node: false });
    await applyManifest(cluster, "restricted.yaml", `apiVersion: v1
kind: Namespace
metadata:
  name: restricted
  labels: {pod-security.kubernetes.io/enforce: restricted}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: rel-arcagent, namespace: restricted}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: rel-arcrelay, namespace: restricted}
`);
  }, 30 * 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  /** The chart's pod template as a Pod, created with a server-side dry run in the restricted namespace. */
  async function dryRunPod(chart: string, args: string[]): Promise<string> {
    const template = (await render(chart, args)).find((d) => d.kind === "Deployment")!.spec!.template;
    const file = join(dir, `pod-${Date.now()}.json`);
    await writeFile(file, JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata: { name: "probe", namespace: "restricted" }, spec: template.spec }));
    return kubectl(cluster, ["create", "--dry-run=server", "-f", file]);
  }

  test.each([["arcagent", AGENT, AGENT_VALUES], ["arcrelay", RELAY, RELAY_VALUES]])("the %s pod is admitted under \"restricted\"", async (_, chart, values) => {
    expect(await dryRunPod(chart, values)).toContain("pod/probe created (server dry run)");
  });

  test("the relay's NetworkPolicy is valid for the API server", async () => {
    const policy = (await render(RELAY, RELAY_VALUES)).find((d) => d.kind === "NetworkPolicy")!;
    const file = join(dir, "networkpolicy.json");
    await writeFile(file, JSON.stringify({ apiVersion: "networking.k8s.io/v1", ...policy, metadata: { ...policy.metadata, namespace: "restricted" } }));
    expect(await kubectl(cluster, ["create", "--dry-run=server", "-f", file])).toContain("created (server dry run)");
  });

  test("the check is real: the agent with hostNetwork (the tests' setting) is refused there", async () => {
    await expect(dryRunPod(AGENT, [...AGENT_VALUES, "--set", "hostNetwork=true"])).rejects.toThrow(/violates PodSecurity "restricted:latest": host namespaces \(hostNetwork=true\)/);
  });
});
