/**
 * `taskq tls init DIR --host NAME…`: makes what a TLS master and its clients
 * need, in DIR: a small certificate authority (`ca.pem`, `ca-key.pem`), a
 * server certificate for the given host names and addresses (`server.pem`,
 * `server-key.pem`) and a client certificate (`client.pem`,
 * `client-key.pem`), all ECDSA P-256 with SHA-256. Keys are written with mode
 * 0600; existing files are never overwritten.
 *
 * The certificates are made with WebCrypto and the npm package
 * `@peculiar/x509` (pinned here; it needs the `reflect-metadata` polyfill),
 * loaded only when a certificate is made, so other commands do not pay for it.
 *
 * @example
 * ```ts
 * import { makeTlsMaterial } from "./tls.ts";
 * const pems = await makeTlsMaterial({ hosts: ["localhost", "127.0.0.1"] });
 * console.log(pems.server.startsWith("-----BEGIN CERTIFICATE-----")); // true
 * console.log(pems.clientKey.startsWith("-----BEGIN PRIVATE KEY-----")); // true
 * ```
 *
 * @module
 */

import { isIP } from "node:net";
import { join } from "node:path";
import { type FlagSpec, intFlag, parseFlags } from "./args.ts";
import { ConfigError } from "../errors.ts";

/** One-line summary shown by `taskq --help`. */
export const TLS_SUMMARY = "make a CA, a server and a client certificate for TLS";

/** Days the server and client certificates are valid by default. */
export const DEFAULT_CERT_DAYS = 825;

/** Days the CA's certificate is valid: 10 years. */
export const CA_DAYS = 3_650;

/** Longest validity `--days` accepts: 100 years. */
const MAX_CERT_DAYS = 36_500;

/** Milliseconds per day. */
const MS_PER_DAY = 86_400_000;

/** How far back certificates are valid from, for clocks a little behind: 5 minutes. */
const CLOCK_SKEW_MS = 5 * 60_000;

/** Random bytes of a certificate's serial number. */
const SERIAL_BYTES = 16;

/** File mode of private keys: owner read and write only. */
const KEY_FILE_MODE = 0o600;

/** File mode of certificates. */
const CERT_FILE_MODE = 0o644;

/** The key algorithm of every certificate made. */
const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/** Help text of `taskq tls`. */
export const TLS_HELP = `Usage: taskq tls init DIR --host NAME [--host NAME...] [--days N]

Makes, in DIR (created if needed), what TLS needs:
  ca.pem, ca-key.pem          a small certificate authority (valid ${CA_DAYS / 365} years)
  server.pem, server-key.pem  the master's certificate, for every --host
  client.pem, client-key.pem  a client certificate, for mutual TLS
Keys are written with mode 0600. Existing files are never overwritten.

Options:
  --host NAME               a host name or IP address clients use to reach the
                            master (repeatable; at least one)
  --days N                  validity of the server and client certificates
                            (default ${DEFAULT_CERT_DAYS})
  -h, --help                show this help

Then:
  taskq master --listen 0.0.0.0:5000 --authkey-file taskq.key \\
    --tls-cert DIR/server.pem --tls-key DIR/server-key.pem \\
    [--tls-client-ca DIR/ca.pem]
  taskq worker --connect HOST:5000 --authkey-file taskq.key --tls-ca DIR/ca.pem \\
    [--tls-cert DIR/client.pem --tls-key DIR/client-key.pem] ...
Copy ca.pem (and client.pem, client-key.pem) to the clients; keep ca-key.pem
off the network: it can make certificates the master would trust.
`;

const FLAGS: FlagSpec = {
  host: { type: "string", multiple: true },
  days: { type: "string" },
};

/** Options of {@link makeTlsMaterial}. */
export interface TlsMaterialOptions {
  /** Host names and IP addresses the server certificate is valid for; at least one. */
  hosts: readonly string[];
  /** Days the server and client certificates are valid; {@link DEFAULT_CERT_DAYS} by default. */
  days?: number;
}

/** The PEM text of what {@link makeTlsMaterial} makes. */
export interface TlsMaterial {
  /** The CA's certificate: give it to clients (`--tls-ca`) and, for mutual TLS, the master (`--tls-client-ca`). */
  ca: string;
  /** The CA's private key. */
  caKey: string;
  /** The master's certificate (`--tls-cert`). */
  server: string;
  /** The master's private key (`--tls-key`). */
  serverKey: string;
  /** A client certificate (a client's `--tls-cert`). */
  client: string;
  /** The client certificate's private key (a client's `--tls-key`). */
  clientKey: string;
}

/** The file each part of {@link TlsMaterial} is written to, and whether it is a key. */
export const TLS_FILES: Readonly<Record<keyof TlsMaterial, { file: string; secret: boolean }>> = {
  ca: { file: "ca.pem", secret: false },
  caKey: { file: "ca-key.pem", secret: true },
  server: { file: "server.pem", secret: false },
  serverKey: { file: "server-key.pem", secret: true },
  client: { file: "client.pem", secret: false },
  clientKey: { file: "client-key.pem", secret: true },
};

/** A random positive serial number, in hex. */
function serialNumber(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(SERIAL_BYTES));
  bytes[0] &= 0x7f; // positive
  bytes[0] |= 0x01; // no leading zero byte
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Checks a `--host` value: a host name (letters, digits, `-`, `.`, `*.` at
 * the start) or an IP address.
 * @throws {ConfigError} for anything else.
 */
function checkHost(host: string): string {
  if (isIP(host) !== 0) return host;
  if (
    /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/
      .test(host)
  ) {
    return host;
  }
  throw new ConfigError(`--host "${host}" is neither a host name nor an IP address`);
}

/**
 * Makes a CA, a server certificate for `options.hosts` and a client
 * certificate, as PEM text.
 * @throws {ConfigError} when no host is given or one is not a host name or address.
 */
export async function makeTlsMaterial(options: TlsMaterialOptions): Promise<TlsMaterial> {
  if (options.hosts.length === 0) {
    throw new ConfigError("give at least one --host: a name or address clients use for the master");
  }
  const hosts = options.hosts.map(checkHost);
  const days = options.days ?? DEFAULT_CERT_DAYS;
  // Loaded here only: other commands need none of it. Pinned in the source,
  // like msgpackr, so lib/ works without taskq's deno.json.
  // deno-lint-ignore no-import-prefix
  await import("npm:reflect-metadata@0.2.2");
  // deno-lint-ignore no-import-prefix
  const x509 = await import("npm:@peculiar/x509@2.2.0");
  const now = Date.now();
  const notBefore = new Date(now - CLOCK_SKEW_MS);
  const newKeys = () =>
    crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
  const pemKey = async (keys: CryptoKeyPair) =>
    x509.PemConverter.encode(
      await crypto.subtle.exportKey("pkcs8", keys.privateKey),
      "PRIVATE KEY",
    );

  const caKeys = await newKeys();
  const caName = `CN=taskq CA ${new Date(now).toISOString().slice(0, 10)} ${
    serialNumber().slice(0, 8)
  }`;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: caName,
    notBefore,
    notAfter: new Date(now + CA_DAYS * MS_PER_DAY),
    keys: caKeys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const leaf = async (
    subject: string,
    usage: string,
    more: InstanceType<typeof x509.Extension>[],
  ) => {
    const keys = await newKeys();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      subject,
      issuer: ca.subject,
      notBefore,
      notAfter: new Date(now + days * MS_PER_DAY),
      signingAlgorithm: ALGORITHM,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([usage]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(ca),
        ...more,
      ],
    });
    return { cert: cert.toString("pem"), key: await pemKey(keys) };
  };
  const server = await leaf(`CN=${hosts[0]}`, x509.ExtendedKeyUsage.serverAuth, [
    new x509.SubjectAlternativeNameExtension(
      hosts.map((host) => ({
        type: isIP(host) === 0 ? "dns" as const : "ip" as const,
        value: host,
      })),
    ),
  ]);
  const client = await leaf("CN=taskq client", x509.ExtendedKeyUsage.clientAuth, []);
  return {
    ca: ca.toString("pem"),
    caKey: await pemKey(caKeys),
    server: server.cert,
    serverKey: server.key,
    client: client.cert,
    clientKey: client.key,
  };
}

/**
 * Writes `material` into `dir` (created if needed): keys with mode 0600.
 * @throws {ConfigError} when a file already exists or cannot be written.
 */
export async function writeTlsMaterial(dir: string, material: TlsMaterial): Promise<string[]> {
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (cause) {
    throw new ConfigError(`cannot create ${dir}: ${(cause as Error).message}`, { cause });
  }
  const entries = Object.entries(TLS_FILES) as [
    keyof TlsMaterial,
    { file: string; secret: boolean },
  ][];
  for (const [, { file }] of entries) {
    const path = join(dir, file);
    let exists = true;
    try {
      await Deno.lstat(path);
    } catch {
      exists = false;
    }
    if (exists) {
      throw new ConfigError(
        `${path} already exists: taskq tls init never overwrites; use another DIR or remove ` +
          `the old files`,
      );
    }
  }
  const written: string[] = [];
  for (const [part, { file, secret }] of entries) {
    const path = join(dir, file);
    try {
      await Deno.writeTextFile(path, material[part], {
        createNew: true,
        mode: secret ? KEY_FILE_MODE : CERT_FILE_MODE,
      });
      if (secret) await Deno.chmod(path, KEY_FILE_MODE); // whatever the umask
    } catch (cause) {
      throw new ConfigError(`cannot write ${path}: ${(cause as Error).message}`, { cause });
    }
    written.push(path);
  }
  return written;
}

/** Runs `taskq tls` with `args`; resolves with the exit code. */
export async function runTls(args: string[]): Promise<number> {
  const parsed = parseFlags("tls", args, FLAGS);
  if (parsed.values.help) {
    console.log(TLS_HELP);
    return 0;
  }
  const [sub, dir, ...extra] = parsed.positionals;
  if (sub !== "init") {
    throw new ConfigError(
      sub === undefined
        ? "missing subcommand: taskq tls init DIR --host NAME (see: taskq tls --help)"
        : `unknown subcommand "${sub}": the only one is init (see: taskq tls --help)`,
    );
  }
  if (dir === undefined) throw new ConfigError("taskq tls init needs a directory: DIR");
  if (extra.length > 0) throw new ConfigError(`unexpected argument "${extra[0]}"`);
  const hostValues = parsed.values.host;
  const hosts = (Array.isArray(hostValues) ? hostValues : []).map(String);
  const days = intFlag(parsed, "days", DEFAULT_CERT_DAYS, 1, MAX_CERT_DAYS);
  const material = await makeTlsMaterial({ hosts, days });
  for (const path of await writeTlsMaterial(dir, material)) console.log(`wrote ${path}`);
  return 0;
}
