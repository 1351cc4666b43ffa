// Test PKI made in-process with WebCrypto and @peculiar/x509 (no openssl CLI needed): one CA and
// every certificate a single-node cluster needs, with the identities kubeadm gives them, so the
// API server's Node and RBAC authorizers see the same users as in a real cluster.
import "../../lib/http/reflect-metadata-shim.ts";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** A certificate and its key, as PEM files. */
export interface CertPair {
  cert: string;
  key: string;
}

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  /** kube-apiserver's serving certificate (127.0.0.1, localhost, the kubernetes Service names). */
  serverCert: string;
  serverKey: string;
  /** Service-account token signing pair. */
  saKey: string;
  saPub: string;
  /** CN=admin, O=system:masters. */
  adminCert: string;
  adminKey: string;
  /** The API server's client certificate toward the kubelet (CN=kube-apiserver-kubelet-client). */
  apiserverKubeletClient: CertPair;
  /** The kubelet's serving certificate (localhost, 127.0.0.1). */
  kubeletServing: CertPair;
  /** The kubelet's client certificate (CN=system:node:localhost, O=system:nodes). */
  node: CertPair;
  /** CN=system:kube-controller-manager. */
  controllerManager: CertPair;
  /** CN=system:kube-scheduler. */
  scheduler: CertPair;
  /** etcd's serving and peer certificate (127.0.0.1): etcd takes TLS clients with certificates only. */
  etcdServer: CertPair;
  /** The API server's client certificate toward etcd. */
  etcdClient: CertPair;
}

/** The node's name; the API server dials the kubelet by it (see control-plane.ts). */
export const NODE_NAME = "localhost";
/** The user the API server authenticates as toward the kubelet; bound to system:kubelet-api-admin. */
export const APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client";

const EC = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const RSA = { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" } as const;
const DAY_MS = 24 * 60 * 60 * 1000;
type AltName = { type: "ip" | "dns"; value: string };
const SERVER_NAMES: readonly AltName[] = [
  { type: "ip", value: "127.0.0.1" }, { type: "ip", value: "10.0.0.1" },
  { type: "dns", value: "localhost" }, { type: "dns", value: "kubernetes" }, { type: "dns", value: "kubernetes.default" },
  { type: "dns", value: "kubernetes.default.svc" }, { type: "dns", value: "kubernetes.default.svc.cluster.local" },
];
const KUBELET_NAMES: readonly AltName[] = [{ type: "dns", value: NODE_NAME }, { type: "ip", value: "127.0.0.1" }];

export async function generatePki(dir: string): Promise<Pki> {
  // Loaded lazily: the Reflect shim above must be in place before x509's dependencies evaluate.
  const x509 = await import("@peculiar/x509");
  await mkdir(dir, { recursive: true });
  const f = (name: string) => join(dir, name);
  const pair = (name: string): CertPair => ({ cert: f(`${name}.crt`), key: f(`${name}.key`) });
  const pki: Pki = {
    dir, caCert: f("ca.crt"), caKey: f("ca.key"), serverCert: f("apiserver.crt"), serverKey: f("apiserver.key"),
    saKey: f("sa.key"), saPub: f("sa.pub"), adminCert: f("admin.crt"), adminKey: f("admin.key"),
    apiserverKubeletClient: pair("apiserver-kubelet-client"),
    kubeletServing: pair("kubelet"),
    node: pair("node"),
    controllerManager: pair("controller-manager"),
    scheduler: pair("scheduler"),
    etcdServer: pair("etcd-server"),
    etcdClient: pair("etcd-client"),
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

  async function issue(subject: string, usage: string, names: readonly AltName[] = []) {
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
  const { serverAuth, clientAuth } = x509.ExtendedKeyUsage;
  async function issueDual(subject: string, names: readonly AltName[]) {
    const keys = await newEcKeys();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(), subject, issuer: ca.subject, ...validity(365), signingAlgorithm: EC,
      publicKey: keys.publicKey, signingKey: caKeys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([serverAuth, clientAuth]),
        new x509.SubjectAlternativeNameExtension([...names]),
        await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
      ],
    });
    return { cert: cert.toString("pem"), key: await pkcs8Pem(keys.privateKey) };
  }
  const sa = (await crypto.subtle.generateKey(RSA, true, ["sign", "verify"])) as CryptoKeyPair;

  const issued: [CertPair, Promise<{ cert: string; key: string }>][] = [
    [{ cert: pki.serverCert, key: pki.serverKey }, issue("CN=kube-apiserver", serverAuth, SERVER_NAMES)],
    [{ cert: pki.adminCert, key: pki.adminKey }, issue("O=system:masters, CN=admin", clientAuth)],
    [pki.apiserverKubeletClient, issue(`CN=${APISERVER_KUBELET_CLIENT}`, clientAuth)],
    [pki.kubeletServing, issue(`CN=${NODE_NAME}`, serverAuth, KUBELET_NAMES)],
    [pki.node, issue(`O=system:nodes, CN=system:node:${NODE_NAME}`, clientAuth)],
    [pki.controllerManager, issue("CN=system:kube-controller-manager", clientAuth)],
    [pki.scheduler, issue("CN=system:kube-scheduler", clientAuth)],
    // Serving and peer (client) use in one certificate, as etcd's own examples do.
    [pki.etcdServer, issueDual("CN=etcd", [{ type: "ip", value: "127.0.0.1" }, { type: "dns", value: "localhost" }])],
    [pki.etcdClient, issue("CN=kube-apiserver-etcd-client", clientAuth)],
  ];
  const files: [string, string][] = [
    [pki.caCert, ca.toString("pem")], [pki.caKey, await pkcs8Pem(caKeys.privateKey)],
    [pki.saKey, await pkcs8Pem(sa.privateKey)],
    [pki.saPub, x509.PemConverter.encode(await crypto.subtle.exportKey("spki", sa.publicKey), "PUBLIC KEY")],
  ];
  for (const [paths, made] of issued) {
    const { cert, key } = await made;
    files.push([paths.cert, cert], [paths.key, key]);
  }
  for (const [path, pem] of files) await writeFile(path, pem + "\n", { mode: path.endsWith(".key") ? 0o600 : 0o644 });
  return pki;
}
