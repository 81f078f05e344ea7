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
 * Entries live in chunks of parallel arrays, linked front to back. A lane's
 * first chunk holds {@link MIN_CHUNK_ENTRIES}; each chunk added behind it
 * twice as many as the one before, up to {@link MAX_CHUNK_ENTRIES}; one
 * added in front of the others (by {@link CompactLane.unshift}) as many as a
 * first chunk. A lane that keeps draining reuses its one chunk, and
 * allocates nothing (on a pool, below, it takes a cell from the pool's free
 * list each time it fills again).
 *
 * An engine holds one lane per queue, and may hold thousands of queues with
 * a few items each: a typed array of their own would be most of their cost
 * (V8 allocates each one's buffer apart, some 0.3–1 µs, and the collector
 * tracks it). So lanes made with a {@link ChunkPool} take their first and
 * front chunks' words from it instead: cells of large typed arrays shared by
 * every lane, handed back when the chunk empties. A new lane allocates no
 * words at all until its first entry, and an empty one holds none.
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

import { ITEM_OVERHEAD_BYTES } from "./item_cost.ts";

/**
 * Entries of a lane's first chunk, and of a chunk added at its front (by an
 * unshift): a pool's cell, or a typed array of their own for a lane made
 * without a pool.
 */
export const MIN_CHUNK_ENTRIES = 16;

/** Entries of a lane's largest chunks. */
export const MAX_CHUNK_ENTRIES = 4096;

/** Int32 words per entry in a chunk's words: id word, time offset, cost (or integer value). */
const META_WORDS = 3;

/** Int32 words of a pool's cell: one first chunk's. */
const CELL_WORDS = MIN_CHUNK_ENTRIES * META_WORDS;

/** Cells of each typed array of a {@link ChunkPool} (192 bytes each: 48 KiB a slab). */
export const SLAB_CELLS = 256;

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

/** The cell of a chunk whose words are its own (not a pool's). */
const OWN_WORDS = -1;

/** The words of a chunk that has none (a new or emptied lane's): never written. */
const NO_WORDS = new Int32Array(0);

/**
 * Makes the object of a plain entry, from its id, creation time, value and
 * cost, and the tag its lane was made with (the engine's queue name: so one
 * function serves every queue, not a closure per queue).
 */
export type MakeItem<T> = (
  id: number,
  createdAt: number,
  value: unknown,
  cost: number,
  tag: string,
) => T;

/**
 * Typed arrays whose cells of {@link MIN_CHUNK_ENTRIES} entries' words
 * are lent to the first and front chunks of many lanes (an engine's), so
 * that a small lane costs no typed array of its own. A cell handed back is
 * lent again first (a free list threaded through the cells' first words).
 * The arrays are kept while any cell is lent: they hold at most as many
 * cells (192 bytes each) as were lent at once, about one per lane that held
 * entries; when no cell is lent any more, all but the first array go.
 *
 * @example
 * ```ts
 * import { ChunkPool, CompactLane } from "./compact_lane.ts";
 * const pool = new ChunkPool();
 * const lane = new CompactLane((id, _createdAt, value) => ({ id, value }), "", pool);
 * lane.pushPlain(1, 1000, 7, 160);
 * console.log(pool.lent, lane.shift()?.value, pool.lent); // 1 7 0
 * ```
 */
export class ChunkPool {
  readonly #slabs: Int32Array[] = [];
  /** Cells handed out since the arrays were last cut back (free ones included). */
  #made = 0;
  /** The first free cell, or -1; a free cell's first word is the next one. */
  #free = -1;
  #lent = 0;

  /** How many cells are lent. */
  get lent(): number {
    return this.#lent;
  }

  /** How many typed arrays it holds ({@link SLAB_CELLS} cells each). */
  get slabs(): number {
    return this.#slabs.length;
  }

  /** Lends a cell: its number (see {@link words} and {@link base}). */
  acquire(): number {
    let cell = this.#free;
    if (cell >= 0) {
      this.#free = this.words(cell)[this.base(cell)];
    } else {
      cell = this.#made++;
      if (cell === this.#slabs.length * SLAB_CELLS) {
        this.#slabs.push(new Int32Array(SLAB_CELLS * CELL_WORDS));
      }
    }
    this.#lent++;
    return cell;
  }

  /** Takes back cell `cell`, which no chunk uses any more. */
  release(cell: number): void {
    this.words(cell)[this.base(cell)] = this.#free;
    this.#free = cell;
    this.#lent--;
    if (this.#lent === 0 && this.#slabs.length > 1) {
      // Nothing lent: keep one array, start it afresh.
      this.#slabs.length = 1;
      this.#made = 0;
      this.#free = -1;
    }
  }

  /** The typed array that holds cell `cell`. */
  words(cell: number): Int32Array {
    return this.#slabs[(cell / SLAB_CELLS) | 0];
  }

  /** Where cell `cell` starts in its typed array. */
  base(cell: number): number {
    return (cell % SLAB_CELLS) * CELL_WORDS;
  }
}

/**
 * Entries `head` to `tail` (exclusive) of parallel arrays, and the chunk
 * behind it. Its words are a typed array of its own, or a pool's cell (from
 * `base`), or none (capacity 0: the one chunk of a lane that holds nothing).
 */
class Chunk {
  /** Each entry's value, or the object of an entry held as one; allocated on first use. */
  values: unknown[] | undefined = undefined;
  /**
   * From `base`, 3 words per entry: its id word ({@link OBJECT_ENTRY}),
   * createdAt − {@link timeBase}, cost or integer value.
   */
  words: Int32Array = NO_WORDS;
  /** Where its words start in {@link words}. */
  base = 0;
  /** Its pool cell, or {@link OWN_WORDS}. */
  cell = OWN_WORDS;
  /** How many entries it has room for. */
  capacity = 0;
  head = 0;
  tail = 0;
  /** What ids are offsets from; set when an entry goes into the empty chunk. */
  idBase = 0;
  /** What creation times are offsets from (engine clock, ms). */
  timeBase = 0;
  /** The chunk behind it, if any. */
  next: Chunk | undefined = undefined;

  /** Gives it room for `capacity` entries: a cell of `pool`, or words of its own. */
  fill(capacity: number, pool: ChunkPool | undefined): void {
    if (pool !== undefined && capacity === MIN_CHUNK_ENTRIES) {
      const cell = pool.acquire();
      this.words = pool.words(cell);
      this.base = pool.base(cell);
      this.cell = cell;
    } else {
      this.words = new Int32Array(capacity * META_WORDS);
      this.base = 0;
      this.cell = OWN_WORDS;
    }
    if (this.values !== undefined && this.values.length !== capacity) this.values = undefined;
    this.capacity = capacity;
  }

  /** Hands its cell back to `pool` (if it has one): it has no room left. */
  empty(pool: ChunkPool | undefined): void {
    if (this.cell !== OWN_WORDS) (pool as ChunkPool).release(this.cell);
    this.words = NO_WORDS;
    this.base = 0;
    this.cell = OWN_WORDS;
    this.capacity = 0;
    this.head = this.tail = 0;
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
  /** What `make` is told besides the entry. */
  readonly #tag: string;
  /** Where first and front chunks take their words, if anywhere. */
  readonly #pool: ChunkPool | undefined;
  /**
   * The front chunk: it holds entries unless the lane is empty, and then it
   * is the only one (with no room if its words were a pool's).
   */
  #first: Chunk;
  /** The back chunk. */
  #last: Chunk;
  #length = 0;

  /**
   * An empty lane; `make` turns a plain entry into its object when it leaves
   * or is looked at, told `tag` too. With `pool`, its first and front
   * chunks' words are the pool's cells (see the module doc).
   */
  constructor(make: MakeItem<T>, tag = "", pool?: ChunkPool) {
    this.#make = make;
    this.#tag = tag;
    this.#pool = pool;
    this.#first = this.#last = new Chunk();
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
    const m = chunk.base + at * META_WORDS;
    if (idOffset >= 0 && idOffset <= MAX_ID_OFFSET && fits(idOffset) && fits(timeOffset)) {
      const words = chunk.words;
      words[m + 1] = timeOffset;
      if (
        cost === INT_ENTRY_COST && typeof value === "number" && (value | 0) === value &&
        !Object.is(value, -0)
      ) {
        words[m] = ~idOffset;
        words[m + 2] = value;
      } else if (fits(cost)) {
        words[m] = idOffset;
        words[m + 2] = cost;
        slots(chunk)[at] = value;
      } else {
        words[m] = OBJECT_ENTRY;
        slots(chunk)[at] = this.#make(id, createdAt, value, cost, this.#tag);
      }
    } else {
      chunk.words[m] = OBJECT_ENTRY;
      slots(chunk)[at] = this.#make(id, createdAt, value, cost, this.#tag);
    }
    chunk.tail = at + 1;
    this.#length++;
  }

  /** Adds `item` at the back, as the object it is. */
  push(item: T): void {
    let chunk = this.#last;
    if (chunk.tail === chunk.capacity) chunk = this.#grow();
    const at = chunk.tail;
    chunk.words[chunk.base + at * META_WORDS] = OBJECT_ENTRY;
    slots(chunk)[at] = item;
    chunk.tail = at + 1;
    this.#length++;
  }

  /** Puts `item` at the front (served next), as the object it is. */
  unshift(item: T): void {
    if (this.#length === 0) {
      // The front is the back.
      this.push(item);
      return;
    }
    let chunk = this.#first;
    if (chunk.head === 0) {
      chunk = new Chunk();
      chunk.fill(MIN_CHUNK_ENTRIES, this.#pool);
      chunk.head = chunk.tail = MIN_CHUNK_ENTRIES;
      chunk.next = this.#first;
      this.#first = chunk;
    }
    const at = chunk.head - 1;
    chunk.words[chunk.base + at * META_WORDS] = OBJECT_ENTRY;
    slots(chunk)[at] = item;
    chunk.head = at;
    this.#length++;
  }

  /** Takes the front item (made into its object if it was a compact entry). */
  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const chunk = this.#first;
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
    const old = this.#first;
    this.#first = this.#last = new Chunk();
    const before = this.#length;
    this.#length = 0;
    for (let chunk: Chunk | undefined = old; chunk !== undefined; chunk = chunk.next) {
      for (let at = chunk.head; at < chunk.tail; at++) {
        const item = this.#entry(chunk, at, chunk.values?.[at]);
        if (drop(item)) continue;
        if (chunk.words[chunk.base + at * META_WORDS] === OBJECT_ENTRY) this.push(item);
        else this.#again(chunk, at);
      }
    }
    for (let chunk: Chunk | undefined = old; chunk !== undefined; chunk = chunk.next) {
      chunk.empty(this.#pool);
    }
    return before - this.#length;
  }

  /** The items front first (compact entries made into objects, which are copies: not held). */
  *[Symbol.iterator](): Iterator<T> {
    for (let chunk: Chunk | undefined = this.#first; chunk !== undefined; chunk = chunk.next) {
      for (let at = chunk.head; at < chunk.tail; at++) {
        yield this.#entry(chunk, at, chunk.values?.[at]);
      }
    }
  }

  /** The item of entry `at` of `chunk`, whose slot (if it has one) held `value`. */
  #entry(chunk: Chunk, at: number, value: unknown): T {
    const words = chunk.words;
    const m = chunk.base + at * META_WORDS;
    const idWord = words[m];
    if (idWord === OBJECT_ENTRY) return value as T;
    const createdAt = chunk.timeBase + words[m + 1];
    if (idWord < 0) {
      return this.#make(chunk.idBase + ~idWord, createdAt, words[m + 2], INT_ENTRY_COST, this.#tag);
    }
    return this.#make(chunk.idBase + idWord, createdAt, value, words[m + 2], this.#tag);
  }

  /** Adds compact entry `at` of `chunk` (of another chunk list) at the back again, as it was. */
  #again(chunk: Chunk, at: number): void {
    const words = chunk.words;
    const m = chunk.base + at * META_WORDS;
    const idWord = words[m];
    const createdAt = chunk.timeBase + words[m + 1];
    if (idWord < 0) {
      this.pushPlain(chunk.idBase + ~idWord, createdAt, words[m + 2], INT_ENTRY_COST);
    } else {
      this.pushPlain(chunk.idBase + idWord, createdAt, chunk.values?.[at], words[m + 2]);
    }
  }

  /**
   * Room for an entry at the back: the empty lane's one chunk given its
   * first words, or a new back chunk twice the size of the last one (up to
   * the most).
   */
  #grow(): Chunk {
    const last = this.#last;
    if (this.#length === 0) {
      // Full and empty: the chunk has no room at all.
      last.fill(MIN_CHUNK_ENTRIES, this.#pool);
      return last;
    }
    const chunk = new Chunk();
    chunk.fill(Math.min(MAX_CHUNK_ENTRIES, last.capacity * 2), this.#pool);
    last.next = chunk;
    this.#last = chunk;
    return chunk;
  }

  /**
   * `chunk`, the front one, has no entries left: dropped (its cell handed
   * back), or, when it is the only one, kept to be used again (its words
   * too, when they are its own; a pool's cell goes back).
   */
  #emptied(chunk: Chunk): void {
    const next = chunk.next;
    if (next !== undefined) {
      chunk.next = undefined;
      chunk.empty(this.#pool);
      this.#first = next;
      return;
    }
    if (chunk.cell !== OWN_WORDS) chunk.empty(this.#pool);
    else chunk.head = chunk.tail = 0;
  }
}
