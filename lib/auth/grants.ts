// Decides which role an identity holds on a cluster from the relay's access grants.
import { BadRequest } from "../errors/index.ts";

/** Same values as the store's Role; defined here because auth must not import relay. */
export type Role = "cluster-user" | "cluster-admin" | "relay-admin";

export interface Grant {
  /** `user:NAME`, `group:NAME` or `sub:PATTERN`; `*` in NAME or PATTERN matches any run of characters. */
  principal: string;
  /** A cluster name or `*`. */
  cluster: string;
  role: Role;
}

export type PrincipalKind = "user" | "group" | "sub";

export interface GrantIdentity {
  user: string;
  groups: string[];
  subject: string;
}

/** Higher rank includes every permission of a lower one. */
const ROLE_RANK: Record<Role, number> = { "cluster-user": 1, "cluster-admin": 2, "relay-admin": 3 };
const PRINCIPAL_KINDS: readonly PrincipalKind[] = ["user", "group", "sub"];
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;

/** Splits `kind:pattern`; throws BadRequest for anything else. */
export function parsePrincipal(p: string): { kind: PrincipalKind; pattern: string } {
  const colon = typeof p === "string" ? p.indexOf(":") : -1;
  const kind = p?.slice?.(0, colon) as PrincipalKind;
  const pattern = colon >= 0 ? p.slice(colon + 1) : "";
  if (colon < 0 || !PRINCIPAL_KINDS.includes(kind) || pattern.length === 0 || CONTROL_CHARS.test(pattern)) {
    throw new BadRequest(
      `invalid principal ${JSON.stringify(String(p))}: use user:NAME, group:NAME or sub:PATTERN (for example sub:repo:acme/app:*)`,
    );
  }
  return { kind, pattern };
}

/** Returns `r` as a Role; throws BadRequest otherwise. */
export function parseRole(r: string): Role {
  if (typeof r === "string" && Object.hasOwn(ROLE_RANK, r)) return r as Role;
  throw new BadRequest(`invalid role ${JSON.stringify(String(r))}: use cluster-user, cluster-admin or relay-admin`);
}

/**
 * The highest role any matching grant gives `identity` on `cluster`, or undefined.
 * relay-admin grants apply to every cluster whatever their cluster field says.
 * Grants with an unparsable principal are skipped rather than failing every request.
 */
export function findRole(identity: GrantIdentity, cluster: string, grants: Grant[]): Role | undefined {
  let best: Role | undefined;
  for (const grant of grants) {
    if (!Object.hasOwn(ROLE_RANK, grant.role)) continue;
    if (best !== undefined && ROLE_RANK[grant.role] <= ROLE_RANK[best]) continue;
    const appliesHere = grant.role === "relay-admin" || grant.cluster === "*" || grant.cluster === cluster;
    if (appliesHere && principalMatches(grant.principal, identity)) best = grant.role;
  }
  return best;
}

/** Whether `role` includes the permissions of `needed`; no role includes nothing. */
export function roleAtLeast(role: Role | undefined, needed: Role): boolean {
  return role !== undefined && ROLE_RANK[role] >= ROLE_RANK[needed];
}

function principalMatches(principal: string, identity: GrantIdentity): boolean {
  let parsed: { kind: PrincipalKind; pattern: string };
  try {
    parsed = parsePrincipal(principal);
  } catch {
    return false;
  }
  switch (parsed.kind) {
    case "user":
      return matchGlob(parsed.pattern, identity.user);
    case "group":
      return identity.groups.some((group) => matchGlob(parsed.pattern, group));
    case "sub":
      return matchGlob(parsed.pattern, identity.subject);
  }
}

/**
 * `*` matches any run of characters (including none, `/` and `:`); every other character is
 * literal. Two-pointer matching with one backtrack point: no regex, so no escaping mistakes and
 * no catastrophic backtracking on long subjects.
 */
export function matchGlob(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let starAt = -1;
  let textAtStar = 0;
  while (t < text.length) {
    if (p < pattern.length && pattern[p] === "*") {
      starAt = p++;
      textAtStar = t;
    } else if (p < pattern.length && pattern[p] === text[t]) {
      p++;
      t++;
    } else if (starAt >= 0) {
      p = starAt + 1;
      t = ++textAtStar;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === "*") p++;
  return p === pattern.length;
}
