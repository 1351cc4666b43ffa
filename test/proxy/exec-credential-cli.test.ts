// arcproxy credential and arcproxy kubeconfig as real processes, and real kubectl running the generated exec plugin.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { parse } from "yaml";
import { createSelfSignedCertificate } from "../../lib/http/index.ts";

setDefaultTimeout(15_000);

const ENTRY = join(import.meta.dir, "../../cmd/arcproxy.ts");
const CLUSTER = "edge-1";
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arcproxy-credential-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

function signJwt(expSeconds: number): Promise<string> {
  return new SignJWT({ sub: "alice" }).setProtectedHeader({ alg: "HS256" }).setExpirationTime(expSeconds).sign(new TextEncoder().encode("test-secret-0123456789abcdef"));
}

async function runArcproxy(args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}) {
  const { ARC_TOKEN: _drop, ACTIONS_ID_TOKEN_REQUEST_URL: _url, ACTIONS_ID_TOKEN_REQUEST_TOKEN: _rt, ...inherited } = process.env;
  const child = Bun.spawn([process.execPath, ENTRY, ...args], { stdout: "pipe", stderr: "pipe", cwd: opts.cwd, env: { ...inherited, ...opts.env } });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { stdout, stderr, code };
}

test("credential prints an ExecCredential with the token and its JWT expiry", async () => {
  const exp = Math.floor(Date.now() / 1000) + 900;
  const jwt = await signJwt(exp);
  const file = join(dir, "cred-token");
  await writeFile(file, jwt + "\n");
  const { stdout, stderr, code } = await runArcproxy(["credential", "--relay", "https://relay.example.com", "--cluster", CLUSTER, "--token-file", file]);
  expect(stderr).toBe("");
  expect(code).toBe(0);
  expect(JSON.parse(stdout)).toEqual({
    apiVersion: "client.authentication.k8s.io/v1",
    kind: "ExecCredential",
    status: { token: jwt, expirationTimestamp: new Date(exp * 1000).toISOString().replace(".000Z", "Z") },
  });
});

test("credential with a failing --token-command: one line on stderr naming the failure, exit 1, nothing on stdout", async () => {
  const { stdout, stderr, code } = await runArcproxy([
    "credential", "--relay", "https://relay.example.com", "--cluster", CLUSTER, "--token-command", "echo 'not logged in' >&2; exit 2",
  ]);
  expect(code).toBe(1);
  expect(stdout).toBe("");
  expect(stderr).toBe("arcproxy: token command echo exited with status 2: not logged in\n");
});

test("credential with two token sources is refused", async () => {
  const { stderr, code } = await runArcproxy(["credential", "--relay", "https://r", "--cluster", CLUSTER, "--token", "a", "--token-file", "/f"]);
  expect(code).toBe(1);
  expect(stderr).toBe("arcproxy: pass one token source, not --token and --token-file\n");
});

test("credential --token-source github-actions outside a job with id-token: write says so", async () => {
  const { stderr, code } = await runArcproxy(["credential", "--relay", "https://r", "--cluster", CLUSTER, "--token-source", "github-actions"]);
  expect(code).toBe(1);
  expect(stderr).toStartWith("arcproxy: --token-source github-actions needs `permissions: id-token: write` in the workflow");
});

test("kubeconfig: server on the relay, CA from --relay-ca, exec runs this arcproxy with the same token flags", async () => {
  const caFile = join(dir, "ca-for-shape.pem");
  await writeFile(caFile, "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n");
  const { stdout, stderr, code } = await runArcproxy(
    ["kubeconfig", "--relay", "https://relay.example.com/", "--cluster", CLUSTER, "--relay-ca", caFile, "--token-source", "github-actions", "--audience", "my-relay"],
  );
  expect(stderr).toBe("");
  expect(code).toBe(0);
  const config = parse(stdout);
  expect(config.clusters[0].cluster.server).toBe(`https://relay.example.com/v1/clusters/${CLUSTER}/k8s`);
  expect(Buffer.from(config.clusters[0].cluster["certificate-authority-data"], "base64").toString()).toContain("MIIBfake");
  const exec = config.users[0].user.exec;
  expect(exec.apiVersion).toBe("client.authentication.k8s.io/v1");
  expect(exec.interactiveMode).toBe("Never");
  expect(exec.command).toBe(process.execPath);
  expect(exec.args).toEqual([
    ENTRY, "credential", "--relay", "https://relay.example.com", "--cluster", CLUSTER, "--token-source", "github-actions", "--audience", "my-relay",
  ]);
});

test("kubeconfig for a plain-http relay warns that kubectl will send no credential, and what to use instead", async () => {
  const r = await runArcproxy(["kubeconfig", "--relay", "http://127.0.0.1:9", "--cluster", CLUSTER, "--token-file", "/run/token"]);
  expect(r.code).toBe(0);
  expect(r.stderr).toContain("kubectl runs no credential plugin for a plain-http server");
  expect(r.stderr).toContain("use arcproxy --cluster NAME");
  const https = await runArcproxy(["kubeconfig", "--relay", "https://relay.example.com", "--cluster", CLUSTER, "--token-file", "/run/token"]);
  expect(https.stderr).toBe("");
});

test("kubeconfig makes a relative --token-file absolute and refuses a literal --token", async () => {
  const relative = await runArcproxy(["kubeconfig", "--relay", "https://r.example", "--cluster", CLUSTER, "--token-file", "token.txt"], { cwd: dir });
  expect(relative.code).toBe(0);
  expect(parse(relative.stdout).users[0].user.exec.args.slice(-2)).toEqual(["--token-file", join(dir, "token.txt")]);

  const literal = await runArcproxy(["kubeconfig", "--relay", "https://r.example", "--cluster", CLUSTER, "--token", "secret"]);
  expect(literal.code).toBe(1);
  expect(literal.stdout).toBe("");
  expect(literal.stderr).toStartWith("arcproxy: --token would be written into the kubeconfig in clear");
});

test("kubectl runs the generated exec plugin and sends its token to the relay over https", async () => {
  const { certPem, keyPem, caPem } = await createSelfSignedCertificate({ commonName: "test" });
  const authorizations: string[] = [];
  // Stands in for arcrelay's /v1/clusters/NAME/k8s endpoint.
  const relay = https.createServer({ cert: certPem, key: keyPem }, (req, res) => {
    authorizations.push(req.headers.authorization ?? "");
    if (req.url?.split("?")[0] === `/v1/clusters/${CLUSTER}/k8s/version`) {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ major: "1", minor: "33", gitVersion: "v1.33.0-relay" }));
    } else {
      res.writeHead(404, { "content-type": "application/json" }).end('{"kind":"Status","apiVersion":"v1","status":"Failure","code":404}');
    }
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = relay.address() as { port: number };
    const caFile = join(dir, "relay-ca.pem");
    await writeFile(caFile, caPem);
    const jwt = await signJwt(Math.floor(Date.now() / 1000) + 600);
    const counter = join(dir, "kubectl-runs");
    const tokenCommand = `echo run >> '${counter}'; printf '%s' '${jwt}'`;
    const generated = await runArcproxy(["kubeconfig", "--relay", `https://127.0.0.1:${port}`, "--cluster", CLUSTER, "--relay-ca", caFile, "--token-command", tokenCommand]);
    expect(generated.stderr).toBe("");
    const kubeconfig = join(dir, "kubeconfig");
    await writeFile(kubeconfig, generated.stdout, { mode: 0o600 });

    const { ARC_TOKEN: _drop, ...env } = process.env;
    // Not `get --raw`: kubectl sends a raw path without the server URL's path prefix.
    const kubectl = Bun.spawn(["kubectl", "--kubeconfig", kubeconfig, "version", "-o", "json"], { stdout: "pipe", stderr: "pipe", env });
    const [stdout, stderr, code] = await Promise.all([new Response(kubectl.stdout).text(), new Response(kubectl.stderr).text(), kubectl.exited]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(JSON.parse(stdout).serverVersion.gitVersion).toBe("v1.33.0-relay");
    expect(authorizations.length).toBeGreaterThan(0);
    expect(new Set(authorizations)).toEqual(new Set([`Bearer ${jwt}`]));
    expect(await Bun.file(counter).exists()).toBe(true);
  } finally {
    await new Promise<void>((resolve) => relay.close(() => resolve()));
  }
});
