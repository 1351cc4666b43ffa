// arcproxy's context goes into the user's kubeconfig and out again; nothing else in the file changes.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { lstat, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { ConfigError } from "../../lib/errors/index.ts";
import { defaultKubeconfigPath, mergeKubeconfigContext } from "../../lib/kube/index.ts";

// As kubectl writes it (sequences at their key's indent), with what users add by hand.
const USERS_KUBECONFIG = `# my clusters
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: ${"QUJD".repeat(400)}
    server: https://kind.example:6443
  name: kind-dev
contexts:
- context:
    cluster: kind-dev
    namespace: team-a # where I work
    user: kind-dev
  name: kind-dev
current-context: kind-dev
kind: Config
preferences: {}
users:
- name: kind-dev
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: kubelogin
      args:
      - get-token
    x-vendor-field: kept
`;

const ENTRY = { name: "prod", server: "https://127.0.0.1:47011", caPem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", token: "session-secret" };

let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "arc-kubeconfig-merge-"));
  path = join(dir, "config");
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const names = (config: { contexts?: { name: string }[] }) => (config.contexts ?? []).map((c) => c.name);

describe("mergeKubeconfigContext", () => {
  test("adds the context and makes it current; removing it gives back the file byte for byte", async () => {
    await writeFile(path, USERS_KUBECONFIG, { mode: 0o644 });
    const merged = await mergeKubeconfigContext(path, ENTRY);
    const during = parse(await readFile(path, "utf8"));
    expect(names(during)).toEqual(["kind-dev", "prod"]);
    expect(during["current-context"]).toBe("prod");
    expect(during.users.find((u: { name: string }) => u.name === "prod").user.token).toBe("session-secret");
    expect(during.users.find((u: { name: string }) => u.name === "kind-dev").user["x-vendor-field"]).toBe("kept");
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await merged.remove();
    expect(await readFile(path, "utf8")).toBe(USERS_KUBECONFIG);
  });

  test("a hand-written file (flow mappings, quotes, no trailing newline) comes back byte for byte", async () => {
    const path = join(dir, "config");
    const handWritten = `apiVersion: v1\nkind: Config\nclusters:\n- name: work\n  cluster: {server: "https://work.example:6443"}\ncontexts:\n- name: work\n  context: {cluster: work, user: me}\ncurrent-context: 'work'\nusers:\n- name: me\n  user: {token: abc}`;
    await writeFile(path, handWritten, { mode: 0o600 });
    const merged = await mergeKubeconfigContext(path, ENTRY);
    expect(parse(await readFile(path, "utf8"))["current-context"]).toBe("prod");
    await merged.remove();
    expect(await readFile(path, "utf8")).toBe(handWritten);
  });

  test("a context the user switched to meanwhile stays current", async () => {
    await writeFile(path, USERS_KUBECONFIG);
    const merged = await mergeKubeconfigContext(path, ENTRY);
    const text = (await readFile(path, "utf8")).replace("current-context: prod", "current-context: kind-dev");
    await writeFile(path, text);
    await merged.remove();
    const after = parse(await readFile(path, "utf8"));
    expect(after["current-context"]).toBe("kind-dev");
    expect(names(after)).toEqual(["kind-dev"]);
  });

  test("no kubeconfig yet: one is created (0600) and deleted again on removal", async () => {
    const nested = join(dir, "home", ".kube", "config");
    const merged = await mergeKubeconfigContext(nested, ENTRY);
    expect((await stat(nested)).mode & 0o777).toBe(0o600);
    expect(parse(await readFile(nested, "utf8"))["current-context"]).toBe("prod");
    await merged.remove();
    expect(await lstat(nested).then(() => "exists", () => "gone")).toBe("gone");
  });

  test("a kubeconfig it created but someone added to meanwhile is kept, without ours", async () => {
    const merged = await mergeKubeconfigContext(path, ENTRY);
    const other = await mergeKubeconfigContext(path, { ...ENTRY, name: "other" });
    await merged.remove();
    expect(names(parse(await readFile(path, "utf8")))).toEqual(["other"]);
    await other.remove();
  });

  test("a symlinked kubeconfig stays a symlink; its target is written", async () => {
    const target = join(dir, "real-config");
    await writeFile(target, USERS_KUBECONFIG);
    await symlink(target, path);
    const merged = await mergeKubeconfigContext(path, ENTRY);
    expect((await lstat(path)).isSymbolicLink()).toBe(true);
    expect(merged.path).toBe(target);
    await merged.remove();
    expect(await readFile(target, "utf8")).toBe(USERS_KUBECONFIG);
  });

  test.each([
    ["not YAML", "apiVersion: v1\nclusters: [\n"],
    ["not a mapping", "- just\n- a list\n"],
  ])("a kubeconfig that is %s is refused and left unchanged", async (_what, text) => {
    await writeFile(path, text);
    const error = await mergeKubeconfigContext(path, ENTRY).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).toContain("is not valid YAML");
    expect(await readFile(path, "utf8")).toBe(text);
  });

  test("a context of the same name that arcproxy did not write is never replaced", async () => {
    const text = USERS_KUBECONFIG.replaceAll("kind-dev", "prod");
    await writeFile(path, text);
    const error = await mergeKubeconfigContext(path, ENTRY).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).toContain('already has a context named "prod" that arcproxy did not write');
    expect(String(error)).toContain("--context NAME");
    expect(await readFile(path, "utf8")).toBe(text);
  });

  test("a locked kubeconfig is refused after the lock timeout, naming the lock file, and left unchanged", async () => {
    await writeFile(path, USERS_KUBECONFIG);
    await writeFile(`${path}.lock`, "");
    const error = await mergeKubeconfigContext(path, ENTRY, { lockTimeoutMs: 100 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).toContain(`${path}.lock exists`);
    expect(await readFile(path, "utf8")).toBe(USERS_KUBECONFIG);
  });

  test("two sessions writing at once both land (the lock serialises them)", async () => {
    await writeFile(path, USERS_KUBECONFIG);
    const [a, b] = await Promise.all([
      mergeKubeconfigContext(path, { ...ENTRY, name: "prod" }),
      mergeKubeconfigContext(path, { ...ENTRY, name: "staging" }),
    ]);
    expect(names(parse(await readFile(path, "utf8"))).sort()).toEqual(["kind-dev", "prod", "staging"]);
    await Promise.all([a.remove(), b.remove()]);
    expect(names(parse(await readFile(path, "utf8")))).toEqual(["kind-dev"]);
    expect(parse(await readFile(path, "utf8"))["current-context"]).toBe("kind-dev");
  });

  test("the context of an arcproxy that was killed is repaired by the next start", async () => {
    await writeFile(path, USERS_KUBECONFIG);
    const dead = Bun.spawn(["true"]);
    await dead.exited;
    await mergeKubeconfigContext(path, { ...ENTRY, name: "crashed" });
    // Pretend that session belonged to the process that is gone.
    await writeFile(path, (await readFile(path, "utf8")).replaceAll(`pid: ${process.pid}`, `pid: ${dead.pid}`));
    const next = await mergeKubeconfigContext(path, ENTRY);
    const during = parse(await readFile(path, "utf8"));
    expect(names(during)).toEqual(["kind-dev", "prod"]);
    await next.remove();
    expect(await readFile(path, "utf8")).toBe(USERS_KUBECONFIG);
  });
});

describe("defaultKubeconfigPath", () => {
  test("the first file of KUBECONFIG, else ~/.kube/config", () => {
    expect(defaultKubeconfigPath({ KUBECONFIG: "/a/one:/b/two" })).toBe("/a/one");
    expect(defaultKubeconfigPath({ KUBECONFIG: ":/b/two" })).toBe("/b/two");
    expect(defaultKubeconfigPath({ HOME: "/h" }).endsWith(join(".kube", "config"))).toBe(true);
  });
});
