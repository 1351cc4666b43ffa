// action.yml, the GitHub Actions composite action, run step by step as the runner runs it.
//
// A stand-in for the GitHub runner (it cannot run here): this test expands `${{ inputs.* }}` and
// `${{ runner.temp }}`, gives each step the runner's files (GITHUB_PATH, GITHUB_ENV, GITHUB_OUTPUT)
// and runs its `run:` with bash, as a composite action's steps are run. The relay, install.sh and
// arcproxy are real; the binary the relay serves is a wrapper that runs arcproxy from source.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { silentLogger } from "../../lib/observe/index.ts";
import { startRelay, type RunningRelay } from "../../lib/relay/index.ts";

setDefaultTimeout(60_000);
const ROOT = join(import.meta.dir, "..", "..");

interface ActionStep { name: string; id?: string; shell: string; env?: Record<string, string>; run: string }
interface Action { inputs: Record<string, { required?: boolean; default?: string }>; outputs: Record<string, { value: string }>; runs: { using: string; steps: ActionStep[] } }

let dir: string;
let relay: RunningRelay;
let action: Action;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-action-"));
  action = parse(await readFile(join(ROOT, "action.yml"), "utf8")) as Action;
  const downloads = join(dir, "downloads", "linux-amd64");
  await mkdir(downloads, { recursive: true });
  await writeFile(join(downloads, "arcproxy"), `#!/bin/sh\nexec "${process.execPath}" "${join(ROOT, "cmd", "arcproxy.ts")}" "$@"\n`, { mode: 0o755 });
  relay = await startRelay({ host: "127.0.0.1", port: 0, dataDir: join(dir, "relay"), downloadsDir: join(dir, "downloads"), logger: silentLogger });
});

afterAll(async () => {
  await relay?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Runs the action's steps in order, as the runner would; stops at the first failing step. */
async function runAction(inputs: Record<string, string>, env: Record<string, string> = {}) {
  const job = await mkdtemp(join(dir, "job-"));
  const files = { GITHUB_PATH: join(job, "path"), GITHUB_ENV: join(job, "env"), GITHUB_OUTPUT: join(job, "output") };
  for (const file of Object.values(files)) await writeFile(file, "");
  const values = Object.fromEntries(Object.entries(action.inputs).map(([name, spec]) => [name, inputs[name] ?? spec.default ?? ""]));
  const expand = (text: string) => text
    .replace(/\$\{\{\s*inputs\.([\w-]+)\s*\}\}/g, (_, name: string) => values[name] ?? "")
    .replace(/\$\{\{\s*runner\.temp\s*\}\}/g, join(job, "tmp"));
  let log = "";
  for (const step of action.runs.steps) {
    const stepEnv = Object.fromEntries(Object.entries(step.env ?? {}).map(([k, v]) => [k, expand(String(v))]));
    const proc = Bun.spawn(["bash", "-e", "-c", step.run], {
      env: { PATH: process.env.PATH ?? "", HOME: job, RUNNER_TEMP: join(job, "tmp"), GITHUB_ACTION_PATH: ROOT, ...files, ...env, ...stepEnv },
      stdout: "pipe", stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    log += out + err;
    if (code !== 0) return { code, log, job, files };
  }
  return { code: 0, log, job, files };
}

const TOKEN_ENV = { ACTIONS_ID_TOKEN_REQUEST_URL: "https://token.actions.example/stand-in", ACTIONS_ID_TOKEN_REQUEST_TOKEN: "stand-in" };

test("action.yml is a composite action with the inputs relay, cluster and an optional version", () => {
  expect(action.runs.using).toBe("composite");
  expect(action.inputs.relay!.required).toBe(true);
  expect(action.inputs.cluster!.required).toBe(true);
  expect(action.inputs.version!.required).toBe(false);
  expect(action.outputs.kubeconfig!.value).toBe("${{ steps.kubeconfig.outputs.kubeconfig }}");
});

test("installs arcproxy from the relay, puts it on PATH and exports a kubeconfig that gets the job's OIDC token itself", async () => {
  const r = await runAction({ relay: relay.url, cluster: "edge-1" }, TOKEN_ENV);
  expect(r.log).toContain("arcproxy dev installed to");
  expect(r.code).toBe(0);
  const bin = join(r.job, "tmp", "cluster-connect", "bin");
  expect(await readFile(r.files.GITHUB_PATH, "utf8")).toBe(`${bin}\n`);
  const kubeconfigPath = join(r.job, "tmp", "cluster-connect", "kubeconfig");
  expect(await readFile(r.files.GITHUB_ENV, "utf8")).toBe(`KUBECONFIG=${kubeconfigPath}\nARC_RELAY=${relay.url}\n`);
  expect(await readFile(r.files.GITHUB_OUTPUT, "utf8")).toBe(`kubeconfig=${kubeconfigPath}\n`);
  const kubeconfig = parse(await readFile(kubeconfigPath, "utf8"));
  expect(kubeconfig.clusters[0].cluster.server).toBe(`${relay.url}/v1/clusters/edge-1/k8s`);
  // No secret in the file: kubectl asks arcproxy, which asks GitHub for the job's token.
  expect(kubeconfig.users[0].user.exec.args).toEqual(expect.arrayContaining(["credential", "--relay", relay.url, "--cluster", "edge-1", "--token-source", "github-actions", "--audience", "cluster-connect"]));
  expect(JSON.stringify(kubeconfig)).not.toContain("stand-in");
});

test("a version the relay does not serve fails the step with both versions named", async () => {
  const r = await runAction({ relay: relay.url, cluster: "edge-1", version: "9.9.9" }, TOKEN_ENV);
  expect(r.code).toBe(1);
  expect(r.log).toContain("::error::the relay serves arcproxy dev, not the 9.9.9 this workflow asks for");
});

test("a job without id-token: write is told what to add", async () => {
  const r = await runAction({ relay: relay.url, cluster: "edge-1" });
  expect(r.code).toBe(1);
  expect(r.log).toContain("::error::the job has no OIDC token: add 'permissions: id-token: write' to the job");
});

test("the install step runs the action's own install.sh without the job's token-request credentials", async () => {
  const step = action.runs.steps[0]!.run;
  expect(step).toContain('sh "$GITHUB_ACTION_PATH/lib/relay/install.sh"');
  expect(step).toContain("env -u ACTIONS_ID_TOKEN_REQUEST_URL -u ACTIONS_ID_TOKEN_REQUEST_TOKEN");
  expect(step).not.toContain("/install.sh\" | sh");
});

test("a wrong downloads key pin installs nothing", async () => {
  const r = await runAction({ relay: relay.url, cluster: "edge-1", "downloads-key-sha256": "0".repeat(64) }, TOKEN_ENV);
  expect(r.code).toBe(1);
  expect(r.log).toContain("nothing was installed");
  expect(await Bun.file(join(r.job, "tmp", "cluster-connect", "bin", "arcproxy")).exists()).toBe(false);
});
