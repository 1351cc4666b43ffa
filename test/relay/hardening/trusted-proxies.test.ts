// Behind an L7 load balancer every user connects from the balancer's address: with --trusted-proxies
// the relay takes the client from X-Forwarded-For, so one client's guesses spend only its own
// budget, while an X-Forwarded-For that anyone else sends (or writes in front of the real one) is not believed.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTrustedProxies } from "../../../lib/relay/index.ts";
import { waitFor } from "../../support/wait-for.ts";
import { CLUSTER, rawExchange, rawRequest, startHarness, statusCodes, type Harness } from "./harness.ts";

setDefaultTimeout(30_000);
const MAX_FAILURES = 3;
/** The load balancer: a loopback address of its own. */
const PROXY = "127.0.0.2";
let h: Harness;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-trusted-proxies-"));
  h = await startHarness({
    relayOptions: {
      authRateLimit: { maxFailures: MAX_FAILURES, windowSeconds: 600 },
      trustedProxies: parseTrustedProxies(`${PROXY},10.0.0.0/8`),
      auditLog: { path: join(dir, "audit.log"), maxBytes: 1 << 20 },
    },
  });
});
afterAll(async () => {
  await h?.stop();
  await rm(dir, { recursive: true, force: true });
});

let guesses = 0;
/** One request with a bad token from `from`, carrying `forwardedFor` as its X-Forwarded-For; its status code. */
async function guess(from: string, forwardedFor?: string): Promise<number> {
  const lines = [`Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.guess-${guesses++}`, "Connection: close"];
  if (forwardedFor !== undefined) lines.push(`X-Forwarded-For: ${forwardedFor}`);
  const raw = await rawExchange(h.port, rawRequest("GET", `/v1/clusters/${CLUSTER}/k8s/version`, lines), { localAddress: from });
  return statusCodes(raw)[0]!;
}

async function repeatGuess(n: number, from: string, forwardedFor?: string): Promise<number[]> {
  const codes: number[] = [];
  for (let i = 0; i < n; i++) codes.push(await guess(from, forwardedFor));
  return codes;
}

describe("--trusted-proxies: the client behind a load balancer", () => {
  test("two clients behind the same trusted proxy have a budget each", async () => {
    expect(await repeatGuess(MAX_FAILURES + 1, PROXY, "198.51.100.1")).toEqual([401, 401, 401, 429]);
    // Someone else behind the same balancer is not limited by the first one's guesses.
    expect(await guess(PROXY, "198.51.100.2")).toBe(401);
  });

  test("a client cannot escape its budget by writing its own X-Forwarded-For: the proxy appends the real address, and that counts", async () => {
    expect(await repeatGuess(MAX_FAILURES, PROXY, "198.51.100.3")).toEqual([401, 401, 401]);
    // The client wrote "203.0.113.50"; the balancer appended the address it saw.
    expect(await guess(PROXY, "203.0.113.50, 198.51.100.3")).toBe(429);
    // A chain of trusted proxies (an Ingress controller behind the balancer) is walked to the client.
    expect(await guess(PROXY, "203.0.113.51, 198.51.100.3, 10.1.2.3")).toBe(429);
  });

  test("an X-Forwarded-For from a client that is not a trusted proxy is not believed", async () => {
    const direct = "127.0.0.5";
    expect(await repeatGuess(MAX_FAILURES + 1, direct, "198.51.100.4")).toEqual([401, 401, 401, 429]);
    // Naming someone else does not give it a fresh budget: the connection's own address counts.
    expect(await guess(direct, "198.51.100.5")).toBe(429);
    expect(await guess(PROXY, "198.51.100.5")).toBe(401);
  });

  test("a value that is not an address stops the walk at the last address a trusted proxy gave", async () => {
    expect(await repeatGuess(MAX_FAILURES, PROXY, "198.51.100.6")).toEqual([401, 401, 401]);
    expect(await guess(PROXY, "unknown, 198.51.100.6")).toBe(429);
  });

  test("an entry with a port, as some load balancers write it (Azure Application Gateway), names the client without it", async () => {
    expect(await repeatGuess(MAX_FAILURES, PROXY, "198.51.100.8:51234")).toEqual([401, 401, 401]);
    // The same client on another source port: the same budget.
    expect(await guess(PROXY, "198.51.100.8:40000")).toBe(429);
    expect(await guess(PROXY, "[2001:db8::8]:4711")).toBe(401);
  });

  test("one client however its address is spelled (IPv6 case and zeros, IPv4-mapped) has one budget", async () => {
    // Each test here uses /64s of its own: a budget is per /64.
    expect(await repeatGuess(MAX_FAILURES, PROXY, "2001:db8:a::a")).toEqual([401, 401, 401]);
    expect(await guess(PROXY, "2001:DB8:A::A")).toBe(429);
    expect(await guess(PROXY, "2001:0db8:000a:0000:0000:0000:0000:000a")).toBe(429);
    expect(await repeatGuess(MAX_FAILURES, PROXY, "198.51.100.10")).toEqual([401, 401, 401]);
    expect(await guess(PROXY, "::ffff:198.51.100.10")).toBe(429);
    expect(await guess(PROXY, "::FFFF:C633:640A")).toBe(429);
  });

  test("an IPv6 client cannot escape its budget by rotating through the addresses of its /64", async () => {
    expect(await repeatGuess(MAX_FAILURES, PROXY, "2001:db8:b:1::1")).toEqual([401, 401, 401]);
    expect(await guess(PROXY, "2001:db8:b:1:ffff:ffff:ffff:fffe")).toBe(429);
    // The next /64 is someone else.
    expect(await guess(PROXY, "2001:db8:b:2::1")).toBe(401);
  });

  test("a very long X-Forwarded-For is read only from its right end", async () => {
    const long = `${Array.from({ length: 5_000 }, (_, i) => `192.0.2.${i % 250}`).join(", ")}, 198.51.100.9`;
    expect(await repeatGuess(MAX_FAILURES, PROXY, long)).toEqual([401, 401, 401]);
    expect(await guess(PROXY, "198.51.100.9")).toBe(429);
  });

  test("the audit log names the client first and the proxy after it, as Kubernetes' sourceIPs do", async () => {
    const raw = await rawExchange(h.port, rawRequest("GET", `/v1/clusters/${CLUSTER}/k8s/version`, [
      `Authorization: Bearer ${h.alice}`, "X-Forwarded-For: 198.51.100.7", "Connection: close",
    ]), { localAddress: PROXY });
    expect(statusCodes(raw)[0]).toBe(200);
    let event: { sourceIPs?: string[] } | undefined;
    await waitFor("the request's audit event", async () => {
      const lines = (await readFile(join(dir, "audit.log"), "utf8").catch(() => "")).split("\n").filter(Boolean);
      event = lines.map((l) => JSON.parse(l)).find((e) => e.stage === "ResponseComplete" && e.user?.username === "alice");
      return event !== undefined;
    }, 5_000);
    expect(event?.sourceIPs).toEqual(["198.51.100.7", PROXY]);
  });

  test("the audit log writes an address in one form: RFC 5952's for IPv6, IPv4 for an IPv4-mapped one", async () => {
    for (const [written, logged] of [["2001:DB8:0:0::00B", "2001:db8::b"], ["::ffff:198.51.100.11", "198.51.100.11"]] as const) {
      const raw = await rawExchange(h.port, rawRequest("GET", `/v1/clusters/${CLUSTER}/k8s/version?spelled=${encodeURIComponent(written)}`, [
        `Authorization: Bearer ${h.alice}`, `X-Forwarded-For: ${written}`, "Connection: close",
      ]), { localAddress: PROXY });
      expect(statusCodes(raw)[0]).toBe(200);
      let event: { sourceIPs?: string[] } | undefined;
      await waitFor("the request's audit event", async () => {
        const lines = (await readFile(join(dir, "audit.log"), "utf8").catch(() => "")).split("\n").filter(Boolean);
        event = lines.map((l) => JSON.parse(l)).find((e) => e.stage === "ResponseComplete" && String(e.requestURI).includes(encodeURIComponent(written)));
        return event !== undefined;
      }, 5_000);
      expect(event?.sourceIPs).toEqual([logged, PROXY]);
    }
  });
});

describe("parseTrustedProxies", () => {
  test("takes addresses and CIDR ranges of both families", () => {
    const trusted = parseTrustedProxies("10.0.0.0/8, 192.0.2.7,fd00::/8");
    expect(trusted.check("10.200.0.1", "ipv4")).toBe(true);
    expect(trusted.check("192.0.2.7", "ipv4")).toBe(true);
    expect(trusted.check("192.0.2.8", "ipv4")).toBe(false);
    expect(trusted.check("fd12::1", "ipv6")).toBe(true);
    expect(trusted.check("::ffff:10.0.0.9", "ipv6")).toBe(true);
  });

  test.each(["10.0.0.0/33", "fd00::/129", "relay.example.com", "10.0.0.0/8/1", "10.0.0.0/", "10.0.0.0/x"])("refuses %p, naming it", (entry) => {
    expect(() => parseTrustedProxies(`192.0.2.1,${entry}`)).toThrow(`--trusted-proxies: ${JSON.stringify(entry)} is not an IP address or CIDR range`);
  });
});
