/**
 * Tests of lib/broker/postgres/batcher.ts: requests made together are written
 * together, in order; batches respect their weight and the number in flight;
 * a failed write fails exactly its own batch; `settled` waits for all.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Batcher } from "../lib/broker/postgres/batcher.ts";

/** A write the test releases by hand. */
function gate<T>() {
  return Promise.withResolvers<T>();
}

Deno.test("requests of one turn go in one batch, in order, each with its own result", async () => {
  const batches: number[][] = [];
  const b = new Batcher<number, string>((batch) => {
    batches.push(batch);
    return Promise.resolve(batch.map((n) => `r${n}`));
  });
  assert.deepEqual(await Promise.all([b.add(1), b.add(2), b.add(3)]), ["r1", "r2", "r3"]);
  assert.deepEqual(batches, [[1, 2, 3]]);
});

Deno.test("while every slot is busy, requests gather for the next batch", async () => {
  const batches: number[][] = [];
  const gates: PromiseWithResolvers<void>[] = [];
  const b = new Batcher<number, number>(async (batch) => {
    batches.push(batch);
    const g = gate<void>();
    gates.push(g);
    await g.promise;
    return batch;
  }, { maxInFlight: 1 });
  const first = b.add(1);
  while (gates.length < 1) await new Promise((r) => setTimeout(r, 1));
  const rest = [b.add(2), b.add(3), b.add(4)];
  assert.equal(b.busy, true);
  gates[0].resolve();
  await first;
  while (gates.length < 2) await new Promise((r) => setTimeout(r, 1));
  gates[1].resolve();
  assert.deepEqual(await Promise.all(rest), [2, 3, 4]);
  assert.deepEqual(batches, [[1], [2, 3, 4]]);
  await b.settled();
  assert.equal(b.busy, false);
});

Deno.test("a batch holds at most maxBatchWeight, but a heavier request still goes alone", async () => {
  const batches: number[][] = [];
  const b = new Batcher<number, number>((batch) => {
    batches.push(batch);
    return Promise.resolve(batch);
  }, { maxBatchWeight: 10, weigh: (n) => n, maxInFlight: 4 });
  await Promise.all([b.add(4), b.add(5), b.add(3), b.add(25), b.add(1)]);
  assert.deepEqual(batches, [[4, 5], [3], [25], [1]]);
});

Deno.test("a failed write rejects every request of its batch, and only those", async () => {
  let call = 0;
  const b = new Batcher<number, number>((batch) => {
    call++;
    return call === 1 ? Promise.reject(new Error("boom")) : Promise.resolve(batch);
  }, { maxInFlight: 1 });
  const first = [b.add(1), b.add(2)];
  const outcomes = await Promise.allSettled(first);
  assert.deepEqual(outcomes.map((o) => o.status), ["rejected", "rejected"]);
  assert.equal(await b.add(3), 3);
});
