// What an HTTP/1.1 listener facing kubectl accepts, and how it refuses what it cannot parse.
import { BadRequest, RequestHeaderFieldsTooLarge, renderStatusHttp } from "../errors/index.ts";

/**
 * The request line plus headers that kube-apiserver accepts (Go's http.DefaultMaxHeaderBytes,
 * 1 MiB): a long label selector or a large token passes here as it passes there.
 */
export const MAX_REQUEST_HEADER_BYTES = 1024 * 1024;

/**
 * Header fields (Host included) that Bun's HTTP/1.1 parser takes in one request: measured on Bun
 * 1.4.5, 198 pass and the 199th is refused as a header overflow, like a head over
 * MAX_REQUEST_HEADER_BYTES. Every relay listener (the public port, the replicas' internal one) has it.
 */
export const MAX_REQUEST_HEADER_FIELDS = 198;

/**
 * Header fields a request may have for the relay to forward it: a replica that forwards to the one
 * holding the tunnel adds its own (request id, shared secret, Host and connection fields), and a
 * request the public port took must not be refused by the internal one (an attacker's request
 * refused there cost every user of that replica its forwarding for 5 s).
 */
export const MAX_FORWARDED_HEADER_FIELDS = MAX_REQUEST_HEADER_FIELDS - 8;

/**
 * Throws RequestHeaderFieldsTooLarge (431) when `rawHeaders` (node:http's flat name/value list)
 * holds more than MAX_FORWARDED_HEADER_FIELDS fields; `where` names the listener in the message.
 */
export function checkForwardedHeaderFields(rawHeaders: readonly string[], where: string): void {
  const fields = rawHeaders.length / 2;
  if (fields > MAX_FORWARDED_HEADER_FIELDS) {
    throw new RequestHeaderFieldsTooLarge(
      `${where}: the request has ${fields} header fields, and the relay forwards at most ${MAX_FORWARDED_HEADER_FIELDS}; send fewer headers`,
    );
  }
}

/**
 * The raw HTTP/1.1 answer for a request that the listener's parser refused (node:http's
 * 'clientError'): 431 with a Status that names both limits for a header overflow (Bun reports more
 * than MAX_REQUEST_HEADER_FIELDS fields and a head over MAX_REQUEST_HEADER_BYTES alike), 400 for
 * anything malformed. The connection is closed after it, as the parser state is lost.
 */
export function renderParseErrorResponse(error: { code?: string }, where: string): string {
  const refusal = error.code === "HPE_HEADER_OVERFLOW"
    ? new RequestHeaderFieldsTooLarge(
      `${where}: the request has more than ${MAX_REQUEST_HEADER_FIELDS} header fields, or its request line and headers exceed ` +
      `${MAX_REQUEST_HEADER_BYTES / 1024 / 1024} MiB, the Kubernetes API server's own limit; send fewer headers, shorten the label or field selector, or split the request`,
    )
    : new BadRequest(`${where}: the request is not valid HTTP/1.1 (${error.code ?? "parse error"})`);
  return renderStatusHttp(refusal);
}
