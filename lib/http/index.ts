export { toHeaderMap, allValues, bearerTokenOf, firstHeader, fromWireValue, toWireValue } from "./header-map.ts";
export type { HeaderMap, HeaderSource } from "./header-map.ts";
export {
  HOP_BY_HOP_HEADERS, REQUEST_POLICY, RESPONSE_POLICY, classifyHeader, arcproxyRequestHeaders, relayRequestHeaders, replicaRequestHeaders,
  apiServerRequestHeaders, responseHeaders,
} from "./header-policy.ts";
export type { HeaderClass, RequestHop, ResponseHop, ApiServerIdentity } from "./header-policy.ts";
export {
  parseImpersonationRequest, encodeImpersonationRequest, decodeImpersonationRequest, MAX_IMPERSONATED_GROUPS,
  MAX_IMPERSONATED_NAME_LENGTH,
} from "./impersonation-request.ts";
export type { ImpersonationRequest } from "./impersonation-request.ts";
export { renderResponseHead } from "./response-head.ts";
export { MAX_REQUEST_HEADER_BYTES, MAX_REQUEST_HEADER_FIELDS, MAX_FORWARDED_HEADER_FIELDS, checkForwardedHeaderFields, renderParseErrorResponse } from "./http-limits.ts";
export { isWatchRequest, isJsonContentType, endAtEventBoundary } from "./watch.ts";
export { newRequestId, requestIdFrom, requestIdOf } from "./request-id.ts";
export { createSelfSignedCertificate } from "./self-signed-cert.ts";
export type { SelfSignedCertificate } from "./self-signed-cert.ts";
export { onResponseOver, responseOver } from "./response-over.ts";
export { hasRequestBody, withoutContentLength } from "./request-body.ts";
