// Asks the relay about one cluster before anything else starts, turning its answers into clear errors.
import http from "node:http";
import https from "node:https";
import { ArcError, BadGateway, Forbidden, NotFound, Unauthorized } from "../errors/index.ts";
import { createRelayEndpoint, type RelayEndpoint, type RelayTls } from "./relay-endpoint.ts";
import { CLUSTER_INFO_TIMEOUT_MS } from "./timeouts.ts";

/** The relay's view of a cluster (`GET /v1/clusters/{name}`). */
export interface ClusterInfo {
  name: string;
  connected: boolean;
  kubernetesVersion?: string;
  agentVersion?: string;
  lastSeen?: string;
}

export interface FetchClusterInfoOptions {
  relayUrl: string;
  cluster: string;
  token: string;
  tls: RelayTls;
}

// Small JSON answers only; anything bigger is not the relay we expect.
const MAX_BODY_BYTES = 1 << 20;

/** Fetches the cluster's record; throws an ArcError carrying the relay's message and what to do next. */
export async function fetchClusterInfo(opts: FetchClusterInfoOptions): Promise<ClusterInfo> {
  const endpoint = createRelayEndpoint(opts.relayUrl, opts.tls);
  try {
    const path = `${endpoint.basePath}/v1/clusters/${encodeURIComponent(opts.cluster)}`;
    const { status, body } = await getJson(endpoint, path, opts.token);
    if (status === 200) return parseClusterInfo(body, opts.cluster, endpoint.url);
    throw explainFailure(status, relayMessage(body), opts.cluster, endpoint.url);
  } finally {
    endpoint.agent.destroy();
  }
}

function getJson(endpoint: RelayEndpoint, path: string, token: string): Promise<{ status: number; body: string }> {
  const transport = endpoint.secure ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request({
      method: "GET",
      host: endpoint.hostname,
      port: endpoint.port,
      path,
      agent: endpoint.agent,
      ...endpoint.tlsOptions,
      headers: { authorization: `Bearer ${token}`, accept: "application/json" },
    });
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${CLUSTER_INFO_TIMEOUT_MS / 1000}s`)), CLUSTER_INFO_TIMEOUT_MS);
    const fail = (error: Error) => {
      clearTimeout(timer);
      reject(new BadGateway(`cannot reach relay ${endpoint.url}: ${error.message}`, { cause: error }));
    };
    req.on("error", fail);
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) req.destroy(new Error("answer too large"));
        else chunks.push(chunk);
      });
      res.on("error", fail);
      res.on("end", () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") });
      });
    });
    req.end();
  });
}

function parseClusterInfo(body: string, cluster: string, relayUrl: string): ClusterInfo {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (error) {
    throw new BadGateway(`relay ${relayUrl} answered cluster ${cluster} with invalid JSON; is the URL right?`, { cause: error });
  }
  const info = value as Partial<ClusterInfo> | null;
  if (!info || typeof info.name !== "string" || typeof info.connected !== "boolean") {
    throw new BadGateway(`relay ${relayUrl} answered cluster ${cluster} without name/connected; is the URL right?`);
  }
  return info as ClusterInfo;
}

// The message of a Kubernetes Status body, if that is what the relay sent.
function relayMessage(body: string): string | undefined {
  try {
    const status = JSON.parse(body) as { kind?: unknown; message?: unknown };
    return typeof status.message === "string" && status.message ? status.message : undefined;
  } catch {
    return undefined;
  }
}

// Advice is appended unless the relay's message already gives it (the relay's own refusals name
// the command to run; an older or a fronting server's may not).
function explainFailure(status: number, message: string | undefined, cluster: string, relayUrl: string): ArcError {
  const said = (fallback: string, advice: string, keyword: string) =>
    `relay ${relayUrl}: ${message ?? fallback}${message?.includes(keyword) ? "" : `; ${advice}`}`;
  switch (status) {
    case 401:
      return new Unauthorized(said("unauthorized", "get a fresh token (arcrelay token create) and pass --token or set ARC_TOKEN", "token create"));
    case 403:
      return new Forbidden(said("forbidden", `ask a relay admin for a cluster-user grant on cluster ${cluster}`, "grant add"));
    case 404:
      return new NotFound(said(`cluster ${cluster} not found`, "check --cluster (clusters are registered with arcrelay cluster add)", "arcrelay cluster"));
    default:
      return new BadGateway(`relay ${relayUrl}: ${message ?? `unexpected HTTP ${status}`} (HTTP ${status} for cluster ${cluster})`);
  }
}
