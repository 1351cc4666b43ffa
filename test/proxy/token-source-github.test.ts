// The github-actions source against a loopback HTTP server standing in for the runner's ID token endpoint.
import { afterAll, beforeAll, expect, test } from "bun:test";
import http from "node:http";
import { SignJWT } from "jose";
import { createTokenSource } from "../../lib/proxy/index.ts";

const REQUEST_TOKEN = "runner-request-token-xyz";

/** Stands in for the GitHub Actions runner's ACTIONS_ID_TOKEN_REQUEST_URL endpoint. */
interface FakeGitHubTokenEndpoint {
  requestUrl: string;
  requests: { url: URL; authorization?: string }[];
  /** The exp (unix seconds) of the next ID token handed out. */
  nextExp: number;
  status: number;
  close(): Promise<void>;
}

async function startFakeGitHubTokenEndpoint(): Promise<FakeGitHubTokenEndpoint> {
  const endpoint: FakeGitHubTokenEndpoint = { requestUrl: "", requests: [], nextExp: 0, status: 200, close: async () => {} };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    endpoint.requests.push({ url, authorization: req.headers.authorization });
    if (req.headers.authorization !== `bearer ${REQUEST_TOKEN}`) {
      res.writeHead(401, { "content-type": "application/json" }).end('{"message":"bad request token"}');
      return;
    }
    if (endpoint.status !== 200) {
      res.writeHead(endpoint.status, { "content-type": "application/json" }).end('{"message":"Unable to get ACTIONS_ID_TOKEN_REQUEST_URL env variable"}');
      return;
    }
    const value = await new SignJWT({ sub: "repo:acme/app:ref:refs/heads/main", aud: url.searchParams.get("audience") ?? "" })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuer("https://token.actions.githubusercontent.com")
      .setExpirationTime(endpoint.nextExp)
      .sign(new TextEncoder().encode("fake-github-secret-0123456789"));
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ count: 1, value }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  endpoint.requestUrl = `http://127.0.0.1:${port}/_apis/distributedtask/hubs/build/plans/p1/jobs/j1/idtoken?api-version=2.0`;
  endpoint.close = () => new Promise((resolve) => server.close(() => resolve()));
  return endpoint;
}

let github: FakeGitHubTokenEndpoint;
beforeAll(async () => {
  github = await startFakeGitHubTokenEndpoint();
});
afterAll(() => github.close());

function manualClock(start = Date.now()) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

test("asks for the audience with the runner's bearer token, and refreshes 60 s before exp", async () => {
  github.requests.length = 0;
  const clock = manualClock();
  github.nextExp = Math.floor(clock.now() / 1000) + 300;
  const source = createTokenSource(
    { kind: "github-actions", audience: "cluster-connect", env: { requestUrl: github.requestUrl, requestToken: REQUEST_TOKEN } },
    { now: clock.now },
  );
  const first = await source.getCredential();
  expect(first.expiresAt).toEqual(new Date(github.nextExp * 1000));
  expect(github.requests).toHaveLength(1);
  const { url, authorization } = github.requests[0]!;
  expect(authorization).toBe(`bearer ${REQUEST_TOKEN}`);
  expect(url.searchParams.get("audience")).toBe("cluster-connect");
  expect(url.searchParams.get("api-version")).toBe("2.0");

  clock.advance(200_000);
  expect(await source.getToken()).toBe(first.token);
  expect(github.requests).toHaveLength(1);

  github.nextExp += 600;
  clock.advance(41_000); // 59 s before exp
  const second = await source.getToken();
  expect(second).not.toBe(first.token);
  expect(github.requests).toHaveLength(2);
  expect(source.describe()).toBe("GitHub Actions ID token (audience cluster-connect)");
});

test("a custom audience is sent as given", async () => {
  github.requests.length = 0;
  github.nextExp = Math.floor(Date.now() / 1000) + 300;
  const source = createTokenSource({ kind: "github-actions", audience: "api://relay.example/x y", env: { requestUrl: github.requestUrl, requestToken: REQUEST_TOKEN } });
  await source.getToken();
  expect(github.requests[0]!.url.searchParams.get("audience")).toBe("api://relay.example/x y");
});

test.each([
  [{}],
  [{ requestUrl: "http://127.0.0.1:1/x?api-version=2.0" }],
  [{ requestToken: REQUEST_TOKEN }],
])("missing runner variables %p: tells the user to grant id-token: write", (env) => {
  expect(() => createTokenSource({ kind: "github-actions", audience: "cluster-connect", env })).toThrow(
    "--token-source github-actions needs `permissions: id-token: write` in the workflow",
  );
});

test("an error from the endpoint is reported with its status and message", async () => {
  github.status = 403;
  try {
    const source = createTokenSource({ kind: "github-actions", audience: "cluster-connect", env: { requestUrl: github.requestUrl, requestToken: REQUEST_TOKEN } });
    await expect(source.getToken()).rejects.toThrow("the GitHub Actions ID token endpoint answered 403: {\"message\":\"Unable to get");
  } finally {
    github.status = 200;
  }
});
