/**
 * Rates and throughput history from the engine's cumulative counters: sampled
 * at a fixed interval, each queue's put, done (acked) and failed counts become
 * per-second rates over the last few samples, and the totals over all queues
 * become a short history for the dashboard's chart.
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

/** Per-second rates of one queue (or all). */
export interface Rates {
  /** Items put per second. */
  put: number;
  /** Items acked per second. */
  done: number;
  /** Failures reported per second. */
  failed: number;
}

/** Throughput over time, oldest point first. */
export interface History {
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
  readonly #history: History;

  /** Creates a tracker for samples taken every `intervalMs`. */
  constructor(intervalMs: number = DEFAULT_SAMPLE_MS) {
    this.intervalMs = intervalMs;
    this.#history = { intervalMs, endsAt: 0, put: [], done: [], failed: [] };
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
    this.#samples.push({ at: now, byQueue, total });
    if (this.#samples.length > RATE_WINDOW_SAMPLES + 1) this.#samples.shift();
    if (last !== undefined && now > last.at) {
      const rates = perSecond(last.total, total, now - last.at);
      const history = this.#history;
      history.put.push(rates.put);
      history.done.push(rates.done);
      history.failed.push(rates.failed);
      if (history.put.length > HISTORY_POINTS) {
        history.put.shift();
        history.done.shift();
        history.failed.shift();
      }
      history.endsAt = now;
    }
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
    const h = this.#history;
    return { ...h, put: [...h.put], done: [...h.done], failed: [...h.failed] };
  }
}

function perSecond(from: Counts, to: Counts, ms: number): Rates {
  const seconds = ms / MS_PER_SECOND;
  return {
    put: Math.max(0, to.put - from.put) / seconds,
    done: Math.max(0, to.done - from.done) / seconds,
    failed: Math.max(0, to.failed - from.failed) / seconds,
  };
}
