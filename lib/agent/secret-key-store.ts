// Keeps the agent's key pair in a Kubernetes Secret it may only get and update (see deploy/agent.yaml).
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import type { AgentKeyStore, AgentKeys } from "./agent-state.ts";

const DATA_KEY = "agent-key.json";

/** `ref` is NAMESPACE/NAME of a Secret that already exists (the manifest ships it empty). */
export function createSecretKeyStore(kubeConfig: KubeConfig, ref: string): AgentKeyStore {
  const match = /^([a-z0-9-]{1,63})\/([a-z0-9.-]{1,253})$/.exec(ref);
  if (!match) throw new TypeError(`--state-secret ${JSON.stringify(ref)}: use NAMESPACE/NAME, e.g. cluster-connect/arcagent-key`);
  const [, namespace, name] = match as unknown as [string, string, string];
  const api = kubeConfig.makeApiClient(CoreV1Api);
  const where = `Secret ${namespace}/${name}`;

  async function read() {
    try {
      return await api.readNamespacedSecret({ name, namespace });
    } catch (error) {
      throw new Error(`cannot read ${where}: apply deploy/agent.yaml, which creates it and lets the agent read it`, { cause: error });
    }
  }

  return {
    describe: () => where,
    async load() {
      const encoded = (await read()).data?.[DATA_KEY];
      if (!encoded) return undefined;
      const keys = JSON.parse(Buffer.from(encoded, "base64").toString("utf8")) as Partial<AgentKeys>;
      if (typeof keys.cluster !== "string" || typeof keys.privateJwk?.d !== "string" || !keys.publicJwk) {
        throw new Error(`${where} key ${DATA_KEY} is not an agent key: clear it and enroll again with an enrollment token`);
      }
      return keys as AgentKeys;
    },
    async save(keys) {
      const secret = await read();
      // Replace carries the resourceVersion read above: a concurrent writer makes this fail, not overwrite.
      secret.data = { ...(secret.data ?? {}), [DATA_KEY]: Buffer.from(JSON.stringify(keys)).toString("base64") };
      await api.replaceNamespacedSecret({ name, namespace, body: secret }).catch((error: unknown) => {
        throw new Error(`cannot store the agent key in ${where}`, { cause: error });
      });
    },
  };
}
