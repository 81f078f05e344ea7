/**
 * What the master counts about itself beyond the queues: error replies by
 * wire code (bad frames, failed handshakes, ...), connections accepted, and
 * the store's commit latency as a cumulative histogram. Front-ends and the
 * store report into one {@link Telemetry}; the HTTP side reads it for
 * `/metrics`.
 *
 * @module
 */

import type { ErrorCode } from "../errors.ts";

/**
 * Upper bounds (seconds) of the commit latency histogram's buckets: from a
 * tenth of a millisecond (an in-memory commit) to seconds (a stalled disk).
 */
export const COMMIT_SECONDS_BUCKETS: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
];

/**
 * Upper bounds (seconds) of the job run-time histogram's buckets (lease start
 * to ack): from 10 ms (an echo) to an hour (a batch job).
 */
export const JOB_SECONDS_BUCKETS: readonly number[] = [
  0.01,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  300,
  900,
  3600,
];

/** Milliseconds per second, for converting durations. */
const MS_PER_SECOND = 1000;

/**
 * A cumulative histogram in the Prometheus sense: counts per upper bound, plus sum and count.
 *
 * @example
 * ```ts
 * import { Histogram } from "./telemetry.ts";
 * const seconds = new Histogram([0.01, 0.1, 1]);
 * seconds.observe(0.005);
 * seconds.observe(0.05);
 * seconds.observe(5); // above every bound: counted only in +Inf
 * console.log(seconds.cumulative()); // [ 1, 2, 2 ]
 * console.log(seconds.count); // 3
 * ```
 */
export class Histogram {
  /** Upper bounds of the buckets, ascending (the implicit last one is +Inf). */
  readonly bounds: readonly number[];
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  /** Creates an empty histogram with the given ascending upper bounds. */
  constructor(bounds: readonly number[]) {
    for (let i = 1; i < bounds.length; i++) {
      if (!(bounds[i] > bounds[i - 1])) throw new RangeError("histogram bounds must ascend");
    }
    this.bounds = bounds;
    this.#counts = new Array(bounds.length).fill(0);
  }

  /** Records one observation. */
  observe(value: number): void {
    this.#sum += value;
    this.#count++;
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= this.bounds[i]) {
        this.#counts[i]++;
        return;
      }
    }
  }

  /** Observations so far. */
  get count(): number {
    return this.#count;
  }

  /** Sum of the observations so far. */
  get sum(): number {
    return this.#sum;
  }

  /** Cumulative counts: for each bound, the observations at or below it. */
  cumulative(): number[] {
    const out = new Array<number>(this.bounds.length);
    let running = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      running += this.#counts[i];
      out[i] = running;
    }
    return out;
  }
}

/**
 * Counters and histograms of one master.
 *
 * @example
 * ```ts
 * import { Telemetry } from "./telemetry.ts";
 * const telemetry = new Telemetry(); // a master's is `master.telemetry`
 * telemetry.countError("auth_failed");
 * telemetry.observeCommit(2); // a 2 ms commit
 * telemetry.observeJob(1500); // a job acked 1.5 s after its lease began
 * console.log(telemetry.errors.get("auth_failed")); // 1
 * console.log(telemetry.commitSeconds.sum); // 0.002
 * console.log(telemetry.jobSeconds.count); // 1
 * ```
 */
export class Telemetry {
  /** Error replies sent (each closes its connection but one), by wire code. */
  readonly errors: Map<ErrorCode, number> = new Map();
  /** TCP connections accepted. */
  connectionsAccepted = 0;
  /** Connections refused before their handshake because their address was throttled after wrong keys. */
  authThrottled = 0;
  /** Durations of the store's commits, in seconds. */
  readonly commitSeconds: Histogram = new Histogram(COMMIT_SECONDS_BUCKETS);
  /** Run times of acked jobs (from their lease's start to their ack), in seconds. */
  readonly jobSeconds: Histogram = new Histogram(JOB_SECONDS_BUCKETS);

  /** Counts an error reply with wire code `code`. */
  countError(code: ErrorCode): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  /** Records a store commit that took `ms` milliseconds. */
  observeCommit(ms: number): void {
    this.commitSeconds.observe(ms / MS_PER_SECOND);
  }

  /** Records an acked job that ran `ms` milliseconds, from its lease's start to its ack. */
  observeJob(ms: number): void {
    this.jobSeconds.observe(Math.max(0, ms) / MS_PER_SECOND);
  }
}
