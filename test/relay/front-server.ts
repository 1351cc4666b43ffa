// The relay's user-facing side over a test tunnel, as lib/relay/k8s-proxy.ts uses lib/relay/tunnel-forward.ts.
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { writeStatusResponse, writeStatusToSocket } from "../../lib/errors/index.ts";
import { MAX_REQUEST_HEADER_BYTES, relayRequestHeaders, type HeaderMap } from "../../lib/http/index.ts";
import { forwardHttpRequest, forwardUpgrade, type ForwardOptions, type ForwardTarget } from "../../lib/relay/tunnel-forward.ts";
import type { TunnelClient } from "../../lib/tunnel/index.ts";
import { closeServer, listen } from "../tunnel/tunnel-pair.ts";

export interface FrontServer {
  port: number;
  /** Every promise forwardHttpRequest/forwardUpgrade returned, settled, with its failure if any. */
  outcomes: Array<{ kind: "request" | "upgrade"; error?: unknown }>;
  /** Errors emitted by upgraded client sockets (the relay destroys the socket on one). */
  socketErrors: Error[];
  close(): Promise<void>;
}

/**
 * The relay's user-facing side, as lib/relay/k8s-proxy.ts uses the tunnel: each request and
 * upgrade is forwarded over `tunnel()` as cluster "prod" with request id "req-1" (or the
 * x-test-request-id header), and a failure that left nothing written becomes a Kubernetes Status.
 */
export async function startFrontServer(tunnel: () => TunnelClient, options: ForwardOptions = {}): Promise<FrontServer> {
  const outcomes: FrontServer["outcomes"] = [];
  const socketErrors: Error[] = [];
  const targetFor = (req: IncomingMessage): ForwardTarget => {
    // As the relay does: the header policy's relay-to-agent hop.
    const headers: HeaderMap = relayRequestHeaders(req.rawHeaders);
    delete headers["x-test-request-id"];
    return {
      tunnel: tunnel(),
      cluster: "prod",
      requestId: String(req.headers["x-test-request-id"] ?? "req-1"),
      path: req.url ?? "/",
      headers,
    };
  };
  const front = http.createServer({ maxHeaderSize: MAX_REQUEST_HEADER_BYTES }, async (req: IncomingMessage, res: ServerResponse) => {
    try {
      await forwardHttpRequest(targetFor(req), req, res, options);
      outcomes.push({ kind: "request" });
    } catch (error) {
      outcomes.push({ kind: "request", error });
      if (!res.headersSent) writeStatusResponse(res, error, String(req.headers["x-test-request-id"] ?? "req-1"));
    }
  });
  front.on("upgrade", async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", (error) => { socketErrors.push(error); socket.destroy(); });
    try {
      await forwardUpgrade(targetFor(req), req, socket, head);
      outcomes.push({ kind: "upgrade" });
    } catch (error) {
      outcomes.push({ kind: "upgrade", error });
      writeStatusToSocket(socket, error, "req-1");
    }
  });
  const port = await listen(front);
  return { port, outcomes, socketErrors, close: () => closeServer(front) };
}

