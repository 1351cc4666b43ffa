// The status page's edges, without a browser: body limits, who may see what, sessions per admin.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { CLUSTER, startHarness, type Harness } from "./hardening/harness.ts";

setDefaultTimeout(30_000);
let h: Harness;

beforeAll(async () => {
  h = await startHarness({ relayOptions: { authRateLimit: false } });
  await h.relay.store.addGrant({ principal: "user:root", cluster: "*", role: "relay-admin" });
});
afterAll(() => h?.stop());

/** Signs in as a browser would (same-origin form post); resolves with the session cookie. */
async function signIn(token: string): Promise<string> {
  const res = await fetch(`${h.base}/ui/sign-in`, {
    method: "POST", redirect: "manual",
    headers: { origin: h.relay.url, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token }).toString(),
  });
  expect(res.status).toBe(303);
  return res.headers.get("set-cookie")!.split(";")[0]!;
}

test("a form body over 16 KiB is refused before it is read; sign-out reads nothing without a session", async () => {
  const big = "token=" + "x".repeat(200_000);
  const signIn = await fetch(`${h.base}/ui/sign-in`, { method: "POST", headers: { origin: h.relay.url, "content-type": "application/x-www-form-urlencoded" }, body: big });
  expect(signIn.status).toBe(413);
  const signOut = await fetch(`${h.base}/ui/sign-out`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: big });
  expect([403, 413]).toContain(signOut.status);
});

test("a token with a NUL or a line break is a 400, not a 500", async () => {
  const res = await fetch(`${h.base}/ui/sign-in`, { method: "POST", headers: { origin: h.relay.url, "content-type": "application/x-www-form-urlencoded" }, body: "token=a%00b" });
  expect(res.status).toBe(400);
});

test("a relay admin whose grant is taken away loses the view at the next refresh", async () => {
  const token = await h.issuer.signUserToken({ user: "root" });
  const cookie = await signIn(token);
  const before = (await (await fetch(`${h.base}/ui/status.json`, { headers: { cookie } })).json()) as { relayAdmin: boolean; clusters: { name: string }[] };
  expect(before.relayAdmin).toBe(true);
  expect(before.clusters.map((c) => c.name)).toContain(CLUSTER);
  await h.relay.store.removeGrant({ principal: "user:root", role: "relay-admin" });
  const after = (await (await fetch(`${h.base}/ui/status.json`, { headers: { cookie } })).json()) as { relayAdmin: boolean; clusters: unknown[] };
  expect(after).toMatchObject({ relayAdmin: false, clusters: [] });
  await h.relay.store.addGrant({ principal: "user:root", cluster: "*", role: "relay-admin" });
});

test("many sign-ins of one admin replace their own sessions, never another admin's", async () => {
  await h.relay.store.addGrant({ principal: "user:carol", cluster: CLUSTER, role: "cluster-admin" });
  const root = await signIn(await h.issuer.signUserToken({ user: "root" }));
  const carol = await h.issuer.signUserToken({ user: "carol" });
  for (let i = 0; i < 30; i++) await signIn(carol);
  expect((await fetch(`${h.base}/ui/status.json`, { headers: { cookie: root } })).status).toBe(200);
});

test("requests without any credential are neither listed as refusals nor able to push real ones out", async () => {
  await fetch(`${h.base}/v1/clusters/${CLUSTER}/k8s/api/v1/secrets`, { headers: { authorization: "Bearer forged.forged.forged" } });
  for (let i = 0; i < 80; i++) await (await fetch(`${h.base}/v1/clusters/${CLUSTER}/k8s/api/v1/x${i}`)).arrayBuffer();
  const cookie = await signIn(await h.issuer.signUserToken({ user: "root" }));
  const status = (await (await fetch(`${h.base}/ui/status.json`, { headers: { cookie } })).json()) as { refusals: { code: number; message: string }[] };
  expect(status.refusals.some((r) => r.code === 401)).toBe(true);
  expect(status.refusals.every((r) => !r.message.includes("/api/v1/x"))).toBe(true);
});
