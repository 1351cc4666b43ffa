export { parseRelayUrl, clusterApiPath, relayHref, relayWebSocketUrl } from "./relay-url.ts";
export type { RelayUrl } from "./relay-url.ts";
export { readCaFile, relayTlsOptions } from "./relay-tls.ts";
export type { RelayTls } from "./relay-tls.ts";
export { createRelayConnection } from "./relay-connection.ts";
export type { RelayConnection } from "./relay-connection.ts";
export {
  openRelayRequest, callRelay, RelayUnreachable, RELAY_RESPONSE_HEAD_TIMEOUT_MS, RELAY_CALL_TIMEOUT_MS, MAX_RELAY_ANSWER_BYTES,
} from "./relay-call.ts";
export type { RelayRequest, RelayAnswer, RelayCall, RelayCallResult } from "./relay-call.ts";
export { refusalError } from "./relay-refusal.ts";
export type { RefusalAdvice, RefusalContext } from "./relay-refusal.ts";
export { proxyFor, proxyAgentFor, describeProxy } from "./egress.ts";
export {
  DOWNLOADS_JWS_TYPE, DOWNLOADS_PATHS, DownloadVerificationError, serializeDownloadsDocument, verifyDownloadsDocument, pickDownload, hostDownloadPlatform, publicKeySha256,
} from "./downloads-document.ts";
export type { DownloadFile, DownloadsDocument } from "./downloads-document.ts";
