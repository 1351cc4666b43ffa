export { validateClusterName, validateUserName, validateGroupName } from "./names.ts";
export { buildKubeconfig, writeKubeconfig } from "./kubeconfig.ts";
export type { KubeconfigOptions, KubeconfigExec } from "./kubeconfig.ts";
export { isLoopbackHost } from "./loopback.ts";
