// Agent-authenticated HTTP routes (key rotation, keys of issuers a firewalled agent cannot reach) and the one agent authentication they and the tunnel share.
import type { IncomingHttpHeaders } from "node:http";
import { protocol } from "../tunnel/index.ts";
import type { Hono } from "hono";
import { calculateJwkThumbprint, type JWK } from "jose";
import { verifyAgentToken, type BuiltinIssuer } from "../auth/index.ts";
import { BadRequest, NotFound, Unauthorized } from "../errors/index.ts";
import type { Logger } from "../observe/index.ts";
import { limitAuthentication, type AuthRateLimiter } from "./auth-rate-limit.ts";
import type { RelayStore } from "./store/index.ts";
import { validateAgentPublicKey } from "./enrollment.ts";
import type { IssuerKeySource } from "./issuer-keys.ts";
import { readJsonBody } from "./json-body.ts";
import { bearerToken, remoteAddressOf } from "./user-access.ts";

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
  /** Failed agent tokens spend the caller's address budget, like failed logins. */
  rateLimiter?: AuthRateLimiter;
  /** Cap of the rotation body (default 16 KiB); see readJsonBody. */
  maxBodyBytes?: number;
}

/** What an agent's request proved: the cluster it serves and the enrolled key its token was verified with. */
export interface AuthenticatedAgent {
  cluster: string;
  key: JWK;
}

/**
 * Verifies the agent token in `headers` against the key enrolled for the cluster it names,
 * through limitAuthentication for `address` (the tunnel and every agent route share this).
 * Throws Unauthorized (401), or AuthRateLimited/AuthenticationsInFlight (429) from the limiter.
 */
export async function authenticateAgent(
  deps: { store: RelayStore; audience: string; rateLimiter?: AuthRateLimiter },
  headers: IncomingHttpHeaders | Headers,
  address: string | undefined,
  signal?: AbortSignal,
): Promise<AuthenticatedAgent> {
  // A missing or malformed header costs nothing to refuse: not counted, as for users.
  const token = bearerToken(headers);
  return limitAuthentication(deps.rateLimiter, address, async () => {
    let key: JWK | undefined;
    const { cluster } = await verifyAgentToken(token, {
      audience: deps.audience,
      publicKeyOf: async (name) => (key = (await deps.store.getCluster(name))?.agentKey),
    });
    return { cluster, key: key! };
  }, signal);
}

export function registerAgentRoutes(app: Hono, deps: AgentRoutesDeps): void {
  const audience = deps.issuer.issuer;
  const auth = { store: deps.store, audience, rateLimiter: deps.rateLimiter };

  // GET ?issuer=URL: only enrolled agents may ask, and only for issuers the relay itself trusts.
  app.get(protocol.AGENT_ISSUER_KEYS_PATH, async (c) => {
    const { cluster } = await authenticateAgent(auth, c.req.raw.headers, remoteAddressOf(c.env), c.req.raw.signal);
    const issuer = c.req.query("issuer");
    if (!issuer || issuer.length > 2048) throw new BadRequest("issuer-keys needs ?issuer=<issuer URL>");
    if (!deps.issuerKeys) throw new NotFound(`the relay trusts no external issuers, so it has no keys for ${issuer}`);
    const keys = await deps.issuerKeys.keysOf(issuer);
    deps.logger.debug("issuer keys served to agent", { cluster, issuer, keys: keys.keys.length });
    return c.json(keys);
  });

  app.post(AGENT_ROTATE_KEY_PATH, async (c) => {
    const { cluster, key: currentKey } = await authenticateAgent(auth, c.req.raw.headers, remoteAddressOf(c.env), c.req.raw.signal);
    const body = await readJsonBody(c, {
      what: `the key rotation request (POST ${AGENT_ROTATE_KEY_PATH})`,
      expected: '{"publicKey": <new Ed25519 public JWK>, "proof": <agent token signed with the new key>}',
      maxBytes: deps.maxBodyBytes,
    });
    const newKey = await validateAgentPublicKey(body.publicKey);
    // The proof is checked against a key the caller just sent, so it guards no secret: its failure is not counted.
    if (typeof body.proof !== "string" || body.proof.length === 0) {
      throw new BadRequest("key rotation needs a proof: an agent token signed with the new private key");
    }
    const proven = await verifyAgentToken(body.proof, { audience, publicKeyOf: async () => newKey }).catch((cause: unknown) => {
      throw new Unauthorized(`the proof is not an agent token for cluster ${cluster} signed with the new key`, { cause });
    });
    if (proven.cluster !== cluster) {
      throw new Unauthorized(`the proof names cluster ${proven.cluster}, but the request is signed by the agent of cluster ${cluster}`);
    }

    const previousKid = await calculateJwkThumbprint(currentKey, "sha256");
    const kid = await calculateJwkThumbprint(newKey, "sha256");
    if (kid !== previousKid) {
      await deps.store.setAgentKey(cluster, { ...newKey, kid });
      deps.logger.info("agent key rotated", { cluster, previousKid, kid });
    }
    return c.json({ cluster, kid, rotated: kid !== previousKid });
  });
}
