// The relay's audit log: one Kubernetes-shaped Event per request, its id the one the client and the API server see, never a token.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../lib/observe/index.ts";
import { kubernetesVerb, openAuditLog, redactRequestUri, type AuditEvent } from "../../lib/relay/audit-log.ts";
import { CLUSTER, startHarness, type Harness } from "./hardening/harness.ts";
import { waitFor } from "../support/wait-for.ts";

setDefaultTimeout(30_000);
let h: Harness;
let dir: string;
let path: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-audit-"));
  path = join(dir, "audit", "relay-audit.log");
  h = await startHarness({ relayOptions: { auditLog: { path }, authRateLimit: false } });
});
afterAll(async () => {
  await h?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function events(): Promise<AuditEvent[]> {
  return (await readFile(path, "utf8")).split("\n").filter(Boolean).map((line) => JSON.parse(line) as AuditEvent);
}

async function eventsOf(id: string): Promise<AuditEvent[]> {
  await waitFor(`the audit record of ${id}`, async () => (await events()).some((e) => e.auditID === id && e.stage === "ResponseComplete"));
  return (await events()).filter((e) => e.auditID === id);
}

describe("--audit-log", () => {
  test("one ResponseComplete Event per request: who, where, what, how it went, with the id the client got", async () => {
    const res = await fetch(`${h.base}/v1/clusters/${CLUSTER}/k8s/api/v1/namespaces/default/pods?limit=5`, {
      headers: { authorization: `Bearer ${h.alice}`, "user-agent": "kubectl/v1.34.0 (linux/amd64)" },
    });
    await res.arrayBuffer();
    const id = res.headers.get("x-arc-request-id")!;
    const [event, ...more] = await eventsOf(id);
    expect(more).toEqual([]);
    expect(event).toMatchObject({
      kind: "Event", apiVersion: "audit.k8s.io/v1", level: "Metadata", auditID: id, stage: "ResponseComplete",
      requestURI: "/api/v1/namespaces/default/pods?limit=5", verb: "get",
      user: { username: "alice", groups: ["dev"], extra: { "cluster-connect.io/issuer": [expect.any(String)] } },
      userAgent: "kubectl/v1.34.0 (linux/amd64)", responseStatus: { code: 200 },
      annotations: { "cluster-connect.io/cluster": CLUSTER, "cluster-connect.io/kind": "request" },
    });
    expect(event!.sourceIPs[0]).toMatch(/127\.0\.0\.1/);
    expect(Number(event!.annotations["cluster-connect.io/bytes-out"])).toBeGreaterThan(0);
    expect(Date.parse(event!.stageTimestamp)).toBeGreaterThanOrEqual(Date.parse(event!.requestReceivedTimestamp));
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  test("a refused request is audited without a user; no token and no secret query value is ever written", async () => {
    const res = await fetch(`${h.base}/v1/clusters/${CLUSTER}/k8s/api/v1/namespaces?access_token=hunter2&watch=true`, { headers: { authorization: "Bearer forged.token.value" } });
    expect(res.status).toBe(401);
    const [event] = await eventsOf(res.headers.get("x-arc-request-id")!);
    expect(event).toMatchObject({ user: { username: "" }, responseStatus: { code: 401 }, verb: "watch" });
    expect(event!.requestURI).toContain("access_token=REDACTED");
    const text = await readFile(path, "utf8");
    expect(text).not.toContain("hunter2");
    expect(text).not.toContain("forged.token.value");
    expect(text).not.toContain(h.alice);
  });
});

describe("--audit-log against floods", () => {
  test("a request with no credential at all is not audited; a huge URI is cut to 4 KiB", async () => {
    const anonymous = await fetch(`${h.base}/v1/clusters/${CLUSTER}/k8s/api/v1/namespaces`);
    expect(anonymous.status).toBe(401);
    const long = await fetch(`${h.base}/v1/clusters/${CLUSTER}/k8s/api/v1/pods?labelSelector=${"a".repeat(60_000)}`, { headers: { authorization: `Bearer ${h.alice}` } });
    await long.arrayBuffer();
    const [event] = await eventsOf(long.headers.get("x-arc-request-id")!);
    expect(event!.requestURI.length).toBe(4096);
    expect((await events()).some((e) => e.auditID === anonymous.headers.get("x-arc-request-id"))).toBe(false);
  });
});

describe("--audit-log for sessions", () => {
  test("an exec session is audited when it starts (101) and when it ends, with its byte counts", async () => {
    const { connect } = await import("node:net");
    const socket = connect(h.port, "127.0.0.1");
    const received: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => received.push(chunk));
    socket.write(`POST /v1/clusters/${CLUSTER}/k8s/api/v1/namespaces/default/pods/work/exec?command=sh&stdin=true HTTP/1.1\r\n` +
      `Host: relay\r\nAuthorization: Bearer ${h.alice}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n`);
    await waitFor("the 101", () => Buffer.concat(received).toString().includes("\r\n\r\n"));
    const head = Buffer.concat(received).toString();
    expect(head).toStartWith("HTTP/1.1 101");
    const id = /x-arc-request-id: (\S+)/i.exec(head)![1]!;
    received.length = 0;
    socket.write("hello from the session");
    await waitFor("the echo", () => Buffer.concat(received).toString() === "hello from the session");
    socket.end();
    const [started, ended] = await eventsOf(id);
    expect(started).toMatchObject({ stage: "ResponseStarted", verb: "create", responseStatus: { code: 101 }, annotations: { "cluster-connect.io/kind": "upgrade" } });
    expect(ended).toMatchObject({ stage: "ResponseComplete", responseStatus: { code: 101 } });
    expect(Number(ended!.annotations["cluster-connect.io/bytes-in"])).toBeGreaterThanOrEqual(22);
    expect(Number(ended!.annotations["cluster-connect.io/bytes-out"])).toBeGreaterThanOrEqual(22);
    expect(started!.requestURI).toBe("/api/v1/namespaces/default/pods/work/exec?command=sh&stdin=true");
  });
});

describe("the audit file", () => {
  test("is rotated by size, keeping three old files", async () => {
    const rotating = join(dir, "rotate", "audit.log");
    const log = await openAuditLog({ path: rotating, maxBytes: 2_000, backups: 3, logger: silentLogger });
    const event = (i: number): AuditEvent => ({
      kind: "Event", apiVersion: "audit.k8s.io/v1", level: "Metadata", auditID: `id-${i}`, stage: "ResponseComplete", requestURI: "/api", verb: "get",
      user: { username: "" }, sourceIPs: ["127.0.0.1"], responseStatus: { code: 200 }, requestReceivedTimestamp: "", stageTimestamp: "", annotations: {},
    });
    for (let i = 0; i < 100; i++) log.write(event(i));
    await log.close();
    const files = (await readdir(join(dir, "rotate"))).sort();
    expect(files).toEqual(["audit.log", "audit.log.1", "audit.log.2", "audit.log.3"]);
    // Nothing lost of what the kept files hold: the newest line is the last event written.
    expect((await readFile(rotating, "utf8")).trim().split("\n").at(-1)).toContain('"auditID":"id-99"');
  });

  test("secret-looking query values are redacted; verbs follow Kubernetes' names", () => {
    expect(redactRequestUri("/api/v1/pods?labelSelector=app%3Dx&token=abc&apiKey=1")).toBe("/api/v1/pods?labelSelector=app%3Dx&token=REDACTED&apiKey=REDACTED");
    expect(redactRequestUri("/api/v1/pods")).toBe("/api/v1/pods");
    expect(kubernetesVerb("GET", "/api/v1/pods?watch=true", false)).toBe("watch");
    expect(kubernetesVerb("PATCH", "/api/v1/pods/x", false)).toBe("patch");
    expect(kubernetesVerb("POST", "/api/v1/namespaces/d/pods/x/exec", true)).toBe("create");
  });
});
