/**
 * Batches the acks (and results) of finished jobs: everything that finishes in
 * one turn of the event loop goes to the master as a single `ack` request,
 * which puts each result and acks its item in the same step; a batch too
 * large for one frame is split, so that a result too large fails alone.
 *
 * @module
 */

import type { Job, Queue } from "../client/client.ts";
import { FrameTooLargeError, LeaseLostError } from "../errors.ts";
import { setImmediate } from "node:timers";

/** How a completion ended. */
export type Completion = "acked" | "lease-lost";

interface Entry {
  job: Job;
  result: unknown;
  settle: PromiseWithResolvers<Completion>;
}

/** Collects finished jobs of one queue and acks them in batches. */
export class Completions {
  readonly #source: Queue;
  readonly #resultQueue: string | undefined;
  #batch: Entry[] = [];
  #timer: ReturnType<typeof setImmediate> | undefined;

  /** Acks jobs of `source`, putting results on `resultQueue` when given. */
  constructor(source: Queue, resultQueue?: string) {
    this.#source = source;
    this.#resultQueue = resultQueue;
  }

  /**
   * Queues `job` as done with `result`. Resolves with `"acked"`, or
   * `"lease-lost"` when the master no longer had it leased to us (the result
   * was dropped); rejects when the request failed (e.g. the connection broke:
   * whether the ack took effect is unknown), with a `FrameTooLargeError` when
   * this job's result alone does not fit in a frame (nothing was sent).
   */
  complete(job: Job, result: unknown): Promise<Completion> {
    const settle = Promise.withResolvers<Completion>();
    this.#batch.push({ job, result, settle });
    // After this turn's I/O: jobs finishing together share the request.
    this.#timer ??= setImmediate(() => this.#flush());
    return settle.promise;
  }

  #flush(): Promise<void> {
    this.#timer = undefined;
    const batch = this.#batch;
    this.#batch = [];
    return this.#send(batch);
  }

  /**
   * Acks `batch` in one request. When it is too large for one frame (results
   * are carried along), its halves go separately, down to single entries: an
   * entry too large on its own is rejected with the `FrameTooLargeError`, and
   * only that entry.
   */
  async #send(batch: Entry[]): Promise<void> {
    const jobs = batch.map((entry) => entry.job);
    const options = this.#resultQueue === undefined
      ? {}
      : { results: { queue: this.#resultQueue, values: batch.map((entry) => entry.result) } };
    try {
      await this.#source.ack(jobs, options);
      for (const entry of batch) entry.settle.resolve("acked");
    } catch (error) {
      if (error instanceof FrameTooLargeError && batch.length > 1) {
        const half = Math.ceil(batch.length / 2);
        await Promise.all([this.#send(batch.slice(0, half)), this.#send(batch.slice(half))]);
        return;
      }
      if (!(error instanceof LeaseLostError)) {
        for (const entry of batch) entry.settle.reject(error);
        return;
      }
      const lost = new Set(error.ids);
      for (const entry of batch) {
        entry.settle.resolve(lost.has(entry.job.id) ? "lease-lost" : "acked");
      }
    }
  }
}
