/**
 * Tests of lib/engine/deque.ts: the ring-buffer double-ended queue (push and
 * shift at both ends, growth across the wrap-around point, iteration order,
 * removeWhere keeping order).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Deque } from "../lib/util/deque.ts";

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
