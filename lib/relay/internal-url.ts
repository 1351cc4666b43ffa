// The address other replicas reach this one at, when --internal-url is not given.
import { networkInterfaces } from "node:os";
import { isLoopbackHost } from "../kube/index.ts";

/** `--internal-listen` default port. */
export const DEFAULT_INTERNAL_PORT = 8444;

/**
 * https://HOST:PORT for the internal endpoint listening on `listening`: its own host when it is a
 * specific address, else this host's first non-internal IPv4 address (a pod's IP), else its first
 * IPv6 one. Throws when the host has no address other replicas could reach (pass --internal-url).
 */
export function defaultInternalUrl(listening: { host: string; port: number }): string {
  const specific = listening.host !== "0.0.0.0" && listening.host !== "::" && listening.host !== "";
  if (specific) return `https://${bracket(listening.host)}:${listening.port}`;
  const addresses = Object.values(networkInterfaces()).flat().filter((a) => a && !a.internal && !isLoopbackHost(a.address));
  const chosen = addresses.find((a) => a!.family === "IPv4") ?? addresses.find((a) => a!.family === "IPv6" && !a!.address.startsWith("fe80"));
  if (!chosen) {
    throw new Error("this host has no network address other replicas could reach: pass --internal-url https://HOST:PORT");
  }
  return `https://${bracket(chosen.address)}:${listening.port}`;
}

function bracket(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
