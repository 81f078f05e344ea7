/**
 * Tests of the engine's operations for people watching it
 * (lib/engine/engine.ts): pause and resume (a paused queue serves no gets,
 * waiting gets are served on resume, puts and settling go on), peek (ready
 * items without taking them), drop and requeueDead (dead letters back to
 * their queue as new items; only ready items of the right dead-letter queue),
 * each consumer's address and last-seen time; purge, items pages and the
 * leases a consumer holds; counters handed to and restored from the store,
 * and a dead-letter queue's own queue known again after a restore. Driven
 * on a fake clock.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type DeadLetter,
  Engine,
  IDLE_QUEUE_SWEEP_THRESHOLD,
  type Item,
} from "../lib/engine/engine.ts";
import {
  batchesOf,
  type LoadedState,
  type Store,
  type StoredCounters,
  type StoredItem,
} from "../lib/store/store.ts";

const START = 1_000_000;

/** A store that records what it is told. */
class RecordingStore implements Store {
  readonly durable = false;
  readonly dirty = false;
  readonly removed: number[] = [];
  readonly inserted: number[] = [];
  readonly forgotten: string[] = [];
  readCounters: ((queue: string) => StoredCounters | undefined) | undefined = undefined;
  countersChanged(queue: string): void {
    this.forgotten.push(queue);
  }
  load(): Promise<LoadedState> {
    return Promise.resolve({ batches: [], nextId: 1 });
  }
  insert(item: StoredItem): void {
    this.inserted.push(item.id);
  }
  update(_item: StoredItem): void {}
  remove(id: number): void {
    this.removed.push(id);
  }
  commit(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function engine(
  store: Store = new RecordingStore(),
  maxAttempts = 1,
): { engine: Engine; now: { t: number } } {
  const now = { t: START };
  return {
    engine: new Engine({
      store,
      clock: () => now.t,
      retry: { maxAttempts, backoffBaseMs: 0 },
    }),
    now,
  };
}

function getNow(e: Engine, queue: string, max = 10): Item[] {
  let got: readonly Item[] = [];
  e.get(e.connect("probe"), queue, max, 0, undefined, (items) => got = items);
  return [...got];
}

/** Fails `value` once on `queue`: with max attempts 1 it becomes a dead letter. */
function bury(e: Engine, queue: string, value: unknown, error = "boom"): void {
  const worker = e.connect("worker");
  e.put(queue, [value]);
  let item: Item | undefined;
  e.get(worker, queue, 1, 0, undefined, (items) => item = items[0]);
  assert.ok(item);
  assert.deepEqual(e.fail(worker, [item.id], error), []);
  e.disconnect(worker);
}

Deno.test("a paused queue serves no gets until resumed; waiting gets are served then", () => {
  const { engine: e, now } = engine();
  const c = e.connect("c");
  e.put("q", ["a", "b"]);
  e.pause("q");
  assert.equal(e.isPaused("q"), true);
  assert.equal(e.isPaused("other"), false);
  let immediate: readonly Item[] | undefined;
  e.get(c, "q", 1, 0, undefined, (items) => immediate = items);
  assert.deepEqual(immediate, [], "a get that does not wait gets nothing");
  const waited: (readonly Item[])[] = [];
  e.get(c, "q", 2, 10_000, undefined, (items) => waited.push(items));
  e.put("q", ["c"]);
  assert.equal(waited.length, 0, "a put does not wake a get of a paused queue");
  assert.equal(e.stats("q")[0].ready, 3);
  assert.equal(e.stats("q")[0].waiting, 1);
  now.t += 1_000;
  e.tick(now.t);
  e.resume("q");
  assert.equal(waited.length, 1);
  assert.deepEqual(waited[0].map((item) => item.value), ["a", "b"]);
  assert.equal(e.isPaused("q"), false);
  assert.deepEqual(getNow(e, "q").map((item) => item.value), ["c"]);
});

Deno.test("pausing leaves leased items alone: they are acked, and expire back, as usual", () => {
  const { engine: e } = engine(new RecordingStore(), 5);
  const c = e.connect("c");
  e.put("q", ["a", "b"]);
  let held: readonly Item[] = [];
  e.get(c, "q", 2, 0, undefined, (items) => held = items);
  e.pause("q");
  assert.deepEqual(e.ack(c, [held[0].id]), []);
  e.disconnect(c); // "b" goes back to the front, but is not served while paused
  assert.deepEqual(getNow(e, "q"), []);
  e.resume("q");
  assert.deepEqual(getNow(e, "q").map((item) => item.value), ["b"]);
});

Deno.test("a paused queue's waiting get still times out with nothing", () => {
  const { engine: e, now } = engine();
  const c = e.connect("c");
  e.put("q", ["a"]);
  e.pause("q");
  const calls: (readonly Item[])[] = [];
  e.get(c, "q", 1, 500, undefined, (items) => calls.push(items));
  now.t += 500;
  e.tick(now.t);
  assert.deepEqual(calls, [[]]);
});

Deno.test("peek shows ready items in order without taking them", () => {
  const { engine: e } = engine();
  e.put("q", [1, 2, 3]);
  assert.deepEqual(e.peek("q", 2).map((item) => item.value), [1, 2]);
  assert.deepEqual(e.peek("q", 10).map((item) => item.value), [1, 2, 3]);
  assert.deepEqual(e.peek("never-used", 10), []);
  assert.equal(e.stats("q")[0].ready, 3);
  assert.equal(e.stats("q")[0].leased, 0);
});

Deno.test("requeueDead puts dead letters back on their queue as new items", () => {
  const store = new RecordingStore();
  const { engine: e } = engine(store);
  bury(e, "jobs", { n: 1 }, "first");
  bury(e, "jobs", { n: 2 }, "second");
  const letters = e.peek("jobs.dead", 10);
  assert.equal(letters.length, 2);
  const letter = letters[0].value as DeadLetter;
  assert.equal(letter.error, "first");
  const newIds = e.requeueDead("jobs.dead", [letters[0].id]);
  assert.equal(newIds.length, 1);
  assert.ok(store.removed.includes(letters[0].id), "the letter is removed from the store");
  assert.ok(store.inserted.includes(newIds[0]), "the item is stored anew");
  assert.deepEqual(e.peek("jobs.dead", 10).map((item) => item.id), [letters[1].id]);
  const [item] = getNow(e, "jobs");
  assert.equal(item.id, newIds[0]);
  assert.deepEqual(item.value, { n: 1 });
  assert.equal(item.attempts, 1, "its attempts start again");
  assert.equal(e.stats("jobs.dead")[0].ready, 1);
});

Deno.test("requeueDead leaves alone what is not one of the queue's dead letters", () => {
  const { engine: e } = engine();
  bury(e, "jobs", "x");
  const [letter] = e.peek("jobs.dead", 1);
  e.put("jobs.dead", ["not a letter"]);
  const [plain] = e.peek("jobs.dead", 2).slice(1);
  assert.deepEqual(e.requeueDead("jobs.dead", [plain.id]), [], "a plain item stays");
  assert.deepEqual(e.requeueDead("other.dead", [letter.id]), [], "another queue's id: nothing");
  assert.deepEqual(e.requeueDead("jobs.dead", [999]), [], "an unknown id: nothing");
  // A letter held by a reader is not ready: it stays where it is.
  const reader = e.connect("reader");
  let taken: readonly Item[] = [];
  e.get(reader, "jobs.dead", 1, 0, undefined, (items) => taken = items);
  assert.equal(taken[0].id, letter.id);
  assert.deepEqual(e.requeueDead("jobs.dead", [letter.id]), []);
  assert.equal(e.stats("jobs")[0].ready, 0);
});

Deno.test("drop removes ready items for good and tells the store", () => {
  const store = new RecordingStore();
  const { engine: e } = engine(store);
  const ids = e.put("q.dead", ["a", "b", "c"]);
  const dropped = e.drop("q.dead", [ids[0], ids[2], 12345]);
  assert.deepEqual(dropped.map((item) => item.value), ["a", "c"]);
  assert.deepEqual(store.removed, [ids[0], ids[2]]);
  assert.deepEqual(e.peek("q.dead", 10).map((item) => item.value), ["b"]);
  assert.equal(e.stats("q.dead")[0].ready, 1);
});

Deno.test("consumers carry their address and when they were last seen", () => {
  const { engine: e, now } = engine();
  const c = e.connect("worker-1", "127.0.0.1:4242");
  assert.equal(c.address, "127.0.0.1:4242");
  assert.equal(c.connectedAt, START);
  assert.equal(c.lastSeenAt, START);
  now.t += 10;
  assert.equal(e.connect("anonymous").address, "");
  assert.deepEqual([...e.consumers()].map((x) => x.name), ["worker-1", "anonymous"]);
});

Deno.test("restore brings back counters, and the queue a loaded dead-letter queue belongs to", () => {
  const { engine: e } = engine();
  const letter: DeadLetter = {
    queue: "a",
    id: 1,
    value: "x",
    attempts: 1,
    error: "boom",
    failedAt: START,
  };
  e.restore({
    batches: batchesOf([{ id: 2, queue: "a.dead", value: letter, attempts: 0, readyAt: 0 }]),
    nextId: 3,
    counters: [
      { queue: "a", put: 1, acked: 0, nacked: 0, expired: 0, failed: 1, dead: 1 },
      { queue: "b", put: 4, acked: 4, nacked: 1, expired: 2, failed: 0, dead: 0 },
    ],
  });
  const rows = e.stats();
  assert.deepEqual(rows.map((r) => [r.name, r.ready, r.put, r.failed, r.dead]), [
    ["a", 0, 1, 1, 1],
    ["a.dead", 1, 0, 0, 0],
    ["b", 0, 4, 0, 0],
  ]);
  const fresh = engine().engine;
  fresh.restore({
    batches: batchesOf([{ id: 5, queue: "c.dead", value: "v", attempts: 0, readyAt: 0 }]),
    nextId: 6,
  });
  assert.deepEqual(fresh.stats().map((r) => r.name), ["c", "c.dead"], "with no counters kept too");
});

Deno.test("the engine hands its counters to the store, which it tells of forgotten queues", () => {
  const store = new RecordingStore();
  const { engine: e } = engine(store);
  e.put("q", ["a"]);
  // More queues than are kept when idle: the empty ones are forgotten, and the store told.
  for (let i = 0; i <= IDLE_QUEUE_SWEEP_THRESHOLD; i++) e.put(`idle-${i}`, []);
  assert.ok(store.forgotten.includes("idle-0"), "an idle queue was forgotten");
  assert.equal(store.readCounters?.("idle-0"), undefined);
  assert.deepEqual(store.readCounters?.("q"), {
    queue: "q",
    put: 1,
    acked: 0,
    nacked: 0,
    expired: 0,
    failed: 0,
    dead: 0,
  });
  assert.equal(store.readCounters?.("never"), undefined);
});

Deno.test("purge removes ready and delayed items and tells the store; leased ones stay", () => {
  const store = new RecordingStore();
  const { engine: e } = engine(store);
  const c = e.connect("c");
  const [held] = e.put("q", ["held"]);
  e.get(c, "q", 1, 0, undefined, () => {});
  const ready = e.put("q", ["a", "b"]);
  const [delayed] = e.put("q", ["later"], 60_000);
  assert.equal(e.purge("q"), 3);
  assert.deepEqual(store.removed.sort(), [...ready, delayed].sort());
  const [row] = e.stats("q");
  assert.deepEqual([row.ready, row.delayed, row.leased], [0, 0, 1]);
  assert.equal(e.nextDeadline() !== undefined, true, "the lease's timer stays");
  assert.deepEqual(e.ack(c, [held]), []);
  assert.equal(e.purge("never"), 0);
});

Deno.test("items pages each state; held lists a consumer's leases oldest first", () => {
  const { engine: e, now } = engine();
  const c = e.connect("c");
  const ids = e.put("q", ["a", "b", "c", "d"]);
  const [late] = e.put("q", ["late"], 2_000);
  const [soon] = e.put("q", ["soon"], 1_000);
  e.get(c, "q", 1, 0, 5_000, () => {});
  now.t += 10;
  e.get(c, "q", 1, 0, 5_000, () => {});
  const ready = e.items("q", "ready", 1, 5);
  assert.deepEqual([ready.items.map((i) => i.id), ready.total], [[ids[3]], 2]);
  const delayed = e.items("q", "delayed", 0, 5);
  assert.deepEqual([delayed.items.map((i) => i.id), delayed.total], [[soon, late], 2]);
  assert.deepEqual(e.items("q", "delayed", 1, 1).items.map((i) => i.id), [late]);
  const leased = e.items("q", "leased", 0, 1);
  assert.deepEqual([leased.items.map((i) => i.id), leased.total], [[ids[0]], 2]);
  assert.deepEqual(e.held(c, 10), [
    { id: ids[0], queue: "q", leasedAt: START, leaseExpiresAt: START + 5_000 },
    { id: ids[1], queue: "q", leasedAt: START + 10, leaseExpiresAt: START + 5_010 },
  ]);
  assert.equal(e.held(c, 1).length, 1);
  assert.deepEqual(e.items("none", "ready", 0, 5), { items: [], total: 0 });
});
