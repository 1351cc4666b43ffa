// Agent-authenticated HTTP routes: key rotation, and the signing keys of issuers a firewalled agent cannot reach.
import { protocol } from "../tunnel/index.ts";
import type { Hono } from "hono";
import { calculateJwkThumbprint, type JWK } from "jose";
import { verifyAgentToken, type BuiltinIssuer } from "../auth/index.ts";
import { BadRequest, NotFound, Unauthorized } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";
import type { RelayStore } from "./store/index.ts";
import { validateAgentPublicKey } from "./enrollment.ts";
import type { IssuerKeySource } from "./issuer-keys.ts";
import { bearerToken } from "./user-access.ts";

/**
 * Path of key rotation. Authorization: an agent token signed with the cluster's current key.
 * Body: `{publicKey: <new Ed25519 public JWK>, proof: <agent token for the same cluster signed with the new key>}`.
 * Sending the already-registered key again answers 200 and changes nothing, so an agent can finish
 * a rotation whose answer it never received.
 */
export const AGENT_ROTATE_KEY_PATH = protocol.AGENT_ROTATE_KEY_PATH;

export interface AgentRoutesDeps {
  store: RelayStore;
  logger: Logger;
  /**
   * Agents sign for the relay's public URL, which is also the built-in issuer's `iss`
   * (relay-server.ts gives both the same URL).
   */
  issuer: Pick<BuiltinIssuer, "issuer">;
  /** The relay's external issuers, whose keys agents may fetch through the relay. */
  issuerKeys?: IssuerKeySource;
  maxBodyBytes?: number;
}

export function registerAgentRoutes(app: Hono, deps: AgentRoutesDeps): void {
  const audience = deps.issuer.issuer;
  const maxBody = deps.maxBodyBytes ?? 16 * 1024;

  // GET ?issuer=URL: only enrolled agents may ask, and only for issuers the relay itself trusts.
  app.get(protocol.AGENT_ISSUER_KEYS_PATH, async (c) => {
    const { cluster } = await verifyAgentToken(bearerToken(c.req.raw.headers), {
      audience,
      publicKeyOf: async (name) => (await deps.store.getCluster(name))?.agentKey,
    });
    const issuer = c.req.query("issuer");
    if (!issuer || issuer.length > 2048) throw new BadRequest("issuer-keys needs ?issuer=<issuer URL>");
    if (!deps.issuerKeys) throw new NotFound(`the relay trusts no external issuers, so it has no keys for ${issuer}`);
    const keys = await deps.issuerKeys.keysOf(issuer);
    deps.logger.debug("issuer keys served to agent", { cluster, issuer, keys: keys.keys.length });
    return c.json(keys);
  });

  app.post(AGENT_ROTATE_KEY_PATH, async (c) => {
    let currentKey: JWK | undefined;
    const { cluster } = await verifyAgentToken(bearerToken(c.req.raw.headers), {
      audience,
      publicKeyOf: async (name) => (currentKey = (await deps.store.getCluster(name))?.agentKey),
    });
    const length = Number(c.req.header("content-length") ?? NaN);
    if (!(length <= maxBody)) throw new BadRequest(`key rotation request must have a Content-Length of at most ${maxBody} bytes`);
    const body = (await c.req.json().catch((cause: unknown) => {
      throw new BadRequest("key rotation request body must be JSON", { cause });
    })) as { publicKey?: unknown; proof?: unknown } | null;
    const newKey = await validateAgentPublicKey(body?.publicKey);
    if (typeof body?.proof !== "string" || body.proof.length === 0) {
      throw new BadRequest("key rotation needs a proof: an agent token signed with the new private key");
    }
    const proven = await verifyAgentToken(body.proof, { audience, publicKeyOf: async () => newKey }).catch((cause: unknown) => {
      throw new Unauthorized(`the proof is not an agent token for cluster ${cluster} signed with the new key`, { cause });
    });
    if (proven.cluster !== cluster) {
      throw new Unauthorized(`the proof names cluster ${proven.cluster}, but the request is signed by the agent of cluster ${cluster}`);
    }

    const previousKid = await calculateJwkThumbprint(currentKey!, "sha256");
    const kid = await calculateJwkThumbprint(newKey, "sha256");
    if (kid !== previousKid) {
      await deps.store.setAgentKey(cluster, { ...newKey, kid });
      deps.logger.info("agent key rotated", { cluster, previousKid, kid });
    }
    return c.json({ cluster, kid, rotated: kid !== previousKid });
  });
}
