import { join } from "node:path";

/** Files of the test bed's PKI, all in one directory. */
export interface Pki {
  /** CA certificate (PEM): signs the serving certificate and client certificates. */
  caCert: string;
  /** Serving certificate for 127.0.0.1 / localhost (PEM, CA:FALSE). */
  servingCert: string;
  /** Serving key (PEM). */
  servingKey: string;
  /** Client certificate for an admin (O=system:masters). */
  adminClientCert: string;
  /** Client key for that admin. */
  adminClientKey: string;
  /** Service-account signing key (PEM, RSA private). */
  serviceAccountKey: string;
  /** Service-account verification key (PEM, public). */
  serviceAccountPublicKey: string;
}

/**
 * Generates a CA, a leaf serving certificate (SAN IP:127.0.0.1, DNS:localhost, DNS:kubernetes.default.svc,
 * CA:FALSE: Deno's TLS rejects a CA certificate used as a server certificate),
 * plus `extraSans` such as `IP:10.0.0.1`), an admin client certificate and a
 * service-account key pair, with openssl.
 */
export async function generatePki(dir: string, extraSans: string[] = []): Promise<Pki> {
  const p = (name: string) => join(dir, name);
  const pki: Pki = {
    caCert: p("ca.crt"),
    servingCert: p("serving.crt"),
    servingKey: p("serving.key"),
    adminClientCert: p("admin-client.crt"),
    adminClientKey: p("admin-client.key"),
    serviceAccountKey: p("sa.key"),
    serviceAccountPublicKey: p("sa.pub"),
  };
  await Deno.writeTextFile(
    p("serving.ext"),
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n" +
      `extendedKeyUsage=serverAuth\nsubjectAltName=${
        ["IP:127.0.0.1", "DNS:localhost", "DNS:kubernetes.default.svc", ...extraSans].join(",")
      }\n`,
  );
  await Deno.writeTextFile(
    p("client.ext"),
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
  );
  await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p("ca.key")]);
  await openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    p("ca.key"),
    "-sha256",
    "-days",
    "2",
    "-subj",
    "/CN=mbcas-testbed-ca",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-out",
    pki.caCert,
  ]);
  for (
    const [name, subject, ext] of [
      ["serving", "/CN=127.0.0.1", "serving.ext"],
      ["admin-client", "/O=system:masters/CN=mbcas-cert-admin", "client.ext"],
    ]
  ) {
    await openssl([
      "ecparam",
      "-name",
      "prime256v1",
      "-genkey",
      "-noout",
      "-out",
      p(`${name}.key.ec`),
    ]);
    await openssl([
      "pkcs8",
      "-topk8",
      "-nocrypt",
      "-in",
      p(`${name}.key.ec`),
      "-out",
      p(`${name}.key`),
    ]);
    await openssl([
      "req",
      "-new",
      "-key",
      p(`${name}.key`),
      "-subj",
      subject,
      "-out",
      p(`${name}.csr`),
    ]);
    await openssl([
      "x509",
      "-req",
      "-in",
      p(`${name}.csr`),
      "-CA",
      pki.caCert,
      "-CAkey",
      p("ca.key"),
      "-CAcreateserial",
      "-days",
      "2",
      "-sha256",
      "-extfile",
      p(ext),
      "-out",
      p(`${name}.crt`),
    ]);
  }
  await openssl([
    "genpkey",
    "-algorithm",
    "RSA",
    "-pkeyopt",
    "rsa_keygen_bits:2048",
    "-out",
    pki.serviceAccountKey,
  ]);
  await openssl([
    "pkey",
    "-in",
    pki.serviceAccountKey,
    "-pubout",
    "-out",
    pki.serviceAccountPublicKey,
  ]);
  return pki;
}

async function openssl(args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}
