/**
 * Tests of lib/http/rates.ts: per-queue rates over the last samples, the
 * throughput history (dead letters not counted as puts), its length cap, and
 * the coarse history of a point per minute over the last hour.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { QueueSnapshot } from "../lib/engine/engine.ts";
import {
  HISTORY_POINTS,
  LONG_HISTORY_INTERVAL_MS,
  LONG_HISTORY_POINTS,
  RATE_WINDOW_SAMPLES,
  RateTracker,
} from "../lib/http/rates.ts";

function queue(name: string, put: number, acked: number, failed = 0): QueueSnapshot {
  return {
    name,
    ready: 0,
    leased: 0,
    delayed: 0,
    waiting: 0,
    put,
    acked,
    nacked: 0,
    expired: 0,
    failed,
    dead: 0,
  };
}

Deno.test("rates are per second over the samples kept; zero before two samples", () => {
  const rates = new RateTracker(1000);
  assert.deepEqual(rates.rates("q"), { put: 0, done: 0, failed: 0 });
  rates.sample(0, [queue("q", 0, 0)]);
  assert.deepEqual(rates.rates("q"), { put: 0, done: 0, failed: 0 });
  rates.sample(1000, [queue("q", 10, 4, 2)]);
  assert.deepEqual(rates.rates("q"), { put: 10, done: 4, failed: 2 });
  rates.sample(2000, [queue("q", 30, 4, 2)]);
  assert.deepEqual(rates.rates("q"), { put: 15, done: 2, failed: 1 });
  assert.deepEqual(rates.rates("unknown"), { put: 0, done: 0, failed: 0 });
  // Only the last RATE_WINDOW_SAMPLES intervals count.
  for (let i = 3; i <= RATE_WINDOW_SAMPLES + 3; i++) rates.sample(i * 1000, [queue("q", 30, 4, 2)]);
  assert.deepEqual(rates.rates("q"), { put: 0, done: 0, failed: 0 });
});

Deno.test("a queue that appears later counts from zero", () => {
  const rates = new RateTracker(1000);
  rates.sample(0, []);
  rates.sample(2000, [queue("new", 8, 2)]);
  assert.deepEqual(rates.rates("new"), { put: 4, done: 1, failed: 0 });
});

Deno.test("the history sums all queues, leaves dead letters out of puts, and is capped", () => {
  const rates = new RateTracker(1000);
  rates.sample(0, [queue("a", 0, 0), queue("a.dead", 0, 0)]);
  rates.sample(1000, [queue("a", 5, 3, 1), queue("a.dead", 1, 0), queue("b", 2, 2)]);
  const h = rates.history();
  assert.deepEqual([h.put, h.done, h.failed], [[7], [5], [1]]);
  assert.equal(h.endsAt, 1000);
  assert.equal(h.intervalMs, 1000);
  for (let i = 2; i < HISTORY_POINTS + 10; i++) rates.sample(i * 1000, [queue("a", 5 + i, 3)]);
  assert.equal(rates.history().put.length, HISTORY_POINTS);
  assert.equal(rates.history().put.at(-1), 1);
});

Deno.test("the coarse history keeps a minute's average per point, an hour of them", () => {
  const rates = new RateTracker(1000);
  // 10 puts a second for 3 minutes, sampled every second.
  for (let s = 0; s <= 180; s++) rates.sample(s * 1000, [queue("q", s * 10, s * 5)]);
  const long = rates.history().long;
  assert.equal(long.intervalMs, LONG_HISTORY_INTERVAL_MS);
  assert.deepEqual(long.put, [10, 10, 10]);
  assert.deepEqual(long.done, [5, 5, 5]);
  assert.equal(long.endsAt, 180_000);
  assert.deepEqual(rates.totalRates(), { put: 10, done: 5, failed: 0 });
  // Capped at an hour of minutes.
  for (let m = 4; m <= LONG_HISTORY_POINTS + 10; m++) {
    rates.sample(m * 60_000, [queue("q", m * 600, 0)]);
  }
  assert.equal(rates.history().long.put.length, LONG_HISTORY_POINTS);
  assert.equal(rates.history().long.put.at(-1), 10);
});
