// Ranks the functions of Bun's Markdown CPU profiles (`--cpu-prof-md`, e.g. from
// `bun bench/compare.ts --cpu-prof DIR`) by the samples taken in them.
//
//   bun bench/profile-summary.ts /tmp/prof/*.md [--top 30]
//
// Why not the profile's own "Self" column: Bun weighs each sample by the wall time until the next
// one, so the last function before an idle gap (an enrollment, then seconds of nothing) shows
// seconds from a single sample. Samples are taken every interval while the process runs, so their
// count is CPU time.
import { readFile } from "node:fs/promises";

const args = process.argv.slice(2);
const topIndex = args.indexOf("--top");
const top = topIndex >= 0 ? Number(args[topIndex + 1]) : 30;
const files = args.filter((a, i) => a !== "--top" && (topIndex < 0 || i !== topIndex + 1));
if (files.length === 0 || !Number.isInteger(top) || top < 1) {
  console.error("usage: bun bench/profile-summary.ts PROFILE.md... [--top N]");
  process.exit(2);
}

// "### `name`" then "`location` | Self: ... | Total: ... | Samples: N", as Bun 1.4.5 writes them.
const FUNCTION = /^### `(.*)`\n`(.*)` \| Self: .* \| Samples: (\d+)$/gm;

for (const file of files) {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    console.error(`${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    process.exitCode = 1;
    continue;
  }
  const rows = [...text.matchAll(FUNCTION)].map((m) => ({ name: m[1]!, location: m[2]!, samples: Number(m[3]) }));
  if (rows.length === 0) {
    console.error(`${file}: no function details found; is it a Bun --cpu-prof-md profile?`);
    process.exitCode = 1;
    continue;
  }
  const total = rows.reduce((sum, r) => sum + r.samples, 0);
  const share = (n: number) => `${((100 * n) / total).toFixed(1)}%`;
  const byOrigin = new Map<string, number>();
  for (const r of rows) byOrigin.set(originOf(r.location), (byOrigin.get(originOf(r.location)) ?? 0) + r.samples);
  console.log(`\n${file}: ${total} samples; ${[...byOrigin].sort((a, b) => b[1] - a[1]).map(([o, n]) => `${o} ${share(n)}`).join(", ")}`);
  for (const r of rows.sort((a, b) => b.samples - a.samples).slice(0, top)) {
    console.log(`${String(r.samples).padStart(7)} ${share(r.samples).padStart(6)}  ${r.name.padEnd(36)} ${r.location}`);
  }
}

/** Whose code a location is: Bun's native code, Bun's JavaScript built-ins (node:, internal:), a library, or ours. */
function originOf(location: string): string {
  if (location === "[native code]") return "Bun native";
  if (/^(node|internal|bun):/.test(location) || /^(ws|undici)[:\s]/.test(location)) return "Bun built-ins";
  if (location.startsWith("node_modules/")) return "libraries";
  return "ours";
}
