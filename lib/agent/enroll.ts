// First start: trade the one-time enrollment token for a registered Ed25519 key.
import { generateSigningKeyPair } from "../auth/index.ts";
import { ArcError, Unauthorized } from "../kube/index.ts";
import { protocol } from "../tunnel/index.ts";
import type { AgentKeys } from "./agent-state.ts";
import { relayFetch, type RelayEndpoint } from "./relay-endpoint.ts";

export async function enrollWithRelay(relay: RelayEndpoint, cluster: string, enrollToken: string): Promise<AgentKeys> {
  const { privateJwk, publicJwk } = await generateSigningKeyPair("EdDSA");
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
  return { cluster, privateJwk, publicJwk };
}
