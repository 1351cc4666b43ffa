// Test PKI made in-process with WebCrypto and @peculiar/x509 (no openssl CLI needed): a CA, the
// apiserver serving cert, the service-account signing key pair and an admin client cert (system:masters).
import "../../lib/proxy/reflect-metadata-shim.ts";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  saKey: string;
  saPub: string;
  adminCert: string;
  adminKey: string;
}

const EC = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const RSA = { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" } as const;
const DAY_MS = 24 * 60 * 60 * 1000;
const SERVER_NAMES = [
  { type: "ip", value: "127.0.0.1" }, { type: "ip", value: "10.0.0.1" },
  { type: "dns", value: "localhost" }, { type: "dns", value: "kubernetes" }, { type: "dns", value: "kubernetes.default" },
  { type: "dns", value: "kubernetes.default.svc" }, { type: "dns", value: "kubernetes.default.svc.cluster.local" },
] as const;

export async function generatePki(dir: string): Promise<Pki> {
  // Loaded lazily: the Reflect shim above must be in place before x509's dependencies evaluate.
  const x509 = await import("@peculiar/x509");
  await mkdir(dir, { recursive: true });
  const f = (name: string) => join(dir, name);
  const pki: Pki = {
    dir, caCert: f("ca.crt"), caKey: f("ca.key"), serverCert: f("apiserver.crt"), serverKey: f("apiserver.key"),
    saKey: f("sa.key"), saPub: f("sa.pub"), adminCert: f("admin.crt"), adminKey: f("admin.key"),
  };
  const now = Date.now();
  const validity = (days: number) => ({ notBefore: new Date(now - DAY_MS), notAfter: new Date(now + days * DAY_MS) });
  const serial = () => {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[0] = bytes[0]! & 0x7f;
    return Buffer.from(bytes).toString("hex");
  };
  const newEcKeys = async () => (await crypto.subtle.generateKey(EC, true, ["sign", "verify"])) as CryptoKeyPair;
  const pkcs8Pem = async (key: CryptoKey) => x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");

  const caKeys = await newEcKeys();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(), name: "CN=cluster-connect-test-ca", ...validity(3650), signingAlgorithm: EC, keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  async function issue(subject: string, usage: string, names: readonly { type: "ip" | "dns"; value: string }[]) {
    const keys = await newEcKeys();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(), subject, issuer: ca.subject, ...validity(365), signingAlgorithm: EC,
      publicKey: keys.publicKey, signingKey: caKeys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([usage]),
        ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension([...names])] : []),
        await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
      ],
    });
    return { cert: cert.toString("pem"), key: await pkcs8Pem(keys.privateKey) };
  }

  const server = await issue("CN=kube-apiserver", x509.ExtendedKeyUsage.serverAuth, SERVER_NAMES);
  const admin = await issue("O=system:masters, CN=admin", x509.ExtendedKeyUsage.clientAuth, []);
  const sa = (await crypto.subtle.generateKey(RSA, true, ["sign", "verify"])) as CryptoKeyPair;

  const files: [string, string][] = [
    [pki.caCert, ca.toString("pem")], [pki.caKey, await pkcs8Pem(caKeys.privateKey)],
    [pki.serverCert, server.cert], [pki.serverKey, server.key],
    [pki.adminCert, admin.cert], [pki.adminKey, admin.key],
    [pki.saKey, await pkcs8Pem(sa.privateKey)],
    [pki.saPub, x509.PemConverter.encode(await crypto.subtle.exportKey("spki", sa.publicKey), "PUBLIC KEY")],
  ];
  for (const [path, pem] of files) await writeFile(path, pem + "\n", { mode: path.endsWith(".key") ? 0o600 : 0o644 });
  return pki;
}
