// The agent's whole life: load or enroll its key, learn whom to trust, keep the tunnel up.
import { builtinIssuerTrust, createUserTokenVerifier, type TrustedIssuer } from "../auth/index.ts";
import { validateClusterName } from "../kube/index.ts";
import type { Logger } from "../observe/index.ts";
import type { AgentKeyStore } from "./agent-state.ts";
import { runConnector } from "./connector.ts";
import { enrollWithRelay } from "./enroll.ts";
import { relayFetch, type RelayEndpoint } from "./relay-endpoint.ts";
import { createStreamHandler } from "./stream-handler.ts";
import { fetchKubernetesVersion, type Upstream } from "./upstream.ts";

export interface AgentOptions {
  relay: RelayEndpoint;
  cluster: string;
  keyStore: AgentKeyStore;
  enrollToken?: string;
  upstream: Upstream;
  agentVersion: string;
  logger: Logger;
  signal: AbortSignal;
  onState?: (state: "connected" | "disconnected") => void;
  /**
   * External OIDC issuers from the agent's own config, trusted beside the relay's built-in issuer.
   * The agent verifies their tokens itself; the relay trusting an issuer is never enough.
   */
  trustedIssuers?: TrustedIssuer[];
}

export async function runAgent(opts: AgentOptions): Promise<void> {
  const cluster = validateClusterName(opts.cluster);
  const log = opts.logger.child({ cluster });
  let keys = await opts.keyStore.load();
  if (keys && keys.cluster !== cluster) {
    throw new Error(
      `the key in ${opts.keyStore.describe()} belongs to cluster "${keys.cluster}", not "${cluster}": an agent serves only the cluster it enrolled for`,
    );
  }
  if (!keys) {
    if (!opts.enrollToken) {
      throw new Error(`no agent key in ${opts.keyStore.describe()}: enroll first with --enroll-token (from arcrelay cluster add ${cluster})`);
    }
    keys = await enrollWithRelay(opts.relay, cluster, opts.enrollToken);
    await opts.keyStore.save(keys);
    log.info("enrolled with the relay", { keyStore: opts.keyStore.describe() });
  } else if (opts.enrollToken) {
    log.info("already enrolled; ignoring the enrollment token", { keyStore: opts.keyStore.describe() });
  }

  const verifier = createUserTokenVerifier({
    issuers: [builtinIssuerTrust(await discoverRelayIssuer(opts.relay)), ...(opts.trustedIssuers ?? [])],
    ...(opts.relay.ca ? { tlsCa: opts.relay.ca } : {}),
  });
  if (opts.trustedIssuers?.length) log.info("trusting external OIDC issuers", { issuers: opts.trustedIssuers.map((t) => t.issuer) });
  const onStream = createStreamHandler({ cluster, upstream: opts.upstream, verifyUserToken: verifier.verifyUserToken, logger: log });
  await runConnector({
    relay: opts.relay,
    keys,
    agentVersion: opts.agentVersion,
    kubernetesVersion: () => fetchKubernetesVersion(opts.upstream),
    onStream,
    logger: log,
    signal: opts.signal,
    onState: opts.onState,
  });
}

/**
 * The relay's built-in issuer: the agent trusts it because its own --relay flag names that relay,
 * and the keys must verify under the issuer URL the relay publishes for itself.
 */
async function discoverRelayIssuer(relay: RelayEndpoint): Promise<{ issuer: string; audience: string; jwksUrl: string }> {
  const response = await relayFetch(relay, "/.well-known/openid-configuration").catch((cause: unknown) => {
    throw new Error(`cannot reach the relay at ${relay.url} to read its issuer`, { cause });
  });
  if (!response.ok) throw new Error(`the relay at ${relay.url} answered ${response.status} for its OIDC discovery document`);
  const doc = (await response.json()) as { issuer?: string; jwks_uri?: string };
  if (!doc.issuer || !doc.jwks_uri) throw new Error(`the relay at ${relay.url} published no issuer or jwks_uri`);
  return { issuer: doc.issuer, audience: "cluster-connect", jwksUrl: relay.url + "/.well-known/jwks.json" };
}
