// What a Bun process takes once when it first verifies signatures concurrently, as a relay does
// for its agents' login tokens (Ed25519, WebCrypto on Bun's worker threads): RSS after each round.
// Explains the one-time growth of the relay's first 100 agents in bench/BENCHMARKS.md.
//
//   bun bench/verify-rss.ts
import { webcrypto } from "node:crypto";

const rssMiB = () => (process.memoryUsage().rss / 1048576).toFixed(1);
const CONCURRENT = 64;
const ROUNDS = 5;

console.log(`RSS at start: ${rssMiB()} MiB`);
const { subtle } = webcrypto;
// The DOM types know no Ed25519 overload of generateKey; it returns a key pair (WebCrypto, Secure Curves).
const { publicKey, privateKey } = (await subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as unknown as webcrypto.CryptoKeyPair;
const data = new TextEncoder().encode("x".repeat(300)); // about a login token's signing input
const signature = await subtle.sign("Ed25519", privateKey, data);
console.log(`RSS after one key and one signature: ${rssMiB()} MiB`);
for (let round = 1; round <= ROUNDS; round++) {
  const results = await Promise.all(Array.from({ length: CONCURRENT }, () => subtle.verify("Ed25519", publicKey, signature, data)));
  if (!results.every(Boolean)) throw new Error("a verification failed: the measurement means nothing");
  Bun.gc(true);
  console.log(`RSS after round ${round} of ${CONCURRENT} concurrent verifies: ${rssMiB()} MiB`);
}
