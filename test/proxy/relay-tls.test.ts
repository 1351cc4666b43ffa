// An https:// relay with a self-signed certificate: trusted through --relay-ca, refused without it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import tls from "node:tls";
import { silentLogger } from "../../lib/observe/index.ts";
import { startLocalProxy } from "../../lib/proxy/index.ts";
import { createSelfSignedCertificate } from "../../lib/http/index.ts";
import { createRelayConnection } from "../../lib/client/index.ts";
import type { RelayTls } from "../../lib/client/index.ts";
import { CLUSTER, USER_TOKEN, VERSION_BODY, startFakeRelay, type FakeRelay } from "./fake-relay.ts";

let relay: FakeRelay;
let relayCa: string;
beforeAll(async () => {
  const cert = await createSelfSignedCertificate({ commonName: "test" });
  relayCa = cert.caPem;
  relay = await startFakeRelay({ tls: { cert: cert.certPem, key: cert.keyPem } });
});
afterAll(() => relay.close());

async function withProxy(relayTls: RelayTls, use: (port: number, token: string, ca: string) => Promise<void>) {
  const proxy = await startLocalProxy({ relay: createRelayConnection(relay.url, relayTls), cluster: CLUSTER, getToken: async () => USER_TOKEN, port: 0, logger: silentLogger });
  try {
    await use(proxy.port, proxy.sessionToken, proxy.caPem);
  } finally {
    await proxy.close();
  }
}

const getVersion = (port: number, token: string, ca: string) =>
  fetch(`https://127.0.0.1:${port}/version`, { headers: { authorization: `Bearer ${token}` }, tls: { ca } } as RequestInit);

test.each([
  ["the relay's CA", () => ({ ca: relayCa })],
  ["verification off", () => ({ insecureSkipVerify: true })],
])("https relay trusted via %s", async (_name, relayTls) => {
  await withProxy(relayTls(), async (port, token, ca) => {
    const res = await getVersion(port, token, ca);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(VERSION_BODY);
  });
});

test("an untrusted relay certificate gives a 502 Status naming the relay", async () => {
  await withProxy({}, async (port, token, ca) => {
    const res = await getVersion(port, token, ca);
    expect(res.status).toBe(502);
    const body = (await res.json()) as { kind: string; message: string };
    expect(body.kind).toBe("Status");
    expect(body.message).toContain(relay.url);
  });
});

test("upgrades reach an https relay too", async () => {
  await withProxy({ ca: relayCa }, async (port, token, ca) => {
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost" }, () => {
        socket.write(`GET /exec/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n`);
      });
      let text = "";
      socket.on("data", (chunk: Buffer) => {
        text += chunk.toString();
        if (text.includes("\r\n\r\n") && !text.includes("ping")) socket.write("ping");
        if (text.endsWith("PING")) {
          socket.destroy();
          resolve(text);
        }
      });
      socket.on("error", reject);
    });
    expect(reply).toStartWith("HTTP/1.1 101");
    expect(reply).toEndWith("PING");
  });
});
