/**
 * Tests of lib/engine/history.ts, the ring of finished items' records:
 * lookups of what it keeps, and each of its three bounds (count, age,
 * bytes) against a simple reference model under random use.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type FinishedItem, History } from "../lib/engine/history.ts";

/** A finished item's fields, as the engine's items have them. */
function item(id: number, finishedAt: number): FinishedItem {
  return {
    id,
    queue: `q${id % 3}`,
    attempts: id % 5,
    priority: (id % 7) - 3,
    group: id % 2 === 0 ? "" : `g${id}`,
    key: id % 4 === 0 ? `k${id}` : undefined,
    lastError: id % 3 === 1 ? `boom ${id}` : undefined,
    progress: id % 5 === 0 ? { percent: 50, at: finishedAt - 1 } : undefined,
    createdAt: finishedAt - 100,
  };
}

/** Records item `id` as finished at `now`, its value and result taking `cost` bytes. */
function record(history: History, id: number, now: number, cost = 8): void {
  const state = (["done", "dead", "cancelled"] as const)[id % 3];
  history.record(item(id, now), state, now, { n: id }, id % 3 === 0 ? id * id : undefined, cost);
}

Deno.test("history: a lookup reports every field it kept, and only those", () => {
  const history = new History(10, 60_000, 1 << 20);
  record(history, 4, 1_000);
  record(history, 7, 1_000);
  assert.deepEqual(history.get(4, 1_000), {
    id: 4,
    queue: "q1",
    state: "dead",
    attempts: 4,
    priority: 1,
    createdAt: 900,
    finishedAt: 1_000,
    key: "k4",
    value: { n: 4 },
    error: "boom 4",
  });
  assert.deepEqual(history.get(7, 1_000)?.group, "g7");
  assert.equal(history.get(5, 1_000), undefined);
});

Deno.test("history: capacity 0 keeps nothing", () => {
  const history = new History(0, 60_000, 1 << 20);
  record(history, 1, 0);
  assert.equal(history.size, 0);
  assert.equal(history.get(1, 0), undefined);
});

Deno.test("history: random use agrees with a model of its three bounds", () => {
  const capacity = 50;
  const maxAge = 1_000;
  const maxBytes = 2_000;
  const history = new History(capacity, maxAge, maxBytes);
  let model: { id: number; finishedAt: number; cost: number }[] = [];
  let seed = 7;
  const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648;
  let now = 0;
  let nextId = 1;
  const pruneModel = () => {
    model = model.filter((r) => r.finishedAt > now - maxAge);
  };
  for (let step = 0; step < 20_000; step++) {
    now += Math.floor(random() * 20);
    if (random() < 0.6) {
      const cost = Math.floor(random() * 120);
      const id = nextId++;
      record(history, id, now, cost);
      pruneModel();
      if (model.length === capacity) model.shift();
      model.push({ id, finishedAt: now, cost });
      let bytes = model.reduce((sum, r) => sum + r.cost, 0);
      while (bytes > maxBytes) bytes -= (model.shift() as { cost: number }).cost;
    } else {
      const id = Math.max(1, nextId - 1 - Math.floor(random() * 80));
      const got = history.get(id, now);
      pruneModel();
      const kept = model.some((r) => r.id === id);
      assert.equal(got !== undefined, kept, `step ${step}: id ${id}`);
      if (got !== undefined) assert.equal(got.id, id);
    }
    assert.equal(history.size, model.length, `step ${step}`);
  }
});
