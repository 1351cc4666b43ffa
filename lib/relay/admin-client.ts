// A typed client for the relay's admin API (/v1/admin); the relay's Status messages become ArcErrors.
import { callRelay, createRelayConnection, refusalError } from "../client/index.ts";
import { BadGateway } from "../errors/index.ts";
import type { Role } from "./store/index.ts";

export interface AdminClientOptions {
  /** e.g. https://relay.example.com; plain http:// only to a loopback host, so a token never crosses a network in clear. */
  relayUrl: string;
  token: string;
  /** Extra CA (PEM) trusted besides the system roots, for a relay with a private certificate. */
  ca?: string;
  /** Bound on each call (ms); default 30,000. */
  timeoutMs?: number;
}

/** A row of `GET /v1/admin/clusters`; `lastSeen` is an ISO time. */
export interface AdminClusterView {
  name: string;
  state: "connected" | "offline" | "never-connected";
  agentVersion?: string;
  kubernetesVersion?: string;
  lastSeen?: string;
  enrolled: boolean;
}

export interface AdminGrantView {
  id: string;
  principal: string;
  cluster: string;
  role: Role;
  createdAt: string;
}

export interface AdminClient {
  readonly relayUrl: string;
  /** Closes pooled connections to the relay. */
  close(): void;
  listClusters(): Promise<AdminClusterView[]>;
  addCluster(name: string, enrollmentTtlSeconds?: number): Promise<{ name: string; enrollmentToken: string; expiresAt: string }>;
  removeCluster(name: string): Promise<void>;
  createEnrollmentToken(name: string, ttlSeconds?: number): Promise<{ token: string; expiresAt: string }>;
  revokeAgent(name: string): Promise<{ name: string; revoked: boolean; tunnelClosed: boolean }>;
  listGrants(cluster?: string): Promise<AdminGrantView[]>;
  addGrant(grant: { principal: string; cluster: string; role: Role }): Promise<AdminGrantView>;
  removeGrant(id: string): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * A client of the relay's admin API. Throws ConfigError for a bad relay URL (parseRelayUrl). Each
 * call rejects with the ArcError for the relay's refusal (refusalError: 401 asks for a fresh
 * token), RelayUnreachable/UpstreamTimeout when the relay cannot be asked, and BadGateway when an
 * answer is not JSON.
 */
export function createAdminClient(opts: AdminClientOptions): AdminClient {
  const relay = createRelayConnection(opts.relayUrl, opts.ca ? { ca: opts.ca } : {});
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const answer = await callRelay(relay, { method, path: `/v1/admin${path}`, token: opts.token, timeoutMs, ...(body !== undefined ? { json: body } : {}) });
    if (answer.status < 200 || answer.status >= 300) {
      throw refusalError(answer.status, answer.json, {
        relay: relay.url,
        advice: { 401: { say: "pass a fresh user token with --token or ARC_TOKEN (arcrelay token create)", unless: "--token" } },
      });
    }
    if (answer.json === undefined) {
      throw new BadGateway(`relay ${relay.url.base} answered ${method} ${path} with no JSON; is --relay the relay's URL?`);
    }
    return answer.json as T;
  }

  const clusterPath = (name: string) => `/clusters/${encodeURIComponent(name)}`;
  return {
    relayUrl: relay.url.base,
    close: () => relay.close(),
    listClusters: () => call("GET", "/clusters"),
    addCluster: (name, enrollmentTtlSeconds) => call("POST", "/clusters", { name, enrollmentTtlSeconds }),
    async removeCluster(name) {
      await call("DELETE", clusterPath(name));
    },
    createEnrollmentToken: (name, ttlSeconds) => call("POST", `${clusterPath(name)}/enrollment-tokens`, { ttlSeconds }),
    revokeAgent: (name) => call("POST", `${clusterPath(name)}/revoke-agent`, {}),
    listGrants: (cluster) => call("GET", cluster === undefined ? "/grants" : `/grants?cluster=${encodeURIComponent(cluster)}`),
    addGrant: (grant) => call("POST", "/grants", grant),
    async removeGrant(id) {
      await call("DELETE", `/grants/${encodeURIComponent(id)}`);
    },
  };
}
