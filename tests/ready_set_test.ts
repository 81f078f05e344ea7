/**
 * Tests of lib/engine/ready_set.ts: ready items served by priority (higher
 * first), then round-robin across groups within a priority, then first in,
 * first out within a group. Fixed cases (two groups alternating, priorities
 * beating groups, unshift to the front of a group and of the rotation,
 * `shift(allowed)` skipping refused groups and falling through to lower
 * priorities, removeWhere, iteration order, `grouped`, the plain queue
 * behaving as a deque) and seeded random operations compared after every step
 * with a model built on plain arrays, among them many short-lived sets that
 * hold only plain items for a while (one lane, no levels yet) before the
 * first item with a priority or a group makes the levels.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ReadySet } from "../lib/engine/ready_set.ts";
import { Deque } from "../lib/util/deque.ts";
import { seededRandom } from "./_helpers.ts";

interface Item {
  readonly id: number;
  readonly priority: number;
  readonly group: string;
}

let nextId = 0;

function item(group = "", priority = 0): Item {
  return { id: nextId++, priority, group };
}

/** The ids of `items`, for short comparisons. */
function ids(items: Iterable<Item | undefined>): (number | undefined)[] {
  return [...items].map((i) => i?.id);
}

/** Shifts until empty (or refused), returning the groups served in order. */
function drainGroups(set: ReadySet<Item>, allowed?: (group: string) => boolean): string[] {
  const out: string[] = [];
  for (let i = set.shift(allowed); i !== undefined; i = set.shift(allowed)) out.push(i.group);
  return out;
}

/** Shifts until empty, returning the items in order. */
function drain(set: ReadySet<Item>): Item[] {
  const out: Item[] = [];
  for (let i = set.shift(); i !== undefined; i = set.shift()) out.push(i);
  return out;
}

/** One priority of the model: the rotation of groups holding items, and their items. */
interface ModelLevel {
  /** Groups with items, in the order they are next served. */
  ring: string[];
  /** Items by group, front first; a group is present exactly when it is in `ring`. */
  lanes: Map<string, Item[]>;
}

/**
 * The reference model, on plain arrays. A group joins the back of its level's
 * rotation when it gets its first item by push, the front by unshift; a group
 * that gives an item goes to the back (if it still has items), one that runs
 * out leaves. `shift(allowed)` tries the groups of the highest level in
 * rotation order, each refused group going to the back; when every group of
 * a level is refused (the rotation is then back as it was) it tries the next
 * level down.
 */
class Model {
  readonly levels = new Map<number, ModelLevel>();
  length = 0;

  #level(priority: number): ModelLevel {
    let level = this.levels.get(priority);
    if (level === undefined) {
      level = { ring: [], lanes: new Map() };
      this.levels.set(priority, level);
    }
    return level;
  }

  /** Levels holding items, highest priority first. */
  #sorted(): ModelLevel[] {
    return [...this.levels.entries()].filter(([, level]) => level.ring.length > 0)
      .sort(([a], [b]) => b - a).map(([, level]) => level);
  }

  push(item: Item): void {
    const level = this.#level(item.priority);
    const lane = level.lanes.get(item.group);
    if (lane === undefined) {
      level.lanes.set(item.group, [item]);
      level.ring.push(item.group);
    } else lane.push(item);
    this.length++;
  }

  unshift(item: Item): void {
    const level = this.#level(item.priority);
    const lane = level.lanes.get(item.group);
    if (lane === undefined) {
      level.lanes.set(item.group, [item]);
      level.ring.unshift(item.group);
    } else lane.unshift(item);
    this.length++;
  }

  shift(allowed?: (group: string) => boolean): Item | undefined {
    for (const level of this.#sorted()) {
      for (let tries = level.ring.length; tries > 0; tries--) {
        const group = level.ring.shift() as string;
        if (allowed !== undefined && !allowed(group)) {
          level.ring.push(group);
          continue;
        }
        const lane = level.lanes.get(group) as Item[];
        const taken = lane.shift() as Item;
        if (lane.length > 0) level.ring.push(group);
        else level.lanes.delete(group);
        this.length--;
        return taken;
      }
    }
    return undefined;
  }

  removeWhere(drop: (item: Item) => boolean): number {
    let removed = 0;
    for (const level of this.levels.values()) {
      for (const [group, lane] of [...level.lanes]) {
        const kept = lane.filter((i) => !drop(i));
        removed += lane.length - kept.length;
        if (kept.length > 0) level.lanes.set(group, kept);
        else level.lanes.delete(group);
      }
      level.ring = level.ring.filter((group) => level.lanes.has(group));
    }
    this.length -= removed;
    return removed;
  }

  /** The order of service absent changes: priorities descending, groups interleaved. */
  order(): Item[] {
    const out: Item[] = [];
    for (const level of this.#sorted()) {
      const lanes = level.ring.map((group) => level.lanes.get(group) as Item[]);
      const longest = Math.max(...lanes.map((lane) => lane.length));
      for (let round = 0; round < longest; round++) {
        for (const lane of lanes) if (round < lane.length) out.push(lane[round]);
      }
    }
    return out;
  }

  get grouped(): boolean {
    for (const level of this.levels.values()) {
      for (const group of level.lanes.keys()) if (group !== "") return true;
    }
    return false;
  }
}

Deno.test("ready set: the module's example", () => {
  const ready = new ReadySet<{ id: number; priority: number; group: string }>();
  ready.push({ id: 1, priority: 0, group: "a" });
  ready.push({ id: 2, priority: 0, group: "a" });
  ready.push({ id: 3, priority: 0, group: "b" });
  ready.push({ id: 4, priority: 5, group: "" });
  assert.deepEqual([ready.shift()?.id, ready.shift()?.id, ready.shift()?.id], [4, 1, 3]);
  assert.equal(ready.shift()?.id, 2);
  assert.equal(ready.shift(), undefined);
});

Deno.test("ready set: empty", () => {
  const set = new ReadySet<Item>();
  assert.equal(set.length, 0);
  assert.equal(set.grouped, false);
  assert.equal(set.shift(), undefined);
  assert.equal(set.shift(() => true), undefined);
  assert.equal(set.removeWhere(() => true), 0);
  assert.deepEqual([...set], []);
});

Deno.test("ready set: one group is first in, first out", () => {
  const set = new ReadySet<Item>();
  const items = Array.from({ length: 40 }, () => item("g"));
  for (const i of items) set.push(i);
  assert.equal(set.length, 40);
  assert.equal(set.grouped, true);
  assert.deepEqual([...set], items);
  assert.deepEqual(drain(set), items);
  assert.equal(set.length, 0);
  assert.equal(set.grouped, false);
});

Deno.test("ready set: two groups of 50 and 5 alternate, the 5 within the first 10", () => {
  const set = new ReadySet<Item>();
  const big = Array.from({ length: 50 }, () => item("big"));
  const small = Array.from({ length: 5 }, () => item("small"));
  for (const i of big) set.push(i);
  for (const i of small) set.push(i);
  const expected = [
    ...Array.from({ length: 5 }, (_, k) => [big[k], small[k]]).flat(),
    ...big.slice(5),
  ];
  assert.deepEqual([...set], expected);
  const served = drain(set);
  assert.deepEqual(served, expected);
  assert.deepEqual(served.slice(0, 10).map((i) => i.group), [
    "big",
    "small",
    "big",
    "small",
    "big",
    "small",
    "big",
    "small",
    "big",
    "small",
  ]);
});

Deno.test("ready set: items without a group take their turn like a group", () => {
  const set = new ReadySet<Item>();
  for (let k = 0; k < 3; k++) set.push(item(""));
  for (let k = 0; k < 3; k++) set.push(item("a"));
  for (let k = 0; k < 3; k++) set.push(item("b"));
  assert.deepEqual(drainGroups(set), ["", "a", "b", "", "a", "b", "", "a", "b"]);
});

Deno.test("ready set: a higher priority beats every group; each level keeps its own rotation", () => {
  const set = new ReadySet<Item>();
  for (let k = 0; k < 3; k++) set.push(item("a")), set.push(item("b"));
  assert.equal(set.shift()?.group, "a"); // level 0 rotation is now b, a
  const urgent = [item("a", 5), item("c", 5), item("a", 5)];
  for (const i of urgent) set.push(i);
  const low = item("", -2);
  set.push(low);
  assert.deepEqual(ids([set.shift(), set.shift(), set.shift()]), ids(urgent));
  // Back at priority 0 where it was: b's turn.
  assert.deepEqual(drainGroups(set).slice(0, 5), ["b", "a", "b", "a", "b"]);
  assert.equal(set.length, 0);
  assert.equal(set.shift(), undefined);

  // Negative and large priorities, pushed in any order.
  const order = [3, -7, 0, 1000, -1000, 42, 0, -1];
  for (const p of order) set.push(item(p % 2 === 0 ? "even" : "odd", p));
  assert.deepEqual(drain(set).map((i) => i.priority), [1000, 42, 3, 0, 0, -1, -7, -1000]);
});

Deno.test("ready set: unshift puts an item at the front of its group, a new group at the front", () => {
  const set = new ReadySet<Item>();
  const a1 = item("a"), a2 = item("a"), b1 = item("b"), c1 = item("c"), a0 = item("a");
  set.push(a1);
  set.push(a2);
  set.push(b1);
  set.unshift(a0); // a keeps its place in the rotation, a0 goes before a1
  assert.deepEqual([...set], [a0, b1, a1, a2]);
  set.unshift(c1); // c had no items: it goes to the front of the rotation
  assert.deepEqual([...set], [c1, a0, b1, a1, a2]);
  assert.deepEqual(drain(set), [c1, a0, b1, a1, a2]);

  // A taken item given back is served next among its priority and group.
  for (let k = 0; k < 4; k++) set.push(item("x")), set.push(item("y"));
  const taken = set.shift() as Item; // x; rotation is now y, x
  assert.equal(taken.group, "x");
  set.unshift(taken);
  assert.deepEqual(drainGroups(set), ["y", "x", "y", "x", "y", "x", "y", "x"]);
  // Unshift into a level that does not exist yet.
  const hi = item("x", 9);
  set.push(item("x"));
  set.unshift(hi);
  assert.equal(set.shift(), hi);
});

Deno.test("ready set: shift(allowed) skips refused groups, which go to the back", () => {
  const set = new ReadySet<Item>();
  for (const g of ["a", "b", "c", "d"]) for (let k = 0; k < 3; k++) set.push(item(g));
  const calls: string[] = [];
  const notAB = (g: string) => (calls.push(g), g !== "a" && g !== "b");
  const got = set.shift(notAB);
  assert.equal(got?.group, "c");
  assert.deepEqual(calls, ["a", "b", "c"]);
  // a and b kept their items; the rotation went a, b, c, d → d, a, b, c.
  assert.equal(set.length, 11);
  assert.deepEqual(drainGroups(set).slice(0, 4), ["d", "a", "b", "c"]);
});

Deno.test("ready set: shift(allowed) falls through to lower priorities, undefined when all refused", () => {
  const set = new ReadySet<Item>();
  const hiA = item("a", 5), hiB = item("b", 5), hiHome = item("", 5);
  set.push(hiA);
  set.push(hiB);
  set.push(hiHome);
  const lowA = item("a", 0), lowC = item("c", 0), lowD = item("d", -3);
  set.push(lowA);
  set.push(lowC);
  set.push(lowD);
  const none = () => false;
  assert.equal(set.shift(none), undefined);
  assert.equal(set.length, 6);
  // Every group of priority 5 refused: its rotation is unchanged.
  assert.deepEqual([...set], [hiA, hiB, hiHome, lowA, lowC, lowD]);

  const onlyC = (g: string) => g === "c";
  assert.equal(set.shift(onlyC), lowC);
  assert.equal(set.shift(onlyC), undefined);
  const onlyD = (g: string) => g === "d";
  assert.equal(set.shift(onlyD), lowD);
  const onlyHome = (g: string) => g === "";
  assert.equal(set.shift(onlyHome), hiHome);
  assert.deepEqual([...set], [hiA, hiB, lowA]);
  assert.equal(set.shift((g) => g === "b"), hiB);
  assert.equal(set.shift((g) => g === "b"), undefined);
  assert.equal(set.shift(), hiA);
  assert.equal(set.shift(none), undefined);
  assert.equal(set.shift(), lowA);
  assert.equal(set.length, 0);
});

Deno.test("ready set: removeWhere drops matches, keeps the order and the rotation", () => {
  const set = new ReadySet<Item>();
  const all: Item[] = [];
  for (const p of [3, 0, -1]) {
    for (const g of ["", "a", "b"]) {
      for (let k = 0; k < 4; k++) {
        const i = item(g, p);
        set.push(i);
        all.push(i);
      }
    }
  }
  assert.equal(set.shift()?.group, ""); // rotation at 3 is now a, b, ""
  const before = [...set];
  const drop = (i: Item) => i.id % 3 === 0;
  const expected = before.filter((i) => !drop(i));
  assert.equal(set.removeWhere(drop), before.length - expected.length);
  assert.equal(set.length, expected.length);
  // Within each priority and group the order is kept, and so is each level's rotation (the
  // order in which groups first appear); the interleaving itself changes with the lanes' lengths.
  const after = [...set];
  const key = (i: Item) => `${i.priority}/${i.group}`;
  const rotation = (items: Item[]) => [...new Set(items.map(key))];
  assert.deepEqual(rotation(after), rotation(before));
  for (const k of rotation(before)) {
    assert.deepEqual(after.filter((i) => key(i) === k), expected.filter((i) => key(i) === k));
  }
  assert.deepEqual(rotation(after).slice(0, 3), ["3/a", "3/b", "3/"]);

  // Emptying a group takes it out of the rotation; pushed again, it joins at the back.
  const threeA = (i: Item) => i.priority === 3 && i.group === "a";
  const present = after.filter(threeA).length;
  assert.ok(present > 0);
  assert.equal(set.removeWhere(threeA), present);
  set.push(item("a", 3));
  assert.deepEqual(drainGroups(set).slice(0, 4), ["b", "", "a", "b"]);

  // Emptying a whole level, and everything.
  set.push(item("z", 8));
  assert.equal(set.removeWhere((i) => i.priority === 8), 1);
  assert.equal(set.grouped, false);
  set.push(item("", 8));
  set.push(item("", -8));
  assert.equal(set.removeWhere(() => true), 2);
  assert.equal(set.length, 0);
  assert.deepEqual([...set], []);
  assert.equal(set.shift(), undefined);
  set.push(all[0]);
  assert.equal(set.shift(), all[0]);
});

Deno.test("ready set: iteration is the order of service", () => {
  const set = new ReadySet<Item>();
  const random = seededRandom(7);
  for (let k = 0; k < 300; k++) {
    const i = item(["", "a", "b", "c"][Math.floor(random() * 4)], Math.floor(random() * 3) - 1);
    if (random() < 0.2) set.unshift(i);
    else set.push(i);
  }
  const listed = [...set];
  assert.equal(listed.length, 300);
  assert.deepEqual(drain(set), listed);
});

Deno.test("ready set: grouped says whether some item has a group", () => {
  const set = new ReadySet<Item>();
  set.push(item(""));
  set.push(item("", 4));
  assert.equal(set.grouped, false);
  const g = item("g", -2);
  set.push(g);
  assert.equal(set.grouped, true);
  set.shift();
  set.shift();
  assert.equal(set.grouped, true);
  assert.equal(set.shift(), g);
  assert.equal(set.grouped, false);
  set.unshift(item("h", 1));
  assert.equal(set.grouped, true);
  set.removeWhere((i) => i.group === "h");
  assert.equal(set.grouped, false);
  // Many groups come and go.
  for (let k = 0; k < 1000; k++) set.push(item(`g${k}`, k % 3));
  assert.equal(set.grouped, true);
  assert.equal(drain(set).length, 1000);
  assert.equal(set.grouped, false);
});

Deno.test("ready set: without groups or priorities it is exactly a deque", () => {
  const random = seededRandom(99);
  const set = new ReadySet<Item>();
  const deque = new Deque<Item>();
  for (let step = 0; step < 5000; step++) {
    const r = random();
    if (r < 0.4) {
      const i = item();
      set.push(i);
      deque.push(i);
    } else if (r < 0.55) {
      const i = item();
      set.unshift(i);
      deque.unshift(i);
    } else if (r < 0.97) {
      const allowed = random() < 0.2 ? () => true : undefined;
      assert.equal(set.shift(allowed), deque.shift());
    } else {
      const k = Math.floor(random() * 5) + 2;
      const drop = (i: Item) => i.id % k === 0;
      assert.equal(set.removeWhere(drop), deque.removeWhere(drop));
    }
    assert.equal(set.length, deque.length);
    assert.equal(set.grouped, false);
    if (step % 50 === 0) assert.deepEqual([...set], [...deque]);
  }
  assert.deepEqual(drain(set), [...deque]);
});

Deno.test("ready set: random operations agree with the array model", () => {
  const random = seededRandom(20240613);
  const set = new ReadySet<Item>();
  const model = new Model();
  const priorities = [0, 0, 0, 2, 5, -1, -4];
  const groups = ["", "", "a", "b", "c", "d", "e"];
  const pick = <V>(from: readonly V[]) => from[Math.floor(random() * from.length)];
  /** Items taken earlier, to give back with unshift (as a nack would). */
  const taken: Item[] = [];
  const take = (got: Item | undefined) => {
    if (got !== undefined && taken.length < 64) taken.push(got);
  };
  const counts = { shifted: 0, refused: 0, removed: 0, empty: 0 };
  for (let step = 0; step < 20_000; step++) {
    // Phases that fill the set up and drain it back to empty.
    const pushBias = Math.floor(step / 400) % 2 === 0 ? 0.6 : 0.25;
    const r = random();
    let what: string;
    if (r < pushBias) {
      const i = item(pick(groups), pick(priorities));
      what = `push ${JSON.stringify(i)}`;
      set.push(i);
      model.push(i);
    } else if (r < pushBias + 0.1) {
      const i = taken.length > 0 && random() < 0.7
        ? taken.splice(Math.floor(random() * taken.length), 1)[0]
        : item(pick(groups), pick(priorities));
      what = `unshift ${JSON.stringify(i)}`;
      set.unshift(i);
      model.unshift(i);
    } else if (r < 0.97) {
      let allowed: ((group: string) => boolean) | undefined;
      if (random() < 0.5) {
        const refused = new Set(groups.filter(() => random() < 0.4));
        allowed = (group) => !refused.has(group);
        what = `shift refusing ${JSON.stringify([...refused])}`;
      } else what = "shift";
      const expected = model.shift(allowed);
      const got = set.shift(allowed);
      assert.equal(got, expected, `step ${step}: ${what}`);
      if (got !== undefined) counts.shifted++;
      else if (set.length > 0) counts.refused++;
      take(got);
    } else {
      const k = Math.floor(random() * 4) + 2;
      const j = Math.floor(random() * k);
      const group = pick(groups);
      const drop = random() < 0.5
        ? (i: Item) => i.id % k === j
        : (i: Item) => i.group === group && i.id % 2 === j % 2;
      what = "removeWhere";
      const n = model.removeWhere(drop);
      assert.equal(set.removeWhere(drop), n, `step ${step}: ${what}`);
      counts.removed += n;
    }
    assert.equal(set.length, model.length, `step ${step}: ${what}`);
    assert.equal(set.grouped, model.grouped, `step ${step}: ${what}`);
    const actual = ids(set).join(",");
    const wanted = ids(model.order()).join(",");
    if (actual !== wanted) assert.deepEqual(ids(set), ids(model.order()), `step ${step}: ${what}`);
    if (set.length === 0) counts.empty++;
  }
  // The run did exercise what it claims to.
  assert.ok(counts.shifted > 5000, `shifted ${counts.shifted}`);
  assert.ok(counts.refused > 100, `refused ${counts.refused}`);
  assert.ok(counts.removed > 100, `removed ${counts.removed}`);
  assert.ok(counts.empty > 20, `empty ${counts.empty}`);
  assert.deepEqual(drain(set), model.order());
});

Deno.test("ready set: plain items first, then priorities and groups, agree with the model", () => {
  // The set keeps plain items in one lane until the first item with a priority or a group;
  // each round starts a new set, holds plain items for a while (some unshifted, shifted with
  // allowed() refusing the empty group, removed), then mixes in the others.
  const random = seededRandom(151515);
  const priorities = [0, 0, 3, -2];
  const groups = ["", "", "a", "b"];
  const pick = <V>(from: readonly V[]) => from[Math.floor(random() * from.length)];
  const counts = { madeWithItems: 0, refusedPlain: 0, removedPlain: 0, mixedShifts: 0 };
  for (let round = 0; round < 300; round++) {
    const set = new ReadySet<Item>();
    const model = new Model();
    const plainSteps = Math.floor(random() * 40);
    let mixed = false;
    for (let step = 0; step < plainSteps + 40; step++) {
      const plain = step < plainSteps;
      const r = random();
      let what: string;
      if (r < 0.45) {
        const i = plain ? item() : item(pick(groups), pick(priorities));
        if (!mixed && (i.priority !== 0 || i.group !== "")) {
          mixed = true;
          if (set.length > 0) counts.madeWithItems++;
        }
        what = `push ${JSON.stringify(i)}`;
        set.push(i);
        model.push(i);
      } else if (r < 0.6) {
        const i = item();
        what = `unshift ${JSON.stringify(i)}`;
        set.unshift(i);
        model.unshift(i);
      } else if (r < 0.93) {
        const refuse = random() < 0.25 ? pick(groups) : undefined;
        const allowed = refuse === undefined ? undefined : (group: string) => group !== refuse;
        what = `shift refusing ${JSON.stringify(refuse)}`;
        const expected = model.shift(allowed);
        assert.equal(set.shift(allowed), expected, `round ${round} step ${step}: ${what}`);
        if (!mixed && refuse === "" && model.length > 0) counts.refusedPlain++;
        if (mixed && expected !== undefined) counts.mixedShifts++;
      } else {
        const k = Math.floor(random() * 3) + 2;
        what = `removeWhere % ${k}`;
        const drop = (i: Item) => i.id % k === 0;
        const n = model.removeWhere(drop);
        assert.equal(set.removeWhere(drop), n, `round ${round} step ${step}: ${what}`);
        if (!mixed) counts.removedPlain += n;
      }
      assert.equal(set.length, model.length, `round ${round} step ${step}: ${what}`);
      assert.equal(set.grouped, model.grouped, `round ${round} step ${step}: ${what}`);
      assert.deepEqual(ids(set), ids(model.order()), `round ${round} step ${step}: ${what}`);
    }
    assert.deepEqual(drain(set), model.order());
  }
  assert.ok(counts.madeWithItems > 100, `levels made with items ${counts.madeWithItems}`);
  assert.ok(counts.refusedPlain > 50, `plain shifts refused ${counts.refusedPlain}`);
  assert.ok(counts.removedPlain > 50, `plain items removed ${counts.removedPlain}`);
  assert.ok(counts.mixedShifts > 1000, `mixed shifts ${counts.mixedShifts}`);
});
