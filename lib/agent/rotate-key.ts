// Replaces the agent's Ed25519 key: new pair kept as pending, relay switches, then the pending pair becomes current.
import { protocol } from "../tunnel/index.ts";
import type { JWK } from "jose";
import { generateSigningKeyPair, signAgentToken } from "../auth/index.ts";
import { ArcError, Unauthorized } from "../errors/index.ts";
import { validateClusterName } from "../kube/index.ts";
import type { AgentKeys, AgentKeyStore } from "./agent-state.ts";
import { relayFetch, type RelayEndpoint } from "./relay-endpoint.ts";

/** The relay's rotation endpoint (lib/relay/agent-routes.ts serves it). */
const ROTATE_KEY_PATH = protocol.AGENT_ROTATE_KEY_PATH;

/**
 * The key store's record during a rotation: the registered pair plus the new one. Written before
 * the relay is asked, so a crash or a failed final save never loses the key the relay now expects.
 */
type StoredKeys = AgentKeys & { pending?: { privateJwk: JWK; publicJwk: JWK } };

export interface RotatedKey {
  cluster: string;
  previousKid: string;
  kid: string;
}

/**
 * Rotates the agent key of `cluster` at `relay`. A rotation interrupted after the relay switched
 * is finished by running this again: it reuses the pending pair instead of making another one.
 */
export async function rotateAgentKey(opts: { relay: RelayEndpoint; cluster: string; keyStore: AgentKeyStore }): Promise<RotatedKey> {
  const cluster = validateClusterName(opts.cluster);
  const where = opts.keyStore.describe();
  const stored = (await opts.keyStore.load()) as StoredKeys | undefined;
  if (!stored) throw new Error(`no agent key in ${where}: nothing to rotate; enroll the agent first with --enroll-token`);
  if (stored.cluster !== cluster) throw new Error(`the key in ${where} belongs to cluster "${stored.cluster}", not "${cluster}"`);
  const current = { privateJwk: stored.privateJwk, publicJwk: stored.publicJwk };
  const resuming = stored.pending !== undefined;
  const next = stored.pending ?? (await generateSigningKeyPair("EdDSA"));
  const kids = { previousKid: kidOf(current.publicJwk), kid: kidOf(next.publicJwk) };

  if (!resuming) {
    await opts.keyStore.save({ ...stored, pending: next } as StoredKeys).catch((cause: unknown) => {
      throw new Error(`cannot save the new agent key in ${where}; nothing changed, key ${kids.previousKid} stays registered`, { cause });
    });
  }

  let refusal = await askRelay(opts.relay, cluster, current, next);
  // A previous run may have switched the relay and then failed to save: the pending key is registered.
  if (refusal?.status === 401 && resuming && !(await askRelay(opts.relay, cluster, next, next))) refusal = undefined;
  if (refusal?.status !== undefined && refusal.status < 500) {
    await opts.keyStore.save({ cluster, ...current }).catch(() => undefined);
    const text = `the relay refused the key rotation of cluster "${cluster}" (${refusal.status}): ${refusal.message}; nothing changed at the relay, and ${where} keeps key ${kids.previousKid}`;
    throw refusal.status === 401 ? new Unauthorized(text) : new ArcError(text);
  }
  if (refusal) {
    // No answer, or a 5xx that may come from a proxy after the relay switched: keep both keys.
    throw new Error(
      `the key rotation of cluster "${cluster}" at ${opts.relay.url} did not complete: ${refusal.message}. ` +
        `The relay may already hold the new key ${kids.kid}; ${where} keeps it as pending: run arcagent rotate-key again to finish`,
    );
  }

  await opts.keyStore.save({ cluster, ...next }).catch((cause: unknown) => {
    throw new Error(
      `the relay now accepts only the new key ${kids.kid} for cluster "${cluster}", but saving it as current in ${where} failed; ` +
        `it is kept there as pending beside the old key ${kids.previousKid}: run arcagent rotate-key again to finish (agents cannot connect until then)`,
      { cause },
    );
  });
  return { cluster, ...kids };
}

/** Undefined when the relay took the key; otherwise its status (none if it was not reached) and message. */
async function askRelay(
  relay: RelayEndpoint,
  cluster: string,
  signer: { privateJwk: JWK },
  next: { privateJwk: JWK; publicJwk: JWK },
): Promise<{ status?: number; message: string } | undefined> {
  const [bearer, proof] = await Promise.all([
    signAgentToken({ privateJwk: signer.privateJwk, cluster, audience: relay.url }),
    signAgentToken({ privateJwk: next.privateJwk, cluster, audience: relay.url }),
  ]);
  let response: Response;
  try {
    response = await relayFetch(relay, ROTATE_KEY_PATH, {
      method: "POST",
      headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
      body: JSON.stringify({ publicKey: next.publicJwk, proof }),
    });
  } catch (error) {
    return { message: `cannot reach the relay: ${error instanceof Error ? error.message : String(error)}` };
  }
  if (response.ok) return undefined;
  const message = await response.json().then((s) => (s as { message?: string }).message, () => undefined);
  return { status: response.status, message: message ?? `${response.status} ${response.statusText}` };
}

function kidOf(jwk: JWK): string {
  return typeof jwk.kid === "string" ? jwk.kid : "(no kid)";
}
