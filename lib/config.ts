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

/** What separates the masters in a client's list of addresses (`--connect`, `TASKQ_ADDR`). */
export const ADDRESS_LIST_SEPARATOR = ",";

/**
 * Parses a client's list of masters: one address as {@link parseAddress}
 * reads it, or several separated by commas (`10.0.0.5:5000,10.0.0.6:5000`),
 * each with a port from 1 to 65535. Spaces around an entry are ignored.
 * @throws {ConfigError} naming the bad entry: an empty one (`a:1,,b:2`, a
 *   trailing comma), one that is not `HOST:PORT`, or port 0.
 *
 * @example
 * ```ts
 * import { parseAddressList } from "./config.ts";
 * console.log(parseAddressList("10.0.0.5:5000, [::1]:5001"));
 * // [ { hostname: "10.0.0.5", port: 5000 }, { hostname: "::1", port: 5001 } ]
 * try {
 *   parseAddressList("10.0.0.5:5000,,10.0.0.6:5000");
 * } catch (error) {
 *   console.log((error as Error).message);
 *   // bad address list "10.0.0.5:5000,,10.0.0.6:5000": entry 2 is empty; separate ...
 * }
 * ```
 */
export function parseAddressList(text: string): Address[] {
  const entries = text.split(ADDRESS_LIST_SEPARATOR);
  const where = (i: number) => entries.length > 1 ? ` (entry ${i + 1} of "${text}")` : "";
  return entries.map((entry, i) => {
    if (entry.trim() === "") {
      throw new ConfigError(
        entries.length > 1
          ? `bad address list "${text}": entry ${i + 1} is empty; separate HOST:PORT entries ` +
            `with single commas, without a trailing one`
          : `no address given: expected HOST:PORT, e.g. 127.0.0.1:5000`,
      );
    }
    const port = /:(\d+)$/.exec(entry.trim());
    if (port !== null && (Number(port[1]) === 0 || Number(port[1]) > MAX_PORT)) {
      throw new ConfigError(
        `bad address "${entry.trim()}": a master's port is 1–${MAX_PORT}${where(i)}`,
      );
    }
    try {
      return parseAddress(entry);
    } catch (cause) {
      throw new ConfigError(`${(cause as Error).message}${where(i)}`, { cause });
    }
  });
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

/**
 * `url` with its password (if any) masked, for logs and messages.
 *
 * @example
 * ```ts
 * import { redactUrl } from "./config.ts";
 * console.log(redactUrl("postgres://taskq:s3cret@db:5432/jobs")); // postgres://taskq:***@db:5432/jobs
 * ```
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    return parsed.toString();
  } catch {
    return "the PostgreSQL URL given";
  }
}
