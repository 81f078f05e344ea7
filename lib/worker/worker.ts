/**
 * The worker loop as a library: take items from a queue, run a handler on
 * each (up to `concurrency` at once), put what it returns on a results queue,
 * and ack; report failures to the master, which retries them with backoff or
 * dead-letters them.
 *
 * While a handler runs, its lease is renewed every third of the lease length,
 * however long the work takes. If a renewal is refused (the lease was lost),
 * the handler's signal is aborted and its outcome discarded: the master has
 * already given the item to someone else.
 *
 * @module
 */

import type { Client, Job } from "../client/client.ts";
import { LeaseLostError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";

/** Longest single wait for items, so a stop or idle exit is noticed promptly. */
export const WORKER_POLL_MS = 1_000;

/** Leases are renewed this many times per lease length. */
const RENEWALS_PER_LEASE = 3;

/** Runs on one item; its return value becomes the result. Throw to report a failure. */
export type Handler<T = unknown> = (job: Job<T>, signal: AbortSignal) => unknown;

/** Options of {@link runWorker}. */
export interface WorkerOptions<T = unknown> {
  /** A connected client. */
  client: Client;
  /** Queue to take items from. */
  queue: string;
  /** Queue to put each handler's return value on; results are dropped when absent. */
  results?: string;
  /** Handler runs at once (default 1). */
  concurrency?: number;
  /** The work. */
  handler: Handler<T>;
  /** Stop once no item has come for this long and nothing runs (default: never). */
  exitWhenIdleMs?: number;
  /** Lease to ask for; the master's default when absent. */
  leaseMs?: number;
  /** Aborting it stops taking items; running handlers finish. */
  signal?: AbortSignal;
  /** Where failures and lost leases are logged. */
  log?: Logger;
}

/** What a worker did, returned when it stops. */
export interface WorkerSummary {
  /** Items handled and acked. */
  done: number;
  /** Items whose handler failed (reported to the master). */
  failed: number;
  /** Items whose lease was lost mid-work (the master serves them again). */
  lost: number;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Runs the worker loop until stopped or idle; resolves with what it did. */
export async function runWorker<T = unknown>(options: WorkerOptions<T>): Promise<WorkerSummary> {
  const { client, handler } = options;
  const log = options.log ?? silentLogger;
  const concurrency = Math.max(1, options.concurrency ?? 1);
  const leaseMs = options.leaseMs ?? client.defaultLeaseMs;
  const source = client.queue(options.queue);
  const sink = options.results === undefined ? undefined : client.queue(options.results);
  const summary: WorkerSummary = { done: 0, failed: 0, lost: 0 };
  const running = new Set<Promise<void>>();
  let lastItemAt = Date.now();
  let slotFreed = Promise.withResolvers<void>();

  let fatal: { error: unknown } | undefined;

  const work = async (job: Job<T>): Promise<void> => {
    const abort = new AbortController();
    const renew = setInterval(() => {
      source.extend(job, leaseMs).catch((error) => {
        if (abort.signal.aborted) return;
        abort.abort(error);
        log.warn("lease lost while working; the item will be served again", {
          id: job.id,
          error: describe(error),
        });
      });
    }, Math.max(1, Math.floor(leaseMs / RENEWALS_PER_LEASE)));
    try {
      let result: unknown;
      try {
        result = await handler(job, abort.signal);
      } catch (error) {
        if (abort.signal.aborted) {
          summary.lost++;
          return;
        }
        summary.failed++;
        log.warn("task failed", { id: job.id, attempt: job.attempt, error: describe(error) });
        await source.fail(job, describe(error));
        return;
      }
      if (abort.signal.aborted) {
        summary.lost++;
        return;
      }
      if (sink !== undefined) await sink.put(result);
      await source.ack(job);
      summary.done++;
    } catch (error) {
      // Settling failed: a lost lease is counted; anything else (the connection
      // broke) stops the worker, and the master serves the item again.
      if (error instanceof LeaseLostError) summary.lost++;
      else fatal ??= { error };
    } finally {
      clearInterval(renew);
    }
  };

  const stopped = () => options.signal?.aborted === true || fatal !== undefined;
  try {
    while (!stopped()) {
      const free = concurrency - running.size;
      if (free === 0) {
        await slotFreed.promise;
        continue;
      }
      let wait = WORKER_POLL_MS;
      if (options.exitWhenIdleMs !== undefined) {
        const idleFor = Date.now() - lastItemAt;
        if (running.size === 0 && idleFor >= options.exitWhenIdleMs) break;
        wait = Math.max(1, Math.min(wait, options.exitWhenIdleMs - idleFor));
      }
      const jobs: Job<T>[] = await source.getMany<T>(free, wait, { leaseMs });
      if (jobs.length === 0) continue;
      lastItemAt = Date.now();
      if (stopped()) {
        await source.nack(jobs);
        break;
      }
      for (const job of jobs) {
        const task = work(job).finally(() => {
          running.delete(task);
          lastItemAt = Date.now();
          slotFreed.resolve();
          slotFreed = Promise.withResolvers<void>();
        });
        running.add(task);
      }
    }
  } finally {
    await Promise.allSettled(running);
  }
  if (fatal !== undefined) throw fatal.error;
  return summary;
}
