/**
 * Group commit for a database: requests made while earlier ones are being
 * written are gathered and written together, in one statement.
 *
 * A {@link Batcher} runs at most `maxInFlight` batches at once (one per
 * database connection it may use); requests made in the same turn of the
 * event loop, and all made while every slot is busy, wait for the next
 * batch, up to `maxBatchWeight` (e.g. items) per batch. Under light load a
 * request is written at once, alone; under heavy load batches grow, so the
 * statements per second stay within what the database does well.
 *
 * @example
 * ```ts
 * import { Batcher } from "./batcher.ts";
 * const seen: number[][] = [];
 * const doubler = new Batcher<number, number>(async (batch) => {
 *   seen.push(batch);
 *   return batch.map((n) => n * 2);
 * });
 * console.log(await Promise.all([doubler.add(1), doubler.add(2), doubler.add(3)])); // [ 2, 4, 6 ]
 * console.log(seen); // [ [ 1, 2, 3 ] ]
 * ```
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** Batches written at once unless told otherwise. */
export const DEFAULT_MAX_IN_FLIGHT = 2;

/** Weight (e.g. items) of one batch unless told otherwise. */
export const DEFAULT_MAX_BATCH_WEIGHT = 1_000;

/** Options of a {@link Batcher}. */
export interface BatcherOptions<Req> {
  /** Batches written at once ({@link DEFAULT_MAX_IN_FLIGHT} by default). */
  maxInFlight?: number;
  /** Most weight per batch ({@link DEFAULT_MAX_BATCH_WEIGHT} by default); a heavier request goes alone. */
  maxBatchWeight?: number;
  /** The weight of a request (1 by default). */
  weigh?: (request: Req) => number;
}

/** A request waiting for its batch. */
interface Pending<Req, Res> {
  readonly request: Req;
  readonly weight: number;
  readonly resolve: (result: Res) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Gathers requests into batches written by one function: it gets the batch's
 * requests in the order they were added and resolves with one result per
 * request, in the same order; if it rejects, every request of the batch
 * rejects with its error.
 */
export class Batcher<Req, Res> {
  readonly #write: (batch: Req[], lane: number) => Promise<Res[]>;
  readonly #maxInFlight: number;
  readonly #maxWeight: number;
  readonly #weigh: (request: Req) => number;
  #pending: Pending<Req, Res>[] = [];
  #inFlight = 0;
  /** Lanes not in use by a batch in flight. */
  readonly #lanes: number[] = [];
  #scheduled = false;
  readonly #idle = new Set<() => void>();

  /**
   * Creates a batcher over `write`, which is also told the batch's lane: a
   * number below `maxInFlight` that no other batch in flight has (e.g. a
   * row of its own to count in, so batches never wait for each other).
   */
  constructor(
    write: (batch: Req[], lane: number) => Promise<Res[]>,
    options: BatcherOptions<Req> = {},
  ) {
    this.#write = write;
    this.#maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    this.#maxWeight = options.maxBatchWeight ?? DEFAULT_MAX_BATCH_WEIGHT;
    this.#weigh = options.weigh ?? (() => 1);
    for (let lane = this.#maxInFlight - 1; lane >= 0; lane--) this.#lanes.push(lane);
  }

  /** Adds a request; resolves with its result once its batch is written. */
  add(request: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      this.#pending.push({ request, weight: this.#weigh(request), resolve, reject });
      this.#schedule();
    });
  }

  /** Requests waiting or being written. */
  get busy(): boolean {
    return this.#pending.length > 0 || this.#inFlight > 0;
  }

  /** Resolves once nothing waits or is being written. */
  settled(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise((resolve) => this.#idle.add(resolve));
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= this.#maxInFlight) return;
    this.#scheduled = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#scheduled = false;
    while (this.#pending.length > 0 && this.#inFlight < this.#maxInFlight) {
      let weight = 0;
      let n = 0;
      while (n < this.#pending.length) {
        const next = this.#pending[n].weight;
        if (n > 0 && weight + next > this.#maxWeight) break;
        weight += next;
        n++;
      }
      const batch = this.#pending.splice(0, n);
      this.#inFlight++;
      this.#run(batch, this.#lanes.pop() as number);
    }
  }

  async #run(batch: Pending<Req, Res>[], lane: number): Promise<void> {
    try {
      const results = await this.#write(batch.map((p) => p.request), lane);
      for (let i = 0; i < batch.length; i++) batch[i].resolve(results[i]);
    } catch (error) {
      for (const p of batch) p.reject(error);
    } finally {
      this.#lanes.push(lane);
      this.#inFlight--;
      if (this.#pending.length > 0) this.#schedule();
      else if (this.#inFlight === 0) {
        for (const resolve of [...this.#idle]) resolve();
        this.#idle.clear();
      }
    }
  }
}
