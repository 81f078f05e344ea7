/**
 * Tests of lib/engine/compact_lane.ts (plain ready items kept as compact
 * entries, others as objects, in one FIFO) and of ReadySet's compact home
 * lane (`pushPlain`): fixed cases (the module's example, integer, string
 * and object entries, chunks growing and draining, unshift in front of
 * compact entries, numbers that do not fit an entry kept as objects, -0,
 * removeWhere keeping order and form), seeded random operations compared
 * after every step with an array model, and a ReadySet with compact entries
 * compared with one holding the same items as objects (itself tested
 * against a model in ready_set_test.ts). The engine's use is covered by the
 * engine and broker tests, which run on it.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  CompactLane,
  INT_ENTRY_COST,
  MAX_CHUNK_ENTRIES,
  MIN_CHUNK_ENTRIES,
} from "../lib/engine/compact_lane.ts";
import { ReadySet } from "../lib/engine/ready_set.ts";
import { seededRandom } from "./_helpers.ts";

interface Entry {
  id: number;
  createdAt: number;
  value: unknown;
  cost: number;
  priority: number;
  group: string;
  /** Set on entries pushed as objects, so the test can tell which form came back. */
  object?: true;
}

/** What a plain entry becomes. */
function make(id: number, createdAt: number, value: unknown, cost: number): Entry {
  return { id, createdAt, value, cost, priority: 0, group: "" };
}

/** An entry's fields as text, to compare entries whatever object holds them. */
function show(entry: Entry | undefined): string {
  if (entry === undefined) return "none";
  return `${entry.id}@${entry.createdAt}=${
    Object.is(entry.value, -0) ? "-0" : JSON.stringify(entry.value)
  }/${entry.cost}${entry.object ? "!" : ""}:${entry.priority}${entry.group}`;
}

/** Every entry of `lane`, front first, as text. */
function contents(lane: Iterable<Entry>): string[] {
  return [...lane].map(show);
}

const T0 = 1_800_000_000_000;

Deno.test("compact lane: the module's example", () => {
  const lane = new CompactLane((id, createdAt, value, cost) => ({ id, createdAt, value, cost }));
  lane.pushPlain(1, 1000, "a", 160);
  lane.push({ id: 2, createdAt: 1001, value: "b", cost: 160 });
  assert.equal(lane.length, 2);
  assert.equal(lane.shift()?.value, "a");
  assert.equal(lane.shift()?.value, "b");
  assert.equal(lane.shift(), undefined);
});

Deno.test("compact lane: integers, strings, objects and objects pushed keep their order and fields", () => {
  const lane = new CompactLane(make);
  const object: Entry = { ...make(3, T0 + 2, "x", 999), object: true };
  lane.pushPlain(1, T0, 7, INT_ENTRY_COST);
  lane.pushPlain(2, T0 + 1, "hello", INT_ENTRY_COST + 40);
  lane.push(object);
  lane.pushPlain(4, T0 + 3, { n: [1, 2] }, INT_ENTRY_COST + 100);
  lane.pushPlain(5, T0 + 4, -12345, INT_ENTRY_COST);
  lane.pushPlain(6, T0 + 5, 1.5, INT_ENTRY_COST);
  lane.pushPlain(7, T0 + 6, 3, INT_ENTRY_COST + 1); // an integer of another cost keeps its cost
  assert.deepEqual(contents(lane), [
    `1@${T0}=7/160:0`,
    `2@${T0 + 1}="hello"/200:0`,
    `3@${T0 + 2}="x"/999!:0`,
    `4@${T0 + 3}={"n":[1,2]}/260:0`,
    `5@${T0 + 4}=-12345/160:0`,
    `6@${T0 + 5}=1.5/160:0`,
    `7@${T0 + 6}=3/161:0`,
  ]);
  assert.equal(lane.length, 7);
  const taken = [];
  for (let e = lane.shift(); e !== undefined; e = lane.shift()) taken.push(e);
  assert.equal(taken[2], object, "an object entry comes back as the very object");
  assert.equal(lane.length, 0);
  assert.deepEqual(contents(lane), []);
});

Deno.test("compact lane: numbers that do not fit an entry are kept as objects, -0 stays -0", () => {
  const lane = new CompactLane(make);
  lane.pushPlain(10, T0, 1, INT_ENTRY_COST);
  lane.pushPlain(10 + 2 ** 33, T0, 2, INT_ENTRY_COST); // id too far from the chunk's first
  lane.pushPlain(5, T0, 3, INT_ENTRY_COST); // an id below the chunk's first
  lane.pushPlain(11, T0 + 2 ** 40, 4, INT_ENTRY_COST); // a time too far
  lane.pushPlain(12, T0 + 0.5, 5, INT_ENTRY_COST); // a fractional time
  lane.pushPlain(13, T0, "big", 2 ** 40); // a cost too large
  lane.pushPlain(14, T0, -0, INT_ENTRY_COST);
  lane.pushPlain(15, T0, 2 ** 31, INT_ENTRY_COST); // an integer past int32
  assert.deepEqual(contents(lane), [
    `10@${T0}=1/160:0`,
    `${10 + 2 ** 33}@${T0}=2/160:0`,
    `5@${T0}=3/160:0`,
    `11@${T0 + 2 ** 40}=4/160:0`,
    `12@${T0 + 0.5}=5/160:0`,
    `13@${T0}="big"/${2 ** 40}:0`,
    `14@${T0}=-0/160:0`,
    `15@${T0}=${2 ** 31}/160:0`,
  ]);
  const drained = [];
  for (let e = lane.shift(); e !== undefined; e = lane.shift()) drained.push(show(e));
  assert.equal(drained.length, 8);
  assert.ok(Object.is(make(0, 0, -0, 0).value, -0));
});

Deno.test("compact lane: grows chunk by chunk, drains, and unshifts in front of compact entries", () => {
  const lane = new CompactLane(make);
  const n = MAX_CHUNK_ENTRIES * 3 + MIN_CHUNK_ENTRIES + 5;
  for (let i = 0; i < n; i++) lane.pushPlain(100 + i, T0 + i, i % 3 === 0 ? i : `s${i}`, 160);
  assert.equal(lane.length, n);
  const front: Entry = { ...make(1, T0, "first", 1), object: true };
  lane.unshift(front);
  assert.equal(lane.shift(), front);
  for (let i = 0; i < n; i++) {
    const e = lane.shift() as Entry;
    assert.equal(e.id, 100 + i);
    assert.equal(e.createdAt, T0 + i);
    assert.equal(e.value, i % 3 === 0 ? i : `s${i}`);
    if (i % 1000 === 0) {
      // Unshifted in the middle of a drain: served next, then the order goes on.
      const back: Entry = { ...make(2, T0, "back", 1), object: true };
      lane.unshift(back);
      assert.equal(lane.shift(), back);
    }
  }
  assert.equal(lane.length, 0);
  assert.equal(lane.shift(), undefined);
  // Used again after draining: bases start afresh.
  lane.pushPlain(2 ** 40, T0 * 2, 1, 160);
  assert.deepEqual(contents(lane), [`${2 ** 40}@${T0 * 2}=1/160:0`]);
});

Deno.test("compact lane: removeWhere drops matches and keeps the order and form of the rest", () => {
  const lane = new CompactLane(make);
  const objects: Entry[] = [];
  for (let i = 0; i < 100; i++) {
    if (i % 10 === 0) {
      const o: Entry = { ...make(i, T0, `o${i}`, 5), object: true };
      objects.push(o);
      lane.push(o);
    } else lane.pushPlain(i, T0 + i, i, INT_ENTRY_COST);
  }
  assert.equal(lane.removeWhere((e) => e.id % 3 === 0), 34);
  assert.equal(lane.length, 66);
  const left = [...lane];
  assert.deepEqual(left.map((e) => e.id), [...Array(100).keys()].filter((i) => i % 3 !== 0));
  for (const o of objects) {
    if (o.id % 3 !== 0) assert.ok(left.includes(o), `object ${o.id} kept as itself`);
  }
  assert.equal(lane.removeWhere(() => false), 0);
  assert.equal(lane.removeWhere(() => true), 66);
  assert.equal(lane.length, 0);
  assert.equal(lane.shift(), undefined);
});

Deno.test("compact lane: random operations agree with the array model", () => {
  const random = seededRandom(20261130);
  const lane = new CompactLane(make);
  const model: Entry[] = [];
  let nextId = 1;
  let now = T0;
  const counts = { pushed: 0, shifted: 0, removed: 0, empty: 0, objects: 0 };
  for (let step = 0; step < 30_000; step++) {
    // Phases that fill the lane (past a few chunks) and drain it back to empty.
    const pushBias = Math.floor(step / 3000) % 2 === 0 ? 0.7 : 0.3;
    const r = random();
    now += Math.floor(random() * 3);
    let what: string;
    if (r < pushBias) {
      const kind = random();
      const value = kind < 0.5
        ? Math.floor(random() * 2000) - 1000
        : kind < 0.8
        ? `v${step}`
        : kind < 0.9
        ? { step }
        : random() < 0.5
        ? 0.25
        : 2 ** 32;
      const cost = typeof value === "string" ? INT_ENTRY_COST + 30 : INT_ENTRY_COST;
      const id = nextId++;
      what = `pushPlain ${id}`;
      lane.pushPlain(id, now, value, cost);
      model.push(make(id, now, value, cost));
      counts.pushed++;
    } else if (r < pushBias + 0.08) {
      const e: Entry = { ...make(nextId++, now, "obj", 7), object: true };
      if (random() < 0.5) {
        what = `push object ${e.id}`;
        lane.push(e);
        model.push(e);
      } else {
        what = `unshift object ${e.id}`;
        lane.unshift(e);
        model.unshift(e);
      }
      counts.objects++;
    } else if (r < 0.995) {
      what = "shift";
      const got = lane.shift();
      const expected = model.shift();
      assert.equal(show(got), show(expected), `step ${step}: ${what}`);
      if (expected?.object) assert.equal(got, expected, `step ${step}: the object itself`);
      if (got !== undefined) counts.shifted++;
    } else {
      const k = Math.floor(random() * 4) + 2;
      const j = Math.floor(random() * k);
      what = `removeWhere id % ${k} === ${j}`;
      const drop = (e: Entry) => e.id % k === j;
      const before = model.length;
      const kept = model.filter((e) => !drop(e));
      model.length = 0;
      model.push(...kept);
      assert.equal(lane.removeWhere(drop), before - model.length, `step ${step}: ${what}`);
      counts.removed += before - model.length;
    }
    assert.equal(lane.length, model.length, `step ${step}: ${what}`);
    if (step % 97 === 0 || lane.length < 20) {
      assert.deepEqual(contents(lane), model.map(show), `step ${step}: ${what}`);
    }
    if (lane.length === 0) counts.empty++;
  }
  assert.ok(counts.pushed > 10_000, `pushed ${counts.pushed}`);
  assert.ok(counts.shifted > 8000, `shifted ${counts.shifted}`);
  assert.ok(counts.removed > 100, `removed ${counts.removed}`);
  assert.ok(counts.objects > 1000, `objects ${counts.objects}`);
  assert.ok(counts.empty > 3, `empty ${counts.empty}`);
  assert.deepEqual(contents(lane), model.map(show));
});

Deno.test("ready set: compact entries are served exactly as the same items held as objects", () => {
  const random = seededRandom(777);
  const compact = new ReadySet<Entry>(make);
  const objects = new ReadySet<Entry>();
  const priorities = [0, 0, 0, 0, 3, -2];
  const groups = ["", "", "", "a", "b"];
  const pick = <V>(from: readonly V[]) => from[Math.floor(random() * from.length)];
  let nextId = 1;
  const taken: Entry[] = [];
  let plain = 0;
  for (let step = 0; step < 20_000; step++) {
    const pushBias = Math.floor(step / 500) % 2 === 0 ? 0.65 : 0.3;
    const r = random();
    let what: string;
    if (r < pushBias) {
      const id = nextId++;
      if (random() < 0.6) {
        const value = random() < 0.5 ? id : `v${id}`;
        what = `pushPlain ${id}`;
        compact.pushPlain(id, T0 + id, value, INT_ENTRY_COST);
        objects.push(make(id, T0 + id, value, INT_ENTRY_COST));
        plain++;
      } else {
        const e: Entry = {
          ...make(id, T0, "o", 1),
          priority: pick(priorities),
          group: pick(groups),
          object: true,
        };
        what = `push ${show(e)}`;
        compact.push(e);
        objects.push(e);
      }
    } else if (r < pushBias + 0.08 && taken.length > 0) {
      const e = taken.splice(Math.floor(random() * taken.length), 1)[0];
      what = `unshift ${show(e)}`;
      compact.unshift(e);
      objects.unshift(e);
    } else if (r < 0.98) {
      let allowed: ((group: string) => boolean) | undefined;
      if (random() < 0.3) {
        const refused = new Set(groups.filter(() => random() < 0.4));
        allowed = (group) => !refused.has(group);
      }
      what = "shift";
      const got = compact.shift(allowed);
      assert.equal(show(got), show(objects.shift(allowed)), `step ${step}: ${what}`);
      if (got !== undefined && taken.length < 32) taken.push(got);
    } else {
      const k = Math.floor(random() * 3) + 2;
      what = `removeWhere id % ${k} === 0`;
      const drop = (e: Entry) => e.id % k === 0;
      assert.equal(compact.removeWhere(drop), objects.removeWhere(drop), `step ${step}: ${what}`);
    }
    assert.equal(compact.length, objects.length, `step ${step}: ${what}`);
    assert.equal(compact.grouped, objects.grouped, `step ${step}: ${what}`);
    if (step % 53 === 0) {
      assert.deepEqual(contents(compact), contents(objects), `step ${step}: ${what}`);
    }
  }
  assert.ok(plain > 4000, `plain ${plain}`);
  assert.deepEqual(contents(compact), contents(objects));
});
