// How a relay's certificate is trusted: the system roots, plus a private CA when one is given.
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { rootCertificates, type ConnectionOptions } from "node:tls";
import { ConfigError } from "../errors/index.ts";
import type { RelayUrl } from "./relay-url.ts";

export interface RelayTls {
  /** A CA (PEM) trusted besides the system roots, e.g. the CA of a relay's private certificate. */
  ca?: string;
  /** Accept any certificate. For tests only: callers warn the user loudly. */
  insecureSkipVerify?: boolean;
}

/**
 * Reads a CA bundle (PEM) named by `flag`. Throws ConfigError naming the flag and the path when
 * the file cannot be read or holds no certificate.
 */
export async function readCaFile(path: string, flag = "--relay-ca"): Promise<string> {
  let pem: string;
  try {
    pem = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(`cannot read ${flag} ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new ConfigError(`${flag} ${path} holds no PEM certificate (expected "-----BEGIN CERTIFICATE-----")`);
  }
  return pem;
}

/**
 * TLS options for every connection to `relay` (node:https, tls.connect, ws). node's `ca` replaces
 * the system roots, so a private CA is added to them rather than given alone: a relay behind a
 * public certificate keeps working when --relay-ca is set. SNI is sent for host names only
 * (RFC 6066 3: literal IP addresses are not permitted in server_name).
 */
export function relayTlsOptions(relay: RelayUrl, tls: RelayTls): ConnectionOptions {
  if (!relay.secure) return {};
  return {
    ...(tls.ca ? { ca: [...rootCertificates, tls.ca] } : {}),
    rejectUnauthorized: !tls.insecureSkipVerify,
    ...(isIP(relay.hostname) ? {} : { servername: relay.hostname }),
  };
}
