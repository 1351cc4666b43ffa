// Puts arcproxy's context into the user's own kubeconfig (as `az connectedk8s proxy` does) and
// takes it out again, leaving every other line of the file as it was.
import { randomBytes } from "node:crypto";
import { chmod, lstat, mkdir, open, readFile, realpath, rename, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, delimiter, dirname, join } from "node:path";
import { isMap, isSeq, parseDocument, type Document, type YAMLMap, type YAMLSeq } from "yaml";
import { ConfigError } from "../errors/index.ts";

/** The extension that marks a cluster, user and context as arcproxy's (kubeconfig `extensions`, a NamedExtension list). */
export const ARCPROXY_EXTENSION = "cluster-connect.io/arcproxy";

/** How long a writer waits for another one's lock (`<file>.lock`, the file client-go locks too). */
export const KUBECONFIG_LOCK_TIMEOUT_MS = 5_000;

export interface MergedContext {
  /** The name of the context, cluster and user written; default the cluster's name. */
  name: string;
  server: string;
  caPem: string;
  token: string;
  namespace?: string;
}

/** What the extension records: who wrote the entry, and what to restore when it goes. */
interface Ownership {
  pid: number;
  session: string;
  previousContext?: string;
}

export interface MergedKubeconfig {
  /** The file written (the first of $KUBECONFIG, else ~/.kube/config, symlinks resolved). */
  path: string;
  context: string;
  /**
   * Removes the context, cluster and user again and makes the previous context current (if it
   * still exists and ours is still current). Entries changed by someone else meanwhile are left. A
   * file that this merge created is deleted once nothing else is in it.
   */
  remove(): Promise<void>;
}

/**
 * The kubeconfig kubectl writes to: the first file of `$KUBECONFIG` (kubectl's own rule for a new
 * entry), else `~/.kube/config`.
 */
export function defaultKubeconfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const first = (env.KUBECONFIG ?? "").split(delimiter).find((p) => p.length > 0);
  return first ?? join(homedir(), ".kube", "config");
}

/**
 * Adds `entry` as a cluster, user and context to the kubeconfig at `path` and makes it current,
 * under the file's lock, with an atomic rename, keeping the file's comments, order, unknown fields
 * and every other entry, and mode 0600. Entries left by an arcproxy that crashed are repaired
 * first. Throws ConfigError (nothing changed) when the file is not valid kubeconfig YAML, when it
 * holds a context, cluster or user of that name that arcproxy did not write (pass another
 * `--context`), or when another process holds the lock for KUBECONFIG_LOCK_TIMEOUT_MS.
 */
export async function mergeKubeconfigContext(path: string, entry: MergedContext, opts: { lockTimeoutMs?: number } = {}): Promise<MergedKubeconfig> {
  const file = await resolveTarget(path);
  const lockTimeoutMs = opts.lockTimeoutMs ?? KUBECONFIG_LOCK_TIMEOUT_MS;
  const session = randomBytes(8).toString("hex");
  const created = !(await lstat(file).then(() => true, () => false));
  let before = "";
  let repairedOthers = false;
  const written = await withKubeconfig(file, lockTimeoutMs, (doc, text) => {
    before = text;
    repairedOthers = repairAbandoned(doc);
    for (const list of ["contexts", "clusters", "users"] as const) {
      const found = findNamed(doc, list, entry.name);
      if (found && !ownership(found.item)) {
        throw new ConfigError(
          `${file} already has a ${list.slice(0, -1)} named "${entry.name}" that arcproxy did not write; ` +
            `leave it as it is and pass --context NAME to use another name, or --kubeconfig-out FILE for a separate file`,
        );
      }
    }
    const previous = doc.get("current-context");
    const owned: Ownership = { pid: process.pid, session, ...(typeof previous === "string" && previous !== entry.name ? { previousContext: previous } : {}) };
    const extensions = [{ name: ARCPROXY_EXTENSION, extension: owned }];
    upsertNamed(doc, "clusters", { name: entry.name, cluster: { server: entry.server, "certificate-authority-data": Buffer.from(entry.caPem).toString("base64"), extensions } });
    upsertNamed(doc, "users", { name: entry.name, user: { token: entry.token, extensions } });
    upsertNamed(doc, "contexts", { name: entry.name, context: { cluster: entry.name, user: entry.name, ...(entry.namespace ? { namespace: entry.namespace } : {}), extensions } });
    doc.set("current-context", entry.name);
    return true;
  });
  let removed: Promise<void> | undefined;
  return {
    path: file,
    context: entry.name,
    remove: () => (removed ??= withKubeconfig(file, lockTimeoutMs, (doc, text) => {
      // Untouched since the merge: the file goes back byte for byte (a re-serialisation would
      // respace flow mappings and requote strings the user wrote their own way).
      if (typeof written === "string" && text === written && !repairedOthers) return created ? "delete" : { verbatim: before };
      const changed = removeOwned(doc, (o) => o.session === session);
      if (created && (["clusters", "users", "contexts"] as const).every((name) => (list(doc, name)?.items.length ?? 0) === 0)) {
        return "delete";
      }
      return changed;
    }).then(() => undefined)),
  };
}

/** Resolves symlinks (a linked ~/.kube/config stays linked) and refuses what is not a file. */
async function resolveTarget(path: string): Promise<string> {
  const real = await realpath(path).catch(() => path);
  const stat = await lstat(real).catch(() => undefined);
  if (stat && !stat.isFile()) throw new ConfigError(`kubeconfig ${path} is not a regular file`);
  return real;
}

/**
 * Runs `change` on the parsed file under its lock and writes the result if it returns true (or
 * deletes the file for "delete"). A file that does not exist starts empty (created with its
 * folder, 0700/0600).
 */
async function withKubeconfig(
  file: string,
  lockTimeoutMs: number,
  change: (doc: Document, text: string) => boolean | "delete" | { verbatim: string },
): Promise<string | boolean> {
  const release = await lock(file, lockTimeoutMs);
  try {
    const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return "";
      throw new ConfigError(`cannot read kubeconfig ${file}: ${error.message}`, { cause: error });
    });
    const doc = parseDocument(text.trim() === "" ? "apiVersion: v1\nkind: Config\n" : text);
    if (doc.errors.length > 0 || !isMap(doc.contents)) {
      throw new ConfigError(
        `kubeconfig ${file} is not valid YAML (${doc.errors[0]?.message.split("\n")[0] ?? "not a mapping"}); arcproxy left it unchanged: ` +
          "fix it, or pass --kubeconfig-out FILE to write a separate kubeconfig",
      );
    }
    const outcome = change(doc, text);
    if (outcome === "delete") {
      await rm(file, { force: true });
      return true;
    }
    if (!outcome) return false;
    // kubectl's layout (sequences not indented under their key) and no folding of long values
    // (certificate data), so untouched entries come out as they went in.
    const out = outcome === true ? doc.toString({ indentSeq: false, lineWidth: 0 }) : outcome.verbatim;
    await writeAtomically(file, out);
    return out;
  } finally {
    await release();
  }
}

async function lock(file: string, timeoutMs: number): Promise<() => Promise<void>> {
  const lockPath = `${file}.lock`;
  const deadline = performance.now() + timeoutMs;
  await mkdirFor(file);
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(lockPath, "wx", 0o600);
      await handle.close();
      return () => rm(lockPath, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new ConfigError(`cannot lock kubeconfig ${file}: ${(error as Error).message}`, { cause: error });
      }
      if (performance.now() >= deadline) {
        throw new ConfigError(
          `kubeconfig ${file} is locked by another program (${lockPath} exists); arcproxy left it unchanged. ` +
            `If no kubectl or arcproxy is writing it, remove ${lockPath}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(200, 10 * 2 ** attempt)));
    }
  }
}

async function mkdirFor(file: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const temp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    await writeFile(temp, text, { mode: 0o600, flag: "wx" });
    await chmod(temp, 0o600);
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true }).catch(() => {});
    throw new ConfigError(`cannot write kubeconfig ${file}: ${(error as Error).message}`, { cause: error });
  }
}

type ListName = "clusters" | "users" | "contexts";
const BODY: Record<ListName, string> = { clusters: "cluster", users: "user", contexts: "context" };

function list(doc: Document, name: ListName): YAMLSeq | undefined {
  const value = doc.get(name);
  return isSeq(value) ? value : undefined;
}

function findNamed(doc: Document, name: ListName, entryName: string): { index: number; item: YAMLMap } | undefined {
  const seq = list(doc, name);
  const index = seq?.items.findIndex((item) => isMap(item) && item.get("name") === entryName) ?? -1;
  return index >= 0 ? { index, item: seq!.items[index] as YAMLMap } : undefined;
}

function upsertNamed(doc: Document, name: ListName, value: Record<string, unknown>): void {
  const node = doc.createNode(value);
  const seq = list(doc, name);
  if (!seq) {
    doc.set(name, doc.createNode([value]));
    return;
  }
  const found = findNamed(doc, name, value.name as string);
  if (found) seq.items[found.index] = node;
  else seq.items.push(node);
}

/** arcproxy's record on an entry (its context's or cluster's extension), if it has one. */
function ownership(item: YAMLMap): Ownership | undefined {
  for (const body of Object.values(BODY)) {
    const inner = item.get(body);
    if (!isMap(inner)) continue;
    const extensions = inner.get("extensions");
    if (!isSeq(extensions)) continue;
    for (const ext of extensions.items) {
      if (!isMap(ext) || ext.get("name") !== ARCPROXY_EXTENSION) continue;
      const value = (ext.toJSON() as { extension?: Ownership }).extension;
      if (value && typeof value.pid === "number" && typeof value.session === "string") return value;
    }
  }
  return undefined;
}

/** Contexts of arcproxy processes that are gone (killed, crashed): removed as their owner would have. */
function repairAbandoned(doc: Document): boolean {
  return removeOwned(doc, (owner) => !processAlive(owner.pid));
}

/**
 * Removes the contexts whose owner matches, with the cluster and user of the same name (when
 * ours), and restores the previous current context where ours was current. Returns whether the
 * document changed.
 */
function removeOwned(doc: Document, matches: (owner: Ownership) => boolean): boolean {
  const contexts = list(doc, "contexts");
  if (!contexts) return false;
  let changed = false;
  for (const item of [...contexts.items]) {
    if (!isMap(item)) continue;
    const owner = ownership(item);
    if (!owner || !matches(owner)) continue;
    const name = item.get("name") as string;
    contexts.items.splice(contexts.items.indexOf(item), 1);
    for (const other of ["clusters", "users"] as const) {
      const found = findNamed(doc, other, name);
      if (found && ownership(found.item)?.session === owner.session) list(doc, other)!.items.splice(found.index, 1);
    }
    if (doc.get("current-context") === name) {
      if (owner.previousContext && findNamed(doc, "contexts", owner.previousContext)) doc.set("current-context", owner.previousContext);
      else doc.delete("current-context");
    }
    // Sessions started on top of this one go back to what this one went back to.
    repointPrevious(doc, name, owner.previousContext);
    changed = true;
  }
  return changed;
}

/** In every arcproxy extension whose previousContext is `from`, sets it to `to` (or drops it). */
function repointPrevious(doc: Document, from: string, to: string | undefined): void {
  for (const listName of ["contexts", "clusters", "users"] as const) {
    for (const item of list(doc, listName)?.items ?? []) {
      if (!isMap(item)) continue;
      const extensions = (item.get(BODY[listName]) as YAMLMap | undefined)?.get?.("extensions");
      if (!isSeq(extensions)) continue;
      for (const ext of extensions.items) {
        if (!isMap(ext) || ext.get("name") !== ARCPROXY_EXTENSION) continue;
        const value = ext.get("extension");
        if (!isMap(value) || value.get("previousContext") !== from) continue;
        if (to === undefined) value.delete("previousContext");
        else value.set("previousContext", to);
      }
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, but another user's.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
