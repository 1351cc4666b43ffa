// Who is calling (the user token) and whether they may reach this cluster (the grants).
import type { IncomingHttpHeaders } from "node:http";
import { findRole, roleAtLeast, type Identity, type Role } from "../auth/index.ts";
import { Forbidden, NotFound, Unauthorized } from "../errors/index.ts";
import { bearerTokenOf } from "../http/index.ts";
import { clientAddress } from "./client-address.ts";
import { limitAuthentication, type AuthRateLimiter } from "./auth-rate-limit.ts";
import { BUILTIN_AUDIENCE } from "./relay-issuer.ts";
import type { ClusterRecord, GrantRecord, RelayStore } from "./store/index.ts";
import type { ChangeFeed } from "./change-feed.ts";

/** Cached grant lookups and cluster records at most; beyond it the cache starts over (bounded memory). */
const MAX_CACHED = 10_000;

export interface UserAccess {
  /**
   * Verifies the bearer token; throws Unauthorized with a message that says how to get one. With
   * `remoteAddress`, the attempt goes through limitAuthentication: a valid token always passes,
   * failures beyond the address's budget are 429 with Retry-After, and so is a full queue of
   * attempts from it. `signal` (the client hung up) gives up a place in that queue.
   */
  authenticate(headers: IncomingHttpHeaders | Headers, remoteAddress?: string, signal?: AbortSignal): Promise<Identity>;
  /**
   * Resolves with the cluster's record (with a change feed: as of the last change to its row, so
   * `lastSeen` may be older); throws Forbidden unless `identity` holds at least `role` on `cluster`, NotFound if it is not registered. */
  authorize(identity: Identity, cluster: string, role: Role): Promise<ClusterRecord>;
  /** The registered clusters on which `identity` holds at least `role`, by name. */
  reachableClusters(identity: Identity, role: Role): Promise<string[]>;
}

export function createUserAccess(opts: {
  store: RelayStore;
  verifyUserToken: (token: string) => Promise<Identity>;
  /**
   * A token that verified within the last minute passes without waiting for the rate limiter: a
   * flood of bad tokens from a shared address (a NAT, a load balancer) never delays a session
   * that is already running.
   */
  cachedIdentity?: (token: string) => Identity | undefined;
  /** Bounds failed authentications per address (only when the caller passes one); see limitAuthentication. */
  rateLimiter?: AuthRateLimiter;
  /** Tokens must name `cluster-connect:<cluster>` in `aud` to reach that cluster. */
  bindAudienceToCluster?: boolean;
  /**
   * With a feed, a request's grant lookup and cluster record come from memory, dropped when the
   * feed tells of a change to grants or to that cluster (or `*`): a request reads the database only
   * after a change. Without one, every request reads the store.
   */
  feed?: ChangeFeed;
}): UserAccess {
  const grantCache = new Map<string, Promise<GrantRecord[]>>();
  const clusterCache = new Map<string, Promise<ClusterRecord | undefined>>();
  opts.feed?.subscribe((change) => {
    if (change.table === "*" || change.table === "grants") grantCache.clear();
    if (change.table === "*") clusterCache.clear();
    else if (change.table === "clusters" && change.key !== undefined) clusterCache.delete(change.key);
  });
  /** A cached read; a failed one is not kept, so the next request asks the store again. */
  function cached<T>(cache: Map<string, Promise<T>>, key: string, read: () => Promise<T>): Promise<T> {
    if (!opts.feed) return read();
    const known = cache.get(key);
    if (known) return known;
    if (cache.size >= MAX_CACHED) cache.clear();
    const reading = read();
    cache.set(key, reading);
    reading.catch(() => {
      if (cache.get(key) === reading) cache.delete(key);
    });
    return reading;
  }
  const grantsFor = (identity: Identity, cluster: string) =>
    cached(grantCache, JSON.stringify([cluster, identity.user, identity.groups]), () => opts.store.listGrantsFor(identity, cluster));

  return {
    async authenticate(headers, remoteAddress, signal) {
      // A missing or malformed header costs nothing to refuse (and probes send none): not counted.
      const token = bearerToken(headers);
      const known = opts.cachedIdentity?.(token);
      if (known) return known;
      return limitAuthentication(opts.rateLimiter, remoteAddress, () => opts.verifyUserToken(token), signal);
    },
    async reachableClusters(identity, role) {
      const [clusters, grants] = await Promise.all([opts.store.listClusters(), opts.store.listGrantsFor(identity)]);
      return clusters
        .map((c) => c.name)
        .filter((name) => !(opts.bindAudienceToCluster && !identity.audiences.includes(clusterAudience(name))))
        .filter((name) => roleAtLeast(findRole(identity, name, grants), role))
        .sort();
    },
    async authorize(identity, cluster, role) {
      if (opts.bindAudienceToCluster && !identity.audiences.includes(clusterAudience(cluster))) {
        throw new Unauthorized(
          `token audience does not include cluster "${cluster}": this relay binds tokens to clusters; ` +
            `get a token whose aud includes ${clusterAudience(cluster)}`,
        );
      }
      // Grants are checked before existence, so a caller without access cannot probe cluster names.
      const held = findRole(identity, cluster, await grantsFor(identity, cluster));
      if (!roleAtLeast(held, role)) {
        throw new Forbidden(
          `user "${identity.user}" has no ${role} access to cluster "${cluster}": ask a relay admin to run ` +
            `arcrelay grant add --principal user:${identity.user} --cluster ${cluster} --role ${role}`,
        );
      }
      const record = await cached(clusterCache, cluster, () => opts.store.getCluster(cluster));
      if (!record) {
        throw new NotFound(`cluster "${cluster}" is not registered with this relay: check the name (arcrelay cluster list)`);
      }
      return record;
    },
  };
}

/** The audience a token needs to reach `cluster` when tokens are bound to clusters. */
export function clusterAudience(cluster: string): string {
  return `${BUILTIN_AUDIENCE}:${cluster}`;
}

export function bearerToken(headers: IncomingHttpHeaders | Headers): string {
  const raw = headers instanceof Headers ? headers.get("authorization") : headers["authorization"];
  if (!raw) {
    throw new Unauthorized("no credentials: send a bearer token from the relay (arcrelay token create) or your identity provider, e.g. via arcproxy --token");
  }
  const token = bearerTokenOf(raw);
  if (!token) throw new Unauthorized("the Authorization header must be \"Bearer <token>\"");
  return token;
}

/**
 * The client's address (clientAddress), from the node:http request that @hono/node-server passes
 * as `env.incoming`; undefined when there is no such request (a test's `app.request` without env).
 */
export function remoteAddressOf(env: unknown): string | undefined {
  const incoming = (env as { incoming?: Parameters<typeof clientAddress>[0] } | undefined)?.incoming;
  return incoming?.socket ? clientAddress(incoming) : undefined;
}
