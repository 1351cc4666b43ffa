// First start: trade the one-time enrollment token for a registered Ed25519 key.
import type { JWK } from "jose";
import { callRelay, refusalError, type RelayConnection } from "../client/index.ts";
import { protocol } from "../tunnel/index.ts";

/**
 * Registers `publicJwk` as the agent key of `cluster` at `relay`, spending the one-time
 * `enrollToken`; the call is bounded by RELAY_CALL_TIMEOUT_MS (15 s). Throws Unauthorized (401)
 * when the relay refuses the token (invalid, expired or already used), the matching ArcError with
 * the relay's message for any other refusal (refusalError), and RelayUnreachable/UpstreamTimeout
 * when the relay cannot be reached.
 */
export async function enrollWithRelay(relay: RelayConnection, cluster: string, enrollToken: string, publicJwk: JWK): Promise<void> {
  const answer = await callRelay(relay, {
    method: "POST",
    path: protocol.AGENT_ENROLL_PATH,
    json: { cluster, token: enrollToken, publicKey: publicJwk },
  });
  if (answer.status >= 200 && answer.status < 300) return;
  throw refusalError(answer.status, answer.json, {
    relay: relay.url,
    action: `enrolling cluster "${cluster}"`,
    advice: { 401: { say: "create a new enrollment token (arcrelay cluster enroll-token NAME) and pass it with --enroll-token", unless: "enroll" } },
  });
}
