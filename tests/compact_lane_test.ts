/**
 * Tests of lib/engine/compact_lane.ts (plain ready items kept as compact
 * entries, others as objects, in one FIFO) and of ReadySet's compact home
 * lane (`pushPlain`): fixed cases (the module's example, integer, string
 * and object entries, chunks growing and draining, unshift in front of
 * compact entries, numbers that do not fit an entry kept as objects, -0,
 * removeWhere keeping order and form), seeded random operations compared
 * after every step with an array model (with and without a pool), and a
 * ReadySet with compact entries compared with one holding the same items as
 * objects (itself tested against a model in ready_set_test.ts). The chunk
 * pool: seeded random lending and handing back compared with a model (cells
 * distinct, their words kept, handed-back cells lent again first, its arrays
 * cut back when nothing is lent); a lane's chunks growing from a pool's cell
 * to full size and its cells going back as it drains; many lanes sharing a
 * pool, filled, drained, emptied and used again at random, compared with
 * array models, nothing left lent once all are empty. The engine's use is
 * covered by the engine and broker tests, which run on it.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  ChunkPool,
  CompactLane,
  INT_ENTRY_COST,
  MAX_CHUNK_ENTRIES,
  MIN_CHUNK_ENTRIES,
  SLAB_CELLS,
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

/** Seeded random operations on one lane (of `pool`, if given), compared with an array model. */
/**
 * Adds `entry` (held as an object) to `lane` and to its `model`: at the back
 * when `coin` < 0.5, else at the front. Returns what it did, for messages.
 */
function addObject(lane: CompactLane<Entry>, model: Entry[], entry: Entry, coin: number): string {
  if (coin < 0.5) {
    lane.push(entry);
    model.push(entry);
    return `push object ${entry.id}`;
  }
  lane.unshift(entry);
  model.unshift(entry);
  return `unshift object ${entry.id}`;
}

function randomLaneAgainstModel(seed: number, pool?: ChunkPool): void {
  const random = seededRandom(seed);
  const lane = new CompactLane(make, "", pool);
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
      what = addObject(lane, model, { ...make(nextId++, now, "obj", 7), object: true }, random());
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
  if (pool !== undefined) {
    for (let e = lane.shift(); e !== undefined; e = lane.shift()) {
      assert.equal(show(e), show(model.shift()));
    }
    assert.equal(pool.lent, 0, "an empty lane holds no cell");
  }
}

Deno.test("compact lane: random operations agree with the array model", () => {
  randomLaneAgainstModel(20261130);
});

Deno.test("compact lane: random operations agree with the array model, on a pool", () => {
  randomLaneAgainstModel(20261201, new ChunkPool());
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

/** Words of a pool's cell. */
const CELL_WORDS = MIN_CHUNK_ENTRIES * 3;

Deno.test("chunk pool: a cell handed back is lent again first; the arrays are cut back when none is lent", () => {
  const pool = new ChunkPool();
  assert.deepEqual([pool.lent, pool.slabs], [0, 0]);
  const a = pool.acquire();
  const b = pool.acquire();
  assert.notEqual(a, b);
  assert.deepEqual([pool.lent, pool.slabs], [2, 1]);
  pool.release(a);
  assert.equal(pool.acquire(), a);
  // Past one array's cells: a second array.
  const more = Array.from({ length: SLAB_CELLS }, () => pool.acquire());
  assert.deepEqual([pool.lent, pool.slabs], [SLAB_CELLS + 2, 2]);
  assert.equal(new Set([a, b, ...more]).size, SLAB_CELLS + 2);
  assert.notEqual(pool.words(more[SLAB_CELLS - 1]), pool.words(a));
  for (const cell of [a, b, ...more]) pool.release(cell);
  assert.deepEqual([pool.lent, pool.slabs], [0, 1]);
  // Lent afresh from the start of the array kept.
  const again = pool.acquire();
  assert.equal(pool.words(again), pool.words(a));
  assert.equal(pool.base(again), 0);
  pool.release(again);
  assert.deepEqual([pool.lent, pool.slabs], [0, 1], "one array stays when it is the only one");
});

Deno.test("chunk pool: random lending and handing back agree with the model; cells keep their words", () => {
  const random = seededRandom(1515);
  const pool = new ChunkPool();
  /** Cells lent, and the number written over each cell's words when it was lent. */
  const lent: { cell: number; stamp: number }[] = [];
  let stamp = 1;
  const counts = { cutBack: 0, mostSlabs: 0, reused: 0 };
  const released = new Set<number>();
  /** Most cells lent at once since the arrays were last cut back: what they need hold. */
  let peak = 0;
  const check = (at: string) => {
    for (const { cell, stamp } of lent) {
      const words = pool.words(cell).subarray(pool.base(cell), pool.base(cell) + CELL_WORDS);
      assert.ok(words.every((w) => w === stamp), `${at}: cell ${cell} kept its words`);
    }
  };
  for (let step = 0; step < 40_000; step++) {
    // Phases that lend cells over several arrays, then hand every one back.
    const lending = Math.floor(step / 4000) % 2 === 0;
    if (random() < (lending ? 0.65 : 0.2)) {
      const slabsBefore = pool.slabs;
      const cell = pool.acquire();
      assert.ok(lent.every((l) => l.cell !== cell), `step ${step}: cell ${cell} lent twice`);
      if (released.has(cell)) counts.reused++;
      const base = pool.base(cell);
      assert.equal(base % CELL_WORDS, 0);
      assert.ok(base + CELL_WORDS <= pool.words(cell).length);
      assert.ok(pool.slabs - slabsBefore <= 1);
      pool.words(cell).fill(stamp, base, base + CELL_WORDS);
      lent.push({ cell, stamp: stamp++ });
      peak = Math.max(peak, lent.length);
    } else if (lent.length > 0) {
      const i = Math.floor(random() * lent.length);
      const { cell } = lent[i];
      lent[i] = lent[lent.length - 1];
      lent.pop();
      const slabsBefore = pool.slabs;
      pool.release(cell);
      released.add(cell);
      if (lent.length === 0) {
        if (slabsBefore > 1) {
          counts.cutBack++;
          peak = 0;
        }
        assert.equal(pool.slabs, Math.min(slabsBefore, 1), `step ${step}: cut back`);
        released.clear();
      }
    }
    assert.equal(pool.lent, lent.length, `step ${step}`);
    assert.ok(pool.slabs * SLAB_CELLS >= lent.length);
    // Cells handed back are lent again before any new one: no more arrays than the peak needs.
    assert.ok(pool.slabs <= Math.max(1, Math.ceil(peak / SLAB_CELLS)), `step ${step}: arrays`);
    counts.mostSlabs = Math.max(counts.mostSlabs, pool.slabs);
    if (step % 397 === 0) check(`step ${step}`);
  }
  check("end");
  assert.ok(counts.mostSlabs >= 4, `most arrays ${counts.mostSlabs}`);
  assert.ok(counts.cutBack >= 3, `cut back ${counts.cutBack}`);
  assert.ok(counts.reused > 1000, `reused ${counts.reused}`);
});

Deno.test("compact lane on a pool: chunks grow from a cell to full size; cells go back as they empty", () => {
  const pool = new ChunkPool();
  const tags: string[] = [];
  const lane = new CompactLane<Entry>(
    (id, createdAt, value, cost, tag) => {
      tags.push(tag);
      return make(id, createdAt, value, cost);
    },
    "t",
    pool,
  );
  assert.equal(pool.lent, 0, "a new lane holds no words");
  // A first chunk (the cell), then chunks of 2, 4, … times as many, then several full ones.
  let n = 0;
  for (let size = MIN_CHUNK_ENTRIES; size < MAX_CHUNK_ENTRIES; size *= 2) n += size;
  n += MAX_CHUNK_ENTRIES * 2 + 5;
  for (let i = 0; i < n; i++) {
    lane.pushPlain(1000 + i, T0 + i, i % 5 === 0 ? `s${i}` : i, i % 5 === 0 ? 200 : 160);
    if (i === 0) assert.equal(pool.lent, 1, "the first entry takes a cell");
  }
  assert.equal(pool.lent, 1, "later chunks have words of their own");
  assert.equal(lane.length, n);
  assert.deepEqual(tags, []);
  // A front chunk in front of the full first one: another cell, handed back once served.
  const front: Entry = { ...make(1, T0, "front", 1), object: true };
  lane.unshift(front);
  assert.equal(pool.lent, 2);
  assert.equal(lane.shift(), front);
  assert.equal(pool.lent, 1);
  for (let i = 0; i < n; i++) {
    const e = lane.shift() as Entry;
    assert.equal(e.id, 1000 + i);
    assert.equal(e.createdAt, T0 + i);
    assert.equal(e.value, i % 5 === 0 ? `s${i}` : i);
    assert.equal(e.cost, i % 5 === 0 ? 200 : 160);
    if (i === MIN_CHUNK_ENTRIES - 2) assert.equal(pool.lent, 1);
    if (i === MIN_CHUNK_ENTRIES - 1) assert.equal(pool.lent, 0, "the first chunk drained");
  }
  assert.equal(tags.length, n);
  assert.ok(tags.every((tag) => tag === "t"), "make is told the lane's tag");
  assert.equal(lane.length, 0);
  assert.equal(lane.shift(), undefined);
  // An empty lane that kept a full chunk of its own uses it again, without a cell.
  lane.pushPlain(5, T0, 1, INT_ENTRY_COST);
  assert.equal(pool.lent, 0);
  assert.equal(lane.shift()?.id, 5);
  // Emptied by removeWhere: the lane starts again on a cell, and hands it back.
  for (let i = 0; i < 40; i++) lane.pushPlain(10 + i, T0, i, INT_ENTRY_COST);
  assert.equal(lane.removeWhere(() => true), 40);
  assert.equal(pool.lent, 0);
  for (let i = 0; i < 3; i++) lane.pushPlain(100 + i, T0, i, INT_ENTRY_COST);
  assert.equal(pool.lent, 1);
  assert.equal(lane.removeWhere((e) => e.id === 101), 1);
  assert.equal(pool.lent, 1);
  assert.deepEqual([...lane].map((e) => e.id), [100, 102]);
  lane.shift();
  lane.shift();
  assert.equal(pool.lent, 0, "an empty lane hands its cell back");
  // Unshift into the empty lane: a cell again, back when served.
  lane.unshift(front);
  assert.equal(pool.lent, 1);
  assert.equal(lane.shift(), front);
  assert.equal(pool.lent, 0);
});

Deno.test("compact lanes sharing a pool: random fills, drains and reuse agree with array models", () => {
  const random = seededRandom(31415);
  const pool = new ChunkPool();
  const LANES = 400;
  /** The lane's tag is its group, so every entry shows which lane made it. */
  const makeTagged = (
    id: number,
    createdAt: number,
    value: unknown,
    cost: number,
    tag: string,
  ) => ({
    ...make(id, createdAt, value, cost),
    group: tag,
  });
  const lanes = Array.from({ length: LANES }, (_, i) => new CompactLane(makeTagged, `l${i}`, pool));
  const models: Entry[][] = lanes.map(() => []);
  let nextId = 1;
  let now = T0;
  const counts = { allEmpty: 0, drained: 0, deep: 0, fronts: 0, removed: 0, mostLent: 0 };
  for (let step = 0; step < 60_000; step++) {
    // A few hot lanes grow past their first chunk; the others hold a few entries each.
    const l = random() < 0.3 ? Math.floor(random() * 4) : Math.floor(random() * LANES);
    const lane = lanes[l];
    const model = models[l];
    const tag = `l${l}`;
    const phase = Math.floor(step / 6000) % 2 === 0;
    const r = random();
    now += Math.floor(random() * 2);
    let what: string;
    if (r < (phase ? 0.55 : 0.25)) {
      const id = nextId++;
      const value = random() < 0.7 ? id % 1000 : `v${id}`;
      const cost = typeof value === "string" ? INT_ENTRY_COST + 20 : INT_ENTRY_COST;
      what = `pushPlain ${id}`;
      lane.pushPlain(id, now, value, cost);
      model.push({ ...make(id, now, value, cost), group: tag });
    } else if (r < (phase ? 0.62 : 0.32)) {
      const e: Entry = { ...make(nextId++, now, "o", 3), group: tag, object: true };
      what = addObject(lane, model, e, random());
      if (what.startsWith("unshift")) counts.fronts++;
    } else if (r < 0.985) {
      what = "shift";
      const got = lane.shift();
      const expected = model.shift();
      assert.equal(show(got), show(expected), `step ${step} lane ${l}: ${what}`);
      if (expected?.object) assert.equal(got, expected);
    } else if (r < 0.995) {
      what = "drain";
      for (let e = lane.shift(); e !== undefined; e = lane.shift()) {
        assert.equal(show(e), show(model.shift()), `step ${step} lane ${l}: ${what}`);
      }
      assert.equal(model.length, 0);
      counts.drained++;
    } else {
      const k = Math.floor(random() * 3) + 2;
      what = `removeWhere % ${k}`;
      const drop = (e: Entry) => e.id % k === 0;
      const kept = model.filter((e) => !drop(e));
      assert.equal(lane.removeWhere(drop), model.length - kept.length, `step ${step}: ${what}`);
      counts.removed += model.length - kept.length;
      model.length = 0;
      model.push(...kept);
    }
    assert.equal(lane.length, model.length, `step ${step} lane ${l}: ${what}`);
    if (step % 89 === 0 || model.length < 4) {
      assert.deepEqual(contents(lane), model.map(show), `step ${step} lane ${l}: ${what}`);
    }
    if (model.length > 2 * MIN_CHUNK_ENTRIES) counts.deep++;
    counts.mostLent = Math.max(counts.mostLent, pool.lent);
    // Each lane holding entries holds at least one cell or chunk; an empty one holds no cell.
    if (step % 1000 === 999) {
      const holding = models.filter((m) => m.length > 0).length;
      if (holding === 0) counts.allEmpty++;
      assert.ok(pool.lent <= holding + counts.fronts, `step ${step}: lent ${pool.lent}`);
      if (holding === 0) assert.equal(pool.lent, 0, `step ${step}: nothing held, nothing lent`);
    }
  }
  // Drain every lane: no cell stays lent, and the pool is back to one array.
  for (let l = 0; l < LANES; l++) {
    for (let e = lanes[l].shift(); e !== undefined; e = lanes[l].shift()) {
      assert.equal(show(e), show(models[l].shift()));
    }
    assert.equal(models[l].length, 0);
  }
  assert.equal(pool.lent, 0);
  assert.ok(pool.slabs <= 1);
  // And used again.
  lanes[7].pushPlain(nextId, now, 1, INT_ENTRY_COST);
  assert.equal(pool.lent, 1);
  assert.deepEqual(contents(lanes[7]), [`${nextId}@${now}=1/160:0l7`]);
  assert.ok(counts.mostLent > SLAB_CELLS, `most lent ${counts.mostLent}`);
  assert.ok(counts.drained > 100, `drained ${counts.drained}`);
  assert.ok(counts.deep > 1000, `deep ${counts.deep}`);
  assert.ok(counts.removed > 50, `removed ${counts.removed}`);
});
