// A TunnelClient without a session, for relay tests that never send a request through it.
import type { TunnelClient } from "../../lib/tunnel/index.ts";

export type FakeTunnel = TunnelClient & { closed: boolean; lost: boolean; draining: boolean; close: () => Promise<void> };

/** `close()` and `terminate()` mark it closed and resolve `done`; `drain()` marks it draining and resolves `goaway`. */
export function fakeTunnel(): FakeTunnel {
  let resolveDone!: () => void;
  let resolveGoaway!: () => void;
  const tunnel: FakeTunnel = {
    closed: false,
    lost: false,
    draining: false,
    activeStreams: 0,
    done: new Promise<void>((resolve) => { resolveDone = resolve; }),
    goaway: new Promise<void>((resolve) => { resolveGoaway = resolve; }),
    request: () => { throw new Error("fakeTunnel: not used in these tests"); },
    drain() {
      tunnel.draining = true;
      resolveGoaway();
    },
    async close() {
      tunnel.closed = true;
      resolveDone();
    },
    terminate() {
      return tunnel.close();
    },
  };
  return tunnel;
}
