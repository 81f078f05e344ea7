/**
 * Forwarding a running job's progress reports to the master without flooding
 * it: at most one report per job is in flight; reports made meanwhile are
 * coalesced into the latest, sent when the one in flight is answered. Each
 * report sent renews the job's lease and is logged.
 *
 * @module
 */

import { type LeasedJob, wasCancelled } from "../client/client.ts";
import { ConnectionLostError, RemoteError, UnsupportedError } from "../errors.ts";
import type { Logger } from "../log.ts";

/** A progress report: how far along (0–100), and what the job is doing. */
export interface ProgressUpdate {
  /** How far along, 0–100. */
  percent?: number;
  /** What it is doing. */
  message?: string;
}

/**
 * Forwards the progress reports of a worker's jobs (see the module doc).
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { connect } from "../client/client.ts";
 * import { silentLogger } from "../log.ts";
 * import { ProgressForwarder } from "./progress.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const client = await connect({ address: master.address, authkey: "abc" });
 * const id = await client.queue("tasks").put("x");
 * const job = (await client.queue("tasks").get(1000))!;
 * const report = new ProgressForwarder(silentLogger).forJob(job);
 * report({ percent: 10 });
 * report({ percent: 20, message: "coalesced with the one before while 10 is in flight" });
 * await new Promise((resolve) => setTimeout(resolve, 100));
 * console.log((await client.job(id))?.progress?.percent); // 20
 * await client.queue("tasks").ack(job);
 * await client.close();
 * await master.close();
 * ```
 */
export class ProgressForwarder {
  readonly #log: Logger;
  /** Whether the master was found too old for progress (said once). */
  #unsupported = false;

  /** Logs to `log`. */
  constructor(log: Logger) {
    this.#log = log;
  }

  /** A function that forwards `job`'s progress reports; it never throws nor waits. */
  forJob(job: LeasedJob): (update: ProgressUpdate) => void {
    let inFlight = false;
    let next: ProgressUpdate | undefined;
    const send = (update: ProgressUpdate): void => {
      if (this.#unsupported || wasCancelled(job)) return;
      inFlight = true;
      this.#log.info("task progress", { id: job.id, ...update });
      job.progress(update.percent, update.message).then(
        () => {},
        (error) => this.#failed(job, error),
      ).finally(() => {
        inFlight = false;
        const pending = next;
        next = undefined;
        if (pending !== undefined) send(pending);
      });
    };
    return (update) => {
      if (inFlight) next = update;
      else send(update);
    };
  }

  /** A report could not be sent: said once for an old master; otherwise not the job's concern. */
  #failed(job: LeasedJob, error: unknown): void {
    if (error instanceof UnsupportedError) {
      if (!this.#unsupported) {
        this.#unsupported = true;
        this.#log.warn("progress lines are not forwarded", { reason: error.message });
      }
      return;
    }
    if (error instanceof ConnectionLostError || error instanceof RemoteError) {
      // The worker sees the connection go, or the master refusing, on its own.
      this.#log.debug("progress report not sent", { id: job.id, error: error.message });
      return;
    }
    this.#log.warn("progress report not sent", { id: job.id, error: String(error) });
  }
}
