// The agent's own small calls to the API server (its key Secret, /version): one JSON request with
// the agent's credentials, a timeout and a size cap.
import http from "node:http";
import https from "node:https";
import type { Logger } from "../observe/index.ts";
import type { Upstream } from "./upstream.ts";

/** Every call the agent makes for itself must finish within this (connect, send, read). */
export const KUBE_API_TIMEOUT_MS = 10_000;
const MAX_RESPONSE_BYTES = 1024 * 1024;

export interface KubeApiResponse {
  status: number;
  /** Parsed JSON body, or undefined when the body was not JSON. */
  body: unknown;
}

/**
 * Sends one request to the API server as the agent itself and reads the whole (small) answer.
 * `@kubernetes/client-node`'s generated clients are not used: they send through undici's fetch
 * with a TLS dispatcher that Bun's built-in undici ignores, so the cluster CA was never applied.
 * Rejects on network errors, on a timeout (KUBE_API_TIMEOUT_MS) and on answers over 1 MiB.
 */
export async function kubeApiRequest(upstream: Upstream, method: string, path: string, body?: unknown, timeoutMs = KUBE_API_TIMEOUT_MS): Promise<KubeApiResponse> {
  const options = await upstream.requestOptions();
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const client = upstream.server.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request({
      ...options,
      hostname: upstream.server.hostname.replace(/^\[|\]$/g, ""),
      port: upstream.server.port,
      method,
      path,
      agent: upstream.agent,
      headers: {
        ...(options.headers as Record<string, string>),
        accept: "application/json",
        ...(payload !== undefined ? { "content-type": "application/json", "content-length": String(Buffer.byteLength(payload)) } : {}),
      },
    });
    const timer = setTimeout(() => req.destroy(new Error(`no answer from the API server within ${timeoutMs / 1000}s (${method} ${path})`)), timeoutMs);
    req.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.once("response", (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_RESPONSE_BYTES) req.destroy(new Error(`the API server's answer to ${method} ${path} exceeds ${MAX_RESPONSE_BYTES} bytes`));
        else chunks.push(chunk);
      });
      res.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      res.once("end", () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString("utf8");
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.end(payload);
  });
}

/** The `message` of a Kubernetes Status body, for error texts. */
export function statusMessageOf(body: unknown): string | undefined {
  const message = (body as { message?: unknown } | undefined)?.message;
  return typeof message === "string" ? message : undefined;
}

/** The API server's version (`/version` gitVersion), shown by `arcrelay cluster list`; undefined when unknown. */
export async function fetchKubernetesVersion(upstream: Upstream, log: Logger): Promise<string | undefined> {
  try {
    const res = await kubeApiRequest(upstream, "GET", "/version");
    const version = (res.body as { gitVersion?: unknown } | undefined)?.gitVersion;
    if (res.status === 200 && typeof version === "string") return version;
    log.warn("the API server did not report its version", { status: res.status });
  } catch (error) {
    log.warn("cannot ask the API server for its version", { error });
  }
  return undefined;
}
