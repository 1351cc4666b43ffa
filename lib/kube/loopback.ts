// Which hosts count as this machine: the only places plain HTTP (and a token in clear text) is allowed.

/** `localhost`, `127.x.y.z` or `::1`, with or without IPv6 brackets (URL.hostname keeps them). */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "");
  return bare === "localhost" || bare === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare);
}
