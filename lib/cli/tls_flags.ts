/**
 * The command line's TLS flags: `--tls-ca`, `--tls-cert`, `--tls-key` on
 * every command that reaches a master, `--tls-cert`, `--tls-key`,
 * `--tls-client-ca` on `taskq master`. Each names a PEM file, read once at
 * start; a file that is missing, unreadable or not PEM is a
 * {@link ConfigError} (exit code 2) naming the flag and the file.
 *
 * @example
 * ```ts
 * import { tlsClientFromFlags } from "./tls_flags.ts";
 * // No TLS flag: plain TCP.
 * console.log(tlsClientFromFlags({ values: {}, positionals: [] })); // undefined
 * ```
 *
 * @module
 */

import type { Parsed } from "./args.ts";
import { ConfigError } from "../errors.ts";
import {
  checkPem,
  checkTlsServerOptions,
  type TlsClientOptions,
  type TlsServerOptions,
} from "../wire/tls.ts";

/** The TLS flags of commands that reach a master. */
export const TLS_CLIENT_FLAGS = {
  "tls-ca": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
} as const;

/** The TLS flags of `taskq master`. */
export const TLS_MASTER_FLAGS = {
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-client-ca": { type: "string" },
} as const;

/** Help lines of {@link TLS_CLIENT_FLAGS}. */
export const TLS_CLIENT_HELP =
  `  --tls-ca FILE             connect over TLS, trusting the master's certificate
                            if this CA (PEM) issued it
  --tls-cert FILE           client certificate (PEM), for a master that
                            requires one (--tls-client-ca); with --tls-key
  --tls-key FILE            the client certificate's private key (PEM)`;

/** Help lines of {@link TLS_MASTER_FLAGS}. */
export const TLS_MASTER_HELP =
  `  --tls-cert FILE           serve over TLS with this certificate (PEM); with
                            --tls-key (taskq tls init makes both)
  --tls-key FILE            the certificate's private key (PEM)
  --tls-client-ca FILE      require client certificates issued by this CA
                            (PEM): mutual TLS`;

/** A string flag's value. */
function flag(parsed: Parsed, name: string): string | undefined {
  const value = parsed.values[name];
  return typeof value === "string" ? value : undefined;
}

/**
 * Reads the PEM file named by `--NAME` and checks it holds a `kind`.
 * @throws {ConfigError} when it is missing, unreadable or not PEM.
 */
export function readPemFlag(
  name: string,
  path: string,
  kind: "certificate" | "private key",
): string {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (cause) {
    throw new ConfigError(`cannot read --${name} ${path}: ${(cause as Error).message}`, {
      cause,
    });
  }
  return checkPem(text, kind, `--${name} ${path}`);
}

/**
 * The client's TLS settings from `--tls-ca`, `--tls-cert` and `--tls-key`;
 * `undefined` (plain TCP) when none is given.
 * @throws {ConfigError} when a file cannot be read or is not PEM, or only one
 *   of `--tls-cert` and `--tls-key` is given.
 */
export function tlsClientFromFlags(parsed: Parsed): TlsClientOptions | undefined {
  const caFile = flag(parsed, "tls-ca");
  const certFile = flag(parsed, "tls-cert");
  const keyFile = flag(parsed, "tls-key");
  if (caFile === undefined && certFile === undefined && keyFile === undefined) return undefined;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError("--tls-cert and --tls-key go together: give both, or neither");
  }
  return {
    ca: caFile === undefined ? undefined : readPemFlag("tls-ca", caFile, "certificate"),
    cert: certFile === undefined ? undefined : readPemFlag("tls-cert", certFile, "certificate"),
    key: keyFile === undefined ? undefined : readPemFlag("tls-key", keyFile, "private key"),
  };
}

/**
 * The master's TLS settings from `--tls-cert`, `--tls-key` and
 * `--tls-client-ca`; `undefined` (plain TCP) when none is given. The
 * certificate and key are tried together, so a key that is not the
 * certificate's is refused here, before anything opens.
 * @throws {ConfigError} when a file cannot be read or is not PEM, the key
 *   does not match, only one of `--tls-cert` and `--tls-key` is given, or
 *   `--tls-client-ca` is given without them.
 */
export function tlsServerFromFlags(parsed: Parsed): TlsServerOptions | undefined {
  const certFile = flag(parsed, "tls-cert");
  const keyFile = flag(parsed, "tls-key");
  const caFile = flag(parsed, "tls-client-ca");
  if (certFile === undefined && keyFile === undefined) {
    if (caFile !== undefined) {
      throw new ConfigError("--tls-client-ca needs --tls-cert and --tls-key (the master's own)");
    }
    return undefined;
  }
  if (certFile === undefined || keyFile === undefined) {
    throw new ConfigError("--tls-cert and --tls-key go together: give both, or neither");
  }
  const options: TlsServerOptions = {
    cert: readPemFlag("tls-cert", certFile, "certificate"),
    key: readPemFlag("tls-key", keyFile, "private key"),
    clientCa: caFile === undefined
      ? undefined
      : readPemFlag("tls-client-ca", caFile, "certificate"),
  };
  checkTlsServerOptions(options, {
    cert: `--tls-cert ${certFile}`,
    key: `--tls-key ${keyFile}`,
    clientCa: `--tls-client-ca ${caFile}`,
  });
  return options;
}
