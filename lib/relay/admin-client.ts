// A typed client for the relay's admin API (/v1/admin); the relay's Status messages become ArcErrors.
import { rootCertificates } from "node:tls";
import { AgentNotConnected, ArcError, BadGateway, BadRequest, Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized, UpstreamTimeout, ConfigError } from "../errors/index.ts";
import { isLoopbackHost } from "../kube/index.ts";
import type { Role } from "./store/index.ts";

export interface AdminClientOptions {
  /** e.g. https://relay.example.com; plain http:// only to a loopback host, so a token never crosses a network in clear. */
  relayUrl: string;
  token: string;
  /** Extra CA (PEM) trusted besides the system roots, for a relay with a private certificate. */
  ca?: string;
  timeoutMs?: number;
  /** Replaces the global fetch (tests). */
  fetch?: typeof fetch;
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

export function createAdminClient(opts: AdminClientOptions): AdminClient {
  const base = adminBaseUrl(opts.relayUrl);
  const relayUrl = base.slice(0, -"/v1/admin".length);
  const doFetch = opts.fetch ?? fetch;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const init = {
      method,
      redirect: "manual",
      signal: AbortSignal.timeout(timeoutMs),
      headers: {
        authorization: `Bearer ${opts.token}`,
        accept: "application/json",
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      ...(opts.ca ? { tls: { ca: [...rootCertificates, opts.ca] } } : {}),
    } as RequestInit;
    let response: Response;
    try {
      response = await doFetch(base + path, init);
    } catch (error) {
      const reason = (error as Error)?.name === "TimeoutError" ? `no answer within ${timeoutMs / 1000}s` : (error as Error)?.message;
      throw new BadGateway(`cannot reach relay ${relayUrl}: ${reason ?? String(error)}`, { cause: error });
    }
    const text = await response.text().catch(() => "");
    if (!response.ok) throw relayError(response.status, relayMessage(text), relayUrl);
    try {
      return JSON.parse(text) as T;
    } catch (cause) {
      throw new BadGateway(`relay ${relayUrl} answered ${method} ${path} with invalid JSON; is --relay the relay's URL?`, { cause });
    }
  }

  const clusterPath = (name: string) => `/clusters/${encodeURIComponent(name)}`;
  return {
    relayUrl,
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

/** `relayUrl` + `/v1/admin`, after refusing URLs that would leak the token. */
function adminBaseUrl(relayUrl: string): string {
  let url: URL;
  try {
    url = new URL(relayUrl);
  } catch {
    throw new ConfigError(`invalid relay URL ${JSON.stringify(relayUrl)}: expected https://HOST[:PORT]`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new ConfigError(`invalid relay URL ${relayUrl}: the scheme must be https://`);
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
    throw new ConfigError(`refusing plain http:// to ${url.host}: use https:// (http:// is allowed for loopback hosts only)`);
  }
  if (url.search || url.hash || url.username || url.password) throw new ConfigError(`invalid relay URL ${relayUrl}: no query, fragment or credentials`);
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}/v1/admin`;
}

// The message of a Kubernetes Status body, if that is what the relay sent.
function relayMessage(text: string): string | undefined {
  try {
    const status = JSON.parse(text) as { message?: unknown };
    return typeof status.message === "string" && status.message ? status.message : undefined;
  } catch {
    return undefined;
  }
}

function relayError(status: number, message: string | undefined, relayUrl: string): ArcError {
  const text = `relay ${relayUrl}: ${message ?? `HTTP ${status}`}`;
  switch (status) {
    case 400:
      return new BadRequest(text);
    case 401:
      return new Unauthorized(`${text} (pass a fresh user token with --token or ARC_TOKEN)`);
    case 403:
      return new Forbidden(text);
    case 404:
      return new NotFound(text);
    case 409:
      return new Conflict(text);
    case 429:
      return new TooManyRequests(text);
    case 503:
      return new AgentNotConnected(text);
    case 504:
      return new UpstreamTimeout(text);
    default:
      return new BadGateway(message ? text : `relay ${relayUrl} answered HTTP ${status}; is --relay the relay's URL?`);
  }
}
