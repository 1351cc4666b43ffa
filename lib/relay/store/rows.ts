// What both stores share when turning rows into records: dates, the agent key, the NotFound of an unregistered cluster.
import type { JWK } from "jose";
import { NotFound } from "../../errors/index.ts";

/** The error every store throws for a cluster that is not registered, with the command that registers it. */
export function clusterNotRegistered(cluster: string): NotFound {
  return new NotFound(`cluster ${JSON.stringify(cluster)} is not registered: arcrelay cluster add ${cluster}`);
}

/** A stored agent key (JSON text) as a JWK; throws naming the cluster when the text is not JSON. */
export function parseAgentKey(cluster: string, json: string): JWK {
  try {
    return JSON.parse(json) as JWK;
  } catch (error) {
    throw new Error(`cluster ${JSON.stringify(cluster)}: stored agent key is not valid JSON`, { cause: error });
  }
}

/** Epoch milliseconds of `date`; throws TypeError naming `what` for an invalid Date. */
export function toMillis(date: Date, what: string): number {
  const ms = date instanceof Date ? date.getTime() : Number.NaN;
  if (Number.isNaN(ms)) throw new TypeError(`${what} must be a valid Date`);
  return ms;
}

/** The exact principals a caller is: `user:NAME` and `group:G` for each group (sub: patterns are matched by findRole). */
export function callerPrincipals(caller: { user: string; groups: readonly string[] }): string[] {
  return [`user:${caller.user}`, ...caller.groups.map((g) => `group:${g}`)];
}
