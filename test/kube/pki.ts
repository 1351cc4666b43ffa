// Test PKI made with the openssl CLI: a CA, the apiserver serving cert, the
// service-account signing key pair and an admin client cert (system:masters).
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

const OPENSSL_CNF = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = @server_names
authorityKeyIdentifier = keyid
[server_names]
IP.1 = 127.0.0.1
IP.2 = 10.0.0.1
DNS.1 = localhost
DNS.2 = kubernetes
DNS.3 = kubernetes.default
DNS.4 = kubernetes.default.svc
DNS.5 = kubernetes.default.svc.cluster.local
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

export async function generatePki(dir: string): Promise<Pki> {
  await mkdir(dir, { recursive: true });
  const f = (name: string) => join(dir, name);
  const cnf = f("openssl.cnf");
  await writeFile(cnf, OPENSSL_CNF);
  const pki: Pki = {
    dir,
    caCert: f("ca.crt"),
    caKey: f("ca.key"),
    serverCert: f("apiserver.crt"),
    serverKey: f("apiserver.key"),
    saKey: f("sa.key"),
    saPub: f("sa.pub"),
    adminCert: f("admin.crt"),
    adminKey: f("admin.key"),
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(["req", "-config", cnf, "-x509", ...ec, "-keyout", pki.caKey, "-out", pki.caCert]
    .concat(["-days", "3650", "-subj", "/CN=cluster-connect-test-ca", "-extensions", "ca"]));
  await signed(cnf, pki, "server", "/CN=kube-apiserver", pki.serverKey, pki.serverCert);
  await signed(cnf, pki, "client", "/O=system:masters/CN=admin", pki.adminKey, pki.adminCert);
  await openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pki.saKey]);
  await openssl(["pkey", "-in", pki.saKey, "-pubout", "-out", pki.saPub]);
  return pki;

  async function signed(cnf: string, pki: Pki, ext: string, subj: string, key: string, cert: string) {
    const csr = `${cert}.csr`;
    await openssl(["req", "-config", cnf, "-new", ...ec, "-keyout", key, "-out", csr, "-subj", subj]);
    await openssl(["x509", "-req", "-in", csr, "-CA", pki.caCert, "-CAkey", pki.caKey, "-CAcreateserial"]
      .concat(["-CAserial", f("ca.srl"), "-days", "365", "-out", cert, "-extfile", cnf, "-extensions", ext]));
  }
}

async function openssl(args: string[]): Promise<void> {
  const proc = Bun.spawn(["openssl", ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`openssl ${args.join(" ")} failed (exit ${code}):\n${out}${err}`);
}
