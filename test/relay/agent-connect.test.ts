// The relay's /v1/agent/connect: a dial the agent gave up on during its login is never accepted.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WebSocket } from "ws";
import { generateSigningKeyPair, signAgentToken } from "../../lib/auth/index.ts";
import { silentLogger } from "../../lib/observe/index.ts";
import { addCluster, startRelay, type RunningRelay } from "../../lib/relay/index.ts";
import { protocol } from "../../lib/tunnel/index.ts";
import { collect, rawConnect } from "../tunnel/tunnel-pair.ts";
import { waitFor, within } from "../support/wait-for.ts";

let dir: string;
let relay: RunningRelay;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-agent-connect-"));
  relay = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "relay"), logger: silentLogger });
});

afterAll(async () => {
  await relay.close();
  await rm(dir, { recursive: true, force: true });
});

describe("/v1/agent/connect", () => {
  test.each([
    ["half-closes", (socket: import("node:net").Socket) => socket.end()],
    ["hangs up", (socket: import("node:net").Socket) => socket.destroy()],
  ])("a dial whose agent %s during its login gets no 101 and leaves the cluster's live tunnel alone", async (_name, giveUp) => {
    const cluster = `alpha-${giveUp.length}-${Math.random().toString(36).slice(2, 8)}`;
    await addCluster(relay.store, cluster);
    const keys = await generateSigningKeyPair("EdDSA");
    await relay.store.setAgentKey(cluster, keys.publicJwk);
    const token = () => signAgentToken({ privateJwk: keys.privateJwk, cluster, audience: relay.url });

    const live = new WebSocket(`${relay.url.replace("http", "ws")}${protocol.AGENT_CONNECT_PATH}`, [protocol.TUNNEL_SUBPROTOCOL], {
      headers: { authorization: `Bearer ${await token()}` },
    });
    await within("the live tunnel", new Promise((resolve, reject) => { live.once("open", resolve); live.once("error", reject); }), 5_000);
    let liveClosed = false;
    live.on("close", () => { liveClosed = true; });

    // The stale dial's login waits on a slow store read; the agent gives up meanwhile.
    const store = relay.store;
    const getCluster = store.getCluster;
    let release!: () => void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    let asked = false;
    store.getCluster = async (name) => {
      const record = await getCluster.call(store, name);
      if (name === cluster && !asked) {
        asked = true;
        await held;
      }
      return record;
    };
    try {
      const stale = await rawConnect(relay.port,
        `GET ${protocol.AGENT_CONNECT_PATH} HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${Buffer.alloc(16, 2).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n` +
        `Sec-WebSocket-Protocol: ${protocol.TUNNEL_SUBPROTOCOL}\r\nAuthorization: Bearer ${await token()}\r\n\r\n`);
      const answer = collect(stale);
      await waitFor("the stale dial's login to reach the store", () => asked, 5_000);
      giveUp(stale);
      // The relay runs in this process: once the FIN (or RST) is in its socket's receive queue, the
      // event loop's next poll phase reports it, and a setImmediate after that poll runs behind it.
      await waitFor("the client's end of the dial to be written", () => stale.writableFinished || stale.destroyed, 5_000);
      for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
      release();
      await waitFor("the relay to be done with the stale dial", () => answer.closed(), 5_000);
      expect(answer.text()).not.toContain("101");
      // A replaced tunnel would be sent GOAWAY and closed at once; give the relay a request's time.
      const answered = await fetch(`${relay.url}/healthz`);
      expect(answered.status).toBe(200);
      expect(liveClosed).toBe(false);
      expect(live.readyState).toBe(WebSocket.OPEN);
    } finally {
      store.getCluster = getCluster;
      live.terminate();
    }
  });
});
