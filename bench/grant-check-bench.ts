// How long a request's grant check takes with many grants: all grants read (before) vs only the caller's (listGrantsFor).
//
//   bun bench/grant-check-bench.ts [--grants 5000] [--iterations 2000]
//
// SQLite store in a temp folder; N grants of other users plus one for alice. Prints microseconds
// per check, median of 5 rounds, for both ways. PostgreSQL is left out here (network round trips
// dominate there; the index on principal is what matters).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { findRole } from "../lib/auth/index.ts";
import { openSqliteStore } from "../lib/relay/store/index.ts";

const { values } = parseArgs({ options: { grants: { type: "string", default: "5000" }, iterations: { type: "string", default: "2000" } } });
const grants = Number(values.grants);
const iterations = Number(values.iterations);
const dir = await mkdtemp(join(tmpdir(), "arc-grant-bench-"));
const store = await openSqliteStore(join(dir, "data"));
for (let i = 0; i < grants; i++) await store.addGrant({ principal: `user:someone-${i}`, cluster: `c${i % 100}`, role: "cluster-user" });
await store.addGrant({ principal: "user:alice", cluster: "c7", role: "cluster-user" });
const identity = { user: "alice", groups: ["dev"], subject: "alice", issuer: "bench", audiences: [] };

async function round(check: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < iterations; i++) await check();
  return ((performance.now() - started) * 1000) / iterations;
}
const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const all: number[] = [];
const own: number[] = [];
for (let r = 0; r < 5; r++) {
  all.push(await round(async () => findRole(identity, "c7", await store.listGrants())));
  own.push(await round(async () => findRole(identity, "c7", await store.listGrantsFor(identity, "c7"))));
}
console.log(`grants: ${grants + 1}, iterations: ${iterations} x 5 rounds`);
console.log(`all grants read (before):      ${median(all).toFixed(1)} us per check`);
console.log(`caller's grants (listGrantsFor): ${median(own).toFixed(1)} us per check (${(median(all) / median(own)).toFixed(0)}x less)`);
await store.close();
await rm(dir, { recursive: true, force: true });
