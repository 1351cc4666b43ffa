// Self-signed TLS identities that are their own CA: arcproxy's session on 127.0.0.1, a relay replica's internal endpoint.
import "./reflect-metadata-shim.ts";
import { isIP } from "node:net";

// Loaded lazily: Bun evaluates a CommonJS dependency before sibling ES imports, so a static
// import would run tsyringe's polyfill check before the shim above is installed.
type X509 = typeof import("@peculiar/x509");
let x509Module: Promise<X509> | undefined;
function loadX509(): Promise<X509> {
  return (x509Module ??= import("@peculiar/x509"));
}

export interface SelfSignedCertificate {
  certPem: string;
  /** PKCS#8 PEM, as node:https wants it. */
  keyPem: string;
  /** The CA to trust: the certificate itself, since it signs itself. */
  caPem: string;
}

const VALIDITY_MS = 24 * 60 * 60 * 1000;
// Clock skew between the cert's creation and its first use by kubectl.
const BACKDATE_MS = 5 * 60 * 1000;
const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/**
 * One cert that is both the server certificate and its own CA, so a client pins it by trusting
 * exactly it (a kubeconfig's `certificate-authority-data`, node's `ca`). ECDSA P-256, valid from
 * 5 minutes ago for `validityMs` (default 24 h), names `hosts` (IP addresses or DNS names; default
 * 127.0.0.1 and localhost) as subject alternative names. The key lives in memory only.
 */
export async function createSelfSignedCertificate(opts: { commonName: string; hosts?: readonly string[]; validityMs?: number }): Promise<SelfSignedCertificate> {
  const x509 = await loadX509();
  const hosts = opts.hosts ?? ["127.0.0.1", "localhost"];
  const keys = (await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${opts.commonName.replace(/[,=+<>#;\\"]/g, "_")}`,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + (opts.validityMs ?? VALIDITY_MS)),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(hosts.map((host) => (isIP(host) ? { type: "ip" as const, value: host } : { type: "dns" as const, value: host }))),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  const certPem = cert.toString("pem");
  return { certPem, keyPem: x509.PemConverter.encode(pkcs8, "PRIVATE KEY"), caPem: certPem };
}

// A positive 128-bit serial (leading byte below 0x80 keeps the DER integer positive).
function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString("hex");
}
