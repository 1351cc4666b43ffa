// Shopify's toxiproxy, the fault-injection TCP proxy, built from its Go module and driven through
// its HTTP API: latency, black holes (`timeout`), resets (`reset_peer`), a link switched off.
import { join } from "node:path";
import { buildGoModule } from "../cluster/go-build.ts";
import { freePorts } from "../cluster/control-plane.ts";
import { startProcess, type ManagedProcess } from "../cluster/proc.ts";

export interface Toxiproxy {
  /** Creates a proxy listening on a free loopback port in front of `upstream` (host:port); returns the port. */
  proxy(name: string, upstream: string): Promise<number>;
  /** Adds a toxic (https://github.com/Shopify/toxiproxy#toxics) to both directions unless `stream` says otherwise. */
  addToxic(proxy: string, toxic: { name: string; type: string; stream?: "upstream" | "downstream"; attributes?: Record<string, number> }): Promise<void>;
  removeToxic(proxy: string, toxic: string): Promise<void>;
  /** A disabled proxy closes its connections and refuses new ones: the link is gone. */
  setEnabled(proxy: string, enabled: boolean): Promise<void>;
  stop(): Promise<void>;
}

const MODULE_DIR = join(import.meta.dir, "toxiproxy");

/** Builds (once per machine) and starts toxiproxy's server on a free loopback port. */
export async function startToxiproxy(dir: string, log?: (line: string) => void): Promise<Toxiproxy> {
  const binDir = await buildGoModule({ name: "toxiproxy", moduleDir: MODULE_DIR, packages: ["github.com/Shopify/toxiproxy/v2/cmd/server"] }, log);
  const [apiPort] = await freePorts(1);
  const server: ManagedProcess = startProcess("toxiproxy", [join(binDir, "server"), "-host", "127.0.0.1", "-port", String(apiPort)], join(dir, "toxiproxy.log"));
  const api = `http://127.0.0.1:${apiPort}`;
  const streamsOf = new Map<string, string[]>();
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(api + path, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { "content-type": "application/json" } });
    const text = await res.text();
    if (!res.ok) throw new Error(`toxiproxy ${method} ${path}: ${res.status} ${text}`);
    return text;
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (server.hasExited()) throw new Error(`toxiproxy exited:\n${server.logTail()}`);
    if ((await fetch(`${api}/version`).catch(() => undefined))?.ok) break;
    if (Date.now() > deadline) throw new Error(`toxiproxy did not answer within 15s:\n${server.logTail()}`);
    await Bun.sleep(100);
  }
  return {
    async proxy(name, upstream) {
      const [port] = await freePorts(1);
      await call("POST", "/proxies", { name, listen: `127.0.0.1:${port}`, upstream, enabled: true });
      return port!;
    },
    async addToxic(proxy, toxic) {
      const streams = toxic.stream ? [toxic.stream] : ["upstream", "downstream"];
      streamsOf.set(`${proxy}/${toxic.name}`, streams);
      for (const stream of streams) {
        await call("POST", `/proxies/${proxy}/toxics`, { name: `${toxic.name}-${stream}`, type: toxic.type, stream, toxicity: 1, attributes: toxic.attributes ?? {} });
      }
    },
    async removeToxic(proxy, toxic) {
      for (const stream of streamsOf.get(`${proxy}/${toxic}`) ?? []) await call("DELETE", `/proxies/${proxy}/toxics/${toxic}-${stream}`);
      streamsOf.delete(`${proxy}/${toxic}`);
    },
    async setEnabled(proxy, enabled) {
      await call("POST", `/proxies/${proxy}`, { enabled });
    },
    stop: () => server.stop(),
  };
}
