/**
 * The worker loop as a library: take items from a queue, run a handler on
 * each (up to `concurrency` at once), put what it returns on a results queue,
 * and ack; report failures to the master, which retries them with backoff or
 * dead-letters them.
 *
 * While a handler runs, its lease is renewed every third of the lease length,
 * however long the work takes. If the lease is lost (a renewal is refused, or
 * the connection it came on dropped), the handler's signal is aborted and its
 * outcome discarded: the master serves the item again. When the master goes
 * away the client reconnects by itself and the loop carries on.
 *
 * Stopping (the `signal` option) takes no more items and lets running handlers
 * finish within a grace period; those still running then are aborted and their
 * items given back to the queue.
 *
 * @module
 */

import type { Client, Job } from "../client/client.ts";
import { ConnectionLostError, LeaseLostError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";

/** Longest single wait for items, so a stop or idle exit is noticed promptly. */
export const WORKER_POLL_MS = 1_000;

/** Time running handlers get to finish after a stop, by default. */
export const DEFAULT_GRACE_MS = 30_000;

/** Leases are renewed this many times per lease length. */
const RENEWALS_PER_LEASE = 3;

/** Why a handler's signal was aborted. */
const ABANDONED = "lease lost";
const SHUTDOWN = "worker stopping";

/** Runs on one item; its return value becomes the result. Throw to report a failure. */
export type Handler<T = unknown> = (job: Job<T>, signal: AbortSignal) => unknown;

/** Options of {@link runWorker}. */
export interface WorkerOptions<T = unknown> {
  /** A connected client (reconnecting by itself, as {@link connect} makes it by default). */
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
  /** Aborting it stops taking items; running handlers get {@link graceMs} to finish. */
  signal?: AbortSignal;
  /** Time running handlers get after a stop before they are aborted (default 30 s). */
  graceMs?: number;
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
  /** Items whose result was sent but whose ack did not reach the master: they will run again. */
  ackLost: number;
  /** Items given back unfinished when the worker stopped. */
  returned: number;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Whether `error` means the connection went away (the client reconnects by itself). */
function isDisconnect(error: unknown): boolean {
  return error instanceof ConnectionLostError;
}

/** Runs the worker loop until stopped or idle; resolves with what it did. */
export async function runWorker<T = unknown>(options: WorkerOptions<T>): Promise<WorkerSummary> {
  const { client, handler } = options;
  const log = options.log ?? silentLogger;
  const concurrency = Math.max(1, options.concurrency ?? 1);
  const leaseMs = options.leaseMs ?? client.defaultLeaseMs;
  const source = client.queue(options.queue);
  const sink = options.results === undefined ? undefined : client.queue(options.results);
  const summary: WorkerSummary = { done: 0, failed: 0, lost: 0, ackLost: 0, returned: 0 };
  const running = new Map<Promise<void>, AbortController>();
  let lastItemAt = Date.now();
  let slotFreed = Promise.withResolvers<void>();

  const lost = (job: Job<T>, why: string) => {
    summary.lost++;
    log.warn("lease lost; the item will be served again", { id: job.id, why });
  };

  const work = async (job: Job<T>, abort: AbortController): Promise<void> => {
    const renew = setInterval(() => {
      source.extend(job, leaseMs).catch((error) => {
        if (!abort.signal.aborted) abort.abort(ABANDONED);
        log.debug("lease renewal failed", { id: job.id, error: describe(error) });
      });
    }, Math.max(1, Math.floor(leaseMs / RENEWALS_PER_LEASE)));
    let resultSent = false;
    try {
      let result: unknown;
      try {
        result = await handler(job, abort.signal);
      } catch (error) {
        if (abort.signal.reason === SHUTDOWN) {
          if (client.mayHoldLease(job)) await source.nack(job);
          summary.returned++;
        } else if (abort.signal.aborted || !client.mayHoldLease(job)) {
          lost(job, "the work was abandoned");
        } else {
          summary.failed++;
          log.warn("task failed", { id: job.id, attempt: job.attempt, error: describe(error) });
          await source.fail(job, describe(error));
        }
        return;
      }
      if (abort.signal.reason === ABANDONED || !client.mayHoldLease(job)) {
        lost(job, "the lease ended before the work did; its result was dropped");
        return;
      }
      if (sink !== undefined) {
        resultSent = true;
        await sink.put(result);
      }
      await source.ack(job);
      summary.done++;
    } catch (error) {
      if (!(error instanceof LeaseLostError) && !isDisconnect(error)) throw error;
      if (resultSent) {
        summary.ackLost++;
        log.warn("result sent but the ack was lost; the item will run again", {
          id: job.id,
          error: describe(error),
        });
      } else {
        lost(job, describe(error));
      }
    } finally {
      clearInterval(renew);
    }
  };

  let fatal: { error: unknown } | undefined;
  const start = (job: Job<T>) => {
    const abort = new AbortController();
    const task: Promise<void> = work(job, abort)
      .catch((error) => {
        fatal ??= { error };
      })
      .finally(() => {
        running.delete(task);
        lastItemAt = Date.now();
        slotFreed.resolve();
        slotFreed = Promise.withResolvers<void>();
      });
    running.set(task, abort);
  };

  const stopped = () => options.signal?.aborted === true || fatal !== undefined;
  const stopWaiting = new Promise<void>((resolve) => {
    if (options.signal?.aborted) resolve();
    options.signal?.addEventListener("abort", () => resolve(), { once: true });
  });
  try {
    while (!stopped()) {
      const free = concurrency - running.size;
      if (free === 0) {
        await Promise.race([slotFreed.promise, stopWaiting]);
        continue;
      }
      let wait = WORKER_POLL_MS;
      if (options.exitWhenIdleMs !== undefined) {
        const idleFor = Date.now() - lastItemAt;
        if (running.size === 0 && idleFor >= options.exitWhenIdleMs) break;
        wait = Math.max(1, Math.min(wait, options.exitWhenIdleMs - idleFor));
      }
      let jobs: Job<T>[];
      try {
        jobs = await source.getMany<T>(free, wait, { leaseMs });
      } catch (error) {
        if (isDisconnect(error) && !client.closed) {
          log.warn("connection to the master lost; reconnecting", { error: describe(error) });
          continue;
        }
        throw error;
      }
      if (jobs.length === 0) continue;
      lastItemAt = Date.now();
      if (stopped()) {
        await source.nack(jobs).catch(() => {});
        summary.returned += jobs.length;
        break;
      }
      for (const job of jobs) start(job);
    }
    if (running.size > 0 && options.signal?.aborted) {
      const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const graceOver = new Promise<boolean>((resolve) =>
        timer = setTimeout(() => resolve(true), graceMs)
      );
      const finished = Promise.all(running.keys()).then(() => false);
      if (await Promise.race([finished, graceOver])) {
        log.warn("grace period over; stopping the work still running", { running: running.size });
        for (const abort of running.values()) abort.abort(SHUTDOWN);
      }
      clearTimeout(timer);
    }
  } finally {
    await Promise.allSettled(running.keys());
  }
  if (fatal !== undefined) throw fatal.error;
  return summary;
}
