// Who is calling (the user token) and whether they may reach this cluster (the grants).
import type { IncomingHttpHeaders } from "node:http";
import { findRole, roleAtLeast, type Identity, type Role } from "../auth/index.ts";
import { Forbidden, NotFound, Unauthorized } from "../kube/index.ts";
import type { RelayStore } from "./store/index.ts";

export interface UserAccess {
  /** Verifies the bearer token; throws Unauthorized with a message that says how to get one. */
  authenticate(headers: IncomingHttpHeaders | Headers): Promise<Identity>;
  /** Throws Forbidden unless `identity` holds at least `role` on `cluster`, NotFound if it is not registered. */
  authorize(identity: Identity, cluster: string, role: Role): Promise<void>;
}

export function createUserAccess(opts: {
  store: RelayStore;
  verifyUserToken: (token: string) => Promise<Identity>;
}): UserAccess {
  return {
    async authenticate(headers) {
      return opts.verifyUserToken(bearerToken(headers));
    },
    async authorize(identity, cluster, role) {
      // Grants are checked before existence, so a caller without access cannot probe cluster names.
      const grants = await opts.store.listGrants();
      const held = findRole(identity, cluster, grants);
      if (!roleAtLeast(held, role)) {
        throw new Forbidden(
          `user "${identity.user}" has no ${role} access to cluster "${cluster}": ask a relay admin to run ` +
            `arcrelay grant add --principal user:${identity.user} --cluster ${cluster} --role ${role}`,
        );
      }
      if (!(await opts.store.getCluster(cluster))) {
        throw new NotFound(`cluster "${cluster}" is not registered with this relay: check the name (arcrelay cluster list)`);
      }
    },
  };
}

export function bearerToken(headers: IncomingHttpHeaders | Headers): string {
  const raw = headers instanceof Headers ? headers.get("authorization") : headers["authorization"];
  if (!raw) {
    throw new Unauthorized("no credentials: send a bearer token from the relay (arcrelay token create) or your identity provider, e.g. via arcproxy --token");
  }
  const match = /^Bearer[ ]+([^ ]+)[ ]*$/i.exec(raw);
  if (!match?.[1]) throw new Unauthorized("the Authorization header must be \"Bearer <token>\"");
  return match[1];
}
