import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { silentLogger } from "../../lib/observe/index.ts";
import { startLocalProxy, type LocalProxy } from "../../lib/proxy/index.ts";
import { createRelayConnection } from "../../lib/client/index.ts";
import { waitFor } from "../support/wait-for.ts";
import { CLUSTER, USER_TOKEN, startFakeRelay, type FakeRelay } from "./fake-relay.ts";

let relay: FakeRelay;
let proxy: LocalProxy;

beforeAll(async () => {
  relay = await startFakeRelay();
  proxy = await startLocalProxy({ relay: createRelayConnection(relay.url, {}), cluster: CLUSTER, getToken: async () => USER_TOKEN, port: 0, logger: silentLogger });
});
afterAll(async () => {
  await proxy.close();
  await relay.close();
});

function call(path: string, init: RequestInit = {}, token: string | null = proxy.sessionToken): Promise<Response> {
  const headers = new Headers(init.headers);
  if (token !== null) headers.set("authorization", `Bearer ${token}`);
  return fetch(`https://127.0.0.1:${proxy.port}${path}`, { ...init, headers, tls: { ca: proxy.caPem } } as RequestInit);
}

describe("session token", () => {
  test.each([
    ["no Authorization", null],
    ["a wrong token", "not-the-session-token"],
    ["the user token itself", USER_TOKEN],
  ])("%s gets 401 Status telling the user to use the written kubeconfig", async (_name, token) => {
    const before = relay.seen.length;
    const res = await call("/echo", {}, token);
    expect(res.status).toBe(401);
    const body = (await res.json()) as { kind: string; reason: string; message: string };
    expect(body).toMatchObject({ kind: "Status", reason: "Unauthorized", code: 401 });
    expect(body.message).toContain("use the kubeconfig it wrote");
    expect(relay.seen.length).toBe(before);
  });
});

describe("forwarding", () => {
  test("swaps the session token for the user token and keeps path and query", async () => {
    const res = await call("/echo/api/v1/pods?labelSelector=app%3Dweb&watch=1");
    expect(res.status).toBe(200);
    const got = (await res.json()) as { url: string; headers: Record<string, string> };
    expect(got.url).toBe("/echo/api/v1/pods?labelSelector=app%3Dweb&watch=1");
    expect(got.headers.authorization).toBe(`Bearer ${USER_TOKEN}`);
    expect(JSON.stringify(got.headers)).not.toContain(proxy.sessionToken);
  });

  test("drops hop-by-hop headers, and those Connection names, but passes end-to-end ones", async () => {
    const res = await call("/echo", {
      headers: {
        connection: "keep-alive, x-private-hop", "x-private-hop": "1", "keep-alive": "timeout=9", te: "trailers",
        "proxy-authorization": "Basic eA==", "x-custom": "kept", accept: "application/json;as=Table",
      },
    });
    const got = (await res.json()) as { headers: Record<string, string> };
    for (const name of ["x-private-hop", "keep-alive", "te", "proxy-authorization"]) expect(got.headers[name]).toBeUndefined();
    expect(got.headers["x-custom"]).toBe("kept");
    expect(got.headers.accept).toBe("application/json;as=Table");
    expect(got.headers.host).toBe(`127.0.0.1:${relay.port}`);
    expect(res.headers.get("x-relay")).toBe("yes");
    // The relay's own keep-alive terms stay between it and arcproxy.
    expect(res.headers.get("keep-alive") ?? "").not.toContain("timeout=5");
  });

  test("streams a request body to the relay", async () => {
    const body = "x".repeat(200_000);
    const res = await call("/echo", { method: "POST", body, headers: { "content-type": "text/plain" } });
    const got = (await res.json()) as { method: string; body: string };
    expect(got.method).toBe("POST");
    expect(got.body.length).toBe(body.length);
  });

  test("a watch's first event arrives long before the stream ends", async () => {
    const start = Date.now();
    const res = await call("/stream");
    const reader = res.body!.getReader();
    const first = await reader.read();
    const firstAt = Date.now() - start;
    expect(new TextDecoder().decode(first.value)).toContain('"n":0');
    let rest = "";
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
    const endAt = Date.now() - start;
    expect(rest).toContain('"n":4');
    expect(firstAt).toBeLessThan(1000);
    expect(endAt - firstAt).toBeGreaterThan(900);
  });

  test("kubectl hanging up on a watch ends the stream at the relay too", async () => {
    const controller = new AbortController();
    const res = await call("/stream", { signal: controller.signal });
    await res.body!.getReader().read();
    const before = relay.abandonedStreams();
    controller.abort();
    await waitFor("the relay to see the watch abandoned", () => relay.abandonedStreams() > before, 2000);
    expect(relay.abandonedStreams()).toBe(before + 1);
  });

  test("a relay 403 Status reaches kubectl unchanged", async () => {
    const res = await call("/forbidden/api/v1/pods");
    expect(res.status).toBe(403);
    expect(res.headers.get("x-kube-audit")).toBe("1");
    expect(await res.json()).toEqual({
      kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", reason: "Forbidden", code: 403,
      message: 'pods is forbidden: User "alice" cannot list resource "pods"',
    });
  });

  test("a failing token source gives a 401 Status, not a crash", async () => {
    const broken = await startLocalProxy({
      relay: createRelayConnection(relay.url, {}), cluster: CLUSTER, getToken: async () => { throw new Error("refresh failed"); }, port: 0, logger: silentLogger,
    });
    try {
      const res = await fetch(`https://127.0.0.1:${broken.port}/version`, { headers: { authorization: `Bearer ${broken.sessionToken}` }, tls: { ca: broken.caPem } } as RequestInit);
      expect(res.status).toBe(401);
      expect(((await res.json()) as { message: string }).message).toContain("refresh failed");
    } finally {
      await broken.close();
    }
  });
});

describe("relay unreachable", () => {
  test("answers 502 Status naming the relay once the retry window is over", async () => {
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, "127.0.0.1", r));
    const deadUrl = `http://127.0.0.1:${(dead.address() as net.AddressInfo).port}`;
    await new Promise<void>((r) => dead.close(() => r()));
    const orphan = await startLocalProxy({ relay: createRelayConnection(deadUrl, {}), cluster: CLUSTER, getToken: async () => USER_TOKEN, port: 0, relayRetryMs: 300, logger: silentLogger });
    try {
      const res = await fetch(`https://127.0.0.1:${orphan.port}/version`, { headers: { authorization: `Bearer ${orphan.sessionToken}` }, tls: { ca: orphan.caPem } } as RequestInit);
      expect(res.status).toBe(502);
      const body = (await res.json()) as { kind: string; message: string; code: number };
      expect(body.kind).toBe("Status");
      expect(body.code).toBe(502);
      expect(body.message).toContain(deadUrl);
    } finally {
      await orphan.close();
    }
  });
});

describe("listener", () => {
  test("a port in use gives the --port hint", async () => {
    const promise = startLocalProxy({ relay: createRelayConnection(relay.url, {}), cluster: CLUSTER, getToken: async () => USER_TOKEN, port: proxy.port, logger: silentLogger });
    expect(promise).rejects.toThrow(`port ${proxy.port} is already in use on 127.0.0.1: pass --port N or --port 0 for a free port`);
    await promise.catch(() => {});
  });
});

// Raw upgrade exchange over TLS to the local proxy; resolves with the response head and a reader.
function openUpgrade(path: string, token: string | null): Promise<{ socket: tls.TLSSocket; head: string; next(): Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port: proxy.port, ca: proxy.caPem, servername: "localhost" }, () => {
      const auth = token === null ? "" : `Authorization: Bearer ${token}\r\n`;
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n` +
          `X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n`,
      );
    });
    let buffer = "";
    let waiting: ((text: string) => void) | undefined;
    let gotHead = false;
    socket.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      if (!gotHead) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end === -1) return;
        gotHead = true;
        const head = buffer.slice(0, end);
        buffer = buffer.slice(end + 4);
        resolve({
          socket,
          head,
          next: () => new Promise((r) => {
            if (buffer) { const b = buffer; buffer = ""; r(b); } else waiting = r;
          }),
        });
      }
      if (gotHead && waiting && buffer) {
        const w = waiting; waiting = undefined; const b = buffer; buffer = ""; w(b);
      }
    });
    socket.on("error", reject);
  });
}

describe("upgrades", () => {
  test("101 then bytes flow both ways, headers swapped like any request", async () => {
    const { socket, head, next } = await openUpgrade("/exec/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true", proxy.sessionToken);
    expect(head).toStartWith("HTTP/1.1 101");
    expect(head.toLowerCase()).toContain("upgrade: spdy/3.1");
    expect(head.toLowerCase()).toContain("x-stream-protocol-version: v4.channel.k8s.io");
    socket.write("hello through the tunnel");
    expect(await next()).toBe("HELLO THROUGH THE TUNNEL");
    socket.write("again");
    expect(await next()).toBe("AGAIN");
    const seen = relay.seen.at(-1)!;
    expect(seen.url).toBe("/exec/api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true");
    const headers = Object.fromEntries(seen.rawHeaders.flatMap((v, i, a) => (i % 2 ? [] : [[v.toLowerCase(), a[i + 1]]])));
    expect(headers.authorization).toBe(`Bearer ${USER_TOKEN}`);
    expect(headers.upgrade).toBe("SPDY/3.1");
    expect(headers.connection).toBe("Upgrade");
    const closed = new Promise((r) => socket.on("close", r));
    socket.end();
    await closed;
  });

  test("a refused upgrade is passed through as-is, then the connection closes", async () => {
    const { socket, head, next } = await openUpgrade("/not-exec", proxy.sessionToken);
    expect(head).toStartWith("HTTP/1.1 403");
    const closed = new Promise((r) => socket.on("close", r));
    const body = JSON.parse(await next()) as { message: string };
    expect(body.message).toBe("exec is forbidden here");
    await closed;
  });

  test("an upgrade without the session token gets 401 Status", async () => {
    const { head, next } = await openUpgrade("/exec/x", null);
    expect(head).toStartWith("HTTP/1.1 401");
    expect(JSON.parse(await next())).toMatchObject({ kind: "Status", code: 401 });
  });
});

test("a TLS client that does not trust the session CA cannot connect", async () => {
  const error = await new Promise<Error>((resolve) => {
    https.get({ host: "127.0.0.1", port: proxy.port, path: "/version" }, () => resolve(new Error("connected"))).on("error", resolve);
  });
  expect(error.message).not.toBe("connected");
});
