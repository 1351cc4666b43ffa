export { validateClusterName, validateUserName, validateGroupName, subjectNameProblem, suggestNames } from "./names.ts";
export { buildKubeconfig, writeKubeconfig } from "./kubeconfig.ts";
export { mergeKubeconfigContext, defaultKubeconfigPath, ARCPROXY_EXTENSION, KUBECONFIG_LOCK_TIMEOUT_MS } from "./kubeconfig-merge.ts";
export type { MergedContext, MergedKubeconfig } from "./kubeconfig-merge.ts";
export type { KubeconfigOptions, KubeconfigExec } from "./kubeconfig.ts";
export { isLoopbackHost } from "./loopback.ts";
