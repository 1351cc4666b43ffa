// Renders any error as the Kubernetes Status object kubectl knows how to print.
import { ArcError } from "./errors.ts";

export interface KubeStatus {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure";
  message: string;
  reason: string;
  code: number;
}

/**
 * Unknown errors become a generic 500 that names the request id; their detail belongs in the
 * log, never in the response.
 */
export function toStatus(error: unknown, requestId?: string): KubeStatus {
  if (error instanceof ArcError) {
    return statusOf(error.status, error.reason, error.message);
  }
  const ref = requestId ? ` (request id ${requestId})` : "";
  return statusOf(500, "InternalError", `internal error in cluster-connect${ref}; see the relay or agent log`);
}

export function statusOf(code: number, reason: string, message: string): KubeStatus {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code };
}

/** Body and headers ready to write to an HTTP response. */
export function statusResponse(error: unknown, requestId?: string): { code: number; body: string; headers: Record<string, string> } {
  const status = toStatus(error, requestId);
  return { code: status.code, body: JSON.stringify(status), headers: { "content-type": "application/json" } };
}
