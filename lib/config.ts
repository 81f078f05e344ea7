/**
 * Shared configuration: network addresses and the authentication key.
 *
 * The key is read from a file (`--authkey-file`) or the `TASKQ_AUTHKEY`
 * environment variable, never from a command-line value, so it does not show
 * in process listings or shell history.
 *
 * @module
 */

import { ConfigError } from "./errors.ts";

/** The address a master listens on, and clients connect to, by default. */
export const DEFAULT_ADDRESS = "127.0.0.1:5000";

/** Environment variable holding the key. */
export const AUTHKEY_ENV = "TASKQ_AUTHKEY";

/** Environment variable holding the master's address for clients. */
export const ADDRESS_ENV = "TASKQ_ADDR";

/** A host and TCP port. */
export interface Address {
  /** Host name or IP address (IPv6 without brackets). */
  hostname: string;
  /** TCP port; 0 asks the system for a free one when listening. */
  port: number;
}

const MAX_PORT = 65535;

/**
 * Parses `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (all interfaces).
 * @throws {ConfigError} when the text is none of these, or the port is over 65535.
 *
 * @example
 * ```ts
 * import { parseAddress } from "./config.ts";
 * console.log(parseAddress("127.0.0.1:5000")); // { hostname: "127.0.0.1", port: 5000 }
 * console.log(parseAddress("[::1]:5000")); // { hostname: "::1", port: 5000 }
 * console.log(parseAddress(":5000")); // { hostname: "0.0.0.0", port: 5000 }
 * ```
 */
export function parseAddress(text: string): Address {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text.trim());
  if (!match) {
    throw new ConfigError(`bad address "${text}": expected HOST:PORT, e.g. 127.0.0.1:5000`);
  }
  const port = Number(match[3]);
  if (port > MAX_PORT) throw new ConfigError(`bad address "${text}": port must be 0–${MAX_PORT}`);
  const hostname = match[1] ?? (match[2] || "0.0.0.0");
  return { hostname, port };
}

/** Formats an address as `HOST:PORT`, bracketing IPv6 hosts. */
export function formatAddress(address: Address): string {
  return address.hostname.includes(":")
    ? `[${address.hostname}]:${address.port}`
    : `${address.hostname}:${address.port}`;
}

/** Whether `hostname` only reaches this machine (127.0.0.0/8, ::1, localhost). */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** Where to look for the key. */
export interface AuthKeySource {
  /** Path of a file whose contents (less one trailing newline) are the key. */
  authkeyFile?: string;
  /** Environment to read {@link AUTHKEY_ENV} from; defaults to the process environment. */
  env?: (name: string) => string | undefined;
}

/**
 * Finds the key: the file if named, else {@link AUTHKEY_ENV}; `undefined` when
 * neither is set.
 * @throws {ConfigError} when the file cannot be read or is empty.
 *
 * @example
 * ```ts
 * import { loadAuthKey } from "./config.ts";
 * const file = await Deno.makeTempFile();
 * await Deno.writeTextFile(file, "secret\n"); // one trailing newline is dropped
 * const key = loadAuthKey({ authkeyFile: file });
 * console.log(new TextDecoder().decode(key)); // secret
 * await Deno.remove(file);
 * // Without a file: TASKQ_AUTHKEY, read here from a stand-in environment.
 * const fromEnv = loadAuthKey({ env: (name) => name === "TASKQ_AUTHKEY" ? "abc" : undefined });
 * console.log(fromEnv?.length); // 3
 * console.log(loadAuthKey({ env: () => undefined })); // undefined
 * ```
 */
export function loadAuthKey(source: AuthKeySource = {}): Uint8Array | undefined {
  if (source.authkeyFile !== undefined) {
    let bytes: Uint8Array;
    try {
      bytes = Deno.readFileSync(source.authkeyFile);
    } catch (cause) {
      throw new ConfigError(
        `cannot read key file ${source.authkeyFile}: ${(cause as Error).message}`,
        { cause },
      );
    }
    let end = bytes.length;
    if (end > 0 && bytes[end - 1] === 0x0a) end--;
    if (end > 0 && bytes[end - 1] === 0x0d) end--;
    if (end === 0) throw new ConfigError(`key file ${source.authkeyFile} is empty`);
    return bytes.subarray(0, end);
  }
  const env = source.env ?? ((name: string) => Deno.env.get(name));
  const text = env(AUTHKEY_ENV);
  if (text === undefined || text === "") return undefined;
  return new TextEncoder().encode(text);
}
