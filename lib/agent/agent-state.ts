// Keeps the agent's Ed25519 key pair between restarts: a file in --state-dir, mode 0600.
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { JWK } from "jose";

export interface AgentKeys {
  cluster: string;
  privateJwk: JWK;
  publicJwk: JWK;
  /** False while the key is stored but its enrollment not yet confirmed; absent (older files) means enrolled. */
  enrolled?: boolean;
}

/** Where the key lives; a Kubernetes Secret store can implement the same two methods. */
export interface AgentKeyStore {
  load(): Promise<AgentKeys | undefined>;
  save(keys: AgentKeys): Promise<void>;
  describe(): string;
}

const KEY_FILE = "agent-key.json";

export function createFileKeyStore(stateDir: string): AgentKeyStore {
  const path = join(stateDir, KEY_FILE);
  return {
    describe: () => path,
    async load() {
      let text: string;
      try {
        text = await readFile(path, "utf8");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw new Error(`cannot read the agent key at ${path}`, { cause: error });
      }
      let keys: Partial<AgentKeys> | null;
      try {
        keys = JSON.parse(text) as Partial<AgentKeys> | null;
      } catch {
        keys = null;
      }
      if (!keys || typeof keys.cluster !== "string" || typeof keys.privateJwk?.d !== "string" || !keys.publicJwk) {
        throw new Error(`${path} is not an agent key file: remove it and enroll again with --enroll-token`);
      }
      return keys as AgentKeys;
    },
    async save(keys) {
      await mkdir(stateDir, { recursive: true, mode: 0o700 });
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, JSON.stringify(keys, null, 2) + "\n", { mode: 0o600 });
      await chmod(tmp, 0o600);
      await rename(tmp, path);
    },
  };
}
