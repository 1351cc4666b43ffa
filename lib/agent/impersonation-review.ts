// Asks the API server whether a caller may impersonate whom it asks to (kubectl --as), with the
// same questions the API server's own impersonation filter asks.
import type { Identity } from "../auth/index.ts";
import { ApiServerUnavailable, ArcError, Forbidden } from "../errors/index.ts";
import type { ImpersonationRequest } from "../http/index.ts";
import { kubeApiRequest, statusMessageOf } from "./kube-api.ts";
import type { Upstream } from "./upstream.ts";

/** One `impersonate` check: authorization/v1 ResourceAttributes. */
interface ImpersonateAttributes {
  group: string;
  resource: string;
  name: string;
  namespace?: string;
}

const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;

/**
 * The checks the API server makes for Impersonate-* headers (k8s.io/apiserver
 * endpoints/filters/impersonation.go): `users` (or `serviceaccounts` in its namespace for a
 * system:serviceaccount:NS:NAME user) and `groups` in the core group, `uids` in
 * authentication.k8s.io; verb `impersonate`, the target's name as the resource name.
 */
export function impersonationChecks(request: ImpersonationRequest): ImpersonateAttributes[] {
  const sa = SERVICE_ACCOUNT_USER.exec(request.user);
  const checks: ImpersonateAttributes[] = [
    sa ? { group: "", resource: "serviceaccounts", namespace: sa[1]!, name: sa[2]! } : { group: "", resource: "users", name: request.user },
    ...request.groups.map((name) => ({ group: "", resource: "groups", name })),
  ];
  if (request.uid !== undefined) checks.push({ group: "authentication.k8s.io", resource: "uids", name: request.uid });
  return checks;
}

/**
 * Resolves when `caller` may impersonate everything in `request` on this cluster, asking the API
 * server with one SubjectAccessReview per check (run together; each bounded by kube-api.ts's
 * KUBE_API_TIMEOUT_MS, 10 s). The caller is described as the API server sees it when the agent
 * impersonates it: its groups plus system:authenticated.
 *
 * Throws Forbidden (403) naming the first refused check and the RBAC rule that would allow it;
 * ApiServerUnavailable (503) when the API server cannot answer; ArcError (500) when the agent's
 * ServiceAccount may not create SubjectAccessReviews (an outdated chart).
 */
export async function authorizeImpersonation(upstream: Upstream, cluster: string, caller: Identity, request: ImpersonationRequest, requestId: string): Promise<void> {
  const groups = [...new Set([...caller.groups, "system:authenticated"])];
  const checks = impersonationChecks(request);
  const answers = await Promise.all(checks.map(async (attributes) => {
    const review = {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SubjectAccessReview",
      spec: { user: caller.user, groups, resourceAttributes: { verb: "impersonate", ...attributes } },
    };
    const response = await kubeApiRequest(upstream, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review).catch((cause: unknown) => {
      throw new ApiServerUnavailable(
        `cluster "${cluster}": the agent could not ask the API server whether "${caller.user}" may impersonate (request id ${requestId}): ${(cause as Error).message}`,
        { cause },
      );
    });
    if (response.status === 403) {
      throw new ArcError(
        `cluster "${cluster}": the agent may not create SubjectAccessReviews, so kubectl --as cannot be checked (request id ${requestId}); ` +
          "upgrade the arcagent chart (its ClusterRole grants create on subjectaccessreviews)",
      );
    }
    if (response.status !== 201 && response.status !== 200) {
      throw new ApiServerUnavailable(
        `cluster "${cluster}": the API server answered ${response.status} to a SubjectAccessReview (request id ${requestId}): ${statusMessageOf(response.body) ?? "no message"}`,
      );
    }
    const status = (response.body as { status?: { allowed?: unknown; reason?: unknown } } | undefined)?.status;
    return { attributes, allowed: status?.allowed === true, reason: typeof status?.reason === "string" ? status.reason : "" };
  }));
  const refused = answers.find((answer) => !answer.allowed);
  if (refused) {
    const { group, resource, name, namespace } = refused.attributes;
    const where = namespace ? ` in namespace "${namespace}"` : "";
    throw new Forbidden(
      `${resource} "${name}" is forbidden: user "${caller.user}" cannot impersonate resource "${resource}" in API group "${group}"${where} ` +
        `on cluster "${cluster}"${refused.reason ? ` (${refused.reason})` : ""}; a cluster admin can allow it with a (Cluster)Role granting ` +
        `verb impersonate on ${resource}${group ? `.${group}` : ""} "${name}", or run the command without --as`,
    );
  }
}
