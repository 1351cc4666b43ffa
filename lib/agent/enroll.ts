// First start: trade the one-time enrollment token for a registered Ed25519 key.
import type { JWK } from "jose";
import { ArcError, Unauthorized } from "../errors/index.ts";
import { protocol } from "../tunnel/index.ts";
import { relayFetch, type RelayEndpoint } from "./relay-endpoint.ts";

/**
 * Registers `publicJwk` as the agent key of `cluster`, spending the one-time `enrollToken`.
 * Throws Unauthorized when the relay refuses the token (invalid, expired or already used) and an
 * ArcError with the relay's message for any other refusal; network failures keep their cause.
 */
export async function enrollWithRelay(relay: RelayEndpoint, cluster: string, enrollToken: string, publicJwk: JWK): Promise<void> {
  let response: Response;
  try {
    response = await relayFetch(relay, protocol.AGENT_ENROLL_PATH, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ cluster, token: enrollToken, publicKey: publicJwk }),
    });
  } catch (cause) {
    throw new Error(`cannot reach the relay at ${relay.url} to enroll cluster "${cluster}"`, { cause });
  }
  if (!response.ok) {
    const message = await response.json().then((s) => (s as { message?: string }).message, () => undefined);
    const text = `enrolling cluster "${cluster}" at ${relay.url} failed (${response.status}): ${message ?? response.statusText}`;
    throw response.status === 401 ? new Unauthorized(text) : new ArcError(text);
  }
}
