/**
 * What job-queue users ask of a queue beyond put and get, as the neutral
 * model every layer shares: priorities, unique keys, fair groups, per-queue
 * rate and concurrency limits, cancellation, job lookup and progress.
 *
 * The engine, both brokers, the wire, the HTTP side and the CLI speak these
 * types and bounds, so none of them has to import another to describe a job.
 *
 * @example
 * ```ts
 * import { checkPriority, DEFAULT_PRIORITY, NO_LIMITS } from "./jobs.ts";
 * console.log(checkPriority(5), DEFAULT_PRIORITY, NO_LIMITS.concurrency); // 5 0 0
 * ```
 *
 * @module
 */

/** Lowest priority an item may have: served after every higher one. */
export const MIN_PRIORITY: number = -1_000;

/** Highest priority an item may have: served before every lower one. */
export const MAX_PRIORITY: number = 1_000;

/** Priority of an item whose put names none. */
export const DEFAULT_PRIORITY: number = 0;

/** Longest unique key, in UTF-16 code units. */
export const MAX_KEY_LENGTH: number = 256;

/** Longest group name, in UTF-16 code units. */
export const MAX_GROUP_LENGTH: number = 256;

/** Longest progress message a job may report, in UTF-16 code units. */
export const MAX_PROGRESS_MESSAGE: number = 1_024;

/** Most deliveries a rate limit may allow per period. */
export const MAX_RATE_COUNT: number = 1_000_000;

/** Most items a concurrency limit may allow leased at once. */
export const MAX_CONCURRENCY: number = 1_000_000;

/** Finished jobs whose records are kept for lookup, by default. */
export const DEFAULT_HISTORY_COUNT: number = 10_000;

/**
 * Finished jobs whose records a PostgreSQL store keeps by default: none,
 * since each record is a row written with every ack (measured: 17% of the
 * seed workload's throughput); `--keep-jobs N` turns it on.
 */
export const DEFAULT_SHARED_HISTORY_COUNT: number = 0;

/** How long a finished job's record is kept for lookup by default, in ms (1 hour). */
export const DEFAULT_HISTORY_MS: number = 3_600_000;

/**
 * Estimated bytes of a finished job's value and result above which its
 * record keeps neither (only their absence is recorded): 64 KiB, so that
 * {@link DEFAULT_HISTORY_COUNT} records stay within a few hundred MiB at worst.
 */
export const MAX_HISTORY_VALUE_BYTES: number = 64 * 1024;

/**
 * The ids a put resolves with, in order of its values: new items' ids, and
 * for a value whose unique key was taken, the existing item's id.
 */
export type PutIds = number[] & {
  /** Indexes (into the ids) of the values that added nothing; absent when every value was added. */
  existing?: number[];
};

/** Where a job is in its life, as a lookup reports it. */
export type JobState = "ready" | "delayed" | "leased" | "done" | "dead" | "cancelled";

/** Every {@link JobState}, in life order. */
export const JOB_STATES: readonly JobState[] = [
  "ready",
  "delayed",
  "leased",
  "done",
  "dead",
  "cancelled",
];

/** Progress a running job reported. */
export interface JobProgress {
  /** How far along, 0–100, when the job said. */
  percent?: number;
  /** What it is doing, when it said. */
  message?: string;
  /** When it was reported (ms since the epoch). */
  at: number;
}

/** Who holds a leased job. */
export interface JobHolder {
  /** The holding session's id. */
  session: string;
  /** The name its client gave. */
  name: string;
  /** Its network address, or empty. */
  address: string;
}

/** Everything a lookup tells about one job (see `taskq job ID`). */
export interface JobInfo {
  /** Its id. */
  id: number;
  /** Its queue. */
  queue: string;
  /** Where it is in its life. */
  state: JobState;
  /** Deliveries so far. */
  attempts: number;
  /** Its priority ({@link DEFAULT_PRIORITY} unless its put gave one). */
  priority: number;
  /** Its group, if its put gave one. */
  group?: string;
  /** Its unique key, if its put gave one. */
  key?: string;
  /**
   * The item itself; absent for a finished job whose value and result were
   * larger than {@link MAX_HISTORY_VALUE_BYTES}.
   */
  value?: unknown;
  /** The last failure's description, if it failed. */
  error?: string;
  /** The result its ack carried, if any (finished jobs only). */
  result?: unknown;
  /** The last progress it reported, if any. */
  progress?: JobProgress;
  /** When it was put (ms since the epoch). */
  createdAt: number;
  /** When a delayed job becomes ready (ms since the epoch). */
  readyAt?: number;
  /** When its current lease began (ms since the epoch), while leased. */
  leasedAt?: number;
  /** When its current lease runs out (ms since the epoch), while leased. */
  leaseExpiresAt?: number;
  /** Who holds it, while leased. */
  holder?: JobHolder;
  /** When it finished: done, dead or cancelled (ms since the epoch). */
  finishedAt?: number;
}

/**
 * Limits on how a queue's items are delivered, across every worker and
 * every master. A zero means "no limit".
 */
export interface QueueLimits {
  /** Most deliveries per {@link ratePeriodMs} (0: no rate limit). */
  rateCount: number;
  /** The rate limit's period, in ms (1000 for "per second"). */
  ratePeriodMs: number;
  /** Most items leased at once (0: no limit). */
  concurrency: number;
  /** Most items of one group leased at once (0: no limit). */
  groupConcurrency: number;
}

/** A queue with no limits. */
export const NO_LIMITS: Readonly<QueueLimits> = Object.freeze({
  rateCount: 0,
  ratePeriodMs: 1_000,
  concurrency: 0,
  groupConcurrency: 0,
});

/** A queue's limits, with its name. */
export interface NamedQueueLimits extends QueueLimits {
  /** The queue. */
  queue: string;
}

/** What {@link checkLimits} accepts: limits to change; absent fields stay as they are. */
export type LimitChanges = Partial<QueueLimits>;

/**
 * Milliseconds of deliveries a rate limit lets through at once after a lull
 * (at least one delivery): a limit of N per period spaces deliveries
 * `period / N` apart and may run this far ahead, so that timer lateness does
 * not cost throughput, while any window of one period sees at most
 * N plus this share of N.
 */
export const RATE_BURST_MS: number = 10;

/**
 * Whether `value` is a valid priority; returns it.
 * @throws {RangeError} when it is not an integer from {@link MIN_PRIORITY} to {@link MAX_PRIORITY}.
 *
 * @example
 * ```ts
 * import { checkPriority } from "./jobs.ts";
 * console.log(checkPriority(-3)); // -3
 * ```
 */
export function checkPriority(value: unknown): number {
  if (
    typeof value !== "number" || !Number.isInteger(value) || value < MIN_PRIORITY ||
    value > MAX_PRIORITY
  ) {
    throw new RangeError(
      `a priority must be an integer from ${MIN_PRIORITY} to ${MAX_PRIORITY}, got ${
        String(value).slice(0, 40)
      }`,
    );
  }
  return value;
}

/**
 * Whether `value` is a valid unique key or group name (`what` names it in
 * the error); returns it.
 * @throws {RangeError} when it is not a non-empty string of at most `max` characters.
 *
 * @example
 * ```ts
 * import { checkLabel, MAX_KEY_LENGTH } from "./jobs.ts";
 * console.log(checkLabel("invoice-42", "key", MAX_KEY_LENGTH)); // invoice-42
 * ```
 */
export function checkLabel(value: unknown, what: string, max: number): string {
  if (typeof value !== "string" || value.length === 0 || value.length > max) {
    throw new RangeError(`a ${what} must be a string of 1 to ${max} characters`);
  }
  return value;
}

/**
 * Validates limit changes; returns them with only the fields given.
 * @throws {RangeError} naming the first field out of range.
 *
 * @example
 * ```ts
 * import { checkLimits } from "./jobs.ts";
 * console.log(checkLimits({ rateCount: 50, ratePeriodMs: 1000 }).rateCount); // 50
 * ```
 */
export function checkLimits(changes: LimitChanges): LimitChanges {
  const out: LimitChanges = {};
  const check = (key: keyof QueueLimits, min: number, max: number) => {
    const value = changes[key];
    if (value === undefined) return;
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new RangeError(`limit "${key}" must be an integer from ${min} to ${max}`);
    }
    out[key] = value;
  };
  check("rateCount", 0, MAX_RATE_COUNT);
  check("ratePeriodMs", 1, 2_147_483_647);
  check("concurrency", 0, MAX_CONCURRENCY);
  check("groupConcurrency", 0, MAX_CONCURRENCY);
  return out;
}

/**
 * Whether a queue with these limits has any.
 *
 * @example
 * ```ts
 * import { hasLimits, NO_LIMITS } from "./jobs.ts";
 * console.log(hasLimits(NO_LIMITS)); // false
 * ```
 */
export function hasLimits(limits: QueueLimits): boolean {
  return limits.rateCount > 0 || limits.concurrency > 0 || limits.groupConcurrency > 0;
}

/**
 * Parses a rate as the CLI writes it: `N/s`, `N/min`, `N/h`, or `N/DURATION`
 * with a unit (`10/5s`, `100/250ms`); `0` clears the limit.
 * @throws {RangeError} when it is not one of those.
 *
 * @example
 * ```ts
 * import { parseRate } from "./jobs.ts";
 * console.log(parseRate("50/s")); // { rateCount: 50, ratePeriodMs: 1000 }
 * ```
 */
export function parseRate(text: string): { rateCount: number; ratePeriodMs: number } {
  if (text === "0") return { rateCount: 0, ratePeriodMs: NO_LIMITS.ratePeriodMs };
  const match = /^(\d{1,7})\/(\d{0,10})(ms|s|sec|m|min|h)$/.exec(text.trim());
  if (match === null) {
    throw new RangeError(
      `a rate is N/s, N/min, N/h or N/DURATION such as 10/5s (got ${JSON.stringify(text)})`,
    );
  }
  const unitMs: Record<string, number> = {
    ms: 1,
    s: 1_000,
    sec: 1_000,
    m: 60_000,
    min: 60_000,
    h: 3_600_000,
  };
  const count = Number(match[1]);
  const periodMs = (match[2] === "" ? 1 : Number(match[2])) * unitMs[match[3]];
  const checked = checkLimits({ rateCount: count, ratePeriodMs: periodMs });
  if (periodMs < 1) throw new RangeError(`a rate's period must be at least 1 ms`);
  return { rateCount: checked.rateCount ?? 0, ratePeriodMs: periodMs };
}

/**
 * A rate as the CLI and the dashboard show it (`50/s`, `10/5s`, `none`).
 *
 * @example
 * ```ts
 * import { formatRate } from "./jobs.ts";
 * console.log(formatRate({ rateCount: 50, ratePeriodMs: 1000 })); // 50/s
 * ```
 */
export function formatRate(limits: Pick<QueueLimits, "rateCount" | "ratePeriodMs">): string {
  if (limits.rateCount === 0) return "none";
  const ms = limits.ratePeriodMs;
  if (ms === 1_000) return `${limits.rateCount}/s`;
  if (ms === 60_000) return `${limits.rateCount}/min`;
  if (ms === 3_600_000) return `${limits.rateCount}/h`;
  if (ms % 1_000 === 0) return `${limits.rateCount}/${ms / 1_000}s`;
  return `${limits.rateCount}/${ms}ms`;
}
