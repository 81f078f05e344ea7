/**
 * Tests of lib/engine/timer_heap.ts: the indexed min-heap of deadlines
 * (ordering, moving an entry earlier or later, cancelling from any position,
 * popDue honouring `now`, heap indexes kept in sync).
 *
 * @module
 */

import assert from "node:assert/strict";
import { NOT_SCHEDULED, type Timed, TimerHeap } from "../lib/engine/timer_heap.ts";
import { seededRandom } from "./_helpers.ts";

class Entry implements Timed {
  deadline = 0;
  heapIndex = NOT_SCHEDULED;
  constructor(readonly name: string) {}
}

function drain(heap: TimerHeap<Entry>): number[] {
  const out: number[] = [];
  for (let e = heap.popDue(Infinity); e !== undefined; e = heap.popDue(Infinity)) {
    assert.equal(e.heapIndex, NOT_SCHEDULED);
    out.push(e.deadline);
  }
  return out;
}

Deno.test("timer heap: pops entries in deadline order, only when due", () => {
  const heap = new TimerHeap<Entry>();
  const a = new Entry("a"), b = new Entry("b"), c = new Entry("c");
  heap.schedule(b, 20);
  heap.schedule(c, 30);
  heap.schedule(a, 10);
  assert.equal(heap.size, 3);
  assert.equal(heap.peek(), a);
  assert.equal(heap.popDue(9), undefined);
  assert.equal(heap.popDue(10), a);
  assert.equal(a.heapIndex, NOT_SCHEDULED);
  assert.equal(heap.popDue(25), b);
  assert.equal(heap.popDue(25), undefined);
  assert.equal(heap.size, 1);
  assert.equal(heap.popDue(30), c);
  assert.equal(heap.peek(), undefined);
});

Deno.test("timer heap: rescheduling moves an entry earlier or later", () => {
  const heap = new TimerHeap<Entry>();
  const entries = ["a", "b", "c", "d"].map((name) => new Entry(name));
  entries.forEach((e, i) => heap.schedule(e, (i + 1) * 10)); // a10 b20 c30 d40
  heap.schedule(entries[3], 5); // d earlier
  assert.equal(heap.peek(), entries[3]);
  heap.schedule(entries[3], 35); // d later again
  heap.schedule(entries[0], 50); // a later
  assert.equal(heap.size, 4);
  const order: string[] = [];
  for (let e = heap.popDue(100); e; e = heap.popDue(100)) order.push(e.name);
  assert.deepEqual(order, ["b", "c", "d", "a"]);
});

Deno.test("timer heap: cancel removes from any position and is safe twice", () => {
  const heap = new TimerHeap<Entry>();
  const entries = Array.from({ length: 10 }, (_, i) => new Entry(String(i)));
  entries.forEach((e, i) => heap.schedule(e, 100 - i * 7));
  heap.cancel(entries[4]);
  heap.cancel(entries[4]);
  heap.cancel(entries[9]); // the earliest
  heap.cancel(new Entry("never scheduled"));
  assert.equal(heap.size, 8);
  const expected = entries.filter((_, i) => i !== 4 && i !== 9).map((e) => e.deadline).sort(
    (x, y) => x - y,
  );
  assert.deepEqual(drain(heap), expected);
});

Deno.test("timer heap: random operations agree with a sorted model", () => {
  const random = seededRandom(12345);
  const heap = new TimerHeap<Entry>();
  const entries = Array.from({ length: 200 }, (_, i) => new Entry(String(i)));
  const scheduled = new Set<Entry>();
  for (let step = 0; step < 5000; step++) {
    const entry = entries[Math.floor(random() * entries.length)];
    if (random() < 0.7) {
      heap.schedule(entry, Math.floor(random() * 1000));
      scheduled.add(entry);
    } else {
      heap.cancel(entry);
      scheduled.delete(entry);
    }
    if (step % 500 === 0) {
      const min = Math.min(...[...scheduled].map((e) => e.deadline));
      assert.equal(heap.peek()?.deadline, min);
    }
  }
  assert.equal(heap.size, scheduled.size);
  const expected = [...scheduled].map((e) => e.deadline).sort((x, y) => x - y);
  assert.deepEqual(drain(heap), expected);
  for (const entry of entries) assert.equal(entry.heapIndex, NOT_SCHEDULED);
});
