/**
 * Rates and throughput history from the engine's cumulative counters: sampled
 * at a fixed interval, each queue's put, done (acked) and failed counts become
 * per-second rates over the last few samples, and the totals over all queues
 * become a history for the dashboard's chart: a point per sample for the last
 * five minutes, and a coarser point per minute for the last hour (kept here,
 * in memory: 180 numbers, nothing stored).
 *
 * @example
 * ```ts
 * import { RateTracker } from "./rates.ts";
 * const tracker = new RateTracker(1_000);
 * const stats = (put: number) => [{
 *   name: "q", ready: 0, leased: 0, delayed: 0, waiting: 0,
 *   put, acked: 0, nacked: 0, expired: 0, failed: 0, dead: 0,
 * }];
 * tracker.sample(0, stats(0));
 * tracker.sample(1_000, stats(10));
 * console.log(tracker.rates("q").put, tracker.history().put); // 10 [ 10 ]
 * ```
 *
 * @module
 */

import type { QueueStats } from "../model/types.ts";
import { DEAD_LETTER_SUFFIX, isDeadLetterQueue } from "../model/queue_names.ts";

/** How often the counters are sampled by default. */
export const DEFAULT_SAMPLE_MS = 1_000;

/** Samples a rate spans: rates are averaged over this many intervals. */
export const RATE_WINDOW_SAMPLES = 5;

/** Points of throughput history kept: 5 minutes at the default interval. */
export const HISTORY_POINTS = 300;

/** Milliseconds per second. */
const MS_PER_SECOND = 1000;

/** Time one point of the coarse history spans, in ms: a minute. */
export const LONG_HISTORY_INTERVAL_MS = 60_000;

/** Points of coarse history kept: an hour of minutes. */
export const LONG_HISTORY_POINTS = 60;

/** Per-second rates of one queue (or all). */
export interface Rates {
  /** Items put per second. */
  put: number;
  /** Items acked per second. */
  done: number;
  /** Failures reported per second. */
  failed: number;
}

/** Throughput over time at one resolution, oldest point first. */
export interface HistorySeries {
  /** Time between points, in ms. */
  intervalMs: number;
  /** Time of the last point (ms since the epoch); 0 before the first. */
  endsAt: number;
  /** Items put per second, per point (dead letters not counted). */
  put: number[];
  /** Items acked per second, per point. */
  done: number[];
  /** Failures per second, per point. */
  failed: number[];
}

/**
 * Throughput over time: a point per sample over the last
 * {@link HISTORY_POINTS} samples, and in {@link History.long} a point per
 * minute (its average) over the last {@link LONG_HISTORY_POINTS} minutes.
 */
export interface History extends HistorySeries {
  /** The coarse history: a point per {@link LONG_HISTORY_INTERVAL_MS}. */
  long: HistorySeries;
}

interface Counts {
  put: number;
  done: number;
  failed: number;
}

interface Sample {
  at: number;
  byQueue: Map<string, Counts>;
  total: Counts;
}

const ZERO: Readonly<Counts> = { put: 0, done: 0, failed: 0 };

/** Keeps recent samples of the counters and turns them into rates. */
export class RateTracker {
  /** Sampling interval the history assumes, in ms. */
  readonly intervalMs: number;
  readonly #samples: Sample[] = [];
  readonly #history: HistorySeries;
  readonly #long: HistorySeries;
  /** The sample the coarse history's current minute began with. */
  #minuteStart: Sample | undefined;

  /** Creates a tracker for samples taken every `intervalMs`. */
  constructor(intervalMs: number = DEFAULT_SAMPLE_MS) {
    this.intervalMs = intervalMs;
    this.#history = { intervalMs, endsAt: 0, put: [], done: [], failed: [] };
    this.#long = {
      intervalMs: LONG_HISTORY_INTERVAL_MS,
      endsAt: 0,
      put: [],
      done: [],
      failed: [],
    };
  }

  /** Records the counters of `queues` as of `now` (ms). */
  sample(now: number, queues: readonly QueueStats[]): void {
    const names = new Set(queues.map((q) => q.name));
    const byQueue = new Map<string, Counts>();
    const total: Counts = { put: 0, done: 0, failed: 0 };
    for (const queue of queues) {
      const counts = { put: queue.put, done: queue.acked, failed: queue.failed };
      byQueue.set(queue.name, counts);
      // A dead letter is a failure moved, not new work: keep it out of the put total.
      const deadLetters = isDeadLetterQueue(queue.name) &&
        names.has(queue.name.slice(0, -DEAD_LETTER_SUFFIX.length));
      if (!deadLetters) total.put += counts.put;
      total.done += counts.done;
      total.failed += counts.failed;
    }
    const last = this.#samples.at(-1);
    const sample = { at: now, byQueue, total };
    this.#samples.push(sample);
    if (this.#samples.length > RATE_WINDOW_SAMPLES + 1) this.#samples.shift();
    if (last !== undefined && now > last.at) {
      addPoint(this.#history, perSecond(last.total, total, now - last.at), now, HISTORY_POINTS);
    }
    const start = this.#minuteStart;
    if (start === undefined || now < start.at) {
      this.#minuteStart = sample;
    } else if (now - start.at >= LONG_HISTORY_INTERVAL_MS) {
      const rates = perSecond(start.total, total, now - start.at);
      addPoint(this.#long, rates, now, LONG_HISTORY_POINTS);
      this.#minuteStart = sample;
    }
  }

  /** Rates over all queues (dead letters not counted as puts), over the samples kept. */
  totalRates(): Rates {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    if (first === undefined || last === undefined || last.at <= first.at) return { ...ZERO };
    return perSecond(first.total, last.total, last.at - first.at);
  }

  /** Rates of queue `name` over the samples kept (zeros before two samples). */
  rates(name: string): Rates {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    if (first === undefined || last === undefined || last.at <= first.at) return { ...ZERO };
    return perSecond(
      first.byQueue.get(name) ?? ZERO,
      last.byQueue.get(name) ?? ZERO,
      last.at - first.at,
    );
  }

  /** A copy of the throughput history. */
  history(): History {
    return { ...copySeries(this.#history), long: copySeries(this.#long) };
  }
}

function copySeries(h: HistorySeries): HistorySeries {
  return { ...h, put: [...h.put], done: [...h.done], failed: [...h.failed] };
}

/** Appends a point of `rates` at `now` to `series`, keeping at most `cap` points. */
function addPoint(series: HistorySeries, rates: Rates, now: number, cap: number): void {
  series.put.push(rates.put);
  series.done.push(rates.done);
  series.failed.push(rates.failed);
  if (series.put.length > cap) {
    series.put.shift();
    series.done.shift();
    series.failed.shift();
  }
  series.endsAt = now;
}

function perSecond(from: Counts, to: Counts, ms: number): Rates {
  const seconds = ms / MS_PER_SECOND;
  return {
    put: Math.max(0, to.put - from.put) / seconds,
    done: Math.max(0, to.done - from.done) / seconds,
    failed: Math.max(0, to.failed - from.failed) / seconds,
  };
}
