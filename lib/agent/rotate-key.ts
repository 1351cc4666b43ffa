// Replaces the agent's Ed25519 key: new pair kept as pending, relay switches, then the pending pair becomes current.
import { protocol } from "../tunnel/index.ts";
import type { JWK } from "jose";
import { generateSigningKeyPair, signAgentToken } from "../auth/index.ts";
import { ArcError, statusMessageOf } from "../errors/index.ts";
import { validateClusterName } from "../kube/index.ts";
import type { AgentKeys, AgentKeyStore } from "./agent-state.ts";
import { callRelay, refusalError, type RelayConnection } from "../client/index.ts";

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
export async function rotateAgentKey(opts: { relay: RelayConnection; cluster: string; keyStore: AgentKeyStore }): Promise<RotatedKey> {
  const cluster = validateClusterName(opts.cluster);
  const where = opts.keyStore.describe();
  const stored = (await opts.keyStore.load()) as StoredKeys | undefined;
  if (!stored) throw new Error(`no agent key in ${where}: nothing to rotate; enroll the agent first with --enroll-token`);
  if (stored.cluster !== cluster) throw new Error(`the key in ${where} belongs to cluster "${stored.cluster}", not "${cluster}"`);
  if (stored.enrolled === false) {
    throw new Error(
      `the key in ${where} was never enrolled: there is nothing at the relay to rotate; start the agent with --enroll-token (a new one: arcrelay cluster enroll-token ${cluster})`,
    );
  }
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
    // As it was before this run: every stored field kept, only the pending pair dropped.
    const { pending: _dropped, ...before } = stored;
    await opts.keyStore.save(before).catch(() => undefined);
    throw refusalError(refusal.status, refusal.body, {
      relay: opts.relay.url,
      action: `the relay refused the key rotation of cluster "${cluster}" (${refusal.status}); nothing changed at the relay, and ${where} keeps key ${kids.previousKid}`,
    });
  }
  if (refusal) {
    // No answer, or a 5xx that may come from a proxy after the relay switched: keep both keys.
    throw new Error(
      `the key rotation of cluster "${cluster}" at ${opts.relay.url.base} did not complete: ${refusal.message}. ` +
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

/** Undefined when the relay took the key; otherwise its status and body (no status if it was not reached) and a message. */
async function askRelay(
  relay: RelayConnection,
  cluster: string,
  signer: { privateJwk: JWK },
  next: { privateJwk: JWK; publicJwk: JWK },
): Promise<{ status?: number; body?: unknown; message: string } | undefined> {
  const [bearer, proof] = await Promise.all([
    signAgentToken({ privateJwk: signer.privateJwk, cluster, audience: relay.url.base }),
    signAgentToken({ privateJwk: next.privateJwk, cluster, audience: relay.url.base }),
  ]);
  try {
    const answer = await callRelay(relay, { method: "POST", path: ROTATE_KEY_PATH, token: bearer, json: { publicKey: next.publicJwk, proof } });
    if (answer.status >= 200 && answer.status < 300) return undefined;
    return { status: answer.status, body: answer.json, message: statusMessageOf(answer.json) ?? `HTTP ${answer.status}` };
  } catch (error) {
    return { message: error instanceof ArcError ? error.message : `cannot reach the relay: ${(error as Error).message}` };
  }
}

function kidOf(jwk: JWK): string {
  return typeof jwk.kid === "string" ? jwk.kid : "(no kid)";
}
