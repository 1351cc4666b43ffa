// A stand-in for arcrelay: the cluster-info and k8s endpoints, a streaming route and an echoing upgrade.
import http from "node:http";
import https from "node:https";
import type { Duplex } from "node:stream";

export const USER_TOKEN = "user-token-abc";
export const CLUSTER = "demo";

export interface FakeRelay {
  url: string;
  port: number;
  /** Requests that reached the k8s endpoint, newest last. */
  seen: { method: string; url: string; rawHeaders: string[] }[];
  /** Streams whose client went away before the last event. */
  abandonedStreams: () => number;
  close(): Promise<void>;
}

export const VERSION_BODY = { major: "1", minor: "33", gitVersion: "v1.33.0-fake", platform: "linux/amd64" };

function status(code: number, reason: string, message: string): string {
  return JSON.stringify({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code });
}

/** Plain http:// by default; pass a cert and key to serve https:// like a real relay. */
export async function startFakeRelay(opts: { tls?: { cert: string; key: string } } = {}): Promise<FakeRelay> {
  const seen: FakeRelay["seen"] = [];
  let abandoned = 0;
  const prefix = `/v1/clusters/${CLUSTER}/k8s`;
  const handle: http.RequestListener = (req, res) => {
    const url = req.url ?? "";
    const send = (code: number, body: string, headers: Record<string, string> = {}) => {
      res.writeHead(code, { "content-type": "application/json", ...headers });
      res.end(body);
    };
    if (req.headers.authorization !== `Bearer ${USER_TOKEN}`) return send(401, status(401, "Unauthorized", "token expired or invalid"));
    // The clusters alice may reach (GET /v1/clusters, as lib/relay/app.ts answers it).
    if (url === "/v1/clusters") {
      return send(200, JSON.stringify([
        { name: CLUSTER, connected: true, kubernetesVersion: "v1.33.0" },
        { name: `${CLUSTER}-eu`, connected: false, lastSeen: "2026-11-30T10:00:00.000Z" },
      ]));
    }
    if (url === `/v1/clusters/${CLUSTER}`) return send(200, JSON.stringify({ name: CLUSTER, connected: true, kubernetesVersion: "v1.33.0" }));
    if (url === "/v1/clusters/secret") return send(403, status(403, "Forbidden", "user alice may not use cluster secret"));
    if (!url.startsWith(prefix)) return send(404, status(404, "NotFound", `cluster ${url.split("/")[3]} is not registered`));
    const kubePath = url.slice(prefix.length);
    seen.push({ method: req.method ?? "", url: kubePath, rawHeaders: req.rawHeaders });
    if (kubePath === "/version") return send(200, JSON.stringify(VERSION_BODY));
    if (kubePath.startsWith("/echo")) {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => send(200, JSON.stringify({ method: req.method, url: kubePath, headers: req.headers, body: Buffer.concat(chunks).toString() }), { "x-relay": "yes", "keep-alive": "timeout=5" }));
      return;
    }
    if (kubePath.startsWith("/forbidden")) return send(403, status(403, "Forbidden", 'pods is forbidden: User "alice" cannot list resource "pods"'), { "x-kube-audit": "1" });
    if (kubePath.startsWith("/stream")) {
      // A watch: events over time, the first long before the end.
      res.writeHead(200, { "content-type": "application/json" });
      let n = 0;
      const timer = setInterval(() => {
        res.write(JSON.stringify({ type: "ADDED", n }) + "\n");
        if (++n === 5) {
          clearInterval(timer);
          res.end();
        }
      }, 300);
      res.on("close", () => {
        clearInterval(timer);
        if (n < 5) abandoned++;
      });
      return;
    }
    send(404, status(404, "NotFound", "the server could not find the requested resource"));
  };
  const server = opts.tls ? https.createServer(opts.tls, handle) : http.createServer(handle);

  const upgraded = new Set<Duplex>();
  server.on("upgrade", (req, socket: Duplex, head: Buffer) => {
    upgraded.add(socket);
    socket.on("close", () => upgraded.delete(socket));
    const url = req.url ?? "";
    seen.push({ method: req.method ?? "", url: url.slice(prefix.length), rawHeaders: req.rawHeaders });
    if (req.headers.authorization !== `Bearer ${USER_TOKEN}` || !url.startsWith(`${prefix}/exec`)) {
      const body = status(403, "Forbidden", "exec is forbidden here");
      socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      return;
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${req.headers.upgrade}\r\nX-Stream-Protocol-Version: ${req.headers["x-stream-protocol-version"] ?? ""}\r\n\r\n`);
    if (head.length) socket.write(head);
    // Echo, upper-cased, so the test knows the bytes went through the relay.
    socket.on("data", (chunk: Buffer) => socket.write(chunk.toString().toUpperCase()));
    socket.on("end", () => socket.end());
    socket.on("error", () => {});
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `${opts.tls ? "https" : "http"}://127.0.0.1:${port}`,
    port,
    seen,
    abandonedStreams: () => abandoned,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        for (const socket of upgraded) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
