/**
 * A first-in, first-out lane of ready items that keeps plain items compact.
 *
 * Most queued items are fresh puts: an id, a creation time, a value and a
 * cost estimate, nothing else. Held as objects they take some 130–170 bytes
 * each; here such an entry takes 20 bytes (a slot holding its value, and its
 * id, creation time and cost as 32-bit offsets in a typed array shared by a
 * chunk of entries), and one whose value is a small integer of the usual
 * cost ({@link INT_ENTRY_COST}) 12 bytes (the integer in the typed array
 * in place of the cost, no slot: a chunk of such entries has no slots at
 * all). The object is made
 * ({@link MakeItem}) only when the entry leaves the lane or is looked at.
 * Items that are not plain (attempted, prioritized, keyed…) are kept as the
 * objects they are, in the same order, in the same slots: an entry is one or
 * the other.
 *
 * Entries live in chunks of parallel arrays. A chunk's capacity doubles
 * from {@link MIN_CHUNK_ENTRIES} up to {@link MAX_CHUNK_ENTRIES} as the lane
 * grows, so that a queue holding a few items costs little, and a lane that
 * keeps draining reuses its one chunk and allocates nothing.
 *
 * @example
 * ```ts
 * import { CompactLane } from "./compact_lane.ts";
 * const lane = new CompactLane((id, createdAt, value, cost) => ({ id, createdAt, value, cost }));
 * lane.pushPlain(1, 1000, "a", 160);
 * lane.push({ id: 2, createdAt: 1001, value: "b", cost: 160 });
 * console.log(lane.length, lane.shift()?.value, lane.shift()?.value); // 2 a b
 * ```
 *
 * @module
 */

import { Deque } from "../util/deque.ts";
import { ITEM_OVERHEAD_BYTES } from "./item_cost.ts";

/** Entries of a lane's first chunk (and of a chunk added at its front). */
export const MIN_CHUNK_ENTRIES = 8;

/** Entries of a lane's largest chunks. */
export const MAX_CHUNK_ENTRIES = 4096;

/** Int32 words per entry in a chunk's `meta`: id word, time offset, cost (or integer value). */
const META_WORDS = 3;

/**
 * An id word that marks an entry held as an object (its slot holds the
 * object). Other entries' id words are their id's offset from the chunk's
 * base (ids only grow along a lane's compact entries, so offsets are never
 * negative), bitwise negated (so negative) for an integer entry.
 */
const OBJECT_ENTRY = -0x80000000;

/** Largest id offset a compact entry takes (its negation must not be {@link OBJECT_ENTRY}). */
const MAX_ID_OFFSET = 0x7ffffffe;

/** The cost of an entry kept as an integer entry: that of an item whose value is a number. */
export const INT_ENTRY_COST = ITEM_OVERHEAD_BYTES;

/** Makes the object of a plain entry, from its id, creation time, value and cost. */
export type MakeItem<T> = (id: number, createdAt: number, value: unknown, cost: number) => T;

/** Entries `head` to `tail` (exclusive) of parallel arrays. */
class Chunk {
  /**
   * Each entry's value, or the object of an entry held as one; allocated
   * with the first entry that is not an integer entry.
   */
  values: unknown[] | undefined = undefined;
  /** Per entry: its id word ({@link OBJECT_ENTRY}), createdAt − {@link timeBase}, cost or integer value. */
  readonly meta: Int32Array;
  head: number;
  tail: number;
  /** What ids are offsets from; set when an entry goes into the empty chunk. */
  idBase = 0;
  /** What creation times are offsets from (engine clock, ms). */
  timeBase = 0;

  constructor(readonly capacity: number, atEnd: boolean) {
    this.meta = new Int32Array(capacity * META_WORDS);
    this.head = this.tail = atEnd ? capacity : 0;
  }
}

/** Whether `n` is an integer that fits an Int32 offset (and is not the object mark). */
function fits(n: number): boolean {
  return (n | 0) === n && n !== OBJECT_ENTRY;
}

/** The slots of `chunk`, allocated on first use. */
function slots(chunk: Chunk): unknown[] {
  return chunk.values ??= new Array(chunk.capacity).fill(undefined);
}

/** A FIFO of items, plain ones kept as compact entries (see the module doc). */
export class CompactLane<T> implements Iterable<T> {
  readonly #make: MakeItem<T>;
  /** The chunks, front first; never empty. */
  readonly #chunks: Deque<Chunk> = new Deque();
  /** The back chunk. */
  #last: Chunk;
  #length = 0;

  /** An empty lane; `make` turns a plain entry into its object when it leaves or is looked at. */
  constructor(make: MakeItem<T>) {
    this.#make = make;
    this.#last = new Chunk(MIN_CHUNK_ENTRIES, false);
    this.#chunks.push(this.#last);
  }

  /** How many entries it holds. */
  get length(): number {
    return this.#length;
  }

  /** Adds a plain item at the back, as a compact entry when its numbers fit one. */
  pushPlain(id: number, createdAt: number, value: unknown, cost: number): void {
    let chunk = this.#last;
    if (chunk.tail === chunk.capacity) chunk = this.#grow();
    const at = chunk.tail;
    if (chunk.head === at) {
      chunk.idBase = id;
      chunk.timeBase = createdAt;
    }
    const idOffset = id - chunk.idBase;
    const timeOffset = createdAt - chunk.timeBase;
    const m = at * META_WORDS;
    if (idOffset >= 0 && idOffset <= MAX_ID_OFFSET && fits(idOffset) && fits(timeOffset)) {
      const meta = chunk.meta;
      meta[m + 1] = timeOffset;
      if (
        cost === INT_ENTRY_COST && typeof value === "number" && (value | 0) === value &&
        !Object.is(value, -0)
      ) {
        meta[m] = ~idOffset;
        meta[m + 2] = value;
      } else if (fits(cost)) {
        meta[m] = idOffset;
        meta[m + 2] = cost;
        slots(chunk)[at] = value;
      } else {
        meta[m] = OBJECT_ENTRY;
        slots(chunk)[at] = this.#make(id, createdAt, value, cost);
      }
    } else {
      chunk.meta[m] = OBJECT_ENTRY;
      slots(chunk)[at] = this.#make(id, createdAt, value, cost);
    }
    chunk.tail = at + 1;
    this.#length++;
  }

  /** Adds `item` at the back, as the object it is. */
  push(item: T): void {
    let chunk = this.#last;
    if (chunk.tail === chunk.capacity) chunk = this.#grow();
    const at = chunk.tail;
    chunk.meta[at * META_WORDS] = OBJECT_ENTRY;
    slots(chunk)[at] = item;
    chunk.tail = at + 1;
    this.#length++;
  }

  /** Puts `item` at the front (served next), as the object it is. */
  unshift(item: T): void {
    let chunk = this.#chunks.peek() as Chunk;
    if (chunk.head === 0) {
      if (chunk.tail === 0) {
        // The lane is empty (its one chunk reset): start it at its end.
        chunk.head = chunk.tail = chunk.capacity;
      } else {
        chunk = new Chunk(MIN_CHUNK_ENTRIES, true);
        this.#chunks.unshift(chunk);
      }
    }
    const at = chunk.head - 1;
    chunk.meta[at * META_WORDS] = OBJECT_ENTRY;
    slots(chunk)[at] = item;
    chunk.head = at;
    this.#length++;
  }

  /** Takes the front item (made into its object if it was a compact entry). */
  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const chunks = this.#chunks;
    let chunk = chunks.peek() as Chunk;
    if (chunk.head === chunk.tail) {
      // Only a front chunk left empty by an unshift's neighbour can be: drop it.
      chunks.shift();
      chunk = chunks.peek() as Chunk;
    }
    const at = chunk.head;
    const values = chunk.values;
    let value: unknown = undefined;
    if (values !== undefined) {
      value = values[at];
      values[at] = undefined;
    }
    chunk.head = at + 1;
    this.#length--;
    const item = this.#entry(chunk, at, value);
    if (chunk.head === chunk.tail) this.#emptied(chunk);
    return item;
  }

  /**
   * Removes every item `drop` says so of (each compact entry is made into
   * its object to be asked); returns how many went. The others keep their
   * order and their form.
   */
  removeWhere(drop: (item: T) => boolean): number {
    if (this.#length === 0) return 0;
    const old = [...this.#chunks];
    this.#chunks.removeWhere(() => true);
    this.#last = new Chunk(MIN_CHUNK_ENTRIES, false);
    this.#chunks.push(this.#last);
    const before = this.#length;
    this.#length = 0;
    for (const chunk of old) {
      for (let at = chunk.head; at < chunk.tail; at++) {
        const item = this.#entry(chunk, at, chunk.values?.[at]);
        if (drop(item)) continue;
        if (chunk.meta[at * META_WORDS] === OBJECT_ENTRY) this.push(item);
        else this.#again(chunk, at);
      }
    }
    return before - this.#length;
  }

  /** The items front first (compact entries made into objects, which are copies: not held). */
  *[Symbol.iterator](): Iterator<T> {
    for (const chunk of this.#chunks) {
      for (let at = chunk.head; at < chunk.tail; at++) {
        yield this.#entry(chunk, at, chunk.values?.[at]);
      }
    }
  }

  /** The item of entry `at` of `chunk`, whose slot (if it has one) held `value`. */
  #entry(chunk: Chunk, at: number, value: unknown): T {
    const meta = chunk.meta;
    const m = at * META_WORDS;
    const idWord = meta[m];
    if (idWord === OBJECT_ENTRY) return value as T;
    if (idWord < 0) {
      return this.#make(
        chunk.idBase + ~idWord,
        chunk.timeBase + meta[m + 1],
        meta[m + 2],
        INT_ENTRY_COST,
      );
    }
    return this.#make(chunk.idBase + idWord, chunk.timeBase + meta[m + 1], value, meta[m + 2]);
  }

  /** Adds compact entry `at` of `chunk` (of another chunk list) at the back again, as it was. */
  #again(chunk: Chunk, at: number): void {
    const meta = chunk.meta;
    const m = at * META_WORDS;
    const idWord = meta[m];
    const createdAt = chunk.timeBase + meta[m + 1];
    if (idWord < 0) {
      this.pushPlain(chunk.idBase + ~idWord, createdAt, meta[m + 2], INT_ENTRY_COST);
    } else {
      this.pushPlain(chunk.idBase + idWord, createdAt, chunk.values?.[at], meta[m + 2]);
    }
  }

  /** A new back chunk, twice the size of the last one (up to the most). */
  #grow(): Chunk {
    const chunk = new Chunk(Math.min(MAX_CHUNK_ENTRIES, this.#last.capacity * 2), false);
    this.#chunks.push(chunk);
    this.#last = chunk;
    return chunk;
  }

  /** `chunk`, the front one, has no entries left: dropped, or reset when it is the only one. */
  #emptied(chunk: Chunk): void {
    if (this.#chunks.length > 1) {
      this.#chunks.shift();
      return;
    }
    chunk.head = chunk.tail = 0;
  }
}
