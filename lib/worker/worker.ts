/**
 * The worker loop as a library: take items from a queue, run a handler on
 * each (up to `concurrency` at once), and ack each with the handler's return
 * value as its result; report failures to the master, which retries them with
 * backoff or dead-letters them.
 *
 * Throughput: the worker keeps one get outstanding for the free slots plus a
 * small prefetch window of leased items, so a slot never waits a round trip
 * for its next item; acks of items finishing together go out as one request
 * that also carries their results (committed together on the master); a slot
 * is free as soon as its handler returns.
 *
 * Leases: every third of the lease length, one request renews the leases of
 * all items held. If a lease is lost (a renewal is refused, or the connection
 * the item came on dropped), the handler's signal is aborted and its outcome
 * discarded: the master serves the item again. When the master goes away the
 * client reconnects by itself and the loop carries on.
 *
 * Cancellation: when an item being worked on is cancelled (`taskq cancel`,
 * `Client.cancel`), the master says so at once and the handler's signal
 * aborts with a `JobCancelledError`; the item's lease is gone, so its
 * outcome is discarded (neither acked nor failed) and it is logged as
 * cancelled. A handler reports progress with `job.progress(percent, message)`,
 * which also renews the lease.
 *
 * Stopping (the `signal` option) takes no more items, gives back prefetched
 * ones, and lets running handlers finish within a grace period; those still
 * running then are aborted and their items given back to the queue. A stop
 * never waits for the master: while it is away, whatever the worker held went
 * back to the queue with the connection, and {@link runWorker} resolves at
 * most the grace period plus {@link STOP_SETTLE_MS} after the stop, connected
 * or not. Going quiet (the `quiet` option) also takes no more items but lets
 * running handlers finish however long they take. An idle exit
 * (`exitWhenIdleMs`) counts time while the master is away too.
 *
 * @module
 */

import {
  type Client,
  type LeasedJob,
  MAX_BATCH,
  MAX_DURATION_MS,
  wasCancelled,
  whenCancelled,
} from "../client/client.ts";
import { ConnectionLostError, FrameTooLargeError, LeaseLostError, RemoteError } from "../errors.ts";
import { ResultTooLargeError } from "./errors.ts";
import { checkQueueNameArgument } from "../model/queue_names.ts";
import { checkIntegerArgument, describeValue } from "../util/arguments.ts";
import { type Logger, silentLogger } from "../log.ts";
import { type Completion, Completions } from "./completions.ts";
import { Deque } from "../util/deque.ts";

/** Longest single wait for items, so a stop or idle exit is noticed promptly. */
export const WORKER_POLL_MS = 1_000;

/** Time running handlers get to finish after a stop, by default. */
export const DEFAULT_GRACE_MS = 30_000;

/**
 * Time handlers aborted at the end of the grace period have to end (and
 * their items to be given back) before {@link runWorker} resolves anyway, in
 * ms. A command runner gets its command's process group to stop within it
 * (SIGTERM at the grace's end); what still runs then is the caller's to kill.
 */
export const STOP_SETTLE_MS = 500;

/**
 * Time a get may go unanswered beyond its own wait before the loop looks up
 * again (to notice an idle exit while the master is away), in ms.
 */
const GET_SLACK_MS = 250;

/** Milliseconds per second, for rates. */
const MS_PER_SECOND = 1000;

/** Leases are renewed this many times per lease length. */
const RENEWALS_PER_LEASE = 3;

/** Why a handler's signal was aborted. */
const ABANDONED = "lease lost";
const SHUTDOWN = "worker stopping";

/**
 * Runs on one item; its return value becomes the result. Throw to report a
 * failure. `signal` aborts when the work must stop: the item was cancelled
 * (its reason a `JobCancelledError`), its lease was lost, or the
 * worker's grace period after a stop ran out. `job.progress(percent,
 * message)` reports progress (and renews the lease).
 */
export type Handler<T = unknown> = (job: LeasedJob<T>, signal: AbortSignal) => unknown;

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
  /**
   * Leased items held ready beyond the running ones, so no slot waits a round
   * trip (default: `concurrency`). Use 0 for slow work, so idle workers are
   * never starved of items another worker holds.
   */
  prefetch?: number;
  /** The work. */
  handler: Handler<T>;
  /** Stop once no item has come for this long and nothing runs (default: never). */
  exitWhenIdleMs?: number;
  /** Lease to ask for; the master's default when absent. */
  leaseMs?: number;
  /** Aborting it stops taking items; running handlers get {@link graceMs} to finish. */
  signal?: AbortSignal;
  /**
   * Aborting it stops taking items (giving back prefetched ones) and lets
   * running handlers finish however long they take; the worker then returns.
   * A stop ({@link signal}) meanwhile still applies its grace period.
   */
  quiet?: AbortSignal;
  /** Time running handlers get after a stop before they are aborted (default 30 s). */
  graceMs?: number;
  /** Where failures and lost leases are logged (and, at debug level, every item done). */
  log?: Logger;
  /** Log a summary of the work done this often, while anything happened (default: never). */
  summaryIntervalMs?: number;
}

/** What a worker did, returned when it stops. */
export interface WorkerSummary {
  /** Items handled and acked. */
  done: number;
  /** Items whose handler failed (reported to the master). */
  failed: number;
  /** Items whose lease was lost mid-work (the master serves them again). */
  lost: number;
  /** Items whose ack (sent together with its result) was in flight when the connection dropped. */
  ackLost: number;
  /** Items given back unfinished when the worker stopped. */
  returned: number;
  /** Items cancelled while held (their work stopped, their outcome dropped). */
  cancelled: number;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Whether `error` means the connection went away (the client reconnects by itself). */
function isDisconnect(error: unknown): boolean {
  return error instanceof ConnectionLostError;
}

/**
 * Whether the master refused a request for now (`shutting_down` with the
 * request's id: it cannot reach the database it shares with other masters).
 * Nothing was done; the connection goes on, and so does the worker.
 */
function isUnavailable(error: unknown): boolean {
  return error instanceof RemoteError && error.code === "shutting_down";
}

/** How long the loop waits before asking again after a get was refused for now, in ms. */
const UNAVAILABLE_PAUSE_MS = 500;

/** Checks an optional duration option: whole milliseconds from 0 to {@link MAX_DURATION_MS}. */
function checkDurationOption(name: string, ms: unknown): void {
  if (ms !== undefined) checkIntegerArgument(name, ms, 0, MAX_DURATION_MS, " of milliseconds");
}

/**
 * Checks the options a caller passed, before any item is taken.
 * @throws {TypeError} for an option of the wrong type.
 * @throws {RangeError} for an option out of range (or a bad queue name).
 */
function checkOptions(options: WorkerOptions<never>): void {
  if (typeof options.handler !== "function") {
    throw new TypeError(`handler must be a function, not ${describeValue(options.handler)}`);
  }
  checkQueueNameArgument(options.queue);
  if (options.results !== undefined) checkQueueNameArgument(options.results);
  const concurrency = options.concurrency ?? 1;
  checkIntegerArgument("concurrency", concurrency, 1, MAX_BATCH);
  if (options.prefetch !== undefined) {
    checkIntegerArgument("prefetch", options.prefetch, 0, MAX_BATCH - concurrency);
  }
  checkDurationOption("leaseMs", options.leaseMs);
  checkDurationOption("exitWhenIdleMs", options.exitWhenIdleMs);
  checkDurationOption("graceMs", options.graceMs);
  checkDurationOption("summaryIntervalMs", options.summaryIntervalMs);
}

/**
 * Runs the worker loop until stopped or idle; resolves with what it did.
 * @throws {TypeError | RangeError} (rejects at once) for a bad option.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { connect } from "../client/client.ts";
 * import { runWorker } from "./worker.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const client = await connect({ address: master.address, authkey: "abc" });
 * await client.queue("numbers").putMany([1, 2, 3]);
 * const summary = await runWorker<number>({
 *   client,
 *   queue: "numbers",
 *   results: "squares",
 *   handler: (job) => job.value * job.value,
 *   exitWhenIdleMs: 50, // or stop it with `signal`
 * });
 * console.log(summary.done); // 3
 * const squares = await client.queue("squares").getMany(3, 0);
 * console.log(squares.map((job) => job.value)); // [ 1, 4, 9 ]
 * await client.close();
 * await master.close();
 * ```
 */
export async function runWorker<T = unknown>(options: WorkerOptions<T>): Promise<WorkerSummary> {
  checkOptions(options as WorkerOptions<never>);
  const { client, handler } = options;
  const log = options.log ?? silentLogger;
  const concurrency = options.concurrency ?? 1;
  const prefetch = Math.min(options.prefetch ?? concurrency, MAX_BATCH - concurrency);
  const leaseMs = options.leaseMs ?? client.defaultLeaseMs;
  const source = client.queue(options.queue);
  const completions = new Completions(source, options.results);
  const summary: WorkerSummary = {
    done: 0,
    failed: 0,
    lost: 0,
    ackLost: 0,
    returned: 0,
    cancelled: 0,
  };
  /** Jobs whose handler runs, with the controller that aborts it. */
  const running = new Map<LeasedJob<T>, AbortController>();
  /**
   * Leased jobs waiting for a slot; one superseded by a newer delivery of
   * its item (see {@link newest}) is skipped when its turn comes.
   */
  const buffered = new Deque<LeasedJob<T>>();
  /** The newest delivery of each item held (running or buffered), by id: one lookup per job. */
  const newest = new Map<LeasedJob<T>["id"], LeasedJob<T>>();
  /** Whether `job` is the newest delivery of its item held here. */
  const current = (job: LeasedJob<T>) => newest.get(job.id) === job;
  /** Lets go of `job` (settled, skipped or given back). */
  const release = (job: LeasedJob<T>) => {
    if (current(job)) newest.delete(job.id);
  };
  /** Empties the buffer; returns the jobs in it that were still current, in order. */
  const unbuffer = (): LeasedJob<T>[] => {
    const jobs: LeasedJob<T>[] = [];
    for (let job = buffered.shift(); job !== undefined; job = buffered.shift()) {
      if (!current(job)) continue;
      newest.delete(job.id);
      jobs.push(job);
    }
    return jobs;
  };
  /** Whether the connection `job` came on has dropped since (its lease went with it). */
  const droppedSince = (job: LeasedJob<T>) =>
    !client.connected || client.deliveredOn(job) !== client.sessionNumber;
  /** Every job's settling (handler and ack), awaited before returning. */
  const settling = new Unsettled();
  let lastItemAt = Date.now();
  let wake = Promise.withResolvers<void>();
  let fatal: { error: unknown } | undefined;
  /** Settles when the get waiting at the master (if any) has been answered. */
  let outstandingGet: Promise<unknown> | undefined;
  const stopped = () =>
    options.signal?.aborted === true || options.quiet?.aborted === true || fatal !== undefined;

  /**
   * A job's lease ended before its work was settled: the master serves the
   * item again. When the connection dropped (the client logs that once), it
   * is logged at info level, one line per item; otherwise as a warning.
   */
  const lost = (job: LeasedJob<T>, why: string, disconnected = droppedSince(job)) => {
    summary.lost++;
    const fields = { id: job.id, attempt: job.attempt, why };
    if (disconnected) {
      log.info("the lease ended before the work did: the connection to the master dropped", fields);
    } else log.warn("the lease ended before the work did; the item will be served again", fields);
  };

  const cancelled = (job: LeasedJob<T>, what: string) => {
    summary.cancelled++;
    log.info(`task cancelled; ${what}`, { id: job.id, attempt: job.attempt });
  };

  /**
   * Runs one job's handler, then acks it; frees its slot as soon as the
   * handler returns. Never rejects: what goes wrong is counted and logged, or
   * (a bug) kept in `fatal`.
   */
  const work = async (job: LeasedJob<T>, abort: AbortController): Promise<void> => {
    settling.begin();
    try {
      await runAndAck(job, abort);
    } catch (error) {
      if (wasCancelled(job) && error instanceof LeaseLostError) {
        cancelled(job, "it was cancelled while being settled");
      } else if (error instanceof LeaseLostError) {
        lost(job, "the master no longer held it leased to this worker");
      } else if (isDisconnect(error)) {
        lost(job, "the connection to the master dropped while it was settled", true);
      } else if (isUnavailable(error)) {
        lost(job, `the master could not settle it: ${describe(error)}`);
      } else fatal ??= { error };
    } finally {
      running.delete(job);
      release(job);
      settling.end();
      lastItemAt = Date.now();
      fillSlots();
    }
  };

  /** The handler, then the ack (see {@link work}). */
  const runAndAck = async (job: LeasedJob<T>, abort: AbortController): Promise<void> => {
    let result: unknown;
    try {
      result = await handler(job, abort.signal);
    } catch (error) {
      running.delete(job);
      fillSlots();
      if (wasCancelled(job)) {
        // Cancelled: the lease is gone; there is nothing to give back or report.
        cancelled(job, "its work was stopped");
      } else if (abort.signal.reason === SHUTDOWN) {
        // A get still waiting at the master would take the item straight back.
        // Nothing is given back while the master is away: it took the item back itself.
        if (client.mayHoldLease(job)) await outstandingGet;
        if (client.mayHoldLease(job)) await source.nack(job);
        summary.returned++;
      } else if (abort.signal.aborted || !client.mayHoldLease(job)) {
        lost(job, `its work was stopped, and failed: ${describe(error)}`);
      } else {
        summary.failed++;
        log.warn("task failed", { id: job.id, attempt: job.attempt, error: describe(error) });
        await source.fail(job, describe(error));
      }
      return;
    }
    running.delete(job);
    fillSlots();
    if (wasCancelled(job)) {
      cancelled(job, "its result was dropped");
      return;
    }
    if (abort.signal.reason === ABANDONED || !client.mayHoldLease(job)) {
      lost(job, "its result was dropped");
      return;
    }
    let completion: Completion;
    try {
      completion = await completions.complete(job, result);
    } catch (error) {
      if (error instanceof FrameTooLargeError) {
        // This result alone is too large to send: this item fails, the others go on.
        const failure = new ResultTooLargeError(error.length, error.max);
        summary.failed++;
        log.warn("task failed", { id: job.id, attempt: job.attempt, error: failure.message });
        if (client.mayHoldLease(job)) await source.fail(job, failure.message);
        return;
      }
      if (!isDisconnect(error) && !isUnavailable(error)) throw error;
      // The ack and its result were sent together: either both took effect,
      // or neither did and the item will run again.
      summary.ackLost++;
      log.warn(
        "the connection dropped while acking; if the ack was lost, the item will run again",
        {
          id: job.id,
          error: describe(error),
        },
      );
      return;
    }
    if (completion === "acked") {
      summary.done++;
      log.debug("task done", { id: job.id, attempt: job.attempt });
    } else if (wasCancelled(job)) {
      cancelled(job, "it was cancelled before its ack; its result was dropped");
    } else {
      lost(job, "the lease ended before the ack came; its result was dropped");
    }
  };

  const start = (job: LeasedJob<T>) => {
    const abort = new AbortController();
    // The handler's signal also aborts, with the job's JobCancelledError, when it is cancelled.
    whenCancelled(job, (reason) => abort.abort(reason));
    running.set(job, abort);
    work(job, abort);
  };

  /**
   * Holds a newly leased job. If the same item is still held from an earlier
   * delivery (its lease expired and the master served it again), the earlier
   * one is abandoned: only the newest delivery may settle it.
   */
  const take = (job: LeasedJob<T>) => {
    const old = newest.get(job.id);
    const abort = old === undefined ? undefined : running.get(old);
    if (abort !== undefined && !abort.signal.aborted) abort.abort(ABANDONED);
    newest.set(job.id, job);
    buffered.push(job);
  };

  /** Starts buffered jobs while slots are free (skipping those cancelled while they waited). */
  function fillSlots(): void {
    while (running.size < concurrency && buffered.length > 0 && !stopped()) {
      const job = buffered.shift() as LeasedJob<T>;
      if (!current(job)) continue; // delivered again since: the newer delivery runs
      if (wasCancelled(job)) {
        release(job);
        cancelled(job, "it was cancelled before it started");
      } else if (!client.mayHoldLease(job)) {
        release(job);
        // Its connection dropped while it waited: the master serves it again; no work is wasted.
        log.debug("a prefetched item went back with the connection", { id: job.id });
      } else start(job);
    }
    wake.resolve();
  }

  /** Renews every held lease in one request; aborts the jobs whose lease is gone. */
  const renew = setInterval(() => {
    // Not those cancelled: their leases are gone already (and their work stops).
    const held = [...newest.values()].filter((job) => !wasCancelled(job));
    if (held.length === 0) return;
    source.extend(held, leaseMs).catch((error) => {
      if (isUnavailable(error)) {
        // Not refused: the master cannot answer now. The next renewal tries again.
        log.debug("lease renewal put off", { error: describe(error) });
        return;
      }
      const gone = error instanceof LeaseLostError ? new Set(error.ids) : undefined;
      for (const [job, abort] of running) {
        if ((gone === undefined || gone.has(job.id)) && !abort.signal.aborted) {
          abort.abort(ABANDONED);
        }
      }
      log.debug("lease renewal failed", { error: describe(error) });
    });
  }, Math.max(1, Math.floor(leaseMs / RENEWALS_PER_LEASE)));

  /** Logs what was done since the last summary, unless nothing was. */
  let reported = { ...summary };
  let reportedAt = Date.now();
  const report = options.summaryIntervalMs === undefined ? undefined : setInterval(() => {
    const now = Date.now();
    const done = summary.done - reported.done;
    const failed = summary.failed - reported.failed;
    if (done === 0 && failed === 0 && running.size === 0) return;
    log.info("progress", {
      ...summary,
      running: running.size,
      perSecond: Math.round((done / Math.max(1, now - reportedAt)) * MS_PER_SECOND * 10) / 10,
    });
    reported = { ...summary };
    reportedAt = now;
  }, options.summaryIntervalMs);

  /** When the stop came (the grace period runs from it). */
  let stopAt: number | undefined;
  const stopSignal = new Promise<void>((resolve) => {
    const now = () => {
      stopAt ??= Date.now();
      resolve();
    };
    if (options.signal?.aborted) now();
    else options.signal?.addEventListener("abort", now, { once: true });
  });
  /** Resolves on a stop or on going quiet. */
  const stopWaiting = Promise.race([
    stopSignal,
    new Promise<void>((resolve) => {
      if (options.quiet?.aborted) resolve();
      options.quiet?.addEventListener("abort", () => resolve(), { once: true });
    }),
  ]);
  /**
   * Ends the loop's current wait for a get (a fresh one per wait: racing
   * `stopWaiting` itself in every turn would pile reactions onto it).
   */
  let interruptGet: ((why: "stop" | "tick") => void) | undefined;
  stopWaiting.then(() => {
    wake.resolve();
    interruptGet?.("stop");
  });
  /** A get sent (or waiting for the connection to come back) and not answered yet. */
  let getting: Promise<LeasedJob<T>[]> | undefined;
  /** Whether the master said it cannot serve now, and that was logged (once per episode). */
  let unavailable = false;
  const timers = new Set<ReturnType<typeof setTimeout>>();
  /** Resolves with `value` after `ms` (cleared when the worker returns). */
  const after = <V>(ms: number, value: V) =>
    new Promise<V>((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve(value);
      }, ms);
      timers.add(timer);
    });
  try {
    while (!stopped()) {
      fillSlots();
      if (options.exitWhenIdleMs !== undefined) {
        const idleFor = Date.now() - lastItemAt;
        if (running.size === 0 && settling.size === 0 && idleFor >= options.exitWhenIdleMs) {
          log.info("no item came for a while; exiting", { idleMs: idleFor });
          break;
        }
      }
      const want = concurrency + prefetch - running.size - buffered.length;
      if (want <= 0 && getting === undefined) {
        wake = Promise.withResolvers<void>();
        if (!stopped()) await wake.promise; // a stop resolves it too
        continue;
      }
      let wait = WORKER_POLL_MS;
      if (running.size > 0 || buffered.length > 0) {
        // Work is at hand: only take what is ready now, waiting a little at most.
        wait = Math.min(wait, leaseMs / RENEWALS_PER_LEASE);
      }
      if (options.exitWhenIdleMs !== undefined) {
        const idleFor = Date.now() - lastItemAt;
        wait = Math.max(1, Math.min(wait, options.exitWhenIdleMs - idleFor));
      }
      // While the master is away, a get waits for the connection to come back: it is
      // kept (not sent twice) and the loop looks up now and then, for an idle exit.
      if (getting === undefined) {
        getting = source.getMany<T>(want, Math.round(wait), { leaseMs });
        outstandingGet = getting.catch(() => {});
      }
      const current = getting;
      type Outcome = { jobs: LeasedJob<T>[] } | { error: unknown } | "stop" | "tick";
      let tick: ReturnType<typeof setTimeout> | undefined;
      const interrupted = new Promise<"stop" | "tick">((resolve) => {
        interruptGet = resolve;
        tick = setTimeout(() => resolve("tick"), wait + GET_SLACK_MS);
      });
      if (stopped()) interruptGet?.("stop");
      const outcome: Outcome = await Promise.race([
        current.then((jobs) => ({ jobs }), (error) => ({ error })),
        interrupted,
      ]);
      clearTimeout(tick);
      interruptGet = undefined;
      if (outcome === "tick") continue;
      if (outcome === "stop") break;
      getting = undefined;
      if ("error" in outcome) {
        const { error } = outcome;
        if (isUnavailable(error) && !client.closed) {
          if (unavailable) log.debug("the master still cannot serve", { error: describe(error) });
          else {
            log.warn("the master cannot serve now; asking again shortly", {
              error: describe(error),
            });
          }
          unavailable = true;
          await Promise.race([after(UNAVAILABLE_PAUSE_MS, undefined), stopWaiting]);
          continue;
        }
        if (isDisconnect(error) && !client.closed) {
          // The client logs the disconnect (once) and reconnects by itself.
          log.debug("a get was cut off by the connection dropping", { error: describe(error) });
          // Prefetched items were returned by the master with the connection.
          unbuffer();
          continue;
        }
        throw error;
      }
      if (unavailable) log.info("the master serves again");
      unavailable = false;
      const { jobs } = outcome;
      if (jobs.length === 0) continue;
      lastItemAt = Date.now();
      for (const job of jobs) take(job);
    }
    if (getting !== undefined) {
      // Stopped while a get waits: whatever it still brings goes back. Only
      // awaited while connected (it is answered within its wait then).
      const returning = getting.then(async (late) => {
        if (late.length === 0) return;
        await source.nack(late);
        summary.returned += late.length;
      }).catch(() => {});
      if (client.connected) settling.track(returning);
    }
    // Give back what was prefetched but not started (once no get is waiting at
    // the master, which would take it straight back). While the master is
    // away, there is nothing to give back: it took back every lease.
    const unstarted = unbuffer();
    for (const job of unstarted) {
      if (wasCancelled(job)) cancelled(job, "it was cancelled before it started");
    }
    const returning = unstarted.filter((job) => !wasCancelled(job));
    if (returning.length > 0) {
      summary.returned += returning.length;
      if (client.connected) {
        await Promise.race([outstandingGet, after(WORKER_POLL_MS + GET_SLACK_MS, undefined)]);
        const held = returning.filter((job) => client.mayHoldLease(job));
        if (held.length > 0) await source.nack(held).catch(() => {});
      }
    }
    if (running.size > 0 && fatal === undefined) {
      // Quiet: the running handlers finish, however long they take, unless a stop comes.
      if (!options.signal?.aborted) await Promise.race([settling.none(), stopSignal]);
      if (running.size > 0 && options.signal?.aborted) {
        const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
        const left = Math.max(0, (stopAt ?? Date.now()) + graceMs - Date.now());
        const finished = settling.none().then(() => false);
        if (await Promise.race([finished, after(left, true)])) {
          log.warn("grace period over; stopping the work still running", {
            running: running.size,
          });
          for (const abort of running.values()) abort.abort(SHUTDOWN);
        }
      }
    }
  } finally {
    // Bounded once stopped: what has not settled STOP_SETTLE_MS after the grace is left behind.
    const settled = settling.none();
    if (stopAt === undefined) await settled;
    else await Promise.race([settled, after(STOP_SETTLE_MS, undefined)]);
    clearInterval(renew);
    clearInterval(report);
    for (const timer of timers) clearTimeout(timer);
  }
  if (fatal !== undefined) throw fatal.error;
  return summary;
}

/** Counts work under way (each job's settling), and tells when none is left. */
class Unsettled {
  #count = 0;
  #none: PromiseWithResolvers<void> | undefined;

  /** How many are under way. */
  get size(): number {
    return this.#count;
  }

  /** One more is under way. */
  begin(): void {
    this.#count++;
  }

  /** One is done. */
  end(): void {
    if (--this.#count > 0) return;
    this.#none?.resolve();
    this.#none = undefined;
  }

  /** Counts `promise` as under way until it settles. */
  track(promise: Promise<unknown>): void {
    this.begin();
    promise.finally(() => this.end()).catch(() => {});
  }

  /** Resolves once none is under way (at once if none is now). */
  none(): Promise<void> {
    if (this.#count === 0) return Promise.resolve();
    return (this.#none ??= Promise.withResolvers()).promise;
  }
}
