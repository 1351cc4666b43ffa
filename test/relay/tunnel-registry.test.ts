// The relay's map from cluster to agent tunnel: newest wins, stale removals are ignored.
import { describe, expect, mock, test } from "bun:test";
import { createTunnelRegistry, type AgentTunnel } from "../../lib/relay/tunnel-registry.ts";
import { fakeTunnel, type FakeTunnel } from "./fake-tunnel.ts";

/** The shared fake, with close() counted. */
function countedTunnel(): FakeTunnel & { close: ReturnType<typeof mock> } {
  const tunnel = fakeTunnel();
  const close = tunnel.close.bind(tunnel);
  return Object.assign(tunnel, { close: mock(close) });
}

function entry(cluster: string, tunnel = countedTunnel()): AgentTunnel & { tunnel: ReturnType<typeof countedTunnel> } {
  return { cluster, tunnel, connectedAt: new Date() };
}

describe("createTunnelRegistry", () => {
  test("get returns the registered tunnel of a cluster, undefined for others", () => {
    const registry = createTunnelRegistry();
    const prod = entry("prod");
    registry.register(prod);
    expect(registry.get("prod")).toBe(prod);
    expect(registry.get("dev")).toBeUndefined();
  });

  test("the newest registration wins and closes the previous tunnel", () => {
    const registry = createTunnelRegistry();
    const first = entry("prod");
    const second = entry("prod");
    registry.register(first);
    registry.register(second);
    expect(registry.get("prod")).toBe(second);
    expect(first.tunnel.close).toHaveBeenCalledTimes(1);
    expect(second.tunnel.close).not.toHaveBeenCalled();
    expect(registry.list()).toEqual([second]);
  });

  test("a draining tunnel that is replaced is left to finish its streams", () => {
    const registry = createTunnelRegistry();
    const leaving = entry("prod");
    registry.register(leaving);
    leaving.tunnel.drain();
    const next = entry("prod");
    registry.register(next);
    expect(registry.get("prod")).toBe(next);
    expect(leaving.tunnel.close).not.toHaveBeenCalled();
  });

  test("expectedBack: a draining or recently gone agent is expected back; one long gone is not", () => {
    let now = 1_000_000;
    const registry = createTunnelRegistry(() => now);
    expect(registry.expectedBack("never-seen", 60_000)).toBe(true); // the relay just started
    now += 61_000;
    expect(registry.expectedBack("never-seen", 60_000)).toBe(false);
    const prod = entry("prod");
    registry.register(prod);
    expect(registry.expectedBack("prod", 60_000)).toBe(false); // connected: nothing to wait for
    prod.tunnel.drain();
    expect(registry.expectedBack("prod", 60_000)).toBe(true);
    registry.unregister(prod);
    now += 59_000;
    expect(registry.expectedBack("prod", 60_000)).toBe(true);
    now += 2_000;
    expect(registry.expectedBack("prod", 60_000)).toBe(false);
  });

  test("registering the same entry twice does not close it", () => {
    const registry = createTunnelRegistry();
    const prod = entry("prod");
    registry.register(prod);
    registry.register(prod);
    expect(prod.tunnel.close).not.toHaveBeenCalled();
    expect(registry.get("prod")).toBe(prod);
  });

  test("clusters do not replace each other", () => {
    const registry = createTunnelRegistry();
    const a = entry("a");
    const b = entry("b");
    registry.register(a);
    registry.register(b);
    expect(registry.get("a")).toBe(a);
    expect(registry.get("b")).toBe(b);
    expect(a.tunnel.close).not.toHaveBeenCalled();
  });

  test("unregister of a replaced (stale) entry returns false and keeps the current one", () => {
    const registry = createTunnelRegistry();
    const first = entry("prod");
    const second = entry("prod");
    registry.register(first);
    registry.register(second);
    expect(registry.unregister(first)).toBe(false);
    expect(registry.get("prod")).toBe(second);
  });

  test("unregister of the current entry returns true once, then false", () => {
    const registry = createTunnelRegistry();
    const prod = entry("prod");
    registry.register(prod);
    expect(registry.unregister(prod)).toBe(true);
    expect(registry.get("prod")).toBeUndefined();
    expect(registry.unregister(prod)).toBe(false);
  });

  test("unregister of an entry that was never registered returns false", () => {
    const registry = createTunnelRegistry();
    expect(registry.unregister(entry("prod"))).toBe(false);
  });

  test("get ignores a tunnel that has closed but is not unregistered yet", () => {
    const registry = createTunnelRegistry();
    const prod = entry("prod");
    registry.register(prod);
    prod.tunnel.closed = true;
    expect(registry.get("prod")).toBeUndefined();
    // It is still the current entry, so its own deregistration succeeds.
    expect(registry.unregister(prod)).toBe(true);
  });

  test("get ignores a draining tunnel: new requests wait for the agent's next one", () => {
    const registry = createTunnelRegistry();
    const prod = entry("prod");
    registry.register(prod);
    prod.tunnel.drain();
    expect(registry.get("prod")).toBeUndefined();
  });

  test("waitFor resolves at once with a usable tunnel", async () => {
    const registry = createTunnelRegistry();
    const prod = entry("prod");
    registry.register(prod);
    expect(await registry.waitFor("prod", 1000)).toBe(prod);
  });

  test("waitFor wakes when the agent's tunnel registers", async () => {
    const registry = createTunnelRegistry();
    const waiting = registry.waitFor("prod", 60_000);
    const prod = entry("prod");
    registry.register(prod);
    expect(await waiting).toBe(prod);
  });

  test("waitFor gives up after its timeout with undefined", async () => {
    const registry = createTunnelRegistry();
    expect(await registry.waitFor("prod", 20)).toBeUndefined();
  });

  test("waitFor stops waiting when the client goes away (its signal aborts)", async () => {
    const registry = createTunnelRegistry();
    const controller = new AbortController();
    const waiting = registry.waitFor("prod", 60_000, controller.signal);
    controller.abort();
    expect(await waiting).toBeUndefined();
    // A later registration finds no stale waiter to wake.
    registry.register(entry("prod"));
  });

  test("waitFor wakes on a replacement for a draining tunnel", async () => {
    const registry = createTunnelRegistry();
    const old = entry("prod");
    registry.register(old);
    old.tunnel.drain();
    const waiting = registry.waitFor("prod", 60_000);
    const fresh = entry("prod");
    registry.register(fresh);
    expect(await waiting).toBe(fresh);
    // Left alone: its streams in flight (an exec session) finish on the agent's own drain schedule.
    expect(old.tunnel.close).not.toHaveBeenCalled();
  });

  test("drainAll sends GOAWAY on every tunnel", () => {
    const registry = createTunnelRegistry();
    const a = entry("a");
    const b = entry("b");
    registry.register(a);
    registry.register(b);
    registry.drainAll();
    expect(a.tunnel.draining && b.tunnel.draining).toBe(true);
  });

  test("closeAll closes every tunnel and empties the registry", async () => {
    const registry = createTunnelRegistry();
    const a = entry("a");
    const b = entry("b");
    registry.register(a);
    registry.register(b);
    await registry.closeAll();
    expect(a.tunnel.close).toHaveBeenCalledTimes(1);
    expect(b.tunnel.close).toHaveBeenCalledTimes(1);
    expect(registry.list()).toEqual([]);
    expect(registry.get("a")).toBeUndefined();
  });
});
