// The agent's stream handler over a real tunnel (ws on 127.0.0.1 + HTTP/2) to a stand-in API server.
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { SignJWT, type JWK } from "jose";
import WebSocket, { WebSocketServer } from "ws";
import { loadUpstream, type Upstream } from "../../lib/agent/index.ts";
import { createStreamHandler } from "../../lib/agent/stream-handler.ts";
import {
  builtinIssuerTrust, createBuiltinIssuer, createUserTokenVerifier, importPrivateJwk, loadOrCreateIssuerKeys,
  type BuiltinIssuer,
} from "../../lib/auth/index.ts";
import { createLogger } from "../../lib/observe/index.ts";
import {
  cancelStream, createWebSocketDuplex, http2Constants, openTunnelClient, protocol, serveTunnel, type TunnelClient, type TunnelHeaders,
  type TunnelOutgoingHeaders, type TunnelServer,
} from "../../lib/tunnel/index.ts";
import { waitFor, within } from "../support/wait-for.ts";

const CLUSTER = "prod";
const WEBHOOK_WARNING = '299 - "namespace café is deprecated"';
const WEBHOOK_WARNING_WIRE = Buffer.from(WEBHOOK_WARNING, "utf8").toString("latin1");
const ISSUER_URL = "https://relay.test";

interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

/** The stand-in API server: records what it is sent, answers JSON, and accepts SPDY upgrades. */
interface FakeApiServer {
  port: number;
  /** Resolves when the client of the open watch (`/watch`) goes away. */
  watchClosed: Promise<void>;
  seen: SeenRequest[];
  /** TCP connections accepted so far. */
  connections: number;
  /** Request body bytes read so far, and requests whose body was cut ('aborted', never 'end'). */
  readonly bodyBytes: number;
  readonly abortedRequests: number;
  close(): Promise<void>;
}

async function startFakeApiServer(): Promise<FakeApiServer> {
  const seen: SeenRequest[] = [];
  const sockets = new Set<Duplex>();
  let resolveWatchClosed!: () => void;
  const watchClosed = new Promise<void>((resolve) => { resolveWatchClosed = resolve; });
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith("/watch")) {
      // A watch: the first event at once, then the response stays open.
      res.writeHead(200, { "content-type": "application/json" });
      res.write(JSON.stringify({ type: "ADDED", object: { kind: "Pod" } }) + "\n");
      res.once("close", () => resolveWatchClosed());
      return;
    }
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => { body += chunk; fake.bodyBytes += Buffer.byteLength(chunk); });
    req.on("aborted", () => { fake.abortedRequests++; });
    req.on("error", () => {});
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body });
      // A Warning as an admission webhook may send it: UTF-8 bytes, which node:http writes one per character.
      res.writeHead(200, { "content-type": "application/json", "x-upstream": "yes", warning: WEBHOOK_WARNING_WIRE });
      res.end(JSON.stringify({ kind: "PodList", items: [], echo: body }));
    });
  });
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body: "" });
    if (req.url?.includes("refuse")) {
      // As the API server answers an exec the impersonated user may not run.
      const body = JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", reason: "Forbidden", code: 403 });
      socket.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
          `connection: close\r\n\r\n${body}`,
      );
      return;
    }
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n" +
        "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\nhello-from-upstream;",
    );
    socket.on("data", (chunk: Buffer) => socket.write(`echo:${chunk.toString()};`));
  });
  const fake = { connections: 0, bodyBytes: 0, abortedRequests: 0 };
  server.on("connection", () => { fake.connections++; });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    watchClosed,
    seen,
    get connections() { return fake.connections; },
    get bodyBytes() { return fake.bodyBytes; },
    get abortedRequests() { return fake.abortedRequests; },
    async close() {
      for (const s of sockets) s.destroy();
      server.closeAllConnections?.();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function writeKubeconfig(dir: string, name: string, port: number): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `apiVersion: v1
kind: Config
clusters:
- name: standin
  cluster:
    server: http://127.0.0.1:${port}
    insecure-skip-tls-verify: true
users:
- name: agent
  user:
    token: agent-token
contexts:
- name: standin
  context:
    cluster: standin
    user: agent
current-context: standin
`);
  return path;
}

/** The relay's end of a tunnel whose agent end runs `createStreamHandler` against `upstream`. */
interface TunnelPair {
  client: TunnelClient;
  close(): Promise<void>;
}

async function startTunnel(upstream: Upstream, issuer: BuiltinIssuer, logLines: string[], watchEnd?: AbortSignal, maxRequestsInFlight?: number): Promise<TunnelPair> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
  await once(wss, "listening");
  const relaySide = new Promise<{ client: TunnelClient; ws: WebSocket }>((resolve) => {
    wss.once("connection", (ws) => resolve({ client: openTunnelClient(createWebSocketDuplex(ws)), ws }));
  });
  const agentWs = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { perMessageDeflate: false });
  await once(agentWs, "open");
  const verifier = createUserTokenVerifier({ issuers: [builtinIssuerTrust(issuer)] });
  const logger = createLogger({ component: "agent-test", level: "debug", write: (line) => void logLines.push(line) });
  const handler = createStreamHandler({ cluster: CLUSTER, upstream, verifyUserToken: verifier.verifyUserToken, logger, ...(watchEnd ? { watchEnd } : {}), ...(maxRequestsInFlight ? { maxRequestsInFlight } : {}) });
  const server: TunnelServer = serveTunnel(createWebSocketDuplex(agentWs), handler, () => {});
  const { client, ws } = await relaySide;
  return {
    client,
    async close() {
      // A session that does not close cleanly is torn down below anyway.
      await within("the tunnel to close", Promise.all([client.close(), server.close()]), 2000).catch(() => {});
      ws.terminate();
      agentWs.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

interface TunnelResponse {
  headers: TunnelHeaders;
  status: number;
  body: string;
}

/** One ordinary request over the tunnel, as the relay would send it. */
function tunnelRequest(client: TunnelClient, headers: TunnelOutgoingHeaders, body?: string): Promise<TunnelResponse> {
  const stream = client.request(
    { ":method": "GET", ":path": "/api/v1/namespaces/default/pods", [protocol.REQUEST_ID_HEADER]: "req-42", ...headers },
    { endStream: body === undefined },
  );
  if (body !== undefined) stream.end(body);
  return new Promise((resolve, reject) => {
    stream.once("error", reject);
    stream.once("response", (responseHeaders) => {
      let text = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => { text += chunk; });
      stream.once("end", () => resolve({ headers: responseHeaders, status: Number(responseHeaders[":status"]), body: text }));
    });
  });
}

/** All values of header `name` as separate lines on the wire, in order. */
function headerLines(seen: SeenRequest, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < seen.rawHeaders.length; i += 2) {
    if (seen.rawHeaders[i]!.toLowerCase() === name) out.push(seen.rawHeaders[i + 1]!);
  }
  return out;
}

function impersonationHeaderNames(seen: SeenRequest): string[] {
  const names: string[] = [];
  for (let i = 0; i < seen.rawHeaders.length; i += 2) {
    const name = seen.rawHeaders[i]!.toLowerCase();
    if (name.startsWith("impersonate-")) names.push(name);
  }
  return names;
}

let dir: string;
let api: FakeApiServer;
let issuer: BuiltinIssuer;
let issuerKeys: { privateJwk: JWK; publicJwk: JWK };
let upstream: Upstream;
let tunnel: TunnelPair;
let logLines: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-stream-handler-"));
  api = await startFakeApiServer();
  const settings = new Map<string, string>();
  issuerKeys = await loadOrCreateIssuerKeys({ getSetting: async (k) => settings.get(k), setSetting: async (k, v) => void settings.set(k, v), setSettingIfAbsent: async (k, v) => { if (!settings.has(k)) settings.set(k, v); return settings.get(k)!; } });
  issuer = createBuiltinIssuer({ issuer: ISSUER_URL, audience: "cluster-connect", ...issuerKeys });
  upstream = loadUpstream({ kubeconfig: await writeKubeconfig(dir, "kubeconfig", api.port) });
  tunnel = await startTunnel(upstream, issuer, logLines);
});

afterAll(async () => {
  await tunnel?.close();
  upstream?.agent.destroy();
  await api?.close();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  api.seen.length = 0;
  logLines.length = 0;
});

async function userBearer(user = "alice", groups = ["dev", "ops"]): Promise<string> {
  return `Bearer ${await issuer.signUserToken({ user, groups })}`;
}

async function signedBy(claims: Record<string, unknown>): Promise<string> {
  const key = await importPrivateJwk({ ...issuerKeys.privateJwk, alg: "ES256" });
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ groups: ["dev"], ...claims })
    .setProtectedHeader({ alg: "ES256", kid: issuerKeys.publicJwk.kid as string })
    .setIssuer(ISSUER_URL)
    .setAudience("cluster-connect")
    .setSubject("alice")
    .setIssuedAt(now - 7200)
    .setExpirationTime((claims.exp as number | undefined) ?? now + 600)
    .sign(key);
}

describe("an authenticated request", () => {
  test("reaches the API server as the agent, impersonating the token's user and groups", async () => {
    const response = await tunnelRequest(tunnel.client, {
      authorization: await userBearer("alice", ["dev", "ops"]),
      accept: "application/json",
      "user-agent": "kubectl/v1.31.0",
      "impersonate-user": "system:admin",
      "impersonate-group": ["system:masters", "evil"],
      "impersonate-uid": "0",
      "impersonate-extra-scopes": "all",
      "x-remote-user": "root",
      "x-remote-group": "system:masters",
      cookie: "session=1",
    });
    expect(response.status).toBe(200);
    expect(JSON.parse(response.body)).toMatchObject({ kind: "PodList" });
    expect(response.headers["x-upstream"]).toBe("yes");

    expect(api.seen).toHaveLength(1);
    const seen = api.seen[0]!;
    expect(seen.method).toBe("GET");
    expect(seen.url).toBe("/api/v1/namespaces/default/pods");
    expect(headerLines(seen, "authorization")).toEqual(["Bearer agent-token"]);
    expect(headerLines(seen, "impersonate-user")).toEqual(["alice"]);
    // Each group must be its own header line: the API server reads a comma-joined line as ONE group.
    expect(headerLines(seen, "impersonate-group")).toEqual(["dev", "ops"]);
    expect(headerLines(seen, "impersonate-extra-arc-request-id")).toEqual(["req-42"]);
    expect(new Set(impersonationHeaderNames(seen))).toEqual(new Set(["impersonate-user", "impersonate-group", "impersonate-extra-arc-request-id"]));
    expect(seen.headers["x-remote-user"]).toBeUndefined();
    expect(seen.headers["x-remote-group"]).toBeUndefined();
    expect(seen.headers["cookie"]).toBeUndefined();
    expect(seen.headers["x-arc-request-id"]).toBeUndefined();
    expect(seen.headers["accept"]).toBe("application/json");
    expect(seen.headers["user-agent"]).toBe("kubectl/v1.31.0");
  });

  test("a user with one group gets one Impersonate-Group line; none gets no line", async () => {
    await tunnelRequest(tunnel.client, { authorization: await userBearer("bob", ["solo"]) });
    await tunnelRequest(tunnel.client, { authorization: await userBearer("carol", []), "impersonate-group": "system:masters" });
    expect(headerLines(api.seen[0]!, "impersonate-group")).toEqual(["solo"]);
    expect(headerLines(api.seen[1]!, "impersonate-user")).toEqual(["carol"]);
    expect(headerLines(api.seen[1]!, "impersonate-group")).toEqual([]);
  });

  test("a request body streams through to the API server", async () => {
    const body = JSON.stringify({ kind: "ConfigMap", data: { big: "x".repeat(200_000) } });
    const response = await tunnelRequest(
      tunnel.client,
      { ":method": "POST", ":path": "/api/v1/namespaces/default/configmaps", authorization: await userBearer(), "content-type": "application/json" },
      body,
    );
    expect(response.status).toBe(200);
    expect(api.seen[0]!.method).toBe("POST");
    expect(api.seen[0]!.body).toBe(body);
  });

  test("a caller who cancels an upload halfway: the API server's request is cut, never ended as complete (over HTTP/1.1)", async () => {
    // No Content-Length: the body goes chunked, and only a reset tells the API server it was cut.
    const [bytesBefore, abortedBefore] = [api.bodyBytes, api.abortedRequests];
    const stream = tunnel.client.request({
      ":method": "POST", ":path": "/api/v1/namespaces/default/configmaps", authorization: await userBearer(), "content-type": "application/json",
    });
    stream.on("error", () => {});
    stream.write(Buffer.alloc(16 * 1024, 120));
    await waitFor("the API server to read the first part", () => api.bodyBytes > bytesBefore);
    cancelStream(stream); // as the relay does when its client goes away mid-body
    await waitFor("the API server's request to be cut", () => api.abortedRequests === abortedBefore + 1);
    expect(api.seen.map((r) => r.method)).toEqual([]);
  });

  test("the query string reaches the API server unchanged", async () => {
    await tunnelRequest(tunnel.client, { ":path": "/api/v1/pods?labelSelector=app%3Dweb&limit=5", authorization: await userBearer() });
    expect(api.seen[0]!.url).toBe("/api/v1/pods?labelSelector=app%3Dweb&limit=5");
  });

  test("sequential requests reuse the agent's keep-alive connection to the API server", async () => {
    const bearer = await userBearer();
    await tunnelRequest(tunnel.client, { authorization: bearer });
    const before = api.connections;
    for (let i = 0; i < 5; i++) expect((await tunnelRequest(tunnel.client, { authorization: bearer })).status).toBe(200);
    expect(api.connections - before).toBeLessThanOrEqual(1);
  });

  test("concurrent requests on one tunnel all arrive, each with its own identity", async () => {
    const users = Array.from({ length: 20 }, (_, i) => `user-${i}`);
    const responses = await Promise.all(users.map(async (user) =>
      tunnelRequest(tunnel.client, { ":path": `/api/v1/namespaces/${user}/pods`, authorization: await userBearer(user, [`team-${user}`]) })));
    expect(responses.map((r) => r.status)).toEqual(users.map(() => 200));
    for (const user of users) {
      const seen = api.seen.find((s) => s.url === `/api/v1/namespaces/${user}/pods`)!;
      expect(headerLines(seen, "impersonate-user")).toEqual([user]);
      expect(headerLines(seen, "impersonate-group")).toEqual([`team-${user}`]);
    }
  });

  // BUG (lib/agent/impersonation.ts buildImpersonatedHeaders, used by stream-handler.ts): the
  // identity goes into node:http header values as JS strings, which node:http writes as Latin-1.
  // "josé" reaches the API server as the byte 0xE9 (not UTF-8, so a RoleBinding for "josé" never
  // matches), and a group such as "開発" makes http.request throw ERR_INVALID_CHAR, so a verified
  // user gets a 500 "internal error". kubectl --as/--as-group and client-go send UTF-8 bytes.
  test("a Latin-1 user name (josé) reaches the API server as UTF-8 bytes, as kubectl --as sends it", async () => {
    const response = await tunnelRequest(tunnel.client, { authorization: await userBearer("josé", ["équipe"]) });
    expect(response.status).toBe(200);
    const seen = api.seen[0]!;
    // The server decodes header bytes as Latin-1 (as Node does); re-encoding gives the bytes sent.
    const asUtf8 = (values: string[]) => values.map((v) => Buffer.from(v, "latin1").toString("utf8"));
    expect(asUtf8(headerLines(seen, "impersonate-user"))).toEqual(["josé"]);
    expect(asUtf8(headerLines(seen, "impersonate-group"))).toEqual(["équipe"]);
  });

  test("a response header's UTF-8 bytes (a webhook's Warning with café) reach the relay unchanged over HTTP/1.1", async () => {
    const response = await tunnelRequest(tunnel.client, { authorization: await userBearer() });
    expect(response.status).toBe(200);
    // The tunnel's header strings carry one byte per character, as node:http's do on every hop.
    expect(Buffer.from(String(response.headers.warning), "latin1").toString("utf8")).toBe(WEBHOOK_WARNING);
  });

  test("a group name outside Latin-1 (開発) is forwarded, not answered with a 500", async () => {
    const response = await tunnelRequest(tunnel.client, { authorization: await userBearer("alice", ["開発", "ops"]) });
    expect(response.status).toBe(200);
    const seen = api.seen[0]!;
    const asUtf8 = (values: string[]) => values.map((v) => Buffer.from(v, "latin1").toString("utf8"));
    expect(asUtf8(headerLines(seen, "impersonate-group"))).toEqual(["開発", "ops"]);
  });

  test("a watch streams its first event at once, and cancelling it on the relay closes the upstream request", async () => {
    const stream = tunnel.client.request(
      { ":method": "GET", ":path": "/watch?watch=1", [protocol.REQUEST_ID_HEADER]: "req-w", authorization: await userBearer() },
      { endStream: true },
    );
    stream.on("error", () => {});
    const firstEvent = await new Promise<string>((resolve, reject) => {
      stream.once("error", reject);
      stream.setEncoding("utf8");
      stream.once("data", (chunk: string) => resolve(chunk));
    });
    expect(JSON.parse(firstEvent)).toMatchObject({ type: "ADDED" });
    stream.close(http2Constants.NGHTTP2_CANCEL);
    await within("the API server to see the watch request close", api.watchClosed, 3000);
  });

  test("when the agent stops, an open watch ends cleanly after its last whole event, and the API server's watch is closed", async () => {
    const stopping = new AbortController();
    const own = await startTunnel(upstream, issuer, logLines, stopping.signal);
    try {
      const stream = own.client.request(
        { ":method": "GET", ":path": "/watch?watch=true", [protocol.REQUEST_ID_HEADER]: "req-w2", authorization: await userBearer() },
        { endStream: true },
      );
      let body = "";
      stream.setEncoding("utf8");
      stream.on("data", (c: string) => { body += c; });
      const ended = new Promise<void>((resolve, reject) => {
        stream.once("error", reject);
        stream.once("end", () => resolve());
      });
      await waitFor("the first event", () => body.length > 0);
      stopping.abort();
      await within("the watch to end", ended, 3000);
      expect(body).toBe(JSON.stringify({ type: "ADDED", object: { kind: "Pod" } }) + "\n");
      expect(stream.rstCode ?? http2Constants.NGHTTP2_NO_ERROR).toBe(http2Constants.NGHTTP2_NO_ERROR);
    } finally {
      await own.close();
    }
  });

  test("300 watches held open on one tunnel: every one streams, and a GET beside them still answers", { timeout: 40_000 }, async () => {
    // Each open watch holds one connection to the API server; a pool capped at 256 (as the agent's
    // was) queued the 257th request, watch or GET, until some watch ended: for good.
    const authorization = await userBearer();
    const streams = Array.from({ length: 300 }, (_, i) => tunnel.client.request(
      { ":method": "GET", ":path": `/watch?watch=1&n=${i}`, [protocol.REQUEST_ID_HEADER]: `req-many-${i}`, authorization },
      { endStream: true },
    ));
    try {
      const firstEvents = streams.map((stream) => new Promise<void>((resolve, reject) => {
        stream.once("error", reject);
        stream.once("data", () => resolve());
      }));
      await within("every watch's first event", Promise.all(firstEvents), 20_000);
      const answer = await within("a GET beside 300 open watches", tunnelRequest(tunnel.client, { authorization }), 10_000);
      expect(answer.status).toBe(200);
    } finally {
      for (const stream of streams) {
        stream.on("error", () => {});
        stream.close(http2Constants.NGHTTP2_CANCEL);
      }
    }
  });

  test("beyond maxRequestsInFlight a request is answered 429 with Retry-After and what to do, at once; once a watch ends the next is served", async () => {
    const own = await startTunnel(upstream, issuer, logLines, undefined, 2);
    const authorization = await userBearer();
    const watches = [0, 1].map((i) => own.client.request(
      { ":method": "GET", ":path": `/watch?watch=1&busy=${i}`, [protocol.REQUEST_ID_HEADER]: `req-busy-${i}`, authorization },
      { endStream: true },
    ));
    try {
      await within("both watches' first events", Promise.all(watches.map((w) => new Promise<void>((resolve, reject) => {
        w.once("error", reject);
        w.once("data", () => resolve());
      }))), 5000);
      const refused = await within("the third request's answer", tunnelRequest(own.client, { authorization, [protocol.REQUEST_ID_HEADER]: "req-third" }), 5000);
      expect(refused.status).toBe(429);
      expect(refused.headers["retry-after"]).toBe("1");
      expect(JSON.parse(refused.body)).toMatchObject({
        kind: "Status", code: 429, reason: "TooManyRequests",
        message: expect.stringContaining(`the agent of cluster "${CLUSTER}" is serving 2 requests, the most it takes (request id req-third)`),
      });
      expect(JSON.parse(refused.body).message).toContain("--max-requests-in-flight");
      const closed = new Promise<void>((resolve) => watches[0]!.once("close", () => resolve()));
      watches[0]!.close(http2Constants.NGHTTP2_CANCEL);
      await closed;
      await waitFor("the agent to let go of the ended watch", async () =>
        (await tunnelRequest(own.client, { authorization, [protocol.REQUEST_ID_HEADER]: "req-fourth" })).status === 200);
    } finally {
      for (const w of watches) {
        w.on("error", () => {});
        w.close(http2Constants.NGHTTP2_CANCEL);
      }
      await own.close();
    }
  });

  test("neither the user's token nor the agent's credential is logged", async () => {
    const authorization = await userBearer();
    await tunnelRequest(tunnel.client, { authorization });
    const log = logLines.join("\n");
    expect(log).toContain("forwarding");
    expect(log).not.toContain(authorization.slice("Bearer ".length));
    expect(log).not.toContain("agent-token");
  });
});

describe("a refused caller", () => {
  test.each<[string, () => Promise<Record<string, string>>]>([
    ["no Authorization", async () => ({})],
    ["a Basic credential", async () => ({ authorization: "Basic YWxpY2U6cHc=" })],
    ["a garbage token", async () => ({ authorization: "Bearer not.a.jwt" })],
    ["an expired token", async () => ({ authorization: `Bearer ${await signedBy({ exp: Math.floor(Date.now() / 1000) - 3600 })}` })],
    ["a token with a forged signature", async () => {
      const token = await signedBy({});
      const [h, p] = token.split(".");
      return { authorization: `Bearer ${h}.${p}.${"A".repeat(86)}` };
    }],
  ])("%s: 401 Status from the agent, the API server never called", async (_what, makeHeaders) => {
    const response = await tunnelRequest(tunnel.client, { ...(await makeHeaders()), "impersonate-user": "system:admin" });
    expect(response.status).toBe(401);
    expect(response.headers["content-type"]).toContain("application/json");
    expect(JSON.parse(response.body)).toMatchObject({ kind: "Status", apiVersion: "v1", status: "Failure", code: 401, reason: "Unauthorized" });
    expect(api.seen).toHaveLength(0);
  });
});

describe("an upgrade (exec, attach, port-forward)", () => {
  test("answers 200 with x-arc-upgrade-status 101, then bytes flow both ways", async () => {
    const stream = tunnel.client.request({
      ":method": "POST",
      ":path": "/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true",
      [protocol.REQUEST_ID_HEADER]: "req-up",
      [protocol.UPGRADE_HEADER]: "SPDY/3.1",
      "x-stream-protocol-version": "v4.channel.k8s.io",
      authorization: await userBearer("alice", ["dev", "ops"]),
      "impersonate-user": "system:admin",
    }, { endStream: false });
    const headers = await new Promise<TunnelHeaders>((resolve, reject) => {
      stream.once("response", resolve);
      stream.once("error", reject);
    });
    expect(Number(headers[":status"])).toBe(200);
    expect(headers[protocol.UPGRADE_STATUS_HEADER]).toBe("101");
    expect(headers["x-stream-protocol-version"]).toBe("v4.channel.k8s.io");

    let received = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => { received += chunk; });
    const arrived = (text: string) => waitFor(`"${text}" from the API server`, () => received.includes(text), 2000);
    await arrived("hello-from-upstream;");
    stream.write("ls -l");
    await arrived("echo:ls -l;");
    stream.write("exit");
    await arrived("echo:exit;");
    expect(received).toBe("hello-from-upstream;echo:ls -l;echo:exit;");

    const seen = api.seen[0]!;
    expect(seen.url).toBe("/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true");
    expect(seen.headers["upgrade"]).toBe("SPDY/3.1");
    expect(String(seen.headers["connection"]).toLowerCase()).toContain("upgrade");
    expect(headerLines(seen, "authorization")).toEqual(["Bearer agent-token"]);
    expect(headerLines(seen, "impersonate-user")).toEqual(["alice"]);
    expect(headerLines(seen, "impersonate-group")).toEqual(["dev", "ops"]);
    stream.close();
  });

  test("the API server refuses the upgrade: its status rides in x-arc-upgrade-status, its body follows", async () => {
    const response = await tunnelRequest(tunnel.client, {
      ":method": "POST",
      ":path": "/api/v1/namespaces/kube-system/pods/etcd/exec?command=sh&refuse=1",
      [protocol.UPGRADE_HEADER]: "SPDY/3.1",
      authorization: await userBearer(),
    });
    expect(response.status).toBe(403);
    expect(response.headers[protocol.UPGRADE_STATUS_HEADER]).toBe("403");
    expect(JSON.parse(response.body)).toMatchObject({ kind: "Status", code: 403, reason: "Forbidden" });
    expect(api.seen).toHaveLength(1);
  });

  test("an upgrade with an invalid token: 401, no upgrade attempted", async () => {
    const response = await tunnelRequest(tunnel.client, { [protocol.UPGRADE_HEADER]: "SPDY/3.1", authorization: "Bearer nope" });
    expect(response.status).toBe(401);
    expect(api.seen).toHaveLength(0);
  });
});

describe("an unreachable API server", () => {
  test("503 ServiceUnavailable Status naming the cluster, the request id and what to check", async () => {
    const closed = http.createServer();
    closed.listen(0, "127.0.0.1");
    await once(closed, "listening");
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));

    const deadUpstream = loadUpstream({ kubeconfig: await writeKubeconfig(dir, "dead-kubeconfig", port) });
    const lines: string[] = [];
    const deadTunnel = await startTunnel(deadUpstream, issuer, lines);
    try {
      const response = await tunnelRequest(deadTunnel.client, { authorization: await userBearer() });
      expect(response.status).toBe(503);
      const status = JSON.parse(response.body) as { kind: string; code: number; message: string };
      expect(status).toMatchObject({ kind: "Status", code: 503, reason: "ServiceUnavailable" });
      expect(status.message).toContain("check that the API server is up");
      expect(status.message).toContain(`cluster "${CLUSTER}"`);
      expect(status.message).toContain("req-42");
      expect(lines.join("\n")).toContain("request failed");
    } finally {
      await deadTunnel.close();
      deadUpstream.agent.destroy();
    }
  });
});

describe("a pooled connection the API server has closed", () => {
  /** An API server on raw TCP that answers each connection's first request, keeps it alive, then closes it at the second. */
  async function startClosingApiServer(): Promise<{ port: number; connections: () => number; requests: string[]; close(): Promise<void> }> {
    let connections = 0;
    const requests: string[] = [];
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      connections += 1;
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
      let seen = 0;
      socket.on("data", (data) => {
        requests.push(data.toString("latin1").split("\r\n")[0]!);
        seen += 1;
        // As an API server whose idle timeout just ran out: the request meets a closed connection.
        if (seen === 2) return void socket.destroy();
        socket.write("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n{}");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
      port: (server.address() as AddressInfo).port,
      connections: () => connections,
      requests,
      close: () => new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
    };
  }

  /** Runs `use` with a tunnel to an agent whose API server is on `port`, then tears both down. */
  async function withAgentFor(port: number, use: (client: TunnelClient) => Promise<void>): Promise<void> {
    const upstreamHere = loadUpstream({ kubeconfig: await writeKubeconfig(dir, `kubeconfig-${port}`, port) });
    const tunnelHere = await startTunnel(upstreamHere, issuer, logLines);
    try {
      await use(tunnelHere.client);
    } finally {
      await tunnelHere.close();
      upstreamHere.agent.destroy();
    }
  }

  test("a GET that met it is sent again on a new connection, as Go's client does", async () => {
    const closing = await startClosingApiServer();
    try {
      await withAgentFor(closing.port, async (client) => {
        expect((await tunnelRequest(client, { authorization: await userBearer() })).status).toBe(200);
        const again = await tunnelRequest(client, { authorization: await userBearer() });
        expect(again.status).toBe(200);
        expect(closing.connections()).toBe(2);
        expect(closing.requests.map((r) => r.split(" ")[0])).toEqual(["GET", "GET", "GET"]);
      });
    } finally {
      await closing.close();
    }
  });

  test("a GET is sent again past several pooled connections the API server closed together, onto a new one", async () => {
    const closing = await startClosingApiServer();
    try {
      await withAgentFor(closing.port, async (client) => {
        // Three connections in the pool, each closed by the API server at its next request.
        const bearer = await userBearer();
        const warm = await Promise.all([1, 2, 3].map(() => tunnelRequest(client, { authorization: bearer })));
        expect(warm.map((r) => r.status)).toEqual([200, 200, 200]);
        expect(closing.connections()).toBe(3);
        expect((await tunnelRequest(client, { authorization: bearer })).status).toBe(200);
        expect(closing.connections()).toBe(4);
      });
    } finally {
      await closing.close();
    }
  });

  test("an answer the API server cuts after its head is cut for the caller too, never ended as if complete", async () => {
    const server = net.createServer((socket) => {
      socket.on("error", () => {});
      socket.once("data", () => {
        socket.write("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"a\":");
        socket.resetAndDestroy();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      await withAgentFor((server.address() as AddressInfo).port, async (client) => {
        const stream = client.request({ ":method": "GET", ":path": "/api/v1/pods", [protocol.REQUEST_ID_HEADER]: "req-cut", authorization: await userBearer() }, { endStream: true });
        stream.on("error", () => {});
        stream.resume();
        await within("the stream to close", new Promise<void>((resolve) => stream.once("close", () => resolve())));
        expect(stream.rstCode).not.toBe(http2Constants.NGHTTP2_NO_ERROR);
      });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test("a POST that met it is not sent again (it may have run): a 503 naming the cluster", async () => {
    const closing = await startClosingApiServer();
    try {
      await withAgentFor(closing.port, async (client) => {
        expect((await tunnelRequest(client, { authorization: await userBearer() })).status).toBe(200);
        const post = await tunnelRequest(client, { ":method": "POST", authorization: await userBearer(), "content-type": "application/json" }, "{}");
        expect(post.status).toBe(503);
        expect(JSON.parse(post.body).message).toContain(`cluster "${CLUSTER}"`);
        expect(closing.requests.map((r) => r.split(" ")[0])).toEqual(["GET", "POST"]);
      });
    } finally {
      await closing.close();
    }
  });
});
