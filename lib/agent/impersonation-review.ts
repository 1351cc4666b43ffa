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
// k8s.io/apiserver serviceaccount.SplitUsername: only a valid namespace (DNS-1123 label) and name
// (DNS-1123 subdomain) make a service account; anything else is impersonated as a plain user.
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function serviceAccountOf(user: string): { namespace: string; name: string } | undefined {
  const match = SERVICE_ACCOUNT_USER.exec(user);
  if (!match) return undefined;
  const [, namespace, name] = match as unknown as [string, string, string];
  if (namespace.length > 63 || !DNS1123_LABEL.test(namespace) || name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) return undefined;
  return { namespace, name };
}

/**
 * The checks the API server makes for Impersonate-* headers (k8s.io/apiserver
 * endpoints/filters/impersonation.go): `users` (or `serviceaccounts` in its namespace for a
 * system:serviceaccount:NS:NAME user) and `groups` in the core group, `uids` in
 * authentication.k8s.io; verb `impersonate`, the target's name as the resource name.
 */
export function impersonationChecks(request: ImpersonationRequest): ImpersonateAttributes[] {
  const sa = serviceAccountOf(request.user);
  const checks: ImpersonateAttributes[] = [
    sa ? { group: "", resource: "serviceaccounts", namespace: sa.namespace, name: sa.name } : { group: "", resource: "users", name: request.user },
    ...request.groups.map((name) => ({ group: "", resource: "groups", name })),
  ];
  if (request.uid !== undefined) checks.push({ group: "authentication.k8s.io", resource: "uids", name: request.uid });
  return checks;
}

/** Decisions are remembered this long (ms), as kube-apiserver's webhook authorizer caches its own. */
const DECISION_TTL_MS = 10_000;
const MAX_DECISIONS = 1_000;

interface Decision {
  allowed: boolean;
  reason: string;
  until: number;
}

export interface ImpersonationReviewer {
  /**
   * Resolves when `caller` may impersonate everything in `request` on this cluster, asking the API
   * server one SubjectAccessReview per check, one after the other, stopping at the first "no"
   * (each bounded by kube-api.ts's KUBE_API_TIMEOUT_MS, 10 s). Answers are remembered for 10 s
   * (at most 1,000), so a kubectl --as session asks once, not per request. The caller is described
   * as the API server sees it when the agent impersonates it: its groups plus system:authenticated.
   *
   * Throws Forbidden (403) naming the first refused check and the RBAC rule that would allow it;
   * ApiServerUnavailable (503) when the API server cannot answer; ArcError (500) when the agent's
   * ServiceAccount may not create SubjectAccessReviews (an outdated chart).
   */
  authorize(caller: Identity, request: ImpersonationRequest, requestId: string): Promise<void>;
}

export function createImpersonationReviewer(upstream: Upstream, cluster: string, now: () => number = Date.now): ImpersonationReviewer {
  // Map order is insertion order: the first key is the oldest, dropped when full.
  const decisions = new Map<string, Decision>();

  async function decide(caller: Identity, groups: string[], attributes: ImpersonateAttributes, requestId: string): Promise<Decision> {
    const key = JSON.stringify([caller.user, groups, attributes]);
    const known = decisions.get(key);
    if (known && known.until > now()) return known;
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
    const decision = { allowed: status?.allowed === true, reason: typeof status?.reason === "string" ? status.reason : "", until: now() + DECISION_TTL_MS };
    decisions.delete(key);
    decisions.set(key, decision);
    if (decisions.size > MAX_DECISIONS) decisions.delete(decisions.keys().next().value as string);
    return decision;
  }

  return {
    async authorize(caller, request, requestId) {
      const groups = [...new Set([...caller.groups, "system:authenticated"])];
      for (const attributes of impersonationChecks(request)) {
        const decision = await decide(caller, groups, attributes, requestId);
        if (decision.allowed) continue;
        const { group, resource, name, namespace } = attributes;
        const where = namespace ? ` in namespace "${namespace}"` : "";
        throw new Forbidden(
          `${resource} "${name}" is forbidden: user "${caller.user}" cannot impersonate resource "${resource}" in API group "${group}"${where} ` +
            `on cluster "${cluster}"${decision.reason ? ` (${decision.reason})` : ""}; a cluster admin can allow it with a (Cluster)Role granting ` +
            `verb impersonate on ${resource}${group ? `.${group}` : ""} "${name}", or run the command without --as`,
        );
      }
    },
  };
}
