// What `arcrelay cluster list` shows: each cluster's state from its stored presence, and the table.
import { describe, expect, test } from "bun:test";
import { describeCluster, type ClusterStatus } from "../../lib/relay/cluster-status.ts";
import { formatClusterTable } from "../../cmd/tables.ts";
import type { ClusterRecord } from "../../lib/relay/store/index.ts";

const NOW = new Date("2030-06-01T12:00:00.000Z");
const secondsAgo = (s: number) => new Date(NOW.getTime() - s * 1000);
const KEY = { kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" };

function record(overrides: Partial<ClusterRecord> = {}): ClusterRecord {
  return { name: "prod", createdAt: secondsAgo(3600), ...overrides };
}

describe("describeCluster", () => {
  test.each<[string, Partial<ClusterRecord>, ClusterStatus["state"]]>([
    ["never connected, not enrolled", {}, "never-connected"],
    ["never connected, enrolled", { agentKey: KEY }, "never-connected"],
    ["connected, seen just now", { agentKey: KEY, connected: true, lastSeen: secondsAgo(0) }, "connected"],
    ["connected, seen 20 s ago (one heartbeat)", { agentKey: KEY, connected: true, lastSeen: secondsAgo(20) }, "connected"],
    ["connected, seen 59 s ago", { agentKey: KEY, connected: true, lastSeen: secondsAgo(59) }, "connected"],
    ["connected flag but seen exactly 60 s ago", { agentKey: KEY, connected: true, lastSeen: secondsAgo(60) }, "offline"],
    ["connected flag but seen 10 min ago (its relay died)", { agentKey: KEY, connected: true, lastSeen: secondsAgo(600) }, "offline"],
    ["disconnected a second ago", { agentKey: KEY, connected: false, lastSeen: secondsAgo(1) }, "offline"],
    ["disconnected long ago", { agentKey: KEY, connected: false, lastSeen: secondsAgo(86_400) }, "offline"],
    ["seen, connected unknown", { agentKey: KEY, lastSeen: secondsAgo(1) }, "offline"],
  ])("%s -> %s", (_what, overrides, state) => {
    expect(describeCluster(record(overrides), NOW).state).toBe(state);
  });

  test("copies versions and last seen, and reports enrollment by the presence of a key", () => {
    const lastSeen = secondsAgo(5);
    expect(describeCluster(record({ agentKey: KEY, agentVersion: "0.1.0", kubernetesVersion: "v1.31.2", lastSeen, connected: true }), NOW))
      .toEqual({ name: "prod", state: "connected", agentVersion: "0.1.0", kubernetesVersion: "v1.31.2", lastSeen, enrolled: true });
    expect(describeCluster(record(), NOW).enrolled).toBe(false);
  });

  test("defaults `now` to the current time", () => {
    expect(describeCluster(record({ connected: true, lastSeen: new Date() })).state).toBe("connected");
    expect(describeCluster(record({ connected: true, lastSeen: new Date(Date.now() - 61_000) })).state).toBe("offline");
  });
});

describe("formatClusterTable", () => {
  const rows: ClusterStatus[] = [
    describeCluster(record({ name: "prod", agentKey: KEY, agentVersion: "0.1.0", kubernetesVersion: "v1.31.2", connected: true, lastSeen: secondsAgo(5) }), NOW),
    describeCluster(record({ name: "staging-eu-west", agentKey: KEY }), NOW),
    describeCluster(record({ name: "new" }), NOW),
    describeCluster(record({ name: "old", agentKey: KEY, agentVersion: "0.0.9", connected: true, lastSeen: secondsAgo(600) }), NOW),
  ];

  test("one header line and one line per cluster, columns aligned", () => {
    const lines = formatClusterTable(rows).split("\n");
    expect(lines).toHaveLength(5);
    const header = lines[0]!;
    expect(header.split(/ {2,}/)).toEqual(["NAME", "STATUS", "AGENT", "KUBERNETES", "LAST SEEN"]);
    // Every column starts at the same offset on every line.
    for (const column of ["STATUS", "AGENT", "KUBERNETES", "LAST SEEN"]) {
      const at = header.indexOf(column);
      for (const line of lines.slice(1)) {
        expect(line[at - 1]).toBe(" ");
        expect(line[at]).not.toBe(" ");
      }
    }
    for (const line of lines) expect(line).toBe(line.trimEnd());
  });

  test.each([
    [1, ["prod", "connected", "0.1.0", "v1.31.2", secondsAgo(5).toISOString()]],
    [2, ["staging-eu-west", "offline", "-", "-", "never"]],
    [3, ["new", "awaiting-enrollment", "-", "-", "never"]],
    [4, ["old", "offline", "0.0.9", "-", secondsAgo(600).toISOString()]],
  ])("row %d reads %p", (index, cells) => {
    const line = formatClusterTable(rows).split("\n")[index]!;
    expect(line.split(/ {2,}/)).toEqual(cells as string[]);
  });

  test("no clusters: just the header", () => {
    expect(formatClusterTable([])).toBe("NAME  STATUS  AGENT  KUBERNETES  LAST SEEN");
  });
});
