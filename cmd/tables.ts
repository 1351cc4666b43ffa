// The tables `arcrelay cluster list` and `arcrelay grant list` print.
import type { ClusterStatus, GrantRecord } from "../lib/relay/index.ts";

/** `arcrelay cluster list`: one row per cluster, columns padded to the widest cell. */
export function formatClusterTable(rows: ClusterStatus[]): string {
  const header = ["NAME", "STATUS", "AGENT", "KUBERNETES", "LAST SEEN"];
  const lines = rows.map((r) => [
    r.name,
    r.state === "never-connected" ? (r.enrolled ? "offline" : "awaiting-enrollment") : r.state,
    r.agentVersion ?? "-",
    r.kubernetesVersion ?? "-",
    r.lastSeen?.toISOString() ?? "never",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  return [header, ...lines].map((cols) => cols.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}

/** The `arcrelay grant list` table. */
export function formatGrantTable(grants: GrantRecord[]): string {
  const rows = [["ID", "PRINCIPAL", "CLUSTER", "ROLE"], ...grants.map((g) => [g.id, g.principal, g.cluster, g.role])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}

/** `arcproxy clusters`: the clusters a user may reach, as `az connectedk8s list` and `tsh kube ls` show theirs. */
export function formatReachableClusters(rows: { name: string; connected: boolean; enrolled?: boolean; kubernetesVersion?: string; lastSeen?: string }[]): string {
  // The same words as `arcrelay cluster list` and the status page.
  const table = [["NAME", "STATUS", "KUBERNETES", "LAST SEEN"], ...rows.map((r) => [
    r.name, r.connected ? "connected" : r.enrolled === false ? "awaiting-enrollment" : "offline", r.kubernetesVersion ?? "-", r.lastSeen ?? (r.connected ? "now" : "never"),
  ])];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  return table.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}
