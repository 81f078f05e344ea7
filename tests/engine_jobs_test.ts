/**
 * Tests of the engine's job features (lib/engine/engine.ts) on a fake clock:
 * the rate limit's exact spacing and burst (GCRA), concurrency and per-group
 * limits with waiting gets, priorities and groups together, unique keys and
 * their holds, cancellation wherever an item is, job lookup in every state,
 * the history's count and age bounds, and progress renewing a lease.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Consumer, Engine, type EngineOptions, type Item } from "../lib/engine/engine.ts";

const START = 1_000_000;
const LEASE = 10_000;

/** An engine on a fake clock. */
class Harness {
  now = START;
  readonly engine: Engine;

  constructor(options: EngineOptions = {}) {
    this.engine = new Engine({ clock: () => this.now, defaultLeaseMs: LEASE, ...options });
  }

  /** Moves the clock forward and runs the engine's timers due by then. */
  advance(ms: number): void {
    this.now += ms;
    this.engine.tick(this.now);
  }

  /** Moves the clock to the engine's next deadline (if any, and not past `until`) and ticks. */
  step(until: number): boolean {
    const next = this.engine.nextDeadline();
    if (next === undefined || next > until) return false;
    this.now = Math.max(this.now, next);
    this.engine.tick(this.now);
    return true;
  }

  /** Takes up to `max` items at once, without waiting. */
  take(consumer: Consumer, queue: string, max = 1): Item[] {
    let got: readonly Item[] = [];
    this.engine.get(consumer, queue, max, 0, undefined, (items) => got = items);
    return [...got];
  }

  /** Starts a waiting get; returns what it was delivered so far. */
  wait(consumer: Consumer, queue: string, max = 1, timeoutMs = 1_000_000): Item[][] {
    const calls: Item[][] = [];
    this.engine.get(consumer, queue, max, timeoutMs, undefined, (items) => calls.push([...items]));
    return calls;
  }
}

Deno.test("rate limit: deliveries are spaced period/N apart, never more than N per period", () => {
  const h = new Harness();
  h.engine.setLimits("q", { rateCount: 50, ratePeriodMs: 1_000 }); // one per 20 ms, burst 1
  h.engine.put("q", Array.from({ length: 500 }, (_, i) => i));
  const c = h.engine.connect("c");
  const times: number[] = [];
  // A worker that takes at once whatever it may, over 2 s of fake time.
  const end = START + 2_000;
  for (;;) {
    const calls = h.wait(c, "q", 10);
    while (calls.length === 0 && h.step(end));
    if (calls.length === 0) break;
    for (const item of calls[0]) times.push(h.now), h.engine.ack(c, [item.id]);
  }
  // 1 at START, then one every 20 ms: 101 in [START, START + 2000].
  assert.equal(times.length, 101);
  for (let i = 1; i < times.length; i++) assert.equal(times[i] - times[i - 1], 20);
  for (let i = 50; i < times.length; i++) assert.ok(times[i] - times[i - 50] >= 1_000);
});

Deno.test("rate limit: a high rate allows a short burst of RATE_BURST_MS worth", () => {
  const h = new Harness();
  h.engine.setLimits("q", { rateCount: 10_000, ratePeriodMs: 1_000 }); // burst 100
  h.engine.put("q", Array.from({ length: 1_000 }, (_, i) => i));
  const c = h.engine.connect("c");
  assert.equal(h.take(c, "q", 1_000).length, 100);
  assert.equal(h.take(c, "q", 1_000).length, 0);
  h.advance(5);
  // 5 ms' worth (one more when the schedule lags a little behind the clock).
  const next = h.take(c, "q", 1_000).length;
  assert.ok(next >= 50 && next <= 51, `took ${next}`);
});

Deno.test("rate limit: waiting gets are served in order as the rate allows, by timer", () => {
  const h = new Harness();
  h.engine.setLimits("q", { rateCount: 10, ratePeriodMs: 1_000 });
  const a = h.engine.connect("a");
  const b = h.engine.connect("b");
  const first = h.wait(a, "q");
  const second = h.wait(b, "q");
  h.engine.put("q", [1, 2]);
  assert.equal(first.length, 1);
  assert.equal(second.length, 0);
  assert.equal(h.engine.nextDeadline(), START + 100);
  h.advance(99);
  assert.equal(second.length, 0);
  h.advance(1);
  assert.deepEqual(second[0].map((item) => item.value), [2]);
});

Deno.test("rate limit: lifting it serves waiting gets at once", () => {
  const h = new Harness();
  h.engine.setLimits("q", { rateCount: 1, ratePeriodMs: 60_000 });
  h.engine.put("q", [1, 2, 3]);
  const c = h.engine.connect("c");
  assert.equal(h.take(c, "q", 3).length, 1);
  const waiting = h.wait(c, "q", 3);
  assert.equal(waiting.length, 0);
  h.engine.setLimits("q", { rateCount: 0 });
  assert.equal(waiting[0].length, 2);
  assert.equal(h.engine.limitsOf("q").rateCount, 0);
  assert.deepEqual(h.engine.allLimits(), []);
});

Deno.test("concurrency: never more leased than the limit; ends of leases serve waiters", () => {
  const h = new Harness();
  h.engine.setLimits("q", { concurrency: 2 });
  h.engine.put("q", [1, 2, 3, 4, 5]);
  const a = h.engine.connect("a");
  const b = h.engine.connect("b");
  const got = h.take(a, "q", 5);
  assert.equal(got.length, 2);
  const waiting = h.wait(b, "q", 5);
  assert.equal(waiting.length, 0);
  h.engine.ack(a, [got[0].id]);
  assert.deepEqual(waiting[0].map((item) => item.value), [3]);
  assert.equal(h.engine.stats("q")[0].leased, 2);
  // An expiry frees a place too.
  const next = h.wait(b, "q", 5);
  h.advance(LEASE);
  assert.equal(next.length, 1);
  assert.ok(h.engine.stats("q")[0].leased <= 2);
  // Raising the limit serves at once what it now allows.
  const more = h.wait(a, "q", 5);
  h.engine.setLimits("q", { concurrency: 10 });
  assert.ok(more.length === 1 && more[0].length > 0);
});

Deno.test("concurrency: a disconnect and a cancel free places", () => {
  const h = new Harness();
  h.engine.setLimits("q", { concurrency: 1 });
  h.engine.put("q", [1, 2, 3]);
  const a = h.engine.connect("a");
  const b = h.engine.connect("b");
  const [held] = h.take(a, "q");
  const waiting = h.wait(b, "q");
  h.engine.disconnect(a);
  assert.deepEqual(waiting[0].map((item) => item.value), [1]);
  const c = h.engine.connect("c");
  const later = h.wait(c, "q");
  const outcome = h.engine.cancel([waiting[0][0].id]);
  assert.deepEqual(outcome.cancelled, [held.id]);
  assert.deepEqual([...outcome.holders.values()], [[held.id]]);
  assert.deepEqual(later[0].map((item) => item.value), [2]);
});

Deno.test("groups: round-robin within a priority; a per-group limit skips a busy group", () => {
  const h = new Harness();
  h.engine.put("q", Array.from({ length: 20 }, (_, i) => `a${i}`), 0, 0, undefined, undefined, {
    group: "a",
  });
  h.engine.put("q", ["b0", "b1"], 0, 0, undefined, undefined, { group: "b" });
  h.engine.put("q", ["x0"]);
  h.engine.put("q", ["urgent"], 0, 0, undefined, undefined, { priority: 5, group: "a" });
  const c = h.engine.connect("c");
  const order = h.take(c, "q", 7).map((item) => item.value);
  assert.deepEqual(order, ["urgent", "a0", "b0", "x0", "a1", "b1", "a2"]);
  h.engine.setLimits("q", { groupConcurrency: 4 }); // group a holds 4 already
  const next = h.take(c, "q", 3).map((item) => item.value);
  assert.deepEqual(next, []);
  const taken = h.engine.job(1); // a0
  assert.equal(taken?.state, "leased");
  h.engine.ack(c, [1]);
  assert.deepEqual(h.take(c, "q", 3).map((item) => item.value), ["a3"]);
});

Deno.test("unique keys: one live item per key; holds after it finished; drop frees the key", () => {
  const h = new Harness();
  const first = h.engine.put("q", ["a", "b", "c"], 0, 0, undefined, undefined, {
    keys: ["k", undefined, "k"],
    keyHoldMs: 500,
  });
  assert.equal(first[2], first[0]);
  assert.deepEqual(first.existing, [2]);
  const again = h.engine.put("q", ["d"], 0, 0, undefined, undefined, { keys: ["k"] });
  assert.deepEqual([...again], [first[0]]);
  assert.deepEqual(again.existing, [0]);
  assert.equal(h.engine.stats("q")[0].ready, 2);
  assert.equal(h.engine.stats("q")[0].put, 2);
  const c = h.engine.connect("c");
  const [item] = h.take(c, "q");
  assert.equal(item.key, "k");
  h.engine.ack(c, [item.id]);
  // Held for 500 ms after it finished.
  assert.deepEqual(
    [...h.engine.put("q", ["e"], 0, 0, undefined, undefined, { keys: ["k"] })],
    [item.id],
  );
  h.advance(500);
  const fresh = h.engine.put("q", ["f"], 0, 0, undefined, undefined, { keys: ["k"] });
  assert.notEqual(fresh[0], item.id);
  assert.equal(fresh.existing, undefined);
  // Another queue is independent; dropping frees the key at once (no hold).
  assert.equal(
    h.engine.put("other", ["g"], 0, 0, undefined, undefined, { keys: ["k"] }).existing,
    undefined,
  );
  h.engine.drop("q", [fresh[0]]);
  assert.equal(
    h.engine.put("q", ["h"], 0, 0, undefined, undefined, { keys: ["k"] }).existing,
    undefined,
  );
});

Deno.test("cancel: ready, delayed and leased items end cancelled; unknown ones are missing", () => {
  const h = new Harness();
  const [ready] = h.engine.put("q", ["ready"]);
  const [delayed] = h.engine.put("q", ["delayed"], 5_000);
  const [leasedId] = h.engine.put("q", ["leased"]);
  const c = h.engine.connect("c");
  const [leased] = h.take(c, "q");
  assert.equal(leased.id, ready);
  const outcome = h.engine.cancel([ready, delayed, leasedId, 999]);
  assert.deepEqual(outcome.cancelled.sort(), [ready, delayed, leasedId].sort());
  assert.deepEqual(outcome.missing, [999]);
  assert.deepEqual(h.engine.ack(c, [ready]), [ready]);
  for (const id of [ready, delayed, leasedId]) assert.equal(h.engine.job(id)?.state, "cancelled");
  const stats = h.engine.stats("q")[0];
  assert.deepEqual([stats.ready, stats.delayed, stats.leased, stats.dead], [0, 0, 0, 0]);
  assert.deepEqual(h.engine.cancel([ready]).missing, [ready]);
  h.advance(10_000);
  assert.equal(h.take(c, "q").length, 0);
});

Deno.test("job: every state, with holder, lease times, result, error and progress", () => {
  const h = new Harness({ retry: { maxAttempts: 1 } });
  const [a, b, d] = h.engine.put("q", ["a", "b", "d"], 0, 0, undefined, undefined, {
    priority: 3,
    group: "g",
  });
  const [later] = h.engine.put("q", ["later"], 2_000);
  assert.equal(h.engine.job(a)?.state, "ready");
  assert.equal(h.engine.job(a)?.priority, 3);
  assert.equal(h.engine.job(a)?.group, "g");
  assert.equal(h.engine.job(a)?.createdAt, START);
  assert.equal(h.engine.job(later)?.readyAt, START + 2_000);
  const c = h.engine.connect("worker-1", "127.0.0.1:9");
  h.advance(10);
  h.take(c, "q", 3);
  assert.ok(h.engine.progress(c, b, { percent: 40, message: "half" }, 60_000));
  const leased = h.engine.job(b);
  assert.equal(leased?.state, "leased");
  assert.equal(leased?.leasedAt, START + 10);
  assert.equal(leased?.leaseExpiresAt, START + 10 + 60_000);
  assert.deepEqual(leased?.holder, {
    session: String(c.id),
    name: "worker-1",
    address: "127.0.0.1:9",
  });
  assert.deepEqual(leased?.progress, { percent: 40, message: "half", at: START + 10 });
  h.engine.ack(c, [a], { queue: "results", values: ["A!"] });
  h.engine.fail(c, [d], "boom");
  assert.deepEqual(
    [h.engine.job(a)?.state, h.engine.job(a)?.result, h.engine.job(a)?.finishedAt],
    ["done", "A!", START + 10],
  );
  assert.deepEqual([h.engine.job(d)?.state, h.engine.job(d)?.error], ["dead", "boom"]);
  assert.equal(h.engine.job(12345), undefined);
  // Progress renewed the lease past the default: it has not expired.
  h.advance(LEASE + 1);
  assert.equal(h.engine.job(b)?.state, "leased");
  assert.equal(h.engine.progress(c, a, {}, 1_000), false);
});

Deno.test("history: bounded by count and by age", () => {
  const h = new Harness({ historyCount: 3, historyMs: 1_000 });
  const ids = h.engine.put("q", [1, 2, 3, 4, 5]);
  const c = h.engine.connect("c");
  const taken = h.take(c, "q", 5);
  h.engine.ack(c, taken.map((item) => item.id));
  assert.deepEqual(ids.map((id) => h.engine.job(id)?.state), [
    undefined,
    undefined,
    "done",
    "done",
    "done",
  ]);
  h.advance(1_001);
  assert.equal(h.engine.job(ids[4]), undefined);
  const none = new Harness({ historyCount: 0 });
  const [id] = none.engine.put("q", [1]);
  const w = none.engine.connect("w");
  none.engine.ack(w, none.take(w, "q").map((item) => item.id));
  assert.equal(none.engine.job(id), undefined);
});
