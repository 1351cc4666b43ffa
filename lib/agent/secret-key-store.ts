// Keeps the agent's key pair in a Kubernetes Secret it may only get and update (see deploy/helm/arcagent).
import type { AgentKeyStore, AgentKeys } from "./agent-state.ts";
import { kubeApiRequest, statusMessageOf } from "./kube-api.ts";
import type { Upstream } from "./upstream.ts";
import { ConfigError } from "../errors/index.ts";

const DATA_KEY = "agent-key.json";

interface Secret {
  metadata?: { resourceVersion?: string };
  data?: Record<string, string>;
  [field: string]: unknown;
}

/**
 * `ref` is NAMESPACE/NAME of a Secret that already exists (the chart ships it empty, because RBAC
 * cannot limit `create` to one name). Throws ConfigError for a malformed ref; load and save throw
 * with the API server's own message and what to check.
 */
export function createSecretKeyStore(upstream: Upstream, ref: string): AgentKeyStore {
  const match = /^([a-z0-9-]{1,63})\/([a-z0-9.-]{1,253})$/.exec(ref);
  if (!match) throw new ConfigError(`--state-secret ${JSON.stringify(ref)}: use NAMESPACE/NAME, e.g. cluster-connect/arcagent-key`);
  const [, namespace, name] = match as unknown as [string, string, string];
  const path = `/api/v1/namespaces/${namespace}/secrets/${name}`;
  const where = `Secret ${namespace}/${name}`;
  const hint = "install the agent with its Helm chart (or deploy/agent.yaml), which creates it and lets the agent read and update it";

  async function read(): Promise<Secret> {
    const res = await kubeApiRequest(upstream, "GET", path).catch((cause: unknown) => {
      throw new Error(`cannot read ${where}: the API server at ${upstream.server.origin} did not answer`, { cause });
    });
    if (res.status !== 200) {
      throw new Error(`cannot read ${where} (HTTP ${res.status}: ${statusMessageOf(res.body) ?? "no message"}): ${hint}`);
    }
    return res.body as Secret;
  }

  return {
    describe: () => where,
    async load() {
      const encoded = (await read()).data?.[DATA_KEY];
      if (!encoded) return undefined;
      let keys: Partial<AgentKeys> | null;
      try {
        keys = JSON.parse(Buffer.from(encoded, "base64").toString("utf8")) as Partial<AgentKeys> | null;
      } catch {
        keys = null;
      }
      if (!keys || typeof keys.cluster !== "string" || typeof keys.privateJwk?.d !== "string" || !keys.publicJwk) {
        throw new Error(`${where} key ${DATA_KEY} is not an agent key: clear it and enroll again with an enrollment token`);
      }
      return keys as AgentKeys;
    },
    async save(keys) {
      const secret = await read();
      // The update carries the resourceVersion read above: a concurrent writer makes this fail, not overwrite.
      secret.data = { ...(secret.data ?? {}), [DATA_KEY]: Buffer.from(JSON.stringify(keys)).toString("base64") };
      const res = await kubeApiRequest(upstream, "PUT", path, secret).catch((cause: unknown) => {
        throw new Error(`cannot store the agent key in ${where}: the API server did not answer`, { cause });
      });
      if (res.status !== 200) {
        throw new Error(`cannot store the agent key in ${where} (HTTP ${res.status}: ${statusMessageOf(res.body) ?? "no message"}): ${hint}`);
      }
    },
  };
}
