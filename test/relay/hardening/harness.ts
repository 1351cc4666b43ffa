// An in-process relay, agent and header-recording upstream for the attack tests, plus raw-socket helpers.
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFileKeyStore, loadUpstream, runAgent, type AgentMetrics } from "../../../lib/agent/index.ts";
import { createRelayConnection } from "../../../lib/client/index.ts";
import type { BuiltinIssuer } from "../../../lib/auth/index.ts";
import { silentLogger, type Logger } from "../../../lib/observe/index.ts";
import { addCluster, loadStoredIssuer, startRelay, type RelayOptions, type RunningRelay } from "../../../lib/relay/index.ts";
import { writeKubeconfig } from "../../cluster/kubeconfig-file.ts";
import { within } from "../../support/wait-for.ts";

/** One request as the API server stand-in received it. */
export interface RecordedRequest {
  method: string;
  url: string;
  /** As node parsed them (lower-case names, duplicates joined). */
  headers: http.IncomingHttpHeaders;
  /** Name/value pairs exactly as they came on the wire. */
  rawHeaders: string[];
  body: string;
}

/** authorization/v1 SubjectAccessReview spec, as far as impersonation checks use it. */
export interface SubjectAccessReviewSpec {
  user: string;
  groups: string[];
  resourceAttributes: { verb: string; group: string; resource: string; name: string; namespace?: string };
}

export interface Harness {
  relay: RunningRelay;
  /** The relay's own listener (clients connect here; agents go through the wire tap). */
  base: string;
  port: number;
  issuer: BuiltinIssuer;
  /** cluster-user on `alpha` (agent connected, upstream records). */
  alice: string;
  /** cluster-user on `beta` only (registered, no agent). */
  bob: string;
  /** The agent's own ServiceAccount token towards the upstream. */
  agentSaToken: string;
  enrollToken: string;
  requests: RecordedRequest[];
  /** SubjectAccessReview specs the agent asked the stand-in (kubectl --as checks), in order. */
  reviews: SubjectAccessReviewSpec[];
  /** The stand-in's answer to each review; default: nothing may be impersonated. */
  allowImpersonation: (spec: SubjectAccessReviewSpec) => boolean;
  /** Everything the agent sent to the relay (its enrollment secret and connection JWTs are in here). */
  agentWire(): string;
  stop(): Promise<void>;
}

export const CLUSTER = "alpha";
export const OTHER_CLUSTER = "beta";

export async function startHarness(opts: {
  logger?: Logger;
  agentLogger?: Logger;
  relayOptions?: Partial<RelayOptions>;
  agentMetrics?: AgentMetrics;
} = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), "arc-hardening-"));
  const requests: RecordedRequest[] = [];
  const reviews: SubjectAccessReviewSpec[] = [];
  const harness = { allowImpersonation: (_spec: SubjectAccessReviewSpec) => false };
  const upstream = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      // The agent's own question (kubectl --as), answered like the API server's authorizer.
      if (req.method === "POST" && req.url === "/apis/authorization.k8s.io/v1/subjectaccessreviews") {
        const review = JSON.parse(Buffer.concat(chunks).toString()) as { spec: SubjectAccessReviewSpec };
        reviews.push(review.spec);
        res.writeHead(201, { "content-type": "application/json" });
        res.end(JSON.stringify({ ...review, status: { allowed: harness.allowImpersonation(review.spec) } }));
        return;
      }
      requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString() });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ kind: "Status", status: "Success", path: req.url }));
    });
  });
  // Upgrades (exec): record, switch protocols, then echo, as the API server's stream would.
  upstream.on("upgrade", (req: http.IncomingMessage, socket: net.Socket) => {
    requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body: "" });
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${req.headers.upgrade}\r\n\r\n`);
    socket.pipe(socket);
    socket.on("error", () => socket.destroy());
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  const upstreamPort = (upstream.address() as net.AddressInfo).port;

  // The agent dials the relay through this tap, so the test can see every credential it sent.
  let relayPort = 0;
  const wire: Buffer[] = [];
  const tapSockets = new Set<net.Socket>();
  const tap = net.createServer((client) => {
    const server = net.connect(relayPort, "127.0.0.1");
    tapSockets.add(client).add(server);
    client.on("data", (d: Buffer) => wire.push(Buffer.from(d)));
    client.pipe(server).pipe(client);
    const end = () => { client.destroy(); server.destroy(); };
    client.on("error", end).on("close", end);
    server.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve) => tap.listen(0, "127.0.0.1", resolve));
  const publicUrl = `http://127.0.0.1:${(tap.address() as net.AddressInfo).port}`;

  const agentSaToken = "agent-sa-token-" + crypto.randomUUID();
  const kubeconfig = join(dir, "kubeconfig");
  await writeKubeconfig(kubeconfig, { server: `http://127.0.0.1:${upstreamPort}`, userName: "agent", user: { token: agentSaToken } });

  const relay = await startRelay({
    // An offline cluster answers at once here; the wait for a reconnecting agent has tests of its own.
    host: "127.0.0.1", port: 0, dataDir: join(dir, "relay"), publicUrl, logger: opts.logger ?? silentLogger, agentWaitMs: 0, ...opts.relayOptions,
  });
  relayPort = relay.port;
  const { token: enrollToken } = await addCluster(relay.store, CLUSTER);
  await addCluster(relay.store, OTHER_CLUSTER);
  await relay.store.addGrant({ principal: "user:alice", cluster: CLUSTER, role: "cluster-user" });
  await relay.store.addGrant({ principal: "user:bob", cluster: OTHER_CLUSTER, role: "cluster-user" });
  const issuer = await loadStoredIssuer(relay.store);

  let agentError: unknown;
  const controller = new AbortController();
  let connected!: () => void;
  const up = new Promise<void>((resolve) => { connected = resolve; });
  const agentDone = runAgent({
    relay: createRelayConnection(publicUrl), cluster: CLUSTER, keyStore: createFileKeyStore(join(dir, "agent")), enrollToken,
    upstream: loadUpstream({ kubeconfig }), agentVersion: "test", logger: opts.agentLogger ?? silentLogger, signal: controller.signal,
    onState: (s) => s === "connected" && connected(),
    ...(opts.agentMetrics ? { metrics: opts.agentMetrics } : {}),
  }).catch((error: unknown) => { agentError = error; });
  await within("the agent to connect", up, 15_000).catch((error: Error) => { throw new Error(error.message, { cause: agentError }); });

  return Object.assign(harness, {
    relay, base: `http://127.0.0.1:${relay.port}`, port: relay.port, issuer, reviews,
    alice: await issuer.signUserToken({ user: "alice", groups: ["dev"] }),
    bob: await issuer.signUserToken({ user: "bob" }),
    agentSaToken, enrollToken, requests,
    agentWire: () => Buffer.concat(wire).toString("latin1"),
    async stop() {
      controller.abort();
      for (const s of tapSockets) s.destroy();
      tap.close();
      await relay.close();
      await agentDone;
      upstream.closeAllConnections();
      upstream.close();
      await rm(dir, { recursive: true, force: true });
    },
  });
}

export interface RawExchangeOptions {
  /** Ends the exchange once what came back satisfies this (an upgraded or kept-alive connection stays open). */
  until?: (received: string) => boolean;
  localAddress?: string;
  /** The relay must close the connection, or `until` must hold, within this; default 5000. */
  timeoutMs?: number;
}

/**
 * Writes `bytes` on a fresh TCP connection and collects what comes back until the relay closes the
 * connection or `until` holds. Neither within `timeoutMs` is a failure, not an answer: silence
 * says nothing about what the relay would still send.
 */
export function rawExchange(port: number, bytes: string | Buffer, opts: RawExchangeOptions = {}): Promise<string> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1", ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    const chunks: Buffer[] = [];
    const received = () => Buffer.concat(chunks).toString("latin1");
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the relay neither closed the connection nor answered as expected within ${timeoutMs} ms; got ${JSON.stringify(received().slice(0, 300))}`));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(received());
    };
    socket.on("connect", () => socket.write(bytes));
    socket.on("data", (d: Buffer) => {
      chunks.push(d);
      if (opts.until?.(received())) finish();
    });
    socket.on("error", finish);
    socket.on("close", finish);
  });
}

/**
 * How many whole HTTP/1.1 responses `raw` holds. A 101's head is whole (the upgraded stream
 * follows); a response without Content-Length or chunked encoding is whole at the end of its head.
 */
export function completeResponses(raw: string): number {
  let count = 0;
  for (let at = 0; ; count++) {
    const headEnd = raw.indexOf("\r\n\r\n", at);
    if (headEnd < 0) return count;
    const head = raw.slice(at, headEnd);
    if (head.startsWith("HTTP/1.1 101 ")) return count + 1;
    at = headEnd + 4;
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      for (let size = -1; size !== 0;) {
        const lineEnd = raw.indexOf("\r\n", at);
        if (lineEnd < 0) return count;
        size = parseInt(raw.slice(at, lineEnd), 16);
        if (Number.isNaN(size)) return count;
        at = lineEnd + 2 + size + 2; // the chunk and its CRLF; after the last chunk, the empty trailer
      }
    } else if (length) {
      at += Number(length[1]);
    }
    if (at > raw.length) return count;
  }
}

/** Status codes of every HTTP/1.1 response in a raw exchange, in order. */
export function statusCodes(raw: string): number[] {
  return [...raw.matchAll(/(?:^|\r\n)HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

/** A Kubernetes Status body never carries a stack trace. */
export function expectNoStack(text: string): void {
  if (/\n\s+at .+[:(]/.test(text) || /\bat [\w$.<>]+ \(.+:\d+:\d+\)/.test(text)) {
    throw new Error(`response carries a stack trace: ${text.slice(0, 500)}`);
  }
}

/** An HTTP/1.1 request as raw bytes; `lines` are header lines, sent exactly as given. */
export function rawRequest(method: string, target: string, lines: string[], body = ""): string {
  return [`${method} ${target} HTTP/1.1`, "Host: relay", ...lines, "", body].join("\r\n");
}
