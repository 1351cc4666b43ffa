// The address a client connected from, kept from the moment it connected: Bun forgets
// `socket.remoteAddress` once the peer resets the connection, and an authentication attempt must
// never go uncounted because its client reset right after sending it. Behind proxies the operator
// trusts (`--trusted-proxies`), the client is the one they name in X-Forwarded-For.
import { BlockList, isIP, type Socket } from "node:net";
import type { IncomingHttpHeaders } from "node:http";
import { ConfigError } from "../errors/index.ts";

/** Proxies whose X-Forwarded-For is believed: parseTrustedProxies' output. */
export type TrustedProxies = BlockList;

interface Connected {
  address: string;
  /** Set when `address` is a trusted proxy: then X-Forwarded-For names the client. */
  trusted?: TrustedProxies;
}

const connections = new WeakMap<object, Connected>();

/** Hops of X-Forwarded-For read at most: a longer chain is cut there (the rest could be anything). */
const MAX_FORWARDED_HOPS = 16;

/**
 * Parses `--trusted-proxies`: comma-separated addresses and CIDR ranges, IPv4 or IPv6
 * (`10.0.0.0/8,fd00::/8,192.0.2.7`). Throws ConfigError naming the first entry that is neither.
 */
export function parseTrustedProxies(list: string): TrustedProxies {
  const trusted = new BlockList();
  for (const raw of list.split(",").map((entry) => entry.trim()).filter(Boolean)) {
    const [address = "", prefix, extra] = raw.split("/");
    const family = isIP(address);
    const bits = prefix === undefined ? (family === 6 ? 128 : 32) : Number(prefix);
    if (family === 0 || extra !== undefined || (prefix !== undefined && !/^\d{1,3}$/.test(prefix)) || bits > (family === 6 ? 128 : 32)) {
      throw new ConfigError(`--trusted-proxies: ${JSON.stringify(raw)} is not an IP address or CIDR range (e.g. 10.0.0.0/8 or fd00::/8)`);
    }
    trusted.addSubnet(address, bits, family === 6 ? "ipv6" : "ipv4");
  }
  return trusted;
}

/**
 * Call on the server's 'connection' event (and 'secureConnection' for TLS): records the address,
 * and whether it is one of `trusted` (the proxies whose X-Forwarded-For clientAddress believes).
 */
export function rememberClientAddress(socket: Socket, trusted?: TrustedProxies): void {
  const address = socket.remoteAddress && canonicalAddress(socket.remoteAddress);
  if (!address) return;
  connections.set(socket, trusted && isTrusted(trusted, address) ? { address, trusted } : { address });
}

/**
 * The client's address for a request (`{ socket, headers }`, a node:http IncomingMessage): the one
 * its connection came from, recorded at connect time, else the socket's current one, else
 * "unknown" (all such clients then share one rate-limit budget rather than having none). When the
 * connection came from a trusted proxy, X-Forwarded-For is read from the right, as nginx's
 * `real_ip_recursive` does: each address a trusted proxy added is taken as the one before it, up to
 * the first that is not a trusted proxy (the client; what a client wrote further left is not
 * believed) or is not an IP address (then the last believed one). An entry's port, which some load
 * balancers add (Azure Application Gateway), is dropped. At most MAX_FORWARDED_HOPS are read.
 */
export function clientAddress(req: { socket?: object | null; headers?: IncomingHttpHeaders } | undefined): string {
  const socket = req?.socket;
  if (!socket) return "unknown";
  const connected = connections.get(socket);
  const remote = (socket as { remoteAddress?: string }).remoteAddress;
  const peer = connected?.address ?? (remote ? canonicalAddress(remote) : "unknown");
  const trusted = connected?.trusted;
  const forwarded = req.headers?.["x-forwarded-for"];
  if (!trusted || !forwarded) return peer;
  // Bun joins repeated lines with ", ", as node does; the last line is the nearest proxy's.
  const value = Array.isArray(forwarded) ? forwarded.join(",") : forwarded;
  let address = peer;
  // From the right, a hop at a time (lastIndexOf, not split: a long header costs only the hops read).
  let end = value.length;
  for (let hops = 0; end > 0 && hops < MAX_FORWARDED_HOPS; hops++) {
    const start = value.lastIndexOf(",", end - 1);
    const hop = hostOf(value.slice(start + 1, end).trim());
    end = start < 0 ? 0 : start;
    if (hop === undefined) break;
    address = hop;
    if (!isTrusted(trusted, hop)) break;
  }
  return address;
}

/**
 * The IP address of one X-Forwarded-For entry: a bare address, or one with a port as some load
 * balancers write it (`192.0.2.1:4711`, `[2001:db8::1]:4711`); undefined for anything else.
 */
function hostOf(entry: string): string | undefined {
  if (isIP(entry)) return canonicalAddress(entry);
  const bracketed = /^\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?$/.exec(entry);
  if (bracketed && isIP(bracketed[1]!) === 6) return canonicalAddress(bracketed[1]!);
  const withPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(entry);
  if (withPort && isIP(withPort[1]!) === 4) return withPort[1];
  return undefined;
}

/**
 * One spelling per address, so one client has one rate-limit budget and one `sourceIPs` string
 * however a proxy or the socket wrote it: IPv6 in RFC 5952's form (lower case, zeros compressed;
 * the WHATWG URL parser writes it so), and an IPv4-mapped IPv6 address (`::ffff:198.51.100.1`,
 * what a dual-stack listener reports for an IPv4 client, or its hex spelling) as the IPv4 address.
 * Anything that is not an IP address is returned as it is. Never throws.
 */
export function canonicalAddress(address: string): string {
  if (isIP(address) !== 6) return address;
  // A link-local address's zone (`fe80::1%eth0`) is kept as it is; URLs have no room for it.
  const zoneAt = address.indexOf("%");
  if (zoneAt >= 0) return canonicalAddress(address.slice(0, zoneAt)) + address.slice(zoneAt);
  const canonical = new URL(`http://[${address}]`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical);
  if (!mapped) return canonical;
  const high = parseInt(mapped[1]!, 16);
  const low = parseInt(mapped[2]!, 16);
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

function isTrusted(trusted: TrustedProxies, address: string): boolean {
  return trusted.check(address, isIP(address) === 6 ? "ipv6" : "ipv4");
}

/**
 * An audit event's `sourceIPs` (Kubernetes audit.k8s.io/v1: the client first, then the proxies
 * between): clientAddress, then the address of the connection when that was a trusted proxy.
 */
export function sourceIPs(req: Parameters<typeof clientAddress>[0]): string[] {
  const client = clientAddress(req);
  const peer = req?.socket ? connections.get(req.socket)?.address : undefined;
  return peer && peer !== client ? [client, peer] : [client];
}
