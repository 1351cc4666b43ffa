// The test cluster's binaries, built from Go modules: Kubernetes v1.34 (control plane, kubelet,
// kubectl), etcd, the pod sandbox's pause program, and helm v4.
//
// Run as a script (`bun test/cluster/build.ts`) to build everything and print the paths.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { buildGoModule, moduleTime } from "./go-build.ts";

export interface KubeBinaries {
  apiserver: string;
  controllerManager: string;
  scheduler: string;
  kubelet: string;
  etcd: string;
  /** Same version as the API server; used only where the machine has no kubectl >= 1.33. */
  kubectl: string;
  /** The pod sandbox's process (static), for the locally built pause image. */
  pause: string;
}

const KUBE_MODULE = join(import.meta.dir, "go");
const HELM_MODULE = join(import.meta.dir, "helm");
const KUBE_COMMANDS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "etcd", "kubectl", "pause"];

export async function buildKubeBinaries(log: (line: string) => void = (line) => console.error(line)): Promise<KubeBinaries> {
  const goMod = await readFile(join(KUBE_MODULE, "go.mod"), "utf8");
  const m = /^\s*k8s\.io\/kubernetes\s+(v(\d+)\.(\d+)\.\d+)\s*$/m.exec(goMod);
  if (!m) throw new Error(`cannot find the k8s.io/kubernetes version in ${KUBE_MODULE}/go.mod`);
  const [, version, major, minor] = m;
  const dir = await buildGoModule({
    name: "kube",
    moduleDir: KUBE_MODULE,
    packages: KUBE_COMMANDS.map((c) => `./cmd/${c}`),
    tags: ["selinux", "notest"],
    // What `kubectl version` and the API server's /version report, as in a release build.
    ldflags: async () => {
      const flags: string[] = [];
      const buildDate = await moduleTime(KUBE_MODULE, "k8s.io/kubernetes", log);
      for (const pkg of ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"]) {
        flags.push(`-X ${pkg}.gitVersion=${version}`, `-X ${pkg}.gitMajor=${major}`, `-X ${pkg}.gitMinor=${minor}`, `-X ${pkg}.gitTreeState=clean`);
        if (buildDate) flags.push(`-X ${pkg}.buildDate=${buildDate}`);
      }
      return flags;
    },
  }, log);
  const bin = (name: string) => join(dir, name);
  return {
    apiserver: bin("kube-apiserver"),
    controllerManager: bin("kube-controller-manager"),
    scheduler: bin("kube-scheduler"),
    kubelet: bin("kubelet"),
    etcd: bin("etcd"),
    kubectl: bin("kubectl"),
    pause: bin("pause"),
  };
}

/** The real helm CLI (helm.sh/helm/v4, version from test/cluster/helm/go.mod). */
export async function buildHelm(log: (line: string) => void = (line) => console.error(line)): Promise<string> {
  const goMod = await readFile(join(HELM_MODULE, "go.mod"), "utf8");
  const version = /^\s*helm\.sh\/helm\/v4\s+(v[\w.\-+]+)/m.exec(goMod)?.[1];
  if (!version) throw new Error(`cannot find the helm.sh/helm/v4 version in ${HELM_MODULE}/go.mod`);
  const dir = await buildGoModule({
    name: "helm",
    moduleDir: HELM_MODULE,
    packages: ["helm.sh/helm/v4/cmd/helm"],
    ldflags: [`-X helm.sh/helm/v4/internal/version.version=${version}`],
  }, log);
  return join(dir, "helm");
}

if (import.meta.main) {
  const log = (l: string) => console.error(l);
  const kube = await buildKubeBinaries(log);
  for (const path of Object.values(kube)) console.log(path);
  console.log(await buildHelm(log));
}
