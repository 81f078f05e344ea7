/**
 * Tests of lib/util/deque.ts: the ring-buffer double-ended queue (push and
 * shift at both ends, growth across the wrap-around point, iteration order,
 * removeWhere keeping order), a deque that never held anything (its ring is
 * made with its first element), and seeded random operations compared after
 * every step with an array model, through fills, drains to empty and reuse.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Deque } from "../lib/util/deque.ts";
import { seededRandom } from "./_helpers.ts";

Deno.test("deque: push and shift are first in, first out", () => {
  const deque = new Deque<number>();
  assert.equal(deque.length, 0);
  assert.equal(deque.shift(), undefined);
  assert.equal(deque.peek(), undefined);
  for (let i = 0; i < 5; i++) deque.push(i);
  assert.equal(deque.length, 5);
  assert.equal(deque.peek(), 0);
  assert.deepEqual([deque.shift(), deque.shift()], [0, 1]);
  assert.deepEqual([...deque], [2, 3, 4]);
});

Deno.test("deque: unshift puts elements at the front", () => {
  const deque = new Deque<string>();
  deque.push("b");
  deque.unshift("a");
  deque.push("c");
  deque.unshift("z");
  assert.deepEqual([...deque], ["z", "a", "b", "c"]);
  assert.equal(deque.shift(), "z");
  assert.equal(deque.length, 3);
});

Deno.test("deque: grows past its initial capacity while wrapped around", () => {
  const deque = new Deque<number>();
  const model: number[] = [];
  // Move the head into the middle of the ring, then mix both ends across several growths.
  for (let i = 0; i < 10; i++) deque.push(i), model.push(i);
  for (let i = 0; i < 7; i++) assert.equal(deque.shift(), model.shift());
  for (let i = 0; i < 200; i++) {
    if (i % 3 === 0) deque.unshift(-i), model.unshift(-i);
    else deque.push(i), model.push(i);
    if (i % 7 === 0) assert.equal(deque.shift(), model.shift());
  }
  assert.equal(deque.length, model.length);
  assert.deepEqual([...deque], model);
  while (model.length > 0) assert.equal(deque.shift(), model.shift());
  assert.equal(deque.length, 0);
  assert.equal(deque.shift(), undefined);
});

Deno.test("deque: removeWhere drops matching elements and keeps the order of the rest", () => {
  const deque = new Deque<number>();
  for (let i = 0; i < 5; i++) deque.push(i);
  for (let i = 1; i <= 5; i++) deque.unshift(-i);
  assert.equal(deque.removeWhere((n) => n % 2 === 0), 5);
  assert.deepEqual([...deque], [-5, -3, -1, 1, 3]);
  assert.equal(deque.removeWhere(() => false), 0);
  assert.equal(deque.removeWhere(() => true), 5);
  assert.equal(deque.length, 0);
  deque.push(9);
  assert.deepEqual([...deque], [9]);
});

Deno.test("deque: one that never held anything answers every call; unshift or push gives it a ring", () => {
  for (const first of ["push", "unshift"] as const) {
    const deque = new Deque<number>();
    assert.equal(deque.length, 0);
    assert.equal(deque.shift(), undefined);
    assert.equal(deque.peek(), undefined);
    assert.deepEqual([...deque], []);
    assert.equal(deque.removeWhere(() => true), 0);
    assert.equal(deque.length, 0);
    deque[first](1);
    deque[first](2);
    assert.deepEqual([...deque], first === "push" ? [1, 2] : [2, 1]);
    assert.equal(deque.length, 2);
  }
  // Two deques never used do not share anything once one is used.
  const a = new Deque<string>();
  const b = new Deque<string>();
  a.unshift("a");
  assert.deepEqual([...b], []);
  b.push("b");
  assert.deepEqual([[...a], [...b]], [["a"], ["b"]]);
});

Deno.test("deque: random operations agree with the array model, through drains to empty", () => {
  const random = seededRandom(4242);
  const deque = new Deque<number>();
  const model: number[] = [];
  let next = 0;
  const counts = { empty: 0, largest: 0 };
  for (let step = 0; step < 40_000; step++) {
    // Phases that grow the deque (past several sizes of its ring) and drain it to empty.
    const phase = Math.floor(step / 2000) % 2 === 0;
    const r = random();
    let what: string;
    if (r < (phase ? 0.45 : 0.2)) {
      what = "push";
      deque.push(next);
      model.push(next++);
    } else if (r < (phase ? 0.65 : 0.3)) {
      what = "unshift";
      deque.unshift(next);
      model.unshift(next++);
    } else if (r < 0.97) {
      what = "shift";
      assert.equal(deque.peek(), model[0], `step ${step}: peek`);
      assert.equal(deque.shift(), model.shift(), `step ${step}: ${what}`);
    } else {
      const k = Math.floor(random() * 4) + 2;
      what = `removeWhere % ${k}`;
      const drop = (n: number) => n % k === 0;
      const kept = model.filter((n) => !drop(n));
      assert.equal(deque.removeWhere(drop), model.length - kept.length, `step ${step}: ${what}`);
      model.length = 0;
      model.push(...kept);
    }
    assert.equal(deque.length, model.length, `step ${step}: ${what}`);
    if (step % 61 === 0 || model.length < 8) {
      assert.deepEqual([...deque], model, `step ${step}: ${what}`);
    }
    if (model.length === 0) counts.empty++;
    counts.largest = Math.max(counts.largest, model.length);
  }
  assert.ok(counts.empty > 10, `empty ${counts.empty}`);
  assert.ok(counts.largest > 64, `largest ${counts.largest}`);
  assert.deepEqual([...deque], model);
});
