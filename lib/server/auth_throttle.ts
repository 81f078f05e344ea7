/**
 * Throttling of wrong keys, shared by every front-end that authenticates
 * (the native protocol and Python's managers protocol): the master host owns
 * one {@link AuthThrottle} and hands it to both, so a guesser gains nothing by
 * switching ports.
 *
 * Each source address (the IP, not the port; an IPv6 address by its /64,
 * which one host usually owns whole) has a budget of failed authentications,
 * a token bucket: {@link AuthThrottleOptions.failures} failures, refilled at
 * that many per {@link AuthThrottleOptions.intervalMs}. When a failure spends
 * the last of it the address is throttled for a penalty, starting at
 * {@link AuthThrottleOptions.penaltyMs} and doubling each time the budget is
 * spent again (up to {@link AuthThrottleOptions.maxPenaltyMs}). While the
 * penalty runs, or while less than one failure is left in the budget, every
 * new connection from the address is refused before its handshake, with no
 * HMAC computed: guesses are slowed to the budget's rate, and then below it.
 *
 * A client with the right key on a throttled address is refused too (the
 * master cannot tell it from the guesser before the handshake), but only
 * until the penalty ends and the budget has refilled by one; connections that
 * already authenticated are never touched. A success does not reset the
 * budget (it would let a guesser sharing an address with a real client spend
 * it again). Native clients are refused with the transient code
 * `too_many_connections`, so a client that was reconnecting keeps retrying
 * and gets back in once the penalty is over.
 *
 * Loopback is throttled like any address. Memory is bounded: at most
 * {@link AuthThrottleOptions.maxAddresses} addresses are tracked (the least
 * recently seen is forgotten first), and an address whose budget is full and
 * whose penalty is over is forgotten at the next report.
 *
 * Failures are logged in aggregate: one line per report interval (`N failed
 * authentications from M addresses in the last S s (top: ADDR ×K)`), plus one
 * line when an address starts being throttled (at most
 * {@link MAX_THROTTLE_LINES_PER_REPORT} per interval; the rest are counted in
 * the summary).
 *
 * @example
 * ```ts
 * import { AuthThrottle } from "./auth_throttle.ts";
 * let now = 0;
 * const throttle = new AuthThrottle({ failures: 3, intervalMs: 60_000, now: () => now });
 * for (let i = 0; i < 3; i++) {
 *   console.log(throttle.refusal("10.0.0.7:50001") === undefined); // true: allowed
 *   throttle.failed("10.0.0.7:50001");
 * }
 * // The budget is spent: the address (any port) is refused at once.
 * console.log(throttle.refusal("10.0.0.7:50999")?.source); // 10.0.0.7
 * console.log(throttle.refusal("10.0.0.8:50001")); // undefined: another address
 * now += 60_000; // a minute later the penalty is over and the budget has refilled
 * console.log(throttle.refusal("10.0.0.7:50001")); // undefined
 * throttle.close();
 * ```
 *
 * @module
 */

import { type Logger, silentLogger } from "../log.ts";
import type { Telemetry } from "../broker/telemetry.ts";

/** Failed authentications an address may make per interval, by default. */
export const DEFAULT_AUTH_FAILURES = 10;

/** The interval the failure budget refills over, by default: 60 s. */
export const DEFAULT_AUTH_INTERVAL_MS = 60_000;

/** The first penalty of an address that spends its budget, by default: 10 s. */
export const DEFAULT_AUTH_PENALTY_MS = 10_000;

/** The longest penalty (each one doubles the last), by default: 15 min. */
export const DEFAULT_AUTH_MAX_PENALTY_MS = 15 * 60_000;

/** Addresses tracked at most, by default. */
export const DEFAULT_AUTH_MAX_ADDRESSES = 10_000;

/** Time between two summary lines of failed authentications, by default: 10 s. */
export const DEFAULT_AUTH_REPORT_INTERVAL_MS = 10_000;

/** "Throttling ADDR" lines logged per report interval at most; the rest are counted in the summary. */
export const MAX_THROTTLE_LINES_PER_REPORT = 10;

/** Milliseconds per second. */
const MS_PER_SECOND = 1000;

/** Hextets of an IPv6 address that name its /64 network. */
const IPV6_NETWORK_HEXTETS = 4;

/** Hextets of a whole IPv6 address. */
const IPV6_HEXTETS = 8;

/** Options of an {@link AuthThrottle}. */
export interface AuthThrottleOptions {
  /** Failed authentications an address may make per {@link AuthThrottleOptions.intervalMs} (its budget). */
  failures?: number;
  /** The interval over which the budget refills, in ms. */
  intervalMs?: number;
  /** The first penalty when an address spends its budget, in ms; each next one doubles. */
  penaltyMs?: number;
  /** The longest penalty, in ms. */
  maxPenaltyMs?: number;
  /** Addresses tracked at most; the least recently seen is forgotten first. */
  maxAddresses?: number;
  /** Time between two summary lines, in ms. */
  reportIntervalMs?: number;
  /** Where summaries and "throttling" lines go; nowhere by default. */
  logger?: Logger;
  /** Where refused connections are counted (`authThrottled`). */
  telemetry?: Telemetry;
  /** The clock, in ms (for tests); `Date.now` by default. */
  now?: () => number;
}

/** Why a connection is refused at once. */
export interface AuthRefusal {
  /** The throttled source: the peer's IP (an IPv6 address's /64). */
  readonly source: string;
  /** Time until the address may try again, in ms. */
  readonly retryAfterMs: number;
  /** A sentence for the refused peer. */
  readonly message: string;
}

/** What is kept per source address. */
interface SourceRecord {
  /** Failures left in the budget (may go below 0 when handshakes were in flight). */
  tokens: number;
  /** When {@link tokens} was last refilled. */
  refilledAt: number;
  /** When the running penalty ends (0: none yet). */
  penalisedUntil: number;
  /** Penalties so far: the next lasts `penaltyMs * 2 ** penalties`. */
  penalties: number;
  /** Failures in the current report interval. */
  reported: number;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!(v > 0)) throw new RangeError(`auth throttle: ${name} must be positive, not ${v}`);
  return v;
}

/** Expands an IPv6 address into its eight hextets (undefined if it is not one). */
function ipv6Hextets(address: string): string[] | undefined {
  const halves = address.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] === "" ? [] : halves[0].split(":");
  const tail = halves.length === 2 && halves[1] !== "" ? halves[1].split(":") : [];
  const missing = IPV6_HEXTETS - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const hextets = [...head, ...new Array<string>(missing).fill("0"), ...tail];
  if (!hextets.every((h) => /^[0-9a-f]{1,4}$/i.test(h))) return undefined;
  return hextets.map((h) => h.toLowerCase().replace(/^0+(?=.)/, ""));
}

/**
 * The source a peer is throttled as: the IP of `HOST:PORT` (or `[V6]:PORT`),
 * without the port; an IPv4-mapped IPv6 address as its IPv4 address; any
 * other IPv6 address but loopback as its /64 network.
 *
 * @example
 * ```ts
 * import { sourceAddress } from "./auth_throttle.ts";
 * console.log(sourceAddress("10.0.0.7:50001")); // 10.0.0.7
 * console.log(sourceAddress("[::ffff:10.0.0.7]:50001")); // 10.0.0.7
 * console.log(sourceAddress("[2001:db8:1:2:3:4:5:6]:50001")); // 2001:db8:1:2::/64
 * console.log(sourceAddress("[::1]:50001")); // ::1
 * ```
 */
export function sourceAddress(peer: string): string {
  let host = peer;
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    host = end > 0 ? host.slice(1, end) : host.slice(1);
  } else {
    const colon = host.lastIndexOf(":");
    if (colon >= 0 && host.indexOf(":") === colon) host = host.slice(0, colon);
  }
  if (!host.includes(":")) return host;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  if (mapped) return mapped[1];
  const hextets = ipv6Hextets(host);
  if (hextets === undefined) return host;
  if (hextets.slice(0, IPV6_HEXTETS - 1).every((h) => h === "0") && hextets[7] === "1") {
    return "::1";
  }
  return `${hextets.slice(0, IPV6_NETWORK_HEXTETS).join(":")}::/64`;
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

function seconds(ms: number): string {
  const s = ms / MS_PER_SECOND;
  return Number.isInteger(s) ? String(s) : s.toFixed(1);
}

/**
 * Counts failed authentications per source address, refuses addresses that
 * spent their budget, and logs the failures in aggregate. See the module
 * documentation for the rules.
 *
 * @example
 * ```ts
 * import { AuthThrottle } from "./auth_throttle.ts";
 * import { createLogger } from "../log.ts";
 * const lines: string[] = [];
 * const logger = createLogger({ write: (line) => lines.push(line) });
 * let now = 0;
 * const throttle = new AuthThrottle({
 *   failures: 2, // two wrong keys per 10 s; then 8 s of refusals, 16 s the next time, ...
 *   intervalMs: 10_000,
 *   penaltyMs: 8_000,
 *   logger,
 *   now: () => now,
 * });
 * throttle.failed("192.0.2.1:4000");
 * throttle.failed("192.0.2.1:4001"); // the budget is spent: throttled for 8 s
 * throttle.failed("198.51.100.9:4000");
 * now += 1_000;
 * console.log(throttle.refusal("192.0.2.1:4002")?.retryAfterMs); // 7000
 * throttle.close(); // logs what is not yet reported
 * console.log(lines.length); // 2: the "throttling" line and one summary
 * console.log(lines[1].includes("3 failed authentications from 2 addresses")); // true
 * console.log(lines[1].includes("(top: 192.0.2.1 ×2)")); // true
 * ```
 */
export class AuthThrottle {
  /** Failures allowed per interval. */
  readonly failures: number;
  /** The interval the budget refills over, in ms. */
  readonly intervalMs: number;
  /** The first penalty, in ms. */
  readonly penaltyMs: number;
  /** The longest penalty, in ms. */
  readonly maxPenaltyMs: number;
  /** Addresses tracked at most. */
  readonly maxAddresses: number;
  /** Time between two summary lines, in ms. */
  readonly reportIntervalMs: number;
  readonly #log: Logger;
  readonly #telemetry: Telemetry | undefined;
  readonly #now: () => number;
  /** Tracked addresses, least recently seen first. */
  readonly #records = new Map<string, SourceRecord>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #windowStart = 0;
  #windowFailures = 0;
  #windowAddresses = 0;
  #windowRefused = 0;
  #windowThrottleLines = 0;
  #windowUnlogged = 0;
  #closed = false;

  /** Creates a throttle; nothing runs until the first failure. */
  constructor(options: AuthThrottleOptions = {}) {
    this.failures = positive("failures", options.failures, DEFAULT_AUTH_FAILURES);
    this.intervalMs = positive("intervalMs", options.intervalMs, DEFAULT_AUTH_INTERVAL_MS);
    this.penaltyMs = positive("penaltyMs", options.penaltyMs, DEFAULT_AUTH_PENALTY_MS);
    this.maxPenaltyMs = Math.max(
      this.penaltyMs,
      positive("maxPenaltyMs", options.maxPenaltyMs, DEFAULT_AUTH_MAX_PENALTY_MS),
    );
    this.maxAddresses = Math.floor(
      positive("maxAddresses", options.maxAddresses, DEFAULT_AUTH_MAX_ADDRESSES),
    );
    this.reportIntervalMs = positive(
      "reportIntervalMs",
      options.reportIntervalMs,
      DEFAULT_AUTH_REPORT_INTERVAL_MS,
    );
    this.#log = options.logger ?? silentLogger;
    this.#telemetry = options.telemetry;
    this.#now = options.now ?? Date.now;
  }

  /** Number of addresses tracked now (at most {@link maxAddresses}). */
  get trackedAddresses(): number {
    return this.#records.size;
  }

  /**
   * Whether a new connection from `peer` (`HOST:PORT`) must be refused at
   * once: its refusal (counted in the telemetry's `authThrottled`), or
   * `undefined` when it may go on with its handshake.
   */
  refusal(peer: string): AuthRefusal | undefined {
    const source = sourceAddress(peer);
    const record = this.#records.get(source);
    if (record === undefined) return undefined;
    const now = this.#now();
    this.#refill(record, now);
    const waitPenalty = record.penalisedUntil - now;
    const waitBudget = record.tokens >= 1
      ? 0
      : Math.ceil((1 - record.tokens) * this.intervalMs / this.failures);
    const retryAfterMs = Math.max(waitPenalty, waitBudget);
    if (retryAfterMs <= 0) return undefined;
    this.#touch(source, record);
    if (this.#telemetry !== undefined) this.#telemetry.authThrottled++;
    this.#windowRefused++;
    this.#arm(now);
    return {
      source,
      retryAfterMs,
      message: `too many failed authentications from ${source}: its new connections are ` +
        `refused for ${Math.ceil(retryAfterMs / MS_PER_SECOND)} s`,
    };
  }

  /** Records a failed authentication (a wrong key) from `peer` (`HOST:PORT`). */
  failed(peer: string): void {
    const source = sourceAddress(peer);
    const now = this.#now();
    let record = this.#records.get(source);
    if (record === undefined) {
      record = {
        tokens: this.failures,
        refilledAt: now,
        penalisedUntil: 0,
        penalties: 0,
        reported: 0,
      };
    } else {
      this.#refill(record, now);
    }
    this.#touch(source, record);
    record.tokens--;
    if (record.reported++ === 0) this.#windowAddresses++;
    this.#windowFailures++;
    this.#arm(now);
    if (record.tokens < 1 && now >= record.penalisedUntil) {
      const penalty = Math.min(this.penaltyMs * 2 ** record.penalties, this.maxPenaltyMs);
      record.penalties++;
      record.penalisedUntil = now + penalty;
      if (this.#windowThrottleLines++ < MAX_THROTTLE_LINES_PER_REPORT) {
        this.#log.warn(
          `throttling ${source}: it spent its budget of ${this.failures} failed ` +
            `authentications per ${seconds(this.intervalMs)} s; its new connections are refused ` +
            `for ${seconds(Math.max(penalty, this.intervalMs / this.failures))} s`,
        );
      } else {
        this.#windowUnlogged++;
      }
    }
  }

  /** Logs what is not yet reported and stops the report timer. Safe to call twice. */
  close(): void {
    this.#closed = true;
    this.#report();
  }

  #refill(record: SourceRecord, now: number): void {
    const elapsed = Math.max(0, now - record.refilledAt);
    record.tokens = Math.min(
      this.failures,
      record.tokens + elapsed * this.failures / this.intervalMs,
    );
    record.refilledAt = now;
  }

  /** Marks `source` as the most recently seen, forgetting the least recent beyond the cap. */
  #touch(source: string, record: SourceRecord): void {
    this.#records.delete(source);
    while (this.#records.size >= this.maxAddresses) {
      const oldest = this.#records.keys().next().value as string;
      this.#records.delete(oldest);
    }
    this.#records.set(source, record);
  }

  /** Starts a report interval if none runs. */
  #arm(now: number): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#windowStart = now;
    this.#timer = setTimeout(() => this.#report(), this.reportIntervalMs);
  }

  /** Logs the interval's summary, and forgets the addresses that have recovered. */
  #report(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const now = this.#now();
    let top: string | undefined;
    let topCount = 0;
    for (const [source, record] of [...this.#records]) {
      if (record.reported > topCount) {
        top = source;
        topCount = record.reported;
      }
      record.reported = 0;
      this.#refill(record, now);
      if (record.tokens >= this.failures && now >= record.penalisedUntil) {
        this.#records.delete(source);
      }
    }
    if (this.#windowFailures > 0 || this.#windowRefused > 0) {
      const span = Math.max(now - this.#windowStart, 0);
      let line =
        `${plural(this.#windowFailures, "failed authentication", "failed authentications")}` +
        ` from ${plural(this.#windowAddresses, "address", "addresses")} in the last ` +
        `${seconds(this.#closed ? span : this.reportIntervalMs)} s`;
      if (top !== undefined) line += ` (top: ${top} ×${topCount})`;
      if (this.#windowRefused > 0) {
        line += `; ${plural(this.#windowRefused, "connection", "connections")} refused while ` +
          `throttled`;
      }
      if (this.#windowUnlogged > 0) {
        line += `; ${plural(this.#windowUnlogged, "more address", "more addresses")} throttled`;
      }
      this.#log.warn(line);
    }
    this.#windowFailures = 0;
    this.#windowAddresses = 0;
    this.#windowRefused = 0;
    this.#windowThrottleLines = 0;
    this.#windowUnlogged = 0;
  }
}
