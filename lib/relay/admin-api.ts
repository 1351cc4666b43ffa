// The admin API under /v1/admin: clusters, enrollment tokens, agent revocation and grants, each authorized by role.
import { Hono, type Context } from "hono";
import { findRole, parsePrincipal, parseRole, roleAtLeast, type Identity, type Role } from "../auth/index.ts";
import { BadRequest, Forbidden, NotFound } from "../errors/index.ts";
import { validateClusterName } from "../kube/index.ts";
import type { Logger } from "../observe/index.ts";
import { describeCluster, type ClusterStatus } from "./cluster-status.ts";
import { addCluster, createEnrollmentToken } from "./enrollment.ts";
import { addGrantToRegistered } from "./grant-add.ts";
import { readJsonBody, type JsonBodyOptions } from "./json-body.ts";
import type { ClusterRecord, RelayStore } from "./store/index.ts";
import type { TunnelRegistry } from "./tunnel-registry.ts";
import { remoteAddressOf, type UserAccess } from "./user-access.ts";

export const ADMIN_API_PATH = "/v1/admin";
/** Grant ids are UUIDs today; this only keeps junk out of the store query and the log. */
const GRANT_ID = /^[A-Za-z0-9-]{1,64}$/;

export interface AdminApiDeps {
  store: RelayStore;
  access: UserAccess;
  logger: Logger;
  /** The live tunnels: "connected" comes from here, and revoking an agent closes its tunnel at once. */
  registry?: TunnelRegistry;
  /** Cap of a request body (default 16 KiB); see readJsonBody. */
  maxBodyBytes?: number;
}

/** What the caller may administer, from one read of the grants. */
interface Caller {
  identity: Identity;
  relayAdmin: boolean;
  /** cluster-admin (or more) on `cluster`; `*` means a grant on every cluster. */
  admins(cluster: string): boolean;
  /** Holds cluster-admin or more on at least one cluster. */
  adminsAny: boolean;
}

/** Routes relative to ADMIN_API_PATH; mount with `app.route(ADMIN_API_PATH, createAdminApi(deps))`. */
export function createAdminApi(deps: AdminApiDeps): Hono {
  const api = new Hono();
  const { store, access, logger, registry } = deps;

  /** The route's JSON object body; `expected` names its fields for the 400 that refuses a wrong one. */
  const jsonBody = (c: Context, expected: string, opts: Partial<JsonBodyOptions> = {}) =>
    readJsonBody(c, { what: `${c.req.method} ${c.req.path}`, expected, maxBytes: deps.maxBodyBytes, ...opts });

  async function caller(c: Context): Promise<Caller> {
    // Served by @hono/node-server the socket is at hand, so failed tokens count against the address.
    const identity = await access.authenticate(c.req.raw.headers, remoteAddressOf(c.env), c.req.raw.signal);
    const grants = await store.listGrants();
    const admins = (cluster: string) => roleAtLeast(findRole(identity, cluster, grants), "cluster-admin");
    return {
      identity,
      relayAdmin: roleAtLeast(findRole(identity, "*", grants), "relay-admin"),
      admins,
      adminsAny: grants.some((g) => roleAtLeast(g.role, "cluster-admin") && findRole(identity, g.cluster, [g]) !== undefined),
    };
  }

  /** A relay-admin may change grants of any kind; a cluster-admin only cluster-user/cluster-admin grants on their cluster. */
  async function authorizeGrantChange(who: Caller, grant: { cluster: string; role: Role }, verb: string): Promise<void> {
    if (grant.role === "relay-admin" || grant.cluster === "*") {
      requireRelayAdmin(who, `${verb} a ${grant.role} grant on cluster "${grant.cluster}"`);
    } else if (!who.relayAdmin) {
      await access.authorize(who.identity, grant.cluster, "cluster-admin");
    }
  }

  function clusterView(record: ClusterRecord): ClusterStatus {
    const status = describeCluster(record);
    const live = registry?.get(record.name);
    if (!live) return status;
    return {
      ...status,
      state: "connected",
      agentVersion: live.agentVersion ?? status.agentVersion,
      kubernetesVersion: live.kubernetesVersion ?? status.kubernetesVersion,
    };
  }

  api.get("/clusters", async (c) => {
    const who = await caller(c);
    if (!who.relayAdmin && !who.adminsAny) throw noAdminRole(who, "list clusters");
    const records = await store.listClusters();
    return c.json(records.filter((r) => who.relayAdmin || who.admins(r.name)).map(clusterView));
  });

  api.post("/clusters", async (c) => {
    const who = await caller(c);
    requireRelayAdmin(who, "register clusters");
    const body = await jsonBody(c, '{"name": NAME, "enrollmentTtlSeconds"?: SECONDS}');
    const name = validateClusterName(stringField(body, "name", "a cluster name"));
    const created = await addCluster(store, name, optionalSeconds(body, "enrollmentTtlSeconds"));
    logger.info("admin: cluster registered", { user: who.identity.user, cluster: name });
    return c.json({ name, enrollmentToken: created.token, expiresAt: created.expiresAt.toISOString() }, 201);
  });

  api.delete("/clusters/:name", async (c) => {
    const name = validateClusterName(c.req.param("name"));
    const who = await caller(c);
    requireRelayAdmin(who, "remove clusters");
    if (!(await store.removeCluster(name))) throw new NotFound(`cluster "${name}" is not registered with this relay`);
    await registry?.get(name)?.tunnel.close();
    logger.info("admin: cluster removed", { user: who.identity.user, cluster: name });
    return c.json({ name, removed: true });
  });

  api.post("/clusters/:name/enrollment-tokens", async (c) => {
    const name = validateClusterName(c.req.param("name"));
    const who = await caller(c);
    await access.authorize(who.identity, name, "cluster-admin");
    const body = await jsonBody(c, '{"ttlSeconds"?: SECONDS}', { emptyIsObject: true });
    const created = await createEnrollmentToken(store, name, optionalSeconds(body, "ttlSeconds"));
    logger.info("admin: enrollment token created", { user: who.identity.user, cluster: name, expiresAt: created.expiresAt });
    return c.json({ token: created.token, expiresAt: created.expiresAt.toISOString() }, 201);
  });

  api.post("/clusters/:name/revoke-agent", async (c) => {
    const name = validateClusterName(c.req.param("name"));
    const who = await caller(c);
    await access.authorize(who.identity, name, "cluster-admin");
    await store.setAgentKey(name, undefined);
    const live = registry?.get(name);
    await live?.tunnel.close();
    logger.info("admin: agent key revoked", { user: who.identity.user, cluster: name, tunnelClosed: Boolean(live) });
    return c.json({ name, revoked: true, tunnelClosed: Boolean(live) });
  });

  api.get("/grants", async (c) => {
    const who = await caller(c);
    const raw = c.req.query("cluster");
    const cluster = raw === undefined ? undefined : raw === "*" ? "*" : validateClusterName(raw);
    if (!who.relayAdmin) {
      if (cluster !== undefined && !who.admins(cluster)) throw noAdminRole(who, `list grants of cluster "${cluster}"`, cluster);
      if (!who.adminsAny) throw noAdminRole(who, "list grants");
    }
    const grants = await store.listGrants(cluster === undefined ? undefined : { cluster });
    return c.json(grants.filter((g) => who.relayAdmin || who.admins(g.cluster)));
  });

  api.post("/grants", async (c) => {
    const who = await caller(c);
    const body = await jsonBody(c, '{"principal": "user:NAME" | "group:NAME" | "sub:PATTERN", "cluster": NAME | "*", "role": ROLE}');
    const principal = stringField(body, "principal", "user:NAME, group:NAME or sub:PATTERN");
    parsePrincipal(principal);
    const rawCluster = stringField(body, "cluster", "a cluster name or '*'");
    const cluster = rawCluster === "*" ? "*" : validateClusterName(rawCluster);
    const role = parseRole(stringField(body, "role", "cluster-user, cluster-admin or relay-admin"));
    await authorizeGrantChange(who, { cluster, role }, "create");
    const grant = await addGrantToRegistered(store, { principal, cluster, role });
    logger.info("admin: grant added", { user: who.identity.user, cluster, principal, role, grantId: grant.id });
    return c.json(grant, 201);
  });

  api.delete("/grants/:id", async (c) => {
    const id = c.req.param("id");
    if (!GRANT_ID.test(id)) throw new BadRequest(`invalid grant id ${JSON.stringify(id.slice(0, 80))}: use an ID from arcrelay grant list`);
    const who = await caller(c);
    const grant = (await store.listGrants()).find((g) => g.id === id);
    if (!grant) throw new NotFound(`grant ${id} does not exist: see arcrelay grant list`);
    await authorizeGrantChange(who, grant, "remove");
    await store.removeGrant({ id });
    logger.info("admin: grant removed", { user: who.identity.user, cluster: grant.cluster, principal: grant.principal, role: grant.role, grantId: id });
    return c.json({ id, removed: true });
  });

  return api;
}

function requireRelayAdmin(who: Caller, what: string): void {
  if (who.relayAdmin) return;
  throw new Forbidden(
    `user "${who.identity.user}" may not ${what}: that needs the relay-admin role; ask a relay admin to run ` +
      `arcrelay grant add --principal user:${who.identity.user} --cluster '*' --role relay-admin`,
  );
}

function noAdminRole(who: Caller, what: string, cluster = "NAME"): Forbidden {
  return new Forbidden(
    `user "${who.identity.user}" may not ${what}: that needs the cluster-admin role on a cluster (or relay-admin); ` +
      `ask a relay admin to run arcrelay grant add --principal user:${who.identity.user} --cluster ${cluster} --role cluster-admin`,
  );
}

function stringField(body: Record<string, unknown>, key: string, hint: string): string {
  const value = body[key];
  if (typeof value !== "string" || value === "") throw new BadRequest(`"${key}" is required: ${hint}`);
  return value;
}

/** An optional lifetime in whole seconds; its range is checked where it is used. */
function optionalSeconds(body: Record<string, unknown>, key: string): number | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value)) throw new BadRequest(`"${key}" must be a whole number of seconds`);
  return value;
}
