/**
 * A queue's ready items in the order they are served: by priority (higher
 * first), then round-robin across groups within that priority, then first
 * in, first out within a group.
 *
 * A queue whose items have no priority and no group holds them in one lane
 * and nothing else: every operation is then a deque operation and nothing
 * more, so the plain workload pays nothing for priorities and groups, and a
 * new set costs its lane and nothing else (an engine may hold thousands of
 * queues with a few items each). The first item with a priority or a group makes
 * the levels, that lane becoming the default priority's lane of items
 * without a group. Lanes and levels (but the default one) exist only while
 * they hold items, so a queue that saw a million groups keeps only those
 * that still have ready items.
 *
 * Made with a `make` function, the default priority's lane of items without
 * a group is a {@link CompactLane}: plain items added with
 * {@link ReadySet.pushPlain} are kept there as compact entries (no object
 * each) and made into items by `make` when taken or looked at.
 *
 * @example
 * ```ts
 * import { ReadySet } from "./ready_set.ts";
 * const ready = new ReadySet<{ id: number; priority: number; group: string }>();
 * ready.push({ id: 1, priority: 0, group: "a" });
 * ready.push({ id: 2, priority: 0, group: "a" });
 * ready.push({ id: 3, priority: 0, group: "b" });
 * ready.push({ id: 4, priority: 5, group: "" });
 * console.log([ready.shift()?.id, ready.shift()?.id, ready.shift()?.id]); // [4, 1, 3]
 * ```
 *
 * @module
 */

import { Deque } from "../util/deque.ts";
import { type ChunkPool, CompactLane, type MakeItem } from "./compact_lane.ts";

/** The priority whose level is always kept: the default one. */
const DEFAULT_LEVEL = 0;

/** What the set needs of an item. */
export interface Ranked {
  /** Higher is served first. */
  readonly priority: number;
  /** Its group; the empty string for items without one. */
  readonly group: string;
}

/** What a lane keeps its items in: a deque, or a {@link CompactLane}. */
interface LaneItems<T> extends Iterable<T> {
  readonly length: number;
  push(item: T): void;
  unshift(item: T): void;
  shift(): T | undefined;
  removeWhere(drop: (item: T) => boolean): number;
}

/** The items of one group within one priority. */
class Lane<T> {
  /** Whether it is in its level's rotation (exactly when it holds items). */
  inRing = false;
  constructor(readonly group: string, readonly items: LaneItems<T> = new Deque()) {}
}

/** The items of one priority: lanes by group, and the rotation of those that hold items. */
class Level<T> {
  /** The lane of items without a group: kept while the level lives. */
  readonly home: Lane<T>;
  /** The other lanes that hold items, by group (made with the first). */
  lanes: Map<string, Lane<T>> | undefined = undefined;
  /** Lanes with items, in the order they are next served. */
  readonly ring: Deque<Lane<T>> = new Deque();
  length = 0;
  constructor(readonly priority: number, home: LaneItems<T> = new Deque()) {
    this.home = new Lane("", home);
  }

  lane(group: string): Lane<T> {
    if (group === "") return this.home;
    const lanes = this.lanes ??= new Map();
    let lane = lanes.get(group);
    if (lane === undefined) {
      lane = new Lane(group);
      lanes.set(group, lane);
    }
    return lane;
  }

  /** A lane ran out of items: it leaves the rotation (and the map, unless it is the home lane). */
  emptied(lane: Lane<T>): void {
    lane.inRing = false;
    if (lane !== this.home) this.lanes?.delete(lane.group);
  }
}

/** Ready items served by priority, then round-robin across groups, then FIFO. */
export class ReadySet<T extends Ranked> implements Iterable<T> {
  /**
   * The items of the default priority without a group: every item, until
   * the levels are made.
   */
  readonly #home: LaneItems<T>;
  /** The same lane, when it keeps plain items compact (made with `make`). */
  readonly #plain: CompactLane<T> | undefined;
  /**
   * Levels, highest priority first: those that hold items, and always the
   * default priority's (so a queue that keeps draining allocates nothing).
   * Made with the first item that has a priority or a group.
   */
  #levels: Level<T>[] | undefined = undefined;
  #length = 0;

  /**
   * An empty set. With `make`, plain items (default priority, no group) may
   * be added as compact entries ({@link pushPlain}), which `make` turns into
   * items when they are taken or looked at (told `tag` too: see
   * {@link MakeItem}); their lane takes its first words from `pool`, if
   * given (see {@link ChunkPool}).
   */
  constructor(make?: MakeItem<T>, tag = "", pool?: ChunkPool) {
    if (make === undefined) {
      this.#plain = undefined;
      this.#home = new Deque();
    } else {
      this.#plain = new CompactLane(make, tag, pool);
      this.#home = this.#plain;
    }
  }

  /** How many items it holds. */
  get length(): number {
    return this.#length;
  }

  /** Whether some item has a group (so per-group limits may apply). */
  get grouped(): boolean {
    for (const level of this.#levels ?? []) {
      if (level.lanes !== undefined && level.lanes.size > 0) return true;
    }
    return false;
  }

  /** Adds `item` at the back of its priority and group. */
  push(item: T): void {
    if (this.#levels === undefined) {
      if (item.priority === DEFAULT_LEVEL && item.group === "") {
        this.#home.push(item);
        this.#length++;
        return;
      }
      this.#makeLevels();
    }
    const level = this.#level(item.priority);
    const lane = level.lane(item.group);
    lane.items.push(item);
    if (!lane.inRing) {
      lane.inRing = true;
      level.ring.push(lane);
    }
    level.length++;
    this.#length++;
  }

  /**
   * Adds a plain item (default priority, no group) at the back of its lane,
   * as a compact entry: its id, creation time, value and cost, no object
   * (see {@link CompactLane}). Only for a set made with `make`.
   */
  pushPlain(id: number, createdAt: number, value: unknown, cost: number): void {
    const plain = this.#plain as CompactLane<T>;
    if (this.#levels === undefined) {
      plain.pushPlain(id, createdAt, value, cost);
      this.#length++;
      return;
    }
    const level = this.#level(DEFAULT_LEVEL);
    const lane = level.home;
    plain.pushPlain(id, createdAt, value, cost);
    if (!lane.inRing) {
      lane.inRing = true;
      level.ring.push(lane);
    }
    level.length++;
    this.#length++;
  }

  /** Puts `item` back at the front of its priority and group (served next among them). */
  unshift(item: T): void {
    if (this.#levels === undefined) {
      if (item.priority === DEFAULT_LEVEL && item.group === "") {
        this.#home.unshift(item);
        this.#length++;
        return;
      }
      this.#makeLevels();
    }
    const level = this.#level(item.priority);
    const lane = level.lane(item.group);
    lane.items.unshift(item);
    if (!lane.inRing) {
      lane.inRing = true;
      level.ring.unshift(lane);
    }
    level.length++;
    this.#length++;
  }

  /**
   * Takes the next item: from the highest priority that has one a group may
   * give, the group whose turn it is (which then goes to the back of the
   * rotation). `allowed`, when given, says whether a group may give an item
   * now (a per-group limit); groups it refuses keep their items and go to
   * the back of the rotation. Returns `undefined` when no item may be taken.
   */
  shift(allowed?: (group: string) => boolean): T | undefined {
    const levels = this.#levels;
    if (levels === undefined) {
      // Only items without priority or group, all in one lane.
      if (this.#length === 0 || (allowed !== undefined && !allowed(""))) return undefined;
      this.#length--;
      return this.#home.shift();
    }
    if (levels.length === 1 && levels[0].ring.length === 1) {
      // One priority, one group (the plain queue): no rotation to keep.
      const level = levels[0];
      const lane = level.ring.peek() as Lane<T>;
      if (allowed !== undefined && !allowed(lane.group)) return undefined;
      const item = lane.items.shift() as T;
      if (lane.items.length === 0) {
        level.ring.shift();
        level.emptied(lane);
      }
      level.length--;
      this.#length--;
      return item;
    }
    for (let l = 0; l < levels.length; l++) {
      const level = levels[l];
      const ring = level.ring;
      for (let tries = ring.length; tries > 0; tries--) {
        const lane = ring.shift() as Lane<T>;
        if (allowed !== undefined && !allowed(lane.group)) {
          ring.push(lane);
          continue;
        }
        const item = lane.items.shift() as T;
        if (lane.items.length > 0) ring.push(lane);
        else level.emptied(lane);
        level.length--;
        this.#length--;
        this.#drop(l);
        return item;
      }
    }
    return undefined;
  }

  /**
   * Removes every item `drop` says so of; returns how many went. Lanes and
   * levels left empty are forgotten; the rotation keeps its order.
   */
  removeWhere(drop: (item: T) => boolean): number {
    const levels = this.#levels;
    if (levels === undefined) {
      const gone = this.#home.removeWhere(drop);
      this.#length -= gone;
      return gone;
    }
    let removed = 0;
    for (let l = levels.length - 1; l >= 0; l--) {
      const level = levels[l];
      let emptied = false;
      for (const lane of [level.home, ...level.lanes?.values() ?? []]) {
        const gone = lane.items.removeWhere(drop);
        if (gone === 0) continue;
        removed += gone;
        level.length -= gone;
        if (lane.items.length === 0) {
          level.emptied(lane);
          emptied = true;
        }
      }
      if (emptied) level.ring.removeWhere((lane) => !lane.inRing);
      this.#drop(l);
    }
    this.#length -= removed;
    return removed;
  }

  /**
   * The items in the order they would be served if nothing changed and no
   * group were held back: each priority in turn, its groups interleaved in
   * rotation order.
   */
  *[Symbol.iterator](): Iterator<T> {
    if (this.#levels === undefined) {
      yield* this.#home;
      return;
    }
    for (const level of this.#levels) {
      const lanes = [...level.ring];
      if (lanes.length === 0) continue;
      if (lanes.length === 1) {
        yield* lanes[0].items;
        continue;
      }
      const iterators = lanes.map((lane) => lane.items[Symbol.iterator]());
      let live = iterators.length;
      while (live > 0) {
        live = 0;
        for (let i = 0; i < iterators.length; i++) {
          const next = iterators[i].next();
          if (next.done) continue;
          live++;
          yield next.value;
        }
      }
    }
  }

  /**
   * Makes the levels for the first item with a priority or a group: the
   * default one, whose lane of items without a group is the one that held
   * every item so far (in the rotation if it holds any).
   */
  #makeLevels(): void {
    const level = new Level<T>(DEFAULT_LEVEL, this.#home);
    if (this.#length > 0) {
      level.home.inRing = true;
      level.ring.push(level.home);
      level.length = this.#length;
    }
    this.#levels = [level];
  }

  /** Forgets level `l` if it is empty and not the default priority's. */
  #drop(l: number): void {
    const levels = this.#levels as Level<T>[];
    const level = levels[l];
    if (level.length === 0 && level.priority !== DEFAULT_LEVEL) levels.splice(l, 1);
  }

  /** The level of `priority`, created in its place when absent (the levels are made). */
  #level(priority: number): Level<T> {
    const levels = this.#levels as Level<T>[];
    // Nearly always the one default level: check that before searching.
    if (levels.length === 1 && levels[0].priority === priority) return levels[0];
    let lo = 0;
    let hi = levels.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const p = levels[mid].priority;
      if (p === priority) return levels[mid];
      if (p > priority) lo = mid + 1;
      else hi = mid;
    }
    const level = new Level<T>(priority);
    levels.splice(lo, 0, level);
    return level;
  }
}
