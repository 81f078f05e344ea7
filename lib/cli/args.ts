/**
 * Helpers shared by the command-line commands: flag parsing with friendly
 * errors, and the flags every command that talks to a master understands.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { ConfigError } from "../errors.ts";
import {
  type Address,
  ADDRESS_ENV,
  DEFAULT_ADDRESS,
  loadAuthKey,
  parseAddressList,
} from "../config.ts";
import type { LogFormat, LogLevel } from "../log.ts";
import { type Client, connect, type ConnectOptions } from "../client/client.ts";
import { isValidQueueName, QUEUE_NAME_RULE } from "../model/queue_names.ts";
import { describeValue } from "../util/arguments.ts";
import { MAX_DURATION_MS } from "../wire/messages.ts";
import { TLS_CLIENT_FLAGS, TLS_CLIENT_HELP, tlsClientFromFlags } from "./tls_flags.ts";

/** Milliseconds per second, for duration flags. */
const MS_PER_SECOND = 1000;

/** Options of a command's flag parser. */
export type FlagSpec = NonNullable<ParseArgsConfig["options"]>;

/** Flags every command that reaches a master accepts. */
export const CONNECTION_FLAGS: FlagSpec = {
  connect: { type: "string" },
  "authkey-file": { type: "string" },
  ...TLS_CLIENT_FLAGS,
};

/** Logging flags. */
export const LOG_FLAGS: FlagSpec = {
  "log-level": { type: "string" },
  "log-format": { type: "string" },
  quiet: { type: "boolean" },
  verbose: { type: "boolean" },
};

/** Parsed flags and positional arguments. */
export interface Parsed {
  /** Flag values by name. */
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  /** Positional arguments. */
  positionals: string[];
}

/**
 * Parses `args` strictly against `spec` (plus `--help`).
 * @throws {ConfigError} naming an unknown flag or a flag missing its value.
 */
export function parseFlags(command: string, args: string[], spec: FlagSpec): Parsed {
  try {
    const { values, positionals } = parseArgs({
      args: joinNegativeValues(args, spec),
      options: { ...spec, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: true,
    });
    return { values, positionals };
  } catch (cause) {
    // One line: drop node's hint about positionals, join multi-line messages.
    const message = (cause as Error).message.replace(/\. To specify a positional .*$/s, "")
      .replace(/\s*\n\s*/g, " ");
    throw new ConfigError(`${message} (see: taskq ${command} --help)`, { cause });
  }
}

/** A negative number, as a flag's value (`--priority -5`). */
const NEGATIVE_NUMBER = /^-\d+(\.\d+)?$/;

/**
 * `args` with each `--NAME VALUE` pair whose flag takes a string and whose
 * value is a negative number written as `--NAME=VALUE`, so that
 * `--priority -5` is not taken for a missing value followed by a flag `-5`.
 * Nothing after a `--` is touched.
 */
function joinNegativeValues(args: string[], spec: FlagSpec): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      out.push(...args.slice(i));
      break;
    }
    const next = args[i + 1];
    if (
      arg.startsWith("--") && spec[arg.slice(2)]?.type === "string" && next !== undefined &&
      NEGATIVE_NUMBER.test(next)
    ) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/** A string flag's value, or `fallback`. */
export function stringFlag(parsed: Parsed, name: string, fallback?: string): string | undefined {
  const value = parsed.values[name];
  return typeof value === "string" ? value : fallback;
}

/**
 * A queue-name flag's value, or `undefined` when it is absent.
 * @throws {ConfigError} when the value is not a valid queue name.
 */
export function queueFlag(parsed: Parsed, name: string): string | undefined {
  const value = stringFlag(parsed, name);
  if (value === undefined || isValidQueueName(value)) return value;
  throw new ConfigError(
    `--${name} ${describeValue(value)} is not a valid queue name: ` +
      `a queue name is ${QUEUE_NAME_RULE}`,
  );
}

/** A whole number as a flag's value: digits, with a sign for negative ones (no `0x`, `1e3` or ""). */
const WHOLE_NUMBER = /^-?\d+$/;

/**
 * A whole-number flag's value, or `fallback`.
 * @throws {ConfigError} naming the flag and its range when the value is not a
 *   whole number from `min` to `max`.
 *
 * @example
 * ```ts
 * import { intFlag } from "./args.ts";
 * console.log(intFlag({ values: { count: "5" }, positionals: [] }, "count", 1, 1, 100)); // 5
 * ```
 */
export function intFlag(
  parsed: Parsed,
  name: string,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const text = stringFlag(parsed, name);
  if (text === undefined) return fallback;
  const value = WHOLE_NUMBER.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`--${name} must be a whole number from ${min} to ${max}, not "${text}"`);
  }
  return value;
}

/** The range a duration flag accepts, in ms; each bound inclusive. */
export interface DurationRange {
  /** Shortest value accepted (default 0). */
  minMs?: number;
  /** Longest value accepted (default {@link MAX_DURATION_MS}, about 24.8 days). */
  maxMs?: number;
  /** Whether 0 is accepted even below `minMs` (it means "off" or "never" for that flag). */
  zeroOff?: boolean;
}

/** Shortest lease a master or worker may be given, in ms: shorter ones expire before work starts. */
export const MIN_LEASE_MS = 100;

/** Longest lease a master or worker may be given, in ms (a day; a running command renews its lease). */
export const MAX_LEASE_MS = 86_400_000;

/** Shortest command timeout, idle exit, status refresh or handshake deadline, in ms. */
export const MIN_WAIT_MS = 100;

/** Longest shutdown grace or handshake deadline, in ms (an hour). */
export const MAX_GRACE_MS = 3_600_000;

/** `--lease` (master and worker): {@link MIN_LEASE_MS} to {@link MAX_LEASE_MS}. */
export const LEASE_RANGE: Readonly<DurationRange> = { minMs: MIN_LEASE_MS, maxMs: MAX_LEASE_MS };

/** A worker's `--timeout` and `--exit-when-idle`: at least {@link MIN_WAIT_MS}. */
export const WAIT_RANGE: Readonly<DurationRange> = { minMs: MIN_WAIT_MS };

/** A worker's `--grace`: 0 (kill at once) to {@link MAX_GRACE_MS}. */
export const GRACE_RANGE: Readonly<DurationRange> = { maxMs: MAX_GRACE_MS };

/** Refresh periods (`status --interval`, `worker --summary-every`, 0: never): {@link MIN_WAIT_MS} to {@link MAX_GRACE_MS}. */
export const PERIOD_RANGE: Readonly<DurationRange> = {
  minMs: MIN_WAIT_MS,
  maxMs: MAX_GRACE_MS,
  zeroOff: true,
};

/** A duration in ms as seconds, for messages: `0.1`, `86400`. */
function secondsText(ms: number): string {
  return String(ms / MS_PER_SECOND);
}

/** The part of a message naming `range`: `from 0.1 to 86400` (`, or 0 for off`). */
function rangeText(range: DurationRange): string {
  const min = range.minMs ?? 0;
  return `from ${secondsText(min)} to ${secondsText(range.maxMs ?? MAX_DURATION_MS)}` +
    (range.zeroOff && min > 0 ? " (or 0: off)" : "");
}

/** Whether `ms` lies within `range`. */
function inRange(ms: number, range: DurationRange): boolean {
  if (ms === 0 && range.zeroOff) return true;
  return ms >= (range.minMs ?? 0) && ms <= (range.maxMs ?? MAX_DURATION_MS);
}

/**
 * A duration flag given in seconds (decimals allowed), as milliseconds;
 * `fallbackMs` (which may be `undefined`, for "not given") when it is absent.
 * @throws {ConfigError} naming the flag and its range when the value is not a
 *   number of seconds within `range` (0 to {@link MAX_DURATION_MS} by default).
 *
 * @example
 * ```ts
 * import { secondsFlag } from "./args.ts";
 * const parsed = { values: { lease: "0" }, positionals: [] };
 * try {
 *   secondsFlag(parsed, "lease", 30_000, { minMs: 100, maxMs: 86_400_000 });
 * } catch (error) {
 *   console.log((error as Error).message); // --lease takes seconds from 0.1 to 86400, not "0"
 * }
 * ```
 */
export function secondsFlag<F extends number | undefined>(
  parsed: Parsed,
  name: string,
  fallbackMs: F,
  range: DurationRange = {},
): number | F {
  const text = stringFlag(parsed, name);
  if (text === undefined) return fallbackMs;
  const value = Number(text);
  const ms = Math.round(value * MS_PER_SECOND);
  if (text.trim() === "" || !Number.isFinite(value) || value < 0 || !inRange(ms, range)) {
    throw new ConfigError(`--${name} takes seconds ${rangeText(range)}, not "${text}"`);
  }
  return ms;
}

/** Milliseconds per unit of a duration ({@link parseDuration}). */
const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** A duration as the CLI writes it: a number, then an optional unit. */
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|min|h|d)?$/;

/** How duration flags are written, for help texts and messages. */
export const DURATION_RULE = "seconds, or a number with a unit: 500ms, 30s, 5m, 1h, 2d";

/**
 * Parses a duration as the CLI writes it: seconds (`90`, `1.5`), or a
 * number with a unit (`500ms`, `30s`, `5m` or `5min`, `1h`, `2d`); returns
 * whole milliseconds, or `undefined` when `text` is none of those or is
 * longer than {@link MAX_DURATION_MS} (about 24.8 days).
 *
 * @example
 * ```ts
 * import { parseDuration } from "./args.ts";
 * console.log(parseDuration("1h"), parseDuration("1.5"), parseDuration("soon")); // 3600000 1500 undefined
 * ```
 */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text);
  if (match === null) return undefined;
  const ms = Math.round(Number(match[1]) * DURATION_UNITS_MS[match[2] ?? "s"]);
  return Number.isSafeInteger(ms) && ms <= MAX_DURATION_MS ? ms : undefined;
}

/**
 * A duration flag's value ({@link parseDuration}: seconds, or with a unit),
 * in milliseconds; `fallbackMs` when it is absent.
 * @throws {ConfigError} naming the flag and its range when the value is not
 *   a duration within `range` (0 to {@link MAX_DURATION_MS} by default).
 *
 * @example
 * ```ts
 * import { durationFlag } from "./args.ts";
 * console.log(durationFlag({ values: { hold: "2m" }, positionals: [] }, "hold", 0)); // 120000
 * ```
 */
export function durationFlag<F extends number | undefined>(
  parsed: Parsed,
  name: string,
  fallbackMs: F,
  range: DurationRange = {},
): number | F {
  const text = stringFlag(parsed, name);
  if (text === undefined) return fallbackMs;
  const ms = parseDuration(text);
  if (ms === undefined || !inRange(ms, range)) {
    throw new ConfigError(
      `--${name} takes a duration (${DURATION_RULE}) ${rangeText(range)} s, not "${text}"`,
    );
  }
  return ms;
}

/** Largest job id (ids are whole numbers from 0). */
const MAX_JOB_ID = Number.MAX_SAFE_INTEGER;

/**
 * Job ids given as arguments (`taskq cancel ID…`, `taskq job ID`).
 * @throws {ConfigError} naming the first argument that is not a whole number
 *   from 0 (as `taskq put --ids` prints them).
 *
 * @example
 * ```ts
 * import { jobIdArguments } from "./args.ts";
 * console.log(jobIdArguments(["7", "12"])); // [ 7, 12 ]
 * ```
 */
export function jobIdArguments(texts: readonly string[]): number[] {
  return texts.map((text) => {
    const id = /^\d{1,16}$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(id) || id > MAX_JOB_ID) {
      throw new ConfigError(
        `${describeValue(text)} is not a job id: ids are whole numbers from 0 to ${MAX_JOB_ID}`,
      );
    }
    return id;
  });
}

/**
 * The master's address, or a comma-separated list of masters sharing one
 * database: `--connect`, else `TASKQ_ADDR`, else the default. Not checked:
 * see {@link masterAddresses}.
 */
export function masterAddress(parsed: Parsed): string {
  return stringFlag(parsed, "connect") ?? Deno.env.get(ADDRESS_ENV) ?? DEFAULT_ADDRESS;
}

/**
 * The masters {@link masterAddress} names, checked.
 * @throws {ConfigError} naming the bad entry (an empty one, one that is not
 *   `HOST:PORT`, port 0) and where it came from (`--connect` or `TASKQ_ADDR`).
 */
export function masterAddresses(parsed: Parsed): Address[] {
  const flag = stringFlag(parsed, "connect");
  const from = flag !== undefined
    ? "--connect"
    : Deno.env.get(ADDRESS_ENV) !== undefined
    ? ADDRESS_ENV
    : undefined;
  try {
    return parseAddressList(masterAddress(parsed));
  } catch (cause) {
    if (from === undefined) throw cause;
    throw new ConfigError(`${from}: ${(cause as Error).message}`, { cause });
  }
}

/** The key: `--authkey-file`, else `TASKQ_AUTHKEY`. */
export function authKey(parsed: Parsed): Uint8Array | undefined {
  return loadAuthKey({ authkeyFile: stringFlag(parsed, "authkey-file") });
}

/**
 * Log level and format from the logging flags.
 * @throws {ConfigError} on an unknown level or format.
 */
export function logSettings(parsed: Parsed): { level: LogLevel; format: LogFormat } {
  let level = stringFlag(parsed, "log-level", "info") as string;
  if (parsed.values.quiet) level = "warn";
  if (parsed.values.verbose) level = "debug";
  if (!["debug", "info", "warn", "error"].includes(level)) {
    throw new ConfigError(`--log-level must be debug, info, warn or error, not "${level}"`);
  }
  const format = stringFlag(parsed, "log-format", "text") as string;
  if (format !== "text" && format !== "json") {
    throw new ConfigError(`--log-format must be text or json, not "${format}"`);
  }
  return { level: level as LogLevel, format };
}

/**
 * Connects to the master named by the connection flags (or the environment);
 * given several, to one of them, moving to another when it cannot be reached
 * (and, with `reconnect`, when it dies). One-shot commands do not reconnect:
 * a lost connection is their error.
 * @throws {ConfigError} for a bad address (see {@link masterAddresses}).
 */
export function connectFromFlags(
  parsed: Parsed,
  options: Omit<ConnectOptions, "address" | "authkey"> = { reconnect: false },
): Promise<Client> {
  const tls = tlsClientFromFlags(parsed);
  return connect({
    address: masterAddresses(parsed),
    authkey: authKey(parsed) ?? new Uint8Array(0),
    ...options,
    ...(tls === undefined ? {} : { tls }),
  });
}

/** The text of the connection flags for a command's help. */
export const CONNECTION_HELP =
  `  --connect HOST:PORT[,...] the master (else TASKQ_ADDR, else ${DEFAULT_ADDRESS});
                            several, comma-separated, for masters sharing one
                            database: one is used, another when it dies
  --authkey-file FILE       file holding the shared key (else TASKQ_AUTHKEY)
${TLS_CLIENT_HELP}`;
