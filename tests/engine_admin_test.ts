/**
 * Tests of the engine's operations for people watching it
 * (lib/engine/engine.ts): pause and resume (a paused queue serves no gets,
 * waiting gets are served on resume, puts and settling go on), peek (ready
 * items without taking them), drop and requeueDead (dead letters back to
 * their queue as new items; only ready items of the right dead-letter queue),
 * and each consumer's address and last-seen time. Driven on a fake clock.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type DeadLetter, Engine, type Item } from "../lib/engine/engine.ts";
import type { LoadedState, Store, StoredItem } from "../lib/store/store.ts";

const START = 1_000_000;

/** A store that records what it is told. */
class RecordingStore implements Store {
  readonly durable = false;
  readonly dirty = false;
  readonly removed: number[] = [];
  readonly inserted: number[] = [];
  load(): Promise<LoadedState> {
    return Promise.resolve({ items: [], nextId: 1 });
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
