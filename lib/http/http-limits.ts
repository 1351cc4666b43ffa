// What an HTTP/1.1 listener facing kubectl accepts, and how it refuses what it cannot parse.
import { BadRequest, RequestHeaderFieldsTooLarge, renderStatusHttp } from "../errors/index.ts";

/**
 * The request line plus headers that kube-apiserver accepts (Go's http.DefaultMaxHeaderBytes,
 * 1 MiB): a long label selector or a large token passes here as it passes there.
 */
export const MAX_REQUEST_HEADER_BYTES = 1024 * 1024;

/**
 * The raw HTTP/1.1 answer for a request that the listener's parser refused (node:http's
 * 'clientError'): 431 with a Status that names the limit for a head over MAX_REQUEST_HEADER_BYTES,
 * 400 for anything malformed. The connection is closed after it, as the parser state is lost.
 */
export function renderParseErrorResponse(error: { code?: string }, where: string): string {
  const refusal = error.code === "HPE_HEADER_OVERFLOW"
    ? new RequestHeaderFieldsTooLarge(
      `${where}: the request line and headers exceed ${MAX_REQUEST_HEADER_BYTES / 1024 / 1024} MiB, the Kubernetes API server's own limit; shorten the label or field selector, or split the request`,
    )
    : new BadRequest(`${where}: the request is not valid HTTP/1.1 (${error.code ?? "parse error"})`);
  return renderStatusHttp(refusal);
}
