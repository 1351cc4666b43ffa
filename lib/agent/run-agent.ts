// The agent's whole life: load or enroll its key, learn whom to trust, keep the tunnel up.
import { builtinIssuerTrust, createUserTokenVerifier, generateSigningKeyPair, signAgentToken, type TrustedIssuer } from "../auth/index.ts";
import { protocol } from "../tunnel/index.ts";
import { BadGateway, ConfigError, Unauthorized } from "../errors/index.ts";
import { validateClusterName } from "../kube/index.ts";
import type { Logger } from "../observe/index.ts";
import type { AgentMetrics } from "./metrics.ts";
import type { AgentKeys, AgentKeyStore } from "./agent-state.ts";
import { runConnector, type ConnectorOptions, type ReconnectBackoff } from "./connector.ts";
import { enrollWithRelay } from "./enroll.ts";
import { callRelay, refusalError, relayHref, type RelayConnection } from "../client/index.ts";
import { createStreamHandler } from "./stream-handler.ts";
import { fetchKubernetesVersion } from "./kube-api.ts";
import type { Upstream } from "./upstream.ts";

export interface AgentOptions {
  /** The relay (createRelayConnection): its URL is also the audience of the agent's tokens. */
  relay: RelayConnection;
  cluster: string;
  keyStore: AgentKeyStore;
  enrollToken?: string;
  upstream: Upstream;
  agentVersion: string;
  logger: Logger;
  /** Aborting it stops the agent gracefully: GOAWAY, streams in flight get `drainTimeoutMs`, then exit. */
  signal: AbortSignal;
  /** How long streams in flight may run on once `signal` aborts (ms); default 25,000 (`--shutdown-timeout`). */
  drainTimeoutMs?: number;
  /** Reconnect backoff (`--reconnect-backoff-base`, `--reconnect-backoff-max`). */
  backoff?: Partial<ReconnectBackoff>;
  /** Tunnel liveness (`--tunnel-ping-interval`, `--tunnel-dead-after`), ms. */
  liveness?: ConnectorOptions["liveness"];
  onState?: (state: "connected" | "disconnected") => void;
  /** Prometheus metrics of the tunnel and the requests served (createAgentMetrics); none when absent. */
  metrics?: AgentMetrics;
  /** Requests served at once, beyond which they are answered 429 (`--max-requests-in-flight`); default 2,000. */
  maxRequestsInFlight?: number;
  /**
   * External OIDC issuers from the agent's own config, trusted beside the relay's built-in issuer.
   * The agent verifies their tokens itself; the relay trusting an issuer is never enough.
   */
  trustedIssuers?: TrustedIssuer[];
}

/**
 * Runs the agent until `signal` aborts and its tunnel has drained. First start: enrolls with
 * `enrollToken`, saving the new key in `keyStore` before spending the token (so a crash never
 * loses it); later starts use the stored key. Then trusts the relay's built-in issuer (OIDC
 * discovery on the relay, 15 s bound) and `trustedIssuers`, and keeps one tunnel to the relay,
 * redialling with backoff (1-10 s, full jitter) and re-reading the key store before every dial.
 * On abort: GOAWAY, streams in flight get `drainTimeoutMs` (25 s), then the tunnel closes.
 *
 * Throws (before any tunnel) when there is no key and no token, when enrollment is refused
 * (Unauthorized for a spent or expired token, or one for another cluster, with what to do), when
 * the key store cannot be written, or when the relay's issuer cannot be read; and Unauthorized
 * when the relay refuses both the token and a key an earlier start saved but never saw enrolled.
 * Network trouble, and the relay refusing an enrolled key (it may be registered again), are
 * retried, never thrown.
 */
export async function runAgent(opts: AgentOptions): Promise<void> {
  const cluster = validateClusterName(opts.cluster);
  const log = opts.logger.child({ cluster });
  let keys = await opts.keyStore.load();
  if (keys && keys.cluster !== cluster) {
    if (keys.enrolled !== false) {
      throw new Error(
        `the key in ${opts.keyStore.describe()} belongs to cluster "${keys.cluster}", not "${cluster}": an agent serves only the cluster it enrolled for`,
      );
    }
    // Saved for an enrollment the relay refused (a mistyped --cluster): no relay knows it.
    log.warn("discarding a key that was never enrolled, made for another cluster", { keyStore: opts.keyStore.describe(), keyCluster: keys.cluster });
    keys = undefined;
  }
  // Before enrolling, so a wrong --relay spends no token.
  const relayIssuer = await discoverRelayIssuer(opts.relay);
  if (!keys || keys.enrolled === false) {
    keys = await enrollOnce(opts, cluster, keys, log);
  } else if (opts.enrollToken) {
    log.info("already enrolled; ignoring the enrollment token", { keyStore: opts.keyStore.describe() });
  }
  // Not yet confirmed: the relay refused the token offered for a key saved by an earlier start.
  // The first tunnel decides: accepted, the key was registered (that start crashed after the
  // relay's answer) and is marked enrolled; refused, the agent stops and says what to do.
  let unconfirmed = keys.enrolled === false;
  // The save that records it, awaited before the agent returns (a stop right after must not lose it).
  let confirming: Promise<void> | undefined;

  let current = keys;
  const external = (opts.trustedIssuers ?? []).map((t) =>
    t.keysFrom === "relay" ? keysThroughRelay(t, opts.relay, () => current) : t);
  const verifier = createUserTokenVerifier({
    issuers: [builtinIssuerTrust(relayIssuer), ...external],
    ...(opts.relay.tls.ca ? { tlsCa: opts.relay.tls.ca } : {}),
    // Every token reaching the agent was verified by the relay first, so an unknown key id here is
    // a key rotation, not someone probing: fetch the keys again after a second, not after 30 s
    // (tokens of a rotated key were refused by every agent that had just fetched the keys).
    jwksCooldownMs: AGENT_JWKS_COOLDOWN_MS,
  });
  if (opts.trustedIssuers?.length) log.info("trusting external OIDC issuers", { issuers: opts.trustedIssuers.map((t) => t.issuer) });
  const onStream = createStreamHandler({ cluster, upstream: opts.upstream, verifyUserToken: verifier.verifyUserToken, logger: log, watchEnd: opts.signal, metrics: opts.metrics, maxRequestsInFlight: opts.maxRequestsInFlight });
  await runConnector({
    relay: opts.relay,
    keys: async () => (current = await reloadKeys(opts.keyStore, current, log)),
    refusedHint:
      `if the agent was revoked, re-enroll it: run \`arcrelay cluster enroll-token ${cluster}\`, delete the key in ${opts.keyStore.describe()}, ` +
      `then restart the agent with --enroll-token`,
    agentVersion: opts.agentVersion,
    kubernetesVersion: () => fetchKubernetesVersion(opts.upstream, log),
    onStream,
    inFlight: onStream.inFlight,
    logger: log,
    signal: opts.signal,
    drainTimeoutMs: opts.drainTimeoutMs,
    backoff: opts.backoff,
    liveness: opts.liveness,
    onState: (state, reason) => {
      opts.metrics?.tunnelConnected.set(state === "connected" ? 1 : 0);
      if (state === "connected") {
        opts.metrics?.tunnelConnects.inc();
        opts.relay.closeIdle();
      }
      else opts.metrics?.tunnelDisconnects.inc({ reason: reason ?? "closed" });
      opts.onState?.(state);
    },
    onDialFailure: (reason) => opts.metrics?.dialFailures.inc({ reason }),
    onConnected: () => {
      if (!unconfirmed) return;
      unconfirmed = false;
      confirming = (async () => {
        // As stored now, so a key `arcagent rotate-key` put there meanwhile is never overwritten.
        // Unreadable now: the mark waits for the next start, which connects with the key and confirms it.
        const stored = await opts.keyStore.load().catch((error: unknown) => {
          log.warn("could not re-read the agent key to record its enrollment; the next start will", { keyStore: opts.keyStore.describe(), error });
          return undefined;
        });
        if (!stored || stored.enrolled !== false || stored.publicJwk.kid !== current.publicJwk.kid) return;
        await saveWithRetry(opts.keyStore, { ...stored, enrolled: true }, log);
        log.info("the relay accepted the stored key: enrolled", { keyStore: opts.keyStore.describe() });
      })();
    },
    fatalRefusal: () => unconfirmed
      ? new Unauthorized(
        `the relay does not know this agent's key, saved for an enrollment that did not go through (its token was invalid, expired, already used, or for another cluster): ` +
          `create a new token with \`arcrelay cluster enroll-token ${cluster}\` and start the agent again with --enroll-token`,
      )
      : undefined,
  });
  await confirming;
}

/**
 * Enrollment that survives a crash or a failed save: the new key is stored (marked not enrolled)
 * before the single-use token is spent, so the key the relay registers is never lost. A start that
 * finds such a key enrolls it again with the token. When the relay refuses the token then, either
 * an earlier start spent it (it crashed after the relay's answer: the key is registered) or the
 * token was wrong: the key stays marked not enrolled, and the first tunnel tells which.
 */
async function enrollOnce(opts: AgentOptions, cluster: string, pending: AgentKeys | undefined, log: Logger): Promise<AgentKeys> {
  const where = opts.keyStore.describe();
  if (!opts.enrollToken) {
    if (pending) {
      log.warn("the stored key was saved before an enrollment that may not have finished; connecting with it", { keyStore: where });
      return pending;
    }
    throw new Error(`no agent key in ${where}: enroll first with --enroll-token (from arcrelay cluster add ${cluster})`);
  }
  const keys: AgentKeys = pending ?? { cluster, ...(await generateSigningKeyPair("EdDSA")), enrolled: false };
  if (!pending) await opts.keyStore.save(keys);
  try {
    await enrollWithRelay(opts.relay, cluster, opts.enrollToken, keys.publicJwk);
  } catch (error) {
    if (!(pending && error instanceof Unauthorized)) throw error;
    log.warn("the relay refused the enrollment token; connecting with the stored key, which an earlier start may have enrolled", { keyStore: where, error });
    return pending;
  }
  const enrolled = { ...keys, enrolled: true };
  await saveWithRetry(opts.keyStore, enrolled, log);
  log.info("enrolled with the relay", { keyStore: where });
  return enrolled;
}

/** Marks the key enrolled; a store that keeps failing leaves it pending, which the next start handles. */
async function saveWithRetry(store: AgentKeyStore, keys: AgentKeys, log: Logger): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await store.save(keys);
      return;
    } catch (error) {
      if (attempt >= 5) {
        log.warn("could not record the enrollment in the key store; the key stays marked pending", { keyStore: store.describe(), error });
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
    }
  }
}

/**
 * The key for the next connection: the store's, which `arcagent rotate-key` may have replaced while
 * this process runs. If the store cannot be read, the key in memory is still the best guess.
 */
async function reloadKeys(store: AgentKeyStore, inMemory: AgentKeys, log: Logger): Promise<AgentKeys> {
  let stored: AgentKeys | undefined;
  try {
    stored = await store.load();
  } catch (error) {
    log.warn("could not re-read the agent key; connecting with the one in memory", { keyStore: store.describe(), error });
    return inMemory;
  }
  if (!stored || stored.cluster !== inMemory.cluster) {
    log.warn("the agent key store no longer holds this cluster's key; connecting with the one in memory", { keyStore: store.describe() });
    return inMemory;
  }
  if (stored.publicJwk.kid !== inMemory.publicJwk.kid || stored.privateJwk.d !== inMemory.privateJwk.d) {
    log.info("agent key changed in the key store; connecting with the new key", { kid: stored.publicJwk.kid });
  }
  return stored;
}

/** How soon the agent fetches an issuer's keys again for a token with a key id it does not know (ms). */
const AGENT_JWKS_COOLDOWN_MS = 1_000;

/**
 * The relay's built-in issuer: the agent trusts it because its own --relay flag names that relay,
 * and the keys must verify under the issuer URL the relay publishes for itself. Throws ConfigError
 * when that URL is not the one dialled (the relay would refuse every tunnel), and what
 * refusalError makes of a relay that does not answer 200.
 */
async function discoverRelayIssuer(relay: RelayConnection): Promise<{ issuer: string; audience: string; jwksUrl: string }> {
  const path = "/.well-known/openid-configuration";
  const answer = await callRelay(relay, { path });
  if (answer.status !== 200) throw refusalError(answer.status, answer.json, { relay: relay.url, action: "reading the relay's OIDC discovery document" });
  const doc = answer.json as { issuer?: unknown; jwks_uri?: unknown } | undefined;
  if (typeof doc?.issuer !== "string" || typeof doc.jwks_uri !== "string") {
    throw new BadGateway(`the relay at ${relay.url.base} published no issuer or jwks_uri at ${path}; is --relay the relay's URL?`);
  }
  // The relay takes an agent's tunnel only with a token whose audience is its public URL (its
  // issuer), and the agent signs for the URL it dials: a relay reached by another name (a replica
  // dialled directly, a Service name) refused every dial as if the key were revoked.
  if (doc.issuer !== relay.url.base) {
    throw new ConfigError(
      `the relay at ${relay.url.base} serves as ${doc.issuer} (its public URL), and takes an agent's tunnel only for that URL: ` +
      `start the agent with --relay ${doc.issuer}, or, if agents must dial ${relay.url.base}, start the relay with --public-url ${relay.url.base}`,
    );
  }
  return { issuer: doc.issuer, audience: "cluster-connect", jwksUrl: relayHref(relay.url, "/.well-known/jwks.json") };
}

/**
 * An issuer the cluster cannot reach: its keys come from the relay, which fetched them from the
 * issuer. The issuer, audiences and claim mapping stay those of the agent's own config, so the
 * relay can serve keys only for issuers this agent already trusts.
 */
function keysThroughRelay(trusted: TrustedIssuer, relay: RelayConnection, keys: () => AgentKeys): TrustedIssuer {
  return {
    ...trusted,
    jwks: { url: relayHref(relay.url, `${protocol.AGENT_ISSUER_KEYS_PATH}?issuer=${encodeURIComponent(trusted.issuer)}`) },
    ...(relay.tls.ca ? { tlsCa: relay.tls.ca } : {}),
    jwksRequestHeaders: async () => ({
      authorization: `Bearer ${await signAgentToken({ privateJwk: keys().privateJwk, cluster: keys().cluster, audience: relay.url.base })}`,
    }),
  };
}
