/**
 * The worker loop for a Python master: takes items from a queue an
 * unmodified Python `BaseManager` program serves (such as the seed's
 * `task_master.py`), runs a handler on each, and puts each handler's return
 * value on the master's result queue, the way a Python worker would.
 *
 * Each of the `concurrency` slots has its own connection for method calls,
 * as each thread of a Python worker would, and takes items with
 * `get(timeout=1)`, so a stop or idle exit is noticed within a second.
 *
 * A Python master has no leases, retries or dead letters: an item it handed
 * out is gone from it. So this loop retries a failing handler itself (up to
 * `maxAttempts`, with doubling backoff) and then logs and drops the item; it
 * keeps a result until the master has it, reconnecting if need be; and on a
 * stop it puts the items it could not finish back on the master's queue.
 * When the master goes away (or is not up yet), the slots reconnect with
 * capped backoff, logged once per outage; an idle exit (`exitWhenIdleMs`)
 * counts that time too. After a stop it resolves within the grace period
 * plus `STOP_SETTLE_MS`, master or not (handlers still running then are
 * left to their aborted signal).
 *
 * @module
 */

import { isEmptyError, type PythonCallConnection, type PythonManagerClient } from "./client.ts";
import { type Job, RECONNECT_BASE_MS, RECONNECT_MAX_MS } from "../client/client.ts";
import { fromNatural, toNatural } from "./wire/natural.ts";
import type { PyValue } from "./wire/values.ts";
import {
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_MAX_ATTEMPTS,
} from "../model/types.ts";
import { DEFAULT_GRACE_MS, STOP_SETTLE_MS } from "../worker/worker.ts";
import { ConnectionLostError } from "../errors.ts";
import { PickleError } from "./errors.ts";
import { type Logger, silentLogger } from "../log.ts";

/** Seconds each `get` waits at the master for an item. */
export const PYTHON_POLL_SECONDS = 1;

/** Milliseconds per second. */
const MS_PER_SECOND = 1_000;

/** Time allowed beyond a call's own wait before its connection is given up. */
const CALL_MARGIN_MS = 30_000;

/** Time allowed to put an interrupted item back on the master's queue, reconnecting if need be. */
const PUT_BACK_MS = 10_000;

/** Why a handler's signal was aborted. */
const SHUTDOWN = "worker stopping";

/** Runs on one item; its return value is put on the result queue. Throw to fail. */
export type PythonHandler = (job: Job, signal: AbortSignal) => unknown;

/** Options of {@link runPythonWorker}. */
export interface PythonWorkerOptions {
  /** The Python master. */
  manager: PythonManagerClient;
  /** Registered name of the queue to take items from (e.g. `get_task_queue`). */
  queue: string;
  /** Registered name of the queue to put results on; results are dropped when absent. */
  results?: string;
  /** Handler runs at once (default 1). */
  concurrency?: number;
  /** The work. */
  handler: PythonHandler;
  /** Runs of the handler per item before it is dropped (default 5). */
  maxAttempts?: number;
  /** First retry delay; doubles per attempt (default 1 s). */
  retryBackoffMs?: number;
  /** Stop once no item has come for this long and nothing runs (default: never). */
  exitWhenIdleMs?: number;
  /** Aborting it stops taking items; running handlers get {@link graceMs} to finish. */
  signal?: AbortSignal;
  /** Time running handlers get after a stop before they are aborted (default 30 s). */
  graceMs?: number;
  /** The name our call connections give the master (`accept_connection`). */
  name?: string;
  /** Where progress and trouble are logged. */
  log?: Logger;
  /** Throw when the master cannot be reached at first, instead of waiting for it. */
  failFast?: boolean;
}

/** What a Python-master worker did, returned when it stops. */
export interface PythonWorkerSummary {
  /** Items handled, their results delivered. */
  done: number;
  /** Items dropped after their last failed attempt, or unreadable. */
  failed: number;
  /** Handler runs that failed and were retried. */
  retried: number;
  /** Items put back on the master's queue unfinished when the worker stopped. */
  returned: number;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Waits `ms`, or less if `until` aborts meanwhile. */
function sleep(ms: number, until: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (until.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      until.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    until.addEventListener("abort", done, { once: true });
  });
}

/**
 * Runs the loop until stopped or idle; resolves with what it did.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { pythonFrontEnd } from "./frontend.ts";
 * import { PythonManagerClient } from "./client.ts";
 * import { runPythonWorker } from "./worker.ts";
 * // taskq's own Python front-end stands in for a Python master here.
 * const master = await serve({
 *   listen: "127.0.0.1:0",
 *   authkey: "secret",
 *   frontEnds: [pythonFrontEnd({ listen: "127.0.0.1:0" })],
 * });
 * const producer = await master.broker.open({ name: "producer", address: "" });
 * await producer.put("tasks", [6]);
 * const address = master.frontEnds[0].address;
 * const manager = new PythonManagerClient({ address, authkey: "secret" });
 * const stop = new AbortController();
 * const summary = await runPythonWorker({
 *   manager,
 *   queue: "get_task_queue",
 *   results: "get_result_queue",
 *   signal: stop.signal,
 *   handler: (job) => {
 *     stop.abort(); // one item is enough here
 *     return (job.value as number) * 7;
 *   },
 * });
 * console.log(summary.done); // 1
 * const [result] = await producer.get("results", { max: 1, timeoutMs: 0 });
 * console.log(result.value); // 42
 * await producer.close();
 * await master.close();
 * ```
 */
export async function runPythonWorker(options: PythonWorkerOptions): Promise<PythonWorkerSummary> {
  const { manager, handler } = options;
  const log = options.log ?? silentLogger;
  const concurrency = Math.max(1, options.concurrency ?? 1);
  const maxAttempts = Math.max(1, options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
  const backoffBaseMs = options.retryBackoffMs ?? DEFAULT_BACKOFF_BASE_MS;
  const name = options.name ?? "taskq-worker";
  const summary: PythonWorkerSummary = { done: 0, failed: 0, retried: 0, returned: 0 };
  /** Running handlers, with the controller that aborts each. */
  const running = new Set<AbortController>();
  /** Slots busy with an item (running it, or delivering its result). */
  let working = 0;
  let nextJobId = 1;
  let lastItemAt = Date.now();
  let fatal: { error: unknown } | undefined;
  /** Aborted to stop taking items: a stop, an idle exit or a fatal error. */
  const halt = new AbortController();
  /** Aborted when the grace period is over: undelivered results may be given up. */
  const quit = new AbortController();
  /** Aborted on a fatal error: nothing more can be done. */
  const dead = new AbortController();
  /** Aborted {@link STOP_SETTLE_MS} after the grace period: the loop returns, done or not. */
  const over = new AbortController();
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  let overTimer: ReturnType<typeof setTimeout> | undefined;
  const onStop = () => {
    halt.abort();
    const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
    graceTimer = setTimeout(() => {
      if (running.size > 0) {
        log.warn("grace period over; stopping the work still running", { running: running.size });
      }
      for (const abort of running) abort.abort(SHUTDOWN);
      quit.abort();
    }, graceMs);
    overTimer = setTimeout(() => over.abort(), graceMs + STOP_SETTLE_MS);
  };
  /** Whether the master was ever reached; whether it is away now (logged once per outage). */
  let reached = false;
  let away = false;
  /** Ends the loop once idle for `exitWhenIdleMs`, checked even while the master is away. */
  const idleCheck = options.exitWhenIdleMs === undefined ? undefined : setInterval(() => {
    const quiet = Date.now() - lastItemAt;
    if (working === 0 && quiet >= (options.exitWhenIdleMs as number) && !halt.signal.aborted) {
      log.info("no item came for a while; exiting", { idleMs: quiet });
      halt.abort();
    }
  }, Math.max(1, Math.min(options.exitWhenIdleMs, PYTHON_POLL_SECONDS * MS_PER_SECOND) / 2));
  if (options.signal?.aborted) onStop();
  else options.signal?.addEventListener("abort", onStop, { once: true });
  const fail = (error: unknown) => {
    fatal ??= { error };
    halt.abort();
    quit.abort();
    dead.abort();
  };

  /** One slot's call connection and the ids of its two queues on the master. */
  interface Link {
    calls: PythonCallConnection;
    task: string;
    results: string | undefined;
  }

  const open = async (): Promise<Link> => {
    const task = (await manager.create(options.queue)).ident;
    const results = options.results === undefined
      ? undefined
      : (await manager.create(options.results)).ident;
    return { calls: await manager.openCalls(name), task, results };
  };

  const slot = async (index: number): Promise<void> => {
    let link: Link | undefined;
    let backoff = RECONNECT_BASE_MS;

    /** Runs `call` on a live link, reconnecting until it succeeds or `until` aborts. */
    const withLink = async <T>(
      call: (link: Link) => Promise<T>,
      until: AbortSignal,
    ): Promise<T | undefined> => {
      for (;;) {
        if (until.aborted) return undefined;
        try {
          link ??= await open();
          const result = await call(link);
          backoff = RECONNECT_BASE_MS;
          reached = true;
          if (away) {
            away = false;
            log.info("reconnected to the Python master");
          }
          return result;
        } catch (error) {
          if (!(error instanceof ConnectionLostError)) throw error;
          if (!reached && options.failFast) throw error;
          if (away) {
            log.debug("the Python master still cannot be reached", {
              slot: index,
              error: describe(error),
            });
          } else {
            away = true;
            log.warn(
              reached
                ? "lost the Python master; reconnecting"
                : "the Python master cannot be reached; waiting for it",
              { error: describe(error) },
            );
          }
          link?.calls.close();
          link = undefined;
          await sleep(backoff * (0.5 + Math.random() / 2), until);
          backoff = Math.min(backoff * 2, RECONNECT_MAX_MS);
        }
      }
    };

    /** Puts an unfinished item back on the master's task queue (within {@link PUT_BACK_MS}). */
    const putBack = async (value: PyValue) => {
      const window = new AbortController();
      const timer = setTimeout(() => window.abort(), PUT_BACK_MS);
      const back = await withLink(
        (l) => l.calls.call(l.task, "put", [value]),
        AbortSignal.any([window.signal, dead.signal, over.signal]),
      ).catch((error) => {
        log.error("put back failed", { error: describe(error) });
        return undefined;
      }).finally(() => clearTimeout(timer));
      if (back === undefined) {
        log.error("could not put an unfinished item back on the Python master's queue");
      } else {
        summary.returned++;
      }
    };

    const work = async (value: PyValue): Promise<void> => {
      let natural: unknown;
      try {
        natural = toNatural(value).value;
      } catch (error) {
        summary.failed++;
        log.error("dropped an item that is not a plain value", { error: describe(error) });
        return;
      }
      const id = nextJobId++;
      let result: unknown;
      for (let attempt = 1;; attempt++) {
        const abort = new AbortController();
        running.add(abort);
        const job: Job = { id, queue: options.queue, value: natural, attempt };
        try {
          result = await handler(job, abort.signal);
          break;
        } catch (error) {
          if (abort.signal.reason === SHUTDOWN) return await putBack(value);
          if (attempt >= maxAttempts) {
            summary.failed++;
            log.error("task failed for the last time; a Python master has no dead-letter queue", {
              id,
              attempt,
              error: describe(error),
            });
            return;
          }
          summary.retried++;
          log.warn("task failed; retrying", { id, attempt, error: describe(error) });
        } finally {
          running.delete(abort);
        }
        await sleep(
          Math.min(backoffBaseMs * 2 ** (attempt - 1), DEFAULT_BACKOFF_MAX_MS),
          halt.signal,
        );
        if (halt.signal.aborted) return await putBack(value);
      }
      if (options.results !== undefined) {
        const pyResult = fromNatural(result);
        const put = await withLink(
          (l) => l.calls.call(l.results as string, "put", [pyResult]),
          quit.signal,
        );
        if (put === undefined) {
          summary.failed++;
          log.error("gave up delivering a result to the Python master", { id });
          return;
        }
      }
      summary.done++;
      log.debug("task done", { id });
    };

    try {
      while (!halt.signal.aborted) {
        let value: PyValue | undefined;
        try {
          value = await withLink(
            (l) =>
              l.calls.call(
                l.task,
                "get",
                [],
                { timeout: PYTHON_POLL_SECONDS },
                PYTHON_POLL_SECONDS * 1000 + CALL_MARGIN_MS,
              ),
            halt.signal,
          );
        } catch (error) {
          // Nothing came within the poll; an idle exit is the idle check's to make.
          if (isEmptyError(error)) continue;
          if (error instanceof PickleError) {
            summary.failed++;
            log.error("dropped an item taskq refuses to read", { error: describe(error) });
            continue;
          }
          throw error;
        }
        if (value === undefined) break;
        lastItemAt = Date.now();
        if (halt.signal.aborted) {
          await putBack(value);
          break;
        }
        working++;
        try {
          await work(value);
        } finally {
          working--;
          lastItemAt = Date.now();
        }
      }
    } catch (error) {
      fail(error);
    } finally {
      if (link !== undefined) {
        link.calls.close();
        for (const ident of [link.task, link.results]) {
          if (ident !== undefined) await manager.decref(ident).catch(() => {});
        }
      }
    }
  };

  try {
    const slots = Promise.all(Array.from({ length: concurrency }, (_, i) => slot(i + 1)));
    const late = new Promise<void>((resolve) =>
      over.signal.addEventListener("abort", () => resolve())
    );
    await Promise.race([slots, late]);
  } finally {
    clearTimeout(graceTimer);
    clearTimeout(overTimer);
    clearInterval(idleCheck);
    options.signal?.removeEventListener("abort", onStop);
  }
  if (fatal !== undefined) throw fatal.error;
  return summary;
}
