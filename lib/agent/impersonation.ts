// Decides who the agent's request to the API server runs as: the verified caller, the user the
// caller may impersonate, or (token mode) the caller's own Kubernetes credential.
import type { Identity } from "../auth/index.ts";
import { decodeImpersonationRequest, firstHeader, type ApiServerIdentity, type HeaderMap } from "../http/index.ts";
import { protocol } from "../tunnel/index.ts";
import type { ImpersonationReviewer } from "./impersonation-review.ts";

/**
 * User-extra keys the agent records for the API server's audit log (`user.extra`); each must be
 * granted to the agent's ServiceAccount as `impersonate` on `userextras/<key>` (the chart does).
 */
export const EXTRA_REQUEST_ID = "arc-request-id";
/** With kubectl --as: who really asked, as kube-oidc-proxy records it (originaluser.jetstack.io-user). */
export const EXTRA_ORIGINAL_USER = "arc-original-user";
export const EXTRA_ORIGINAL_GROUPS = "arc-original-groups";

export interface ImpersonationContext {
  /** Asks the API server whether the caller may impersonate the target (kubectl --as). */
  reviewer: ImpersonationReviewer;
  requestId: string;
  /** The agent's own Authorization header, if it authenticates with a token (none with a client certificate). */
  credentials: Record<string, string>;
}

/**
 * Token mode (`x-arc-kube-token`) sends the caller's own token and lets the API server judge any
 * impersonation itself. Otherwise the agent impersonates the verified `caller`, or, when the relay
 * carried a request to impersonate someone (`x-arc-impersonate`), that target once the API server
 * has said the caller may (ImpersonationReviewer; throws Forbidden otherwise). Throws BadRequest
 * for a malformed impersonation header.
 */
export async function resolveApiServerIdentity(headers: HeaderMap, caller: Identity, ctx: ImpersonationContext): Promise<ApiServerIdentity> {
  const request = decodeImpersonationRequest(firstHeader(headers[protocol.IMPERSONATE_HEADER]));
  const kubeToken = firstHeader(headers[protocol.KUBE_TOKEN_HEADER]);
  if (kubeToken) return { kind: "token", token: kubeToken, ...(request ? { impersonation: request } : {}) };
  if (!request) {
    return { kind: "impersonate", credentials: ctx.credentials, user: caller.user, groups: caller.groups, extra: { [EXTRA_REQUEST_ID]: [ctx.requestId] } };
  }
  await ctx.reviewer.authorize(caller, request, ctx.requestId);
  return {
    kind: "impersonate",
    credentials: ctx.credentials,
    user: request.user,
    groups: request.groups,
    ...(request.uid !== undefined ? { uid: request.uid } : {}),
    extra: { [EXTRA_REQUEST_ID]: [ctx.requestId], [EXTRA_ORIGINAL_USER]: [caller.user], [EXTRA_ORIGINAL_GROUPS]: caller.groups },
  };
}
