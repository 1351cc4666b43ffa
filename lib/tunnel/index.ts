export { createWebSocketDuplex } from "./ws-duplex.ts";
export type { WebSocketDuplexOptions } from "./ws-duplex.ts";
export { acceptWebSocket, checkWebSocketHandshake, WebSocketProtocolError, WebSocketStream } from "./websocket-stream.ts";
export type { LivenessOptions } from "./liveness.ts";
export { cancelStream, endedByPeer, openTunnelClient, serveTunnel, http2Constants, widenConnectionWindow } from "./http2-session.ts";
export type {
  TunnelClient, TunnelClientEvents, TunnelServer, TunnelRequestStream, TunnelServerStream, TunnelHeaders, TunnelOutgoingHeaders,
} from "./http2-session.ts";
export { splice } from "./splice.ts";
export { joinLongHeaders, splitLongHeaders, LongHeaderError, MAX_LONG_HEADER_PIECES } from "./long-headers.ts";
export * as protocol from "./protocol.ts";
export * as timeouts from "./timeouts.ts";
