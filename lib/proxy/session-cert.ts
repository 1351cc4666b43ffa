// Creates the throw-away TLS identity of one arcproxy session: a self-signed ECDSA P-256 cert for 127.0.0.1.
import "./reflect-metadata-shim.ts";

// Loaded lazily: Bun evaluates a CommonJS dependency before sibling ES imports, so a static
// import would run tsyringe's polyfill check before the shim above is installed.
type X509 = typeof import("@peculiar/x509");
let x509Module: Promise<X509> | undefined;
function loadX509(): Promise<X509> {
  return (x509Module ??= import("@peculiar/x509"));
}

export interface SessionCertificate {
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
 * One cert that is both the server certificate and its own CA, so a kubeconfig can pin it with
 * `certificate-authority-data`. It lives in memory only and dies with the session.
 */
export async function createSessionCertificate(): Promise<SessionCertificate> {
  const x509 = await loadX509();
  const keys = (await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: "CN=arcproxy session",
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + VALIDITY_MS),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: "ip", value: "127.0.0.1" },
        { type: "dns", value: "localhost" },
      ]),
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
