// What `arcrelay cluster list` shows for each cluster: connected or offline, versions, last seen.
import type { ClusterRecord } from "./store/index.ts";

export interface ClusterStatus {
  name: string;
  state: "connected" | "offline" | "never-connected";
  agentVersion?: string;
  kubernetesVersion?: string;
  lastSeen?: Date;
  enrolled: boolean;
}

/**
 * A relay refreshes `lastSeen` every 20 s while a tunnel is up; a connected flag older than this
 * means the relay that held the tunnel died without saying so.
 */
const PRESENCE_STALE_MS = 60_000;

export function describeCluster(record: ClusterRecord, now = new Date()): ClusterStatus {
  const fresh = record.lastSeen !== undefined && now.getTime() - record.lastSeen.getTime() < PRESENCE_STALE_MS;
  const state = record.lastSeen === undefined ? "never-connected" : record.connected && fresh ? "connected" : "offline";
  return {
    name: record.name,
    state,
    agentVersion: record.agentVersion,
    kubernetesVersion: record.kubernetesVersion,
    lastSeen: record.lastSeen,
    enrolled: record.agentKey !== undefined,
  };
}
