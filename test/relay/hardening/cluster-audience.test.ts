// bindAudienceToCluster: a token made for one cluster is refused on every other.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { SignJWT, type JWK } from "jose";
import { importPrivateJwk, loadOrCreateIssuerKeys } from "../../../lib/auth/index.ts";
import { CLUSTER, OTHER_CLUSTER, expectNoStack, rawExchange, rawRequest, startHarness, statusCodes, type Harness } from "./harness.ts";

setDefaultTimeout(30_000);
let h: Harness;
let keys: { privateJwk: JWK; publicJwk: JWK };

beforeAll(async () => {
  h = await startHarness({ relayOptions: { bindAudienceToCluster: true, authRateLimit: false } });
  keys = await loadOrCreateIssuerKeys(h.relay.store);
  await h.relay.store.addGrant({ principal: "user:carol", cluster: CLUSTER, role: "cluster-user" });
  await h.relay.store.addGrant({ principal: "user:carol", cluster: OTHER_CLUSTER, role: "cluster-user" });
});
afterAll(() => h?.stop());

/** A built-in issuer token for carol (granted on both clusters) with the given `aud`. */
async function tokenFor(aud: string | string[]): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ groups: [] })
    .setProtectedHeader({ alg: "ES256", kid: keys.publicJwk.kid!, typ: "JWT" })
    .setIssuer(h.relay.url).setAudience(aud).setSubject("carol").setIssuedAt(now).setExpirationTime(now + 600)
    .sign(await importPrivateJwk({ ...keys.privateJwk, alg: "ES256" }));
}

async function get(cluster: string, token: string) {
  const res = await fetch(`${h.base}/v1/clusters/${cluster}/k8s/version`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, text: await res.text() };
}

describe("with bindAudienceToCluster", () => {
  test("a token for alpha reaches alpha (the agent still accepts it) and is refused on beta", async () => {
    const forAlpha = await tokenFor(["cluster-connect", `cluster-connect:${CLUSTER}`]);
    expect((await get(CLUSTER, forAlpha)).status).toBe(200);
    expect(h.requests.at(-1)?.headers["impersonate-user"]).toBe("carol");
    const onBeta = await get(OTHER_CLUSTER, forAlpha);
    expect(onBeta.status).toBe(401);
    const body = JSON.parse(onBeta.text) as { reason: string; message: string };
    expect(body.reason).toBe("Unauthorized");
    expect(body.message).toContain(`token audience does not include cluster "${OTHER_CLUSTER}"`);
    expect(body.message).toContain(`cluster-connect:${OTHER_CLUSTER}`);
    expectNoStack(onBeta.text);
  });

  test("a token without any cluster audience (what token create makes today) is refused everywhere", async () => {
    const plain = await h.issuer.signUserToken({ user: "carol" });
    expect((await get(CLUSTER, plain)).status).toBe(401);
    expect((await get(OTHER_CLUSTER, plain)).status).toBe(401);
  });

  test("look-alike audiences do not count", async () => {
    for (const aud of [`cluster-connect:${CLUSTER}x`, `cluster-connect:${CLUSTER.toUpperCase()}`, `cluster-connect:*`, `cluster-connect:`, `cluster-connect:${CLUSTER} `]) {
      expect((await get(CLUSTER, await tokenFor(["cluster-connect", aud]))).status).toBe(401);
    }
  });

  test("the cluster audience alone is not enough: the issuer's own audience is still required", async () => {
    const { status, text } = await get(CLUSTER, await tokenFor(`cluster-connect:${CLUSTER}`));
    expect(status).toBe(401);
    expect(JSON.parse(text).message).toContain("audience does not match");
  });

  test("the cluster details route and upgrades check it too", async () => {
    const forAlpha = await tokenFor(["cluster-connect", `cluster-connect:${CLUSTER}`]);
    const details = await fetch(`${h.base}/v1/clusters/${OTHER_CLUSTER}`, { headers: { authorization: `Bearer ${forAlpha}` } });
    expect(details.status).toBe(401);
    const own = await fetch(`${h.base}/v1/clusters/${CLUSTER}`, { headers: { authorization: `Bearer ${forAlpha}` } });
    expect(own.status).toBe(200);
    const raw = await rawExchange(h.port, rawRequest("GET", `/v1/clusters/${OTHER_CLUSTER}/k8s/api/v1/namespaces/default/pods/demo/exec?command=sh`, [
      `Authorization: Bearer ${forAlpha}`, "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ]));
    expect(statusCodes(raw)).toEqual([401]);
    expect(raw).toContain("token audience does not include cluster");
  });
});
