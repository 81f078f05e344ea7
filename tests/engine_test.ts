/**
 * Tests of lib/engine/engine.ts, driven directly with an injected fake clock
 * and explicit ticks (no sockets, no real time): put and get in FIFO order,
 * batches, waiting gets served first come first served, get timeouts
 * delivering [], ack/nack/extend and the ids they refuse, delays on put and
 * nack, lease expiry returning items to the front, disconnect returning
 * leases to the front and dropping waiting gets, statistics, nextDeadline,
 * store notifications and restore; 10,000 queues of a few items each
 * created, drained, emptied, swept and used again, and seeded random
 * operations on thousands of queues compared with a model.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Consumer,
  Engine,
  type EngineOptions,
  IDLE_QUEUE_SWEEP_THRESHOLD,
  type Item,
} from "../lib/engine/engine.ts";
import { batchesOf, type LoadedState, type Store, type StoredItem } from "../lib/store/store.ts";
import { itemCost } from "../lib/engine/item_cost.ts";
import { seededRandom } from "./_helpers.ts";

const START = 1_000_000;
const LEASE = 1_000;

/** An engine on a fake clock. */
class Harness {
  now = START;
  readonly engine: Engine;

  constructor(options: EngineOptions = {}) {
    this.engine = new Engine({ clock: () => this.now, defaultLeaseMs: LEASE, ...options });
  }

  /** Moves the clock forward and runs the engine's timers. */
  advance(ms: number): void {
    this.now += ms;
    this.engine.tick(this.now);
  }

  /** Starts a get and records every delivery it gets. */
  get(consumer: Consumer, queue: string, max = 1, timeoutMs = 0, leaseMs?: number): Getter {
    const getter = new Getter();
    this.engine.get(consumer, queue, max, timeoutMs, leaseMs, (items) => getter.calls.push(items));
    return getter;
  }

  /** Takes up to `max` ready items at once and returns their values. */
  take(consumer: Consumer, queue: string, max = 1, leaseMs?: number): Item[] {
    return this.get(consumer, queue, max, 0, leaseMs).items;
  }

  /** One queue's statistics. */
  stats(queue = "q") {
    return this.engine.stats(queue)[0];
  }

  /** Values of the items a fresh consumer can take now, in order (then acked). */
  drain(queue = "q"): unknown[] {
    const probe = this.engine.connect("probe");
    const items = this.take(probe, queue, 1000);
    assert.deepEqual(this.engine.ack(probe, items.map((item) => item.id)), []);
    this.engine.disconnect(probe);
    return items.map((item) => item.value);
  }
}

/** The deliveries of one get. */
class Getter {
  readonly calls: (readonly Item[])[] = [];

  /** Whether it has been delivered (exactly once). */
  get delivered(): boolean {
    assert.ok(this.calls.length <= 1, `delivered ${this.calls.length} times`);
    return this.calls.length === 1;
  }

  /** The items of its single delivery. */
  get items(): Item[] {
    assert.equal(this.calls.length, 1, "expected exactly one delivery");
    return [...this.calls[0]];
  }

  /** The values of its single delivery. */
  get values(): unknown[] {
    return this.items.map((item) => item.value);
  }
}

Deno.test("engine: put then get serves items first in, first out, leased", () => {
  const h = new Harness();
  const c = h.engine.connect("c");
  const ids = h.engine.put("q", ["a", "b", "c"]);
  assert.equal(ids.length, 3);
  assert.ok(ids[0] < ids[1] && ids[1] < ids[2], "ids increase");
  const [a] = h.take(c, "q");
  assert.equal(a.id, ids[0]);
  assert.equal(a.value, "a");
  assert.equal(a.attempts, 1);
  assert.equal(a.state, "leased");
  assert.equal(a.owner, c);
  assert.ok(c.leases.has(a));
  assert.deepEqual(h.take(c, "q", 5).map((item) => item.value), ["b", "c"]);
  const stats = h.stats();
  assert.equal(stats.ready, 0);
  assert.equal(stats.leased, 3);
  assert.equal(stats.put, 3);
});

Deno.test("engine: queues are independent", () => {
  const h = new Harness();
  const c = h.engine.connect("c");
  h.engine.put("one", [1]);
  h.engine.put("two", [2]);
  assert.deepEqual(h.take(c, "two").map((item) => item.value), [2]);
  assert.deepEqual(h.take(c, "two"), []);
  assert.deepEqual(h.take(c, "one").map((item) => item.value), [1]);
});

Deno.test("engine: a get with no ready item and no timeout delivers [] at once", () => {
  const h = new Harness();
  const c = h.engine.connect("c");
  const getter = h.get(c, "q", 1, 0);
  assert.ok(getter.delivered);
  assert.deepEqual(getter.items, []);
  assert.equal(h.stats().waiting, 0);
});

Deno.test("engine: a waiting get times out with [] exactly at its deadline", () => {
  const h = new Harness();
  const c = h.engine.connect("c");
  const getter = h.get(c, "q", 1, 500);
  assert.equal(getter.delivered, false);
  assert.equal(h.stats().waiting, 1);
  assert.equal(h.engine.nextDeadline(), START + 500);
  h.advance(499);
  assert.equal(getter.delivered, false);
  h.advance(1);
  assert.deepEqual(getter.items, []);
  assert.equal(h.stats().waiting, 0);
  assert.equal(c.waiters.size, 0);
  // A later put is not given to the timed-out get.
  h.engine.put("q", ["late"]);
  assert.equal(getter.calls.length, 1);
  assert.equal(h.stats().ready, 1);
  assert.equal(h.engine.nextDeadline(), undefined);
});

Deno.test("engine: waiting gets are served first come, first served", () => {
  const h = new Harness();
  const [c1, c2, c3] = ["c1", "c2", "c3"].map((name) => h.engine.connect(name));
  const g1 = h.get(c1, "q", 1, 10_000);
  const g2 = h.get(c2, "q", 1, 10_000);
  const g3 = h.get(c3, "q", 1, 10_000);
  assert.equal(h.stats().waiting, 3);
  h.engine.put("q", ["x", "y"]);
  assert.deepEqual(g1.values, ["x"]);
  assert.deepEqual(g2.values, ["y"]);
  assert.equal(g3.delivered, false);
  assert.equal(g1.items[0].owner, c1);
  assert.equal(g2.items[0].owner, c2);
  // A new get does not jump ahead of the one still waiting.
  const g4 = h.get(c1, "q", 1, 10_000);
  h.engine.put("q", ["z"]);
  assert.deepEqual(g3.values, ["z"]);
  assert.equal(g4.delivered, false);
  assert.equal(h.stats().waiting, 1);
});

Deno.test("engine: a waiting get takes up to its max from a batch, the next waiter the rest", () => {
  const h = new Harness();
  const [c1, c2] = ["c1", "c2"].map((name) => h.engine.connect(name));
  const g1 = h.get(c1, "q", 3, 10_000);
  const g2 = h.get(c2, "q", 10, 10_000);
  h.engine.put("q", [1, 2, 3, 4, 5]);
  assert.deepEqual(g1.values, [1, 2, 3]);
  assert.deepEqual(g2.values, [4, 5]);
  assert.equal(h.stats().leased, 5);
});

Deno.test("engine: ack settles leased items and refuses ids not held", () => {
  const h = new Harness();
  const [c1, c2] = ["c1", "c2"].map((name) => h.engine.connect(name));
  const [id1, id2] = h.engine.put("q", ["a", "b"]);
  h.take(c1, "q", 2);
  assert.deepEqual(h.engine.ack(c2, [id1]), [id1], "another consumer's lease");
  assert.deepEqual(h.engine.ack(c1, [id1, 999]), [999], "unknown id");
  assert.deepEqual(h.engine.ack(c1, [id1]), [id1], "acked twice");
  const stats = h.stats();
  assert.equal(stats.acked, 1);
  assert.equal(stats.leased, 1);
  assert.equal(c1.leases.size, 1);
  assert.deepEqual(h.engine.ack(c1, [id2]), []);
  assert.equal(h.stats().leased, 0);
  assert.equal(h.stats().ready, 0);
  // Acked items are gone: nothing left to time out.
  assert.equal(h.engine.nextDeadline(), undefined);
  h.advance(LEASE * 10);
  assert.deepEqual(h.drain(), []);
});

Deno.test("engine: ready items are not ackable", () => {
  const h = new Harness();
  const c = h.engine.connect("c");
  const [id] = h.engine.put("q", ["a"]);
  assert.deepEqual(h.engine.ack(c, [id]), [id]);
  assert.deepEqual(h.engine.nack(c, [id]), [id]);
  assert.deepEqual(h.engine.extend(c, [id], 100), [id]);
  assert.deepEqual(h.drain(), ["a"]);
});

Deno.test("engine: nack puts an item at the back of its queue and counts an attempt on redelivery", () => {
  const h = new Harness();
  const c = h.engine.connect("c");
  const [ida] = h.engine.put("q", ["a", "b"]);
  const [a] = h.take(c, "q");
  assert.deepEqual(h.engine.nack(c, [ida]), []);
  assert.equal(a.state, "ready");
  assert.equal(a.owner, undefined);
  assert.equal(c.leases.size, 0);
  assert.equal(h.stats().nacked, 1);
  const items = h.take(c, "q", 2);
  assert.deepEqual(items.map((item) => [item.value, item.attempts]), [["b", 1], ["a", 2]]);
  assert.deepEqual(h.engine.nack(c, [ida], 0), []);
  assert.deepEqual(h.engine.nack(c, [ida]), [ida], "no longer held");
});

Deno.test("engine: a nacked item goes to a waiting get at once", () => {
  const h = new Harness();
  const [c1, c2] = ["c1", "c2"].map((name) => h.engine.connect(name));
  const [id] = h.engine.put("q", ["a"]);
  h.take(c1, "q");
  const waiting = h.get(c2, "q", 1, 10_000);
  h.engine.nack(c1, [id]);
  assert.deepEqual(waiting.items.map((item) => [item.value, item.attempts]), [["a", 2]]);
});

Deno.test("engine: nack with a delay holds the item back until the delay ends", () => {
  const h = new Harness();
  const [c1, c2] = ["c1", "c2"].map((name) => h.engine.connect(name));
  const [id] = h.engine.put("q", ["a"]);
  h.take(c1, "q");
  assert.deepEqual(h.engine.nack(c1, [id], 300), []);
  assert.equal(h.stats().delayed, 1);
  assert.equal(h.stats().ready, 0);
  assert.equal(h.stats().leased, 0);
  const waiting = h.get(c2, "q", 1, 10_000);
  h.advance(299);
  assert.equal(waiting.delivered, false);
  h.advance(1);
  assert.deepEqual(waiting.values, ["a"]);
  assert.equal(h.stats().delayed, 0);
});

Deno.test("engine: put with a delay makes items ready only when it ends, behind earlier ones", () => {
  const h = new Harness();
  const c = h.engine.connect("c");
  h.engine.put("q", ["later"], 500);
  assert.equal(h.stats().delayed, 1);
  assert.equal(h.stats().put, 1);
  assert.equal(h.engine.nextDeadline(), START + 500);
  assert.deepEqual(h.take(c, "q"), []);
  h.engine.put("q", ["now"]);
  h.advance(499);
  assert.deepEqual(h.take(c, "q").map((item) => item.value), ["now"]);
  h.advance(1);
  assert.equal(h.stats().delayed, 0);
  assert.equal(h.stats().ready, 1);
  assert.deepEqual(h.take(c, "q").map((item) => item.value), ["later"]);
});

Deno.test("engine: a waiting get receives a delayed put when its delay ends", () => {
  const h = new Harness();
  const c = h.engine.connect("c");
  const waiting = h.get(c, "q", 1, 10_000);
  h.engine.put("q", ["x"], 200);
  assert.equal(waiting.delivered, false, "not before the delay");
  h.advance(200);
  assert.deepEqual(waiting.values, ["x"]);
});

Deno.test("engine: an expired lease returns the item to the front of its queue", () => {
  const h = new Harness();
  const [c1, c2] = ["c1", "c2"].map((name) => h.engine.connect(name));
  const [ida] = h.engine.put("q", ["a", "b"]);
  h.take(c1, "q");
  assert.equal(h.engine.nextDeadline(), START + LEASE);
  h.advance(LEASE - 1);
  assert.equal(h.stats().leased, 1);
  h.advance(1);
  const stats = h.stats();
  assert.equal(stats.leased, 0);
  assert.equal(stats.ready, 2);
  assert.equal(stats.expired, 1);
  assert.equal(c1.leases.size, 0);
  // The late ack is refused; the item is served again, before "b".
  assert.deepEqual(h.engine.ack(c1, [ida]), [ida]);
  const items = h.take(c2, "q", 2);
  assert.deepEqual(items.map((item) => [item.value, item.attempts]), [["a", 2], ["b", 1]]);
});

Deno.test("engine: a get's own lease length overrides the default", () => {
  const h = new Harness();
  const c = h.engine.connect("c");
  h.engine.put("q", ["a", "b"]);
  h.take(c, "q", 1, 100);
  h.take(c, "q", 1);
  assert.equal(h.engine.nextDeadline(), START + 100);
  h.advance(100);
  assert.equal(h.stats().expired, 1);
  assert.equal(h.stats().leased, 1);
  h.advance(LEASE - 100);
  assert.equal(h.stats().expired, 2);
});

Deno.test("engine: an expired lease goes to a waiting get", () => {
  const h = new Harness();
  const [c1, c2] = ["c1", "c2"].map((name) => h.engine.connect(name));
  h.engine.put("q", ["a"]);
  h.take(c1, "q", 1, 50);
  const waiting = h.get(c2, "q", 1, 10_000);
  h.advance(50);
  assert.deepEqual(waiting.items.map((item) => [item.value, item.attempts]), [["a", 2]]);
  assert.equal(waiting.items[0].owner, c2);
});

Deno.test("engine: extend renews a lease from now; only the holder may extend", () => {
  const h = new Harness();
  const [c1, c2] = ["c1", "c2"].map((name) => h.engine.connect(name));
  const [id] = h.engine.put("q", ["a"]);
  h.take(c1, "q");
  h.advance(LEASE - 10);
  assert.deepEqual(h.engine.extend(c1, [id, 12345], 500), [12345]);
  assert.deepEqual(h.engine.extend(c2, [id], 10_000), [id]);
  assert.equal(h.engine.nextDeadline(), h.now + 500);
  h.advance(10); // the original deadline passes
  assert.equal(h.stats().leased, 1);
  h.advance(489);
  assert.equal(h.stats().leased, 1);
  h.advance(1);
  assert.equal(h.stats().leased, 0);
  assert.equal(h.stats().expired, 1);
  assert.deepEqual(h.engine.ack(c1, [id]), [id]);
});

Deno.test("engine: extend may also shorten a lease", () => {
  const h = new Harness();
  const c = h.engine.connect("c");
  const [id] = h.engine.put("q", ["a"]);
  h.take(c, "q");
  assert.deepEqual(h.engine.extend(c, [id], 10), []);
  h.advance(10);
  assert.equal(h.stats().expired, 1);
});

Deno.test("engine: disconnect returns held items to the front, in the order taken", () => {
  const h = new Harness();
  const [c1, c2] = ["c1", "c2"].map((name) => h.engine.connect(name));
  h.engine.put("q", ["a", "b", "c", "d"]);
  h.take(c1, "q", 2);
  h.take(c1, "q", 1);
  h.engine.put("other", ["o"]);
  h.take(c1, "other");
  assert.equal(h.engine.consumerCount, 2);
  h.engine.disconnect(c1);
  assert.equal(c1.gone, true);
  assert.equal(c1.leases.size, 0);
  assert.equal(h.engine.consumerCount, 1);
  assert.deepEqual([...h.engine.consumers()], [c2]);
  assert.equal(h.stats().expired, 3);
  assert.equal(h.stats().leased, 0);
  const items = h.take(c2, "q", 10);
  assert.deepEqual(items.map((item) => [item.value, item.attempts]), [
    ["a", 2],
    ["b", 2],
    ["c", 2],
    ["d", 1],
  ]);
  assert.deepEqual(h.drain("other"), ["o"]);
  // Their lease timers went with them.
  h.engine.disconnect(c1); // twice is harmless
  assert.equal(h.stats().expired, 3);
});

Deno.test("engine: disconnect hands held items to waiting gets of others at once", () => {
  const h = new Harness();
  const [c1, c2] = ["c1", "c2"].map((name) => h.engine.connect(name));
  h.engine.put("q", ["a", "b"]);
  h.take(c1, "q", 2);
  const waiting = h.get(c2, "q", 5, 10_000);
  h.engine.disconnect(c1);
  assert.deepEqual(waiting.values, ["a", "b"]);
});

Deno.test("engine: a disconnected consumer's waiting gets are dropped, never delivered", () => {
  const h = new Harness();
  const [c1, c2] = ["c1", "c2"].map((name) => h.engine.connect(name));
  const dropped = h.get(c1, "q", 1, 500);
  const kept = h.get(c2, "q", 1, 10_000);
  h.engine.disconnect(c1);
  assert.equal(h.stats().waiting, 1);
  h.engine.put("q", ["x"]);
  assert.deepEqual(kept.values, ["x"]);
  h.advance(1000); // past the dropped get's timeout
  assert.equal(dropped.calls.length, 0);
});

Deno.test("engine: many dropped waiters do not disturb the order of live ones", () => {
  const h = new Harness();
  const gone: Consumer[] = [];
  const live: Getter[] = [];
  const consumer = h.engine.connect("live");
  for (let i = 0; i < 300; i++) {
    const c = h.engine.connect(`c${i}`);
    h.get(c, "q", 1, 10_000);
    gone.push(c);
    if (i % 10 === 0) live.push(h.get(consumer, "q", 1, 10_000));
  }
  for (const c of gone) h.engine.disconnect(c);
  assert.equal(h.stats().waiting, live.length);
  h.engine.put("q", Array.from({ length: live.length }, (_, i) => i));
  assert.deepEqual(live.map((g) => g.values[0]), live.map((_, i) => i));
});

Deno.test("engine: every get is delivered exactly once", () => {
  const h = new Harness();
  const consumers = Array.from({ length: 5 }, (_, i) => h.engine.connect(`c${i}`));
  const getters: Getter[] = [];
  for (let round = 0; round < 20; round++) {
    for (const c of consumers) getters.push(h.get(c, "q", 2, 100 + round, 100_000));
    h.engine.put("q", [round, round]);
    h.advance(50);
  }
  h.advance(1000);
  for (const g of getters) assert.equal(g.calls.length, 1);
  const ids = getters.flatMap((g) => g.items.map((item) => item.id));
  assert.equal(ids.length, 40, "every item was served");
  assert.equal(new Set(ids).size, 40, "no item was served twice");
});

Deno.test("engine: stats of one queue, an unknown queue, and all queues by name", () => {
  const h = new Harness();
  const c = h.engine.connect("c");
  h.engine.put("b", [1, 2, 3]);
  h.engine.put("a", [1], 100);
  const [x] = h.take(c, "b");
  h.engine.ack(c, [x.id]);
  const [y] = h.take(c, "b");
  h.engine.nack(c, [y.id]);
  h.take(c, "b"); // leased
  h.get(c, "c", 1, 1000); // waiting
  const b = h.stats("b");
  assert.equal(b.name, "b");
  assert.deepEqual(
    [b.ready, b.leased, b.delayed, b.waiting, b.put, b.acked, b.nacked, b.expired],
    [1, 1, 0, 0, 3, 1, 1, 0],
  );
  const unknown = h.stats("nope");
  assert.equal(unknown.name, "nope");
  for (const [key, value] of Object.entries(unknown)) {
    if (key !== "name") assert.equal(value, 0, key);
  }
  assert.deepEqual(h.engine.stats().map((s) => s.name), ["a", "b", "c"]);
  assert.equal(h.stats("a").delayed, 1);
  assert.equal(h.stats("c").waiting, 1);
  // Asking about an unknown queue does not create it.
  assert.deepEqual(h.engine.stats().map((s) => s.name), ["a", "b", "c"]);
});

Deno.test("engine: nextDeadline is the earliest of leases, delays and get timeouts", () => {
  const h = new Harness();
  const c = h.engine.connect("c");
  assert.equal(h.engine.nextDeadline(), undefined);
  h.engine.put("q", ["x"]);
  h.take(c, "q"); // lease ends at START + LEASE
  h.engine.put("d", ["y"], 700);
  h.get(c, "w", 1, 300);
  assert.equal(h.engine.nextDeadline(), START + 300);
  h.advance(300);
  assert.equal(h.engine.nextDeadline(), START + 700);
  h.advance(400);
  assert.equal(h.engine.nextDeadline(), START + LEASE);
  h.advance(300);
  assert.equal(h.engine.nextDeadline(), undefined);
});

/** A store that records what the engine tells it. */
class RecordingStore implements Store {
  readonly durable = false;
  readonly dirty = false;
  readonly events: string[] = [];
  constructor(readonly state: LoadedState = { batches: [], nextId: 1 }) {}
  load(): Promise<LoadedState> {
    return Promise.resolve(this.state);
  }
  insert(item: StoredItem): void {
    this.events.push(`insert ${item.id} ${item.queue}`);
  }
  update(item: StoredItem): void {
    this.events.push(`update ${item.id} readyAt=${item.readyAt}`);
  }
  remove(id: number): void {
    this.events.push(`remove ${id}`);
  }
  commit(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

Deno.test("engine: the store hears of puts, acks and delayed nacks", () => {
  const store = new RecordingStore();
  const h = new Harness({ store });
  const c = h.engine.connect("c");
  const [a, b] = h.engine.put("q", ["a", "b"]);
  assert.deepEqual(store.events, [`insert ${a} q`, `insert ${b} q`]);
  h.take(c, "q", 2);
  h.engine.ack(c, [a]);
  assert.equal(store.events.at(-1), `remove ${a}`);
  h.engine.nack(c, [b], 50);
  assert.equal(store.events.at(-1), `update ${b} readyAt=${START + 50}`);
  assert.ok(!store.events.includes(`remove ${b}`));
});

Deno.test("engine: restore loads ready and delayed items and continues the ids", () => {
  const h = new Harness();
  h.engine.restore({
    nextId: 100,
    batches: batchesOf([
      { id: 7, queue: "q", value: "old", attempts: 2, readyAt: 0 },
      { id: 8, queue: "q", value: "soon", attempts: 0, readyAt: START + 100 },
      { id: 9, queue: "q", value: "past", attempts: 0, readyAt: START - 100 },
    ]),
  });
  assert.equal(h.stats().ready, 2);
  assert.equal(h.stats().delayed, 1);
  const [id] = h.engine.put("q", ["new"]);
  assert.equal(id, 100);
  const c = h.engine.connect("c");
  const items = h.take(c, "q", 10);
  assert.deepEqual(items.map((item) => [item.id, item.attempts]), [[7, 3], [9, 1], [100, 1]]);
  h.advance(100);
  assert.deepEqual(h.take(c, "q").map((item) => item.value), ["soon"]);
});

Deno.test("engine: restored plain items keep their values, costs and order (compact entries)", () => {
  const h = new Harness();
  const values = [
    0,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2 ** 32 - 1,
    -1,
    -32,
    -33,
    2 ** 31,
    1.5,
    "s",
    { a: [1] },
    null,
    true,
    "",
  ];
  h.engine.restore({
    nextId: 100,
    batches: batchesOf(
      values.map((value, i) => ({ id: 10 + i, queue: "q", value, attempts: 0, readyAt: 0 })),
    ),
  });
  const expected = values.reduce((sum: number, value) => sum + itemCost(value), 0);
  assert.equal(h.engine.heldBytes, expected);
  assert.deepEqual(h.engine.peek("q", 100).map((item) => item.value), values);
  assert.deepEqual(h.engine.peek("q", 100).map((item) => item.id), values.map((_, i) => 10 + i));
  assert.equal(h.engine.job(12)?.value, 128);
  const c = h.engine.connect("c");
  const got = h.take(c, "q", values.length);
  assert.deepEqual(got.map((item) => item.value), values);
  assert.equal(h.engine.ack(c, got.map((item) => item.id)).length, 0);
  assert.equal(h.engine.heldBytes, 0);
});

Deno.test("engine: 10,000 queues of a few items each are created, drained, emptied, swept and used again", () => {
  const h = new Harness();
  const QUEUES = 10_000;
  const name = (i: number) => `spread-${i}`;
  /** What queue `i` holds in round `round`: a few values of several kinds, 1 to 12 of them. */
  const valuesOf = (i: number, round: number): unknown[] =>
    Array.from({ length: 1 + (i * 7 + round) % 12 }, (_, k) => {
      const n = i * 100 + k + round;
      return k % 4 === 0 ? `s${n}` : k === 5 ? 2 ** 31 + n : k === 7 ? { n } : n;
    });
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < QUEUES; i++) h.engine.put(name(i), valuesOf(i, round));
    assert.equal(h.engine.queueCount, QUEUES, `round ${round}: every queue holds items`);
    // A lease that ends puts its item back in front of the others of its queue.
    const c = h.engine.connect(`c${round}`);
    const early = h.take(c, name(3), 1);
    h.engine.disconnect(c);
    const d = h.engine.connect(`d${round}`);
    assert.deepEqual(h.stats(name(3)).ready, valuesOf(3, round).length);
    for (let i = 0; i < QUEUES; i++) {
      const expected = valuesOf(i, round);
      const items = h.take(d, name(i), 100);
      assert.deepEqual(items.map((item) => item.value), expected, `round ${round} queue ${i}`);
      if (i === 3) assert.equal(items[0].id, early[0].id);
      assert.deepEqual(h.engine.ack(d, items.map((item) => item.id)), []);
      assert.equal(h.stats(name(i)).ready, 0);
    }
    assert.equal(h.engine.heldBytes, 0, `round ${round}: nothing held`);
    // Emptied queues are used again as they are (round 1), or after being swept (round 2).
    h.engine.disconnect(d);
  }
  // New queues past the sweep point forget the emptied ones.
  for (let i = 0; i < QUEUES + IDLE_QUEUE_SWEEP_THRESHOLD; i++) h.engine.put(`more-${i}`, [i]);
  assert.ok(h.engine.queueCount < 2 * QUEUES, `${h.engine.queueCount} queues after the sweep`);
  const e = h.engine.connect("e");
  for (let i = 0; i < QUEUES; i += 97) {
    h.engine.put(name(i), valuesOf(i, 7));
    assert.deepEqual(h.take(e, name(i), 100).map((item) => item.value), valuesOf(i, 7));
  }
  assert.deepEqual(h.take(e, "more-5", 10).map((item) => item.value), [5]);
});

Deno.test("engine: random operations on thousands of queues agree with a model", () => {
  const h = new Harness({ retry: { maxAttempts: 1_000_000 } });
  const random = seededRandom(15_10_000);
  const QUEUES = 2_500; // past the sweep threshold, so emptied queues are forgotten and made again
  const names = Array.from({ length: QUEUES }, (_, i) => `q${i}`);
  /** Each queue's ready values, front first. */
  const ready = new Map<string, unknown[]>();
  const readyOf = (name: string) => {
    let values = ready.get(name);
    if (values === undefined) ready.set(name, values = []);
    return values;
  };
  interface Held {
    readonly id: number;
    readonly queue: string;
    readonly value: unknown;
  }
  const consumers = [0, 1, 2].map((i) => h.engine.connect(`c${i}`));
  /** What each consumer holds, in the order taken. */
  const held = new Map<Consumer, Held[]>(consumers.map((c) => [c, []]));
  const pick = <V>(from: readonly V[]) => from[Math.floor(random() * from.length)];
  const oddValues = [-0, 1.5, 2 ** 31, null, { a: [1] }, "", true];
  let n = 0;
  const counts = { taken: 0, nacked: 0, returned: 0, purged: 0, fresh: 0, swept: 0 };
  let lastCount = 0;
  for (let step = 0; step < 30_000; step++) {
    const name = random() < 0.2 ? names[Math.floor(random() * 8)] : pick(names);
    const model = readyOf(name);
    const ci = Math.floor(random() * consumers.length);
    const c = consumers[ci];
    const mine = held.get(c) as Held[];
    const r = random();
    let what: string;
    if (r < 0.4) {
      const values = Array.from(
        { length: 1 + Math.floor(random() * 4) },
        () => random() < 0.1 ? pick(oddValues) : random() < 0.7 ? n++ : `v${n++}`,
      );
      what = `put ${values.length} on ${name}`;
      h.engine.put(name, values);
      model.push(...values);
    } else if (r < 0.72) {
      const max = 1 + Math.floor(random() * 6);
      what = `take ${max} of ${name}`;
      const items = h.take(c, name, max);
      const expected = model.splice(0, max);
      assert.deepEqual(items.map((item) => item.value), expected, `step ${step}: ${what}`);
      for (const item of items) mine.push({ id: item.id, queue: name, value: item.value });
      counts.taken += items.length;
    } else if (r < 0.84) {
      const acked = mine.filter(() => random() < 0.6);
      what = `ack ${acked.length}`;
      assert.deepEqual(h.engine.ack(c, acked.map((x) => x.id)), [], `step ${step}: ${what}`);
      held.set(c, mine.filter((x) => !acked.includes(x)));
    } else if (r < 0.92) {
      const nacked = mine.filter(() => random() < 0.5);
      what = `nack ${nacked.length}`;
      assert.deepEqual(h.engine.nack(c, nacked.map((x) => x.id)), [], `step ${step}: ${what}`);
      for (const x of nacked) readyOf(x.queue).push(x.value);
      held.set(c, mine.filter((x) => !nacked.includes(x)));
      counts.nacked += nacked.length;
    } else if (r < 0.95) {
      what = `disconnect c${ci}`;
      h.engine.disconnect(c);
      // Each queue gets back what the consumer held of it, in the order taken, in front.
      const back = new Map<string, unknown[]>();
      for (const x of mine) back.set(x.queue, [...back.get(x.queue) ?? [], x.value]);
      for (const [queue, values] of back) ready.set(queue, [...values, ...readyOf(queue)]);
      counts.returned += mine.length;
      held.delete(c);
      const fresh = h.engine.connect(`c${ci}-${step}`);
      consumers[ci] = fresh;
      held.set(fresh, []);
    } else if (r < 0.97) {
      what = `purge ${name}`;
      assert.equal(h.engine.purge(name), model.length, `step ${step}: ${what}`);
      counts.purged += model.length;
      model.length = 0;
    } else {
      // A queue used once: made, filled, drained, left empty (swept later).
      const once = `once-${step}`;
      what = `once ${once}`;
      h.engine.put(once, [step, `s${step}`]);
      assert.deepEqual(h.drain(once), [step, `s${step}`], `step ${step}: ${what}`);
      counts.fresh++;
    }
    assert.equal(h.stats(name).ready, readyOf(name).length, `step ${step}: ${what}`);
    if (step % 37 === 0) {
      const probe = pick(names);
      assert.deepEqual(
        h.engine.peek(probe, 1000).map((item) => item.value),
        readyOf(probe),
        `step ${step}: ${what}: peek ${probe}`,
      );
    }
    if (h.engine.queueCount < lastCount) counts.swept++;
    lastCount = h.engine.queueCount;
  }
  // Everything held goes back; every queue then drains to exactly its model.
  for (const c of consumers) {
    for (const x of held.get(c) as Held[]) readyOf(x.queue).push(x.value);
    assert.deepEqual(h.engine.nack(c, (held.get(c) as Held[]).map((x) => x.id)), []);
  }
  for (const name of names) assert.deepEqual(h.drain(name), readyOf(name), `drain ${name}`);
  assert.equal(h.engine.heldBytes, 0);
  assert.ok(counts.taken > 5_000, `taken ${counts.taken}`);
  assert.ok(counts.nacked > 500, `nacked ${counts.nacked}`);
  assert.ok(counts.returned > 200, `returned ${counts.returned}`);
  assert.ok(counts.purged > 50, `purged ${counts.purged}`);
  assert.ok(counts.swept > 0, `swept ${counts.swept}`);
});
