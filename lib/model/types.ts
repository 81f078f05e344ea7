/**
 * The neutral model every layer shares: a queue's statistics, a dead letter,
 * the retry policy and the defaults that govern leases and attempts.
 *
 * Nothing here knows about sockets, stores or the engine's data structures;
 * the wire format, the engine, the broker and the HTTP side all speak these
 * types, so none of them has to import another to describe a queue.
 *
 * @example
 * ```ts
 * import { DEFAULT_RETRY_POLICY, type QueueStats } from "./types.ts";
 * const empty: QueueStats = {
 *   name: "tasks", ready: 0, leased: 0, delayed: 0, waiting: 0,
 *   put: 0, acked: 0, nacked: 0, expired: 0, failed: 0, dead: 0,
 * };
 * console.log(empty.name, DEFAULT_RETRY_POLICY.maxAttempts);
 * ```
 *
 * @module
 */

/** Lease length when a get names none: 30 s. */
export const DEFAULT_LEASE_MS = 30_000;

/** Deliveries an item gets before it is dead-lettered, unless its put or queue says otherwise. */
export const DEFAULT_MAX_ATTEMPTS = 5;

/** First retry delay after a failure, in ms; doubles with each further attempt. */
export const DEFAULT_BACKOFF_BASE_MS = 1_000;

/** Longest retry delay, in ms. */
export const DEFAULT_BACKOFF_MAX_MS = 300_000;

/** Statistics of one queue (the `stats` reply carries them field for field). */
export interface QueueStats {
  /** Queue name. */
  name: string;
  /** Items waiting to be taken. */
  ready: number;
  /** Items taken and not yet settled. */
  leased: number;
  /** Items that become ready later. */
  delayed: number;
  /** Gets waiting for an item. */
  waiting: number;
  /** Items ever put. */
  put: number;
  /** Items acked. */
  acked: number;
  /** Items nacked. */
  nacked: number;
  /** Leases that ran out or were dropped with their connection. */
  expired: number;
  /** Failures reported by workers. */
  failed: number;
  /** Items moved to the dead-letter queue. */
  dead: number;
}

/** What the dead-letter queue holds for each item that ran out of attempts. */
export interface DeadLetter {
  /** The queue the item failed in. */
  queue: string;
  /** Its id there. */
  id: number;
  /** The item itself, as it was put. */
  value: unknown;
  /** Deliveries it had. */
  attempts: number;
  /** The last failure's description. */
  error: string;
  /** When it was dead-lettered (ms since the epoch). */
  failedAt: number;
}

/** How failed items are retried. */
export interface RetryPolicy {
  /** Deliveries before an item is dead-lettered. */
  maxAttempts: number;
  /** First retry delay in ms; doubles per attempt. */
  backoffBaseMs: number;
  /** Longest retry delay in ms. */
  backoffMaxMs: number;
  /** Per-queue overrides of {@link RetryPolicy.maxAttempts}. */
  maxAttemptsByQueue?: Readonly<Record<string, number>>;
}

/** The retry policy used when none is given. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: DEFAULT_MAX_ATTEMPTS,
  backoffBaseMs: DEFAULT_BACKOFF_BASE_MS,
  backoffMaxMs: DEFAULT_BACKOFF_MAX_MS,
};

/**
 * The statistics of a queue that holds nothing and never counted anything.
 *
 * @example
 * ```ts
 * import { emptyQueueStats } from "./types.ts";
 * console.log(emptyQueueStats("tasks").ready); // 0
 * ```
 */
export function emptyQueueStats(name: string): QueueStats {
  return {
    name,
    ready: 0,
    leased: 0,
    delayed: 0,
    waiting: 0,
    put: 0,
    acked: 0,
    nacked: 0,
    expired: 0,
    failed: 0,
    dead: 0,
  };
}
