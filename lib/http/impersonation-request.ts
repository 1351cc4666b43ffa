// A caller's request to act as someone else (kubectl --as, --as-group, --as-uid), read from its
// Impersonate-* headers and carried through the tunnel as one value.
import { BadRequest } from "../errors/index.ts";
import { fromWireValue, toHeaderMap, type HeaderSource } from "./header-map.ts";

/** Who the caller asks to act as. `groups` may be empty: the API server then adds only system:authenticated. */
export interface ImpersonationRequest {
  user: string;
  groups: string[];
  uid?: string;
}

/** Bounds that keep the tunnel header small; far above what kubectl users send. */
export const MAX_IMPERSONATED_GROUPS = 100;
export const MAX_IMPERSONATED_NAME_LENGTH = 1024;

/**
 * Reads `Impersonate-User`, `Impersonate-Group` (one group per field, repeated) and
 * `Impersonate-Uid`, as the API server does (k8s.io/apiserver endpoints/filters/impersonation.go,
 * buildImpersonationRequests). Returns undefined when there are none. Pass node's `rawHeaders` so
 * repeated groups stay apart; values are decoded from the wire as UTF-8.
 *
 * Throws BadRequest (400) for: a group or uid without a user (the API server refuses that too),
 * a user or uid given twice, `Impersonate-Extra-*` (user extras cannot be requested through
 * cluster-connect: kubectl has no flag for them and the agent records its own), any other
 * `Impersonate-*` name, an empty or over-long name, more than MAX_IMPERSONATED_GROUPS groups.
 */
export function parseImpersonationRequest(source: HeaderSource): ImpersonationRequest | undefined {
  const headers = toHeaderMap(source);
  const names = Object.keys(headers).filter((name) => name.startsWith("impersonate-"));
  if (names.length === 0) return undefined;
  for (const name of names) {
    if (name.startsWith("impersonate-extra-")) {
      throw new BadRequest(
        `${name} is not accepted through cluster-connect: user extras cannot be impersonated here (the agent records its own); ` +
          "impersonate with --as, --as-group and --as-uid only",
      );
    }
    if (name !== "impersonate-user" && name !== "impersonate-group" && name !== "impersonate-uid") {
      throw new BadRequest(`unknown impersonation header ${name}: only Impersonate-User, Impersonate-Group and Impersonate-Uid are accepted`);
    }
  }
  const values = (name: string) => {
    const value = headers[name];
    return (value === undefined ? [] : Array.isArray(value) ? value : [value]).map(fromWireValue);
  };
  const users = values("impersonate-user");
  const groups = values("impersonate-group");
  const uids = values("impersonate-uid");
  if (users.length === 0) {
    throw new BadRequest("Impersonate-Group and Impersonate-Uid need Impersonate-User: give --as together with --as-group or --as-uid");
  }
  if (users.length > 1 || uids.length > 1) throw new BadRequest("Impersonate-User and Impersonate-Uid may each be given once");
  return validateImpersonationRequest({ user: users[0]!, groups, ...(uids.length > 0 ? { uid: uids[0]! } : {}) });
}

/** The request as the tunnel carries it (`x-arc-impersonate`): base64url of its JSON, so any UTF-8 name survives HPACK. */
export function encodeImpersonationRequest(request: ImpersonationRequest): string {
  return Buffer.from(JSON.stringify(request), "utf8").toString("base64url");
}

/**
 * The inverse of encodeImpersonationRequest, with every check of parseImpersonationRequest made
 * again (the agent trusts nothing the tunnel carries). Undefined for an absent header; throws
 * BadRequest for a malformed one.
 */
export function decodeImpersonationRequest(value: string | undefined): ImpersonationRequest | undefined {
  if (value === undefined || value === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(value, "base64url").toString("utf8"));
  } catch (cause) {
    throw new BadRequest("the relay sent an unreadable impersonation request", { cause });
  }
  const record = parsed as Partial<ImpersonationRequest> | null;
  if (
    !record || typeof record.user !== "string" || !Array.isArray(record.groups) ||
    !record.groups.every((g) => typeof g === "string") || (record.uid !== undefined && typeof record.uid !== "string")
  ) {
    throw new BadRequest("the relay sent a malformed impersonation request");
  }
  return validateImpersonationRequest({ user: record.user, groups: record.groups, ...(record.uid !== undefined ? { uid: record.uid } : {}) });
}

function validateImpersonationRequest(request: ImpersonationRequest): ImpersonationRequest {
  if (request.groups.length > MAX_IMPERSONATED_GROUPS) {
    throw new BadRequest(`at most ${MAX_IMPERSONATED_GROUPS} groups may be impersonated at once, got ${request.groups.length}`);
  }
  for (const [what, name] of [["user", request.user], ...request.groups.map((g) => ["group", g]), ...(request.uid !== undefined ? [["uid", request.uid]] : [])] as [string, string][]) {
    if (name.length === 0 || name.length > MAX_IMPERSONATED_NAME_LENGTH || /[\u0000-\u001f\u007f-\u009f]/.test(name)) {
      throw new BadRequest(`the impersonated ${what} ${JSON.stringify(name.slice(0, 100))} must be 1-${MAX_IMPERSONATED_NAME_LENGTH} characters without control characters`);
    }
    // What the SubjectAccessReview checks must be what the API server impersonates, and Go trims
    // white space around header values.
    if (name.trim() !== name) throw new BadRequest(`the impersonated ${what} ${JSON.stringify(name.slice(0, 100))} may not start or end with white space`);
  }
  return request;
}
