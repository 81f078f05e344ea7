/**
 * Jobs and queue limits as the HTTP side shows and takes them: a looked-up
 * job ({@link JobInfo}) as JSON, with its value and result rendered the way
 * the rest of the API renders items (JSON text, shortened); a queue's limits
 * with its rate written out (`50/s`); and the checks of what a client sends
 * (a job id in a path, a body that changes limits).
 *
 * @example
 * ```ts
 * import { jobView, limitsView } from "./jobs.ts";
 * const job = jobView({
 *   id: 7, queue: "tasks", state: "done", attempts: 1, priority: 0,
 *   value: { n: 1 }, result: [1, 2], createdAt: 0, finishedAt: 5,
 * });
 * console.log(job.value, job.result, job.error); // {"n":1} [1,2] null
 * const limits = limitsView({
 *   queue: "tasks", rateCount: 50, ratePeriodMs: 1000, concurrency: 3, groupConcurrency: 0,
 * });
 * console.log(limits.rate); // 50/s
 * ```
 *
 * @module
 */

import {
  checkLimits,
  formatRate,
  type JobInfo,
  type JobProgress,
  type JobState,
  type LimitChanges,
  type NamedQueueLimits,
  parseRate,
} from "../model/jobs.ts";
import { printable } from "../util/printable.ts";
import { ERROR_PREVIEW_CHARS, previewValue, shorten } from "./preview.ts";

/** Longest value or result a job lookup shows, in characters of JSON text. */
export const JOB_VALUE_CHARS = 4_000;

/** Largest job id a path may name: ids are positive safe integers. */
const MAX_JOB_ID = Number.MAX_SAFE_INTEGER;

/** Longest job id a path may name, in digits (that of {@link MAX_JOB_ID}). */
const MAX_JOB_ID_DIGITS = String(MAX_JOB_ID).length;

/** States of a job that is not finished: it may still be cancelled. */
export const LIVE_STATES: readonly JobState[] = ["ready", "delayed", "leased"];

/** The fields of a limits body besides `queue` (`rate` is the short form of the first two). */
const LIMIT_FIELDS = ["rateCount", "ratePeriodMs", "concurrency", "groupConcurrency"] as const;

/** A job as `GET /api/jobs/ID` answers it. */
export interface JobView {
  /** Its id. */
  id: number;
  /** Its queue. */
  queue: string;
  /** Where it is in its life. */
  state: JobState;
  /** Deliveries so far. */
  attempts: number;
  /** Its priority. */
  priority: number;
  /** Its group, if its put gave one. */
  group?: string;
  /** Its unique key, if its put gave one. */
  key?: string;
  /**
   * The item as JSON text, shortened to {@link JOB_VALUE_CHARS}; absent when
   * the history did not keep it (too large).
   */
  value?: string;
  /** The last failure's description (shortened), or null. */
  error: string | null;
  /** The result its ack carried as JSON text (shortened), or null when none. */
  result: string | null;
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
  /** Who holds it, while leased (its name with control characters escaped). */
  holder?: { session: string; name: string; address: string };
  /** When it finished (ms since the epoch). */
  finishedAt?: number;
}

/** A queue's limits as the API shows them: the numbers and the rate written out. */
export interface LimitsView extends NamedQueueLimits {
  /** The rate limit as the CLI writes it (`50/s`, `10/5s`), or `none`. */
  rate: string;
}

/**
 * A looked-up job as the API shows it: its value and result as JSON text
 * shortened to `valueChars` ({@link JOB_VALUE_CHARS} by default; a listing
 * of many items passes less), its error shortened, absent fields left out
 * (`error` and `result` are null instead).
 *
 * @example
 * ```ts
 * import { jobView } from "./jobs.ts";
 * const view = jobView({
 *   id: 3, queue: "q", state: "leased", attempts: 1, priority: 5, value: "x", createdAt: 1,
 *   leasedAt: 2, leaseExpiresAt: 30_002,
 *   holder: { session: "s1", name: "worker-1", address: "127.0.0.1:5000" },
 * });
 * console.log(view.holder?.name, view.leaseExpiresAt, view.result); // worker-1 30002 null
 * ```
 */
export function jobView(info: JobInfo, valueChars: number = JOB_VALUE_CHARS): JobView {
  const view: JobView = {
    id: info.id,
    queue: info.queue,
    state: info.state,
    attempts: info.attempts,
    priority: info.priority,
    error: info.error === undefined ? null : shorten(info.error, ERROR_PREVIEW_CHARS),
    result: info.result !== undefined ? previewValue(info.result, valueChars) : null,
    createdAt: info.createdAt,
  };
  if (info.group !== undefined) view.group = info.group;
  if (info.key !== undefined) view.key = info.key;
  if (info.value !== undefined) {
    view.value = previewValue(info.value, valueChars);
  }
  if (info.progress !== undefined) {
    const progress: JobProgress = { at: info.progress.at };
    if (info.progress.percent !== undefined) progress.percent = info.progress.percent;
    if (info.progress.message !== undefined) progress.message = info.progress.message;
    view.progress = progress;
  }
  if (info.readyAt !== undefined) view.readyAt = info.readyAt;
  if (info.leasedAt !== undefined) view.leasedAt = info.leasedAt;
  if (info.leaseExpiresAt !== undefined) view.leaseExpiresAt = info.leaseExpiresAt;
  if (info.holder !== undefined) {
    view.holder = {
      session: info.holder.session,
      name: printable(info.holder.name), // a peer's text, as the clients list shows it
      address: info.holder.address,
    };
  }
  if (info.finishedAt !== undefined) view.finishedAt = info.finishedAt;
  return view;
}

/**
 * A queue's limits with the rate written out.
 *
 * @example
 * ```ts
 * import { limitsView } from "./jobs.ts";
 * const view = limitsView({
 *   queue: "mail", rateCount: 10, ratePeriodMs: 5000, concurrency: 0, groupConcurrency: 2,
 * });
 * console.log(view.rate, view.groupConcurrency); // 10/5s 2
 * ```
 */
export function limitsView(limits: NamedQueueLimits): LimitsView {
  return {
    queue: limits.queue,
    rateCount: limits.rateCount,
    ratePeriodMs: limits.ratePeriodMs,
    concurrency: limits.concurrency,
    groupConcurrency: limits.groupConcurrency,
    rate: formatRate(limits),
  };
}

/**
 * The job id a path names: a positive integer in decimal digits.
 * @throws {RangeError} when it is not one.
 *
 * @example
 * ```ts
 * import { parseJobId } from "./jobs.ts";
 * console.log(parseJobId("42")); // 42
 * try {
 *   parseJobId("4e2");
 * } catch (error) {
 *   console.log(error instanceof RangeError); // true
 * }
 * ```
 */
export function parseJobId(text: string): number {
  const id = Number(text);
  if (
    !/^[0-9]+$/.test(text) || text.length > MAX_JOB_ID_DIGITS || !Number.isSafeInteger(id) ||
    id < 1
  ) {
    throw new RangeError(
      `a job id is a positive integer, not ${JSON.stringify(shorten(text, 40))}`,
    );
  }
  return id;
}

/**
 * The limit changes a body asks for (besides its `queue`): any of
 * `rateCount`, `ratePeriodMs`, `concurrency` and `groupConcurrency` as
 * integers, or the rate as the CLI writes it (`"rate": "50/s"`, `"0"` to
 * lift it) instead of the first two. At least one must be given; fields
 * left out stay as they are.
 * @throws {RangeError} when a field is unknown, of the wrong type, out of
 *   range, or the body changes nothing.
 *
 * @example
 * ```ts
 * import { parseLimitChanges } from "./jobs.ts";
 * console.log(parseLimitChanges({ queue: "q", rate: "50/s", concurrency: 3 }));
 * // { rateCount: 50, ratePeriodMs: 1000, concurrency: 3 }
 * ```
 */
export function parseLimitChanges(body: Readonly<Record<string, unknown>>): LimitChanges {
  const allowed = new Set<string>(["queue", "rate", ...LIMIT_FIELDS]);
  for (const key of Object.keys(body)) {
    if (!allowed.has(key)) throw new RangeError(`unknown field "${key.slice(0, 40)}"`);
  }
  const changes: Record<string, unknown> = {};
  for (const field of LIMIT_FIELDS) if (body[field] !== undefined) changes[field] = body[field];
  if (body.rate !== undefined) {
    if (changes.rateCount !== undefined || changes.ratePeriodMs !== undefined) {
      throw new RangeError(`give "rate" or "rateCount" and "ratePeriodMs", not both`);
    }
    if (typeof body.rate !== "string") {
      throw new RangeError(`"rate" is a string such as "50/s", "10/5s" or "0"`);
    }
    Object.assign(changes, parseRate(body.rate));
  }
  for (const [field, value] of Object.entries(changes)) {
    if (typeof value !== "number") {
      throw new RangeError(`limit "${field}" must be an integer`);
    }
  }
  if (Object.keys(changes).length === 0) {
    throw new RangeError(
      `nothing to change: give "rate" (or "rateCount" and "ratePeriodMs"), "concurrency" ` +
        `or "groupConcurrency"`,
    );
  }
  return checkLimits(changes as LimitChanges);
}
