/**
 * The pickle reader's bounds on its work (lib/python/wire/pickle_reader.ts):
 *
 * - the hostile pickles of the issue, at full size, are refused early with a
 *   PickleError saying what to do: 16 MB of EMPTY_SET opcodes, 16.7 million
 *   empty dicts in a list, what `q.put([{} for _ in range(8_000_000)])`
 *   sends, a 1 MiB bytes key memoized once and set again 300 and 2,000 times;
 * - and those the same ideas lead to: floods of EMPTY_DICT, MARK, MEMOIZE; a
 *   tuple of 40 levels of shared halves (2^40 leaves) as a dict key; a huge
 *   frozenset set as a key again and again;
 * - ordinary pickles at full size still read: 16 MiB of bytes or text, a list
 *   of 100,000 one-key dicts, dicts keyed by memoized strings.
 *
 * No test asserts a duration: each asserts the refusal (and, where it is
 * robust, that the heap did not grow by more than a fraction of what the
 * input would have built).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  DEFAULT_UNPICKLE_LIMITS,
  HASHED_BYTES_PER_PICKLE_BYTE,
  MAX_PICKLE_CONTAINER_ENTRIES,
  PICKLE_COST_PER_BYTE,
  PICKLE_OBJECTS_PER_BYTE,
  unpickle,
} from "../lib/python/wire/pickle_reader.ts";
import { pickle } from "../lib/python/wire/pickle_writer.ts";
import { OP } from "../lib/python/wire/opcodes.ts";
import { PyDict, PySet, PyTuple, type PyValue } from "../lib/python/wire/values.ts";
import { PickleError } from "../lib/python/errors.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../lib/wire/frame.ts";

/** Most the heap may grow while a hostile pickle is refused. */
const HEAP_GROWTH_LIMIT_BYTES = 200 * 1024 * 1024;

/** Python's batch of APPENDS and SETITEMS (pickle.py's _BATCHSIZE). */
const PYTHON_BATCH = 1000;

/** A pickle written opcode by opcode. */
class Pickle {
  #bytes = new Uint8Array(1024);
  #length = 0;

  /** Starts with PROTO 4. */
  constructor() {
    this.op(OP.PROTO, 4);
  }

  /** Appends bytes (opcodes and their arguments). */
  op(...bytes: number[]): this {
    this.#room(bytes.length);
    this.#bytes.set(bytes, this.#length);
    this.#length += bytes.length;
    return this;
  }

  /** Appends `bytes` `count` times. */
  copies(bytes: number[], count: number): this {
    const chunk = new Uint8Array(bytes);
    this.#room(chunk.length * count);
    if (chunk.length === 1) {
      this.#bytes.fill(chunk[0], this.#length, this.#length + count);
      this.#length += count;
      return this;
    }
    for (let i = 0; i < count; i++, this.#length += chunk.length) {
      this.#bytes.set(chunk, this.#length);
    }
    return this;
  }

  /** Appends `bytes` as they are. */
  append(bytes: Uint8Array): this {
    this.#room(bytes.length);
    this.#bytes.set(bytes, this.#length);
    this.#length += bytes.length;
    return this;
  }

  /** Appends a BINBYTES of `length` bytes. */
  binbytes(length: number): this {
    this.op(
      OP.BINBYTES,
      length & 0xff,
      (length >>> 8) & 0xff,
      (length >>> 16) & 0xff,
      length >>> 24,
    );
    this.#room(length);
    this.#length += length; // zeros
    return this;
  }

  /** Ends with STOP: the pickle. */
  stop(): Uint8Array {
    this.op(OP.STOP);
    return this.#bytes.slice(0, this.#length);
  }

  #room(n: number): void {
    if (this.#length + n <= this.#bytes.length) return;
    const grown = new Uint8Array(Math.max(2 * this.#bytes.length, this.#length + n));
    grown.set(this.#bytes.subarray(0, this.#length));
    this.#bytes = grown;
  }
}

/**
 * What Python pickles for `[{key: 0}, {key: 1}, ...]` (`count` dicts): every
 * dict and the key memoized, the key written once and then fetched (BINGET),
 * in batches of APPENDS.
 */
function pythonRecords(key: string, count: number): Uint8Array {
  const text = [...new TextEncoder().encode(key)];
  const data = new Pickle().op(OP.EMPTY_LIST, OP.MEMOIZE);
  for (let done = 0; done < count; done += PYTHON_BATCH) {
    data.op(OP.MARK);
    for (let i = done; i < Math.min(count, done + PYTHON_BATCH); i++) {
      data.op(OP.EMPTY_DICT, OP.MEMOIZE);
      if (i === 0) data.op(OP.SHORT_BINUNICODE, text.length, ...text, OP.MEMOIZE);
      else data.op(OP.BINGET, 2);
      data.op(OP.BININT2, i & 0xff, (i >>> 8) & 0xff, OP.SETITEM);
    }
    data.op(OP.APPENDS);
  }
  return data.stop();
}

/** Asserts that `data` is refused with a PickleError matching `pattern`, the heap barely grown. */
function refused(data: Uint8Array, pattern: RegExp): PickleError {
  const before = Deno.memoryUsage().heapUsed;
  let caught: unknown;
  try {
    unpickle(data);
  } catch (error) {
    caught = error;
  }
  const grown = Deno.memoryUsage().heapUsed - before;
  assert.ok(caught instanceof PickleError, `expected a PickleError, got ${caught}`);
  assert.match(caught.message, pattern);
  assert.ok(grown < HEAP_GROWTH_LIMIT_BYTES, `the heap grew by ${grown} bytes`);
  return caught;
}

/** The byte at which `error` says the pickle was refused. */
function refusedAt(error: PickleError): number {
  const match = /at byte (\d+)/.exec(error.message);
  assert.ok(match, error.message);
  return Number(match[1]);
}

/** What the reader says of too much built: the limit, and what to do. */
const COSTLY = new RegExp(
  `more than a pickle may build \\(${PICKLE_COST_PER_BYTE} bytes per byte.*send such data ` +
    `more compactly`,
);

Deno.test("pickle cost: 16 MB of EMPTY_SET opcodes is refused after a few thousand", () => {
  const data = new Pickle().copies([OP.EMPTY_SET], DEFAULT_MAX_FRAME_BYTES - 3).stop();
  const error = refused(data, COSTLY);
  assert.ok(refusedAt(error) < 100_000, error.message);
  assert.ok(
    refusedAt(refused(new Pickle().copies([OP.EMPTY_DICT], 4_000_000).stop(), COSTLY)) < 1e5,
  );
  // EMPTY_SET, MEMOIZE pairs: the memo adds its own cost.
  refused(new Pickle().copies([OP.EMPTY_SET, OP.MEMOIZE], 4_000_000).stop(), COSTLY);
  // Floods of cheaper one-byte objects: more objects per byte than Python writes.
  const objects = new RegExp(
    `more than a pickle may build \\(${PICKLE_OBJECTS_PER_BYTE} per byte.*send fewer values`,
  );
  for (const op of [OP.EMPTY_LIST, OP.EMPTY_DICT]) {
    const flood = new Pickle().op(OP.MARK).copies([op], DEFAULT_MAX_FRAME_BYTES - 5).stop();
    assert.ok(refusedAt(refused(flood, op === OP.EMPTY_LIST ? objects : COSTLY)) < 300_000);
  }
  // MARKs left open: no more than the nesting allowed.
  const marks = new Pickle().copies([OP.MARK], DEFAULT_MAX_FRAME_BYTES - 3).stop();
  assert.ok(refusedAt(refused(marks, /nested more than \d+ levels deep \(MARKs open\)/)) < 100);
});

Deno.test("pickle cost: 16.7 million empty dicts in a list (one byte each) are refused early", () => {
  const count = DEFAULT_MAX_FRAME_BYTES - 8;
  const data = new Pickle().op(OP.EMPTY_LIST, OP.MARK).copies([OP.EMPTY_DICT], count)
    .op(OP.APPENDS).stop();
  assert.ok(data.length <= DEFAULT_MAX_FRAME_BYTES);
  assert.ok(refusedAt(refused(data, COSTLY)) < 100_000);
});

Deno.test("pickle cost: what Python sends for [{} for _ in range(8_000_000)] is refused early", () => {
  // EMPTY_LIST MEMOIZE, then batches of MARK (EMPTY_DICT MEMOIZE)×1000 APPENDS.
  const batch: number[] = [OP.MARK];
  for (let i = 0; i < PYTHON_BATCH; i++) batch.push(OP.EMPTY_DICT, OP.MEMOIZE);
  batch.push(OP.APPENDS);
  const data = new Pickle().op(OP.EMPTY_LIST, OP.MEMOIZE)
    .copies(batch, 8_000_000 / PYTHON_BATCH).stop();
  assert.ok(data.length > 16_000_000 && data.length <= DEFAULT_MAX_FRAME_BYTES);
  assert.ok(refusedAt(refused(data, COSTLY)) < 100_000);
});

/** A dict with a 1 MiB bytes key memoized, then set again `times` times: 1 MB of pickle. */
function rehashed(times: number): Uint8Array {
  return new Pickle().op(OP.EMPTY_DICT).binbytes(1024 * 1024).op(OP.MEMOIZE, OP.NONE, OP.SETITEM)
    .copies([OP.BINGET, 0, OP.NONE, OP.SETITEM], times).stop();
}

/** What the reader says of too much hashed. */
const HASHED = new RegExp(
  `take [\\d,]+ MiB to hash .* \\(${HASHED_BYTES_PER_PICKLE_BYTE} bytes per byte.*use smaller keys`,
);

Deno.test("pickle cost: a 1 MiB key set again 300 or 2,000 times is refused after a few", () => {
  for (const times of [300, 2_000]) {
    const data = rehashed(times);
    assert.ok(data.length < 1_100_000);
    const error = refused(data, HASHED);
    // Refused within the first 20 re-sets: a cap proportional to the bytes read.
    const first = 1024 * 1024 + 10;
    assert.ok(refusedAt(error) < first + 4 * 20, error.message);
  }
  // Set again a few times is fine.
  const value = unpickle(rehashed(3));
  assert.ok(value instanceof PyDict && value.size === 1);
});

Deno.test("pickle cost: keys whose size is exponential in their bytes are refused unhashed", () => {
  // t0 = (0,); t(i+1) = (t(i), t(i)) through the memo: 40 levels, 2^40 leaves.
  const halves = (data: Pickle) => {
    data.op(OP.BININT1, 0, OP.TUPLE1, OP.MEMOIZE, OP.POP);
    for (let i = 0; i < 40; i++) data.op(OP.BINGET, i, OP.BINGET, i, OP.TUPLE2, OP.MEMOIZE, OP.POP);
    return data.op(OP.BINGET, 40);
  };
  refused(halves(new Pickle().op(OP.EMPTY_DICT)).op(OP.NONE, OP.SETITEM).stop(), HASHED);
  // The same tuple as a set element, in a set and in a frozenset.
  refused(halves(new Pickle().op(OP.EMPTY_SET, OP.MARK)).op(OP.ADDITEMS).stop(), HASHED);
  refused(halves(new Pickle().op(OP.MARK)).op(OP.FROZENSET).stop(), HASHED);
  // A frozenset of 100,000 elements, memoized, then a key 1,000 times.
  const big = new PySet(Array.from({ length: 100_000 }, (_, i) => i), true);
  const inner = pickle(big);
  const data = new Pickle().op(OP.EMPTY_DICT).append(inner.subarray(2, -1)).op(OP.MEMOIZE, OP.POP)
    .copies([OP.BINGET, 0, OP.NONE, OP.SETITEM], 1_000).stop();
  refused(data, HASHED);
});

Deno.test("pickle cost: nesting as a key is refused at the depth limit, not by the stack", () => {
  const deep = new Pickle().op(OP.EMPTY_DICT, OP.NONE).copies([OP.TUPLE1], 10_000)
    .op(OP.NONE, OP.SETITEM).stop();
  refused(deep, /nested more than \d+ levels deep/);
});

Deno.test("pickle cost: a dict or set is limited in entries", () => {
  assert.ok(MAX_PICKLE_CONTAINER_ENTRIES < 2 ** 24); // a JS Map's limit
  assert.equal(DEFAULT_UNPICKLE_LIMITS.maxEntries, MAX_PICKLE_CONTAINER_ENTRIES);
  const maxEntries = 1000;
  const set = new PySet(Array.from({ length: maxEntries }, (_, i) => i));
  assert.equal((unpickle(pickle(set), { maxEntries }) as PySet).items.length, maxEntries);
  const pattern = new RegExp(`more than ${maxEntries} entries`);
  const bigger = new PySet(Array.from({ length: maxEntries + 1 }, (_, i) => i));
  assert.throws(() => unpickle(pickle(bigger), { maxEntries }), pattern);
  assert.throws(() => unpickle(pickle(new PySet(bigger.items, true)), { maxEntries }), pattern);
  const dict = new PyDict(Array.from({ length: maxEntries + 1 }, (_, i) => [i, i] as const));
  assert.throws(() => unpickle(pickle(dict), { maxEntries }), pattern);
  // A repeated key is still an entry set: the count is of keys set, not kept.
  const again = new Pickle().op(OP.EMPTY_DICT).copies([OP.NONE, OP.NONE, OP.SETITEM], 1001).stop();
  assert.equal((unpickle(again) as PyDict).size, 1);
});

Deno.test("pickle cost: ordinary pickles at full size still read", () => {
  const limit = DEFAULT_MAX_FRAME_BYTES;
  const bytes = unpickle(pickle(new Uint8Array(limit - 20).fill(1)), { maxSize: limit });
  assert.ok(bytes instanceof Uint8Array && bytes.length === limit - 20);
  const text = unpickle(pickle("x".repeat(limit - 20)), { maxSize: limit });
  assert.equal((text as string).length, limit - 20);
  // Lists of one-key dicts, the key memoized as Python does (the costliest
  // ordinary shape), and records of keys of sixty characters (the most
  // hashing per byte).
  const list = unpickle(pythonRecords("id", 150_000)) as PyDict[];
  assert.equal(list.length, 150_000);
  assert.equal(list[65_535].get("id"), 65_535);
  const key = "a_field_name_of_about_sixty_characters_as_records_may_have_x";
  assert.equal((unpickle(pythonRecords(key, 50_000)) as PyDict[]).length, 50_000);
  // A big dict keyed by tuples, a set of strings, a dict of long memoized keys.
  const byTuple = new PyDict(
    Array.from({ length: 50_000 }, (_, i) => [new PyTuple([i, `k${i}`]), i] as const),
  );
  assert.equal((unpickle(pickle(byTuple)) as PyDict).size, 50_000);
  const strings = new PySet(Array.from({ length: 100_000 }, (_, i) => `member-${i}`));
  assert.equal((unpickle(pickle(strings)) as PySet).items.length, 100_000);
});

Deno.test("pickle cost: bytes keys hash exactly, also within tuples and frozensets", () => {
  const bytes = (...values: number[]) => new Uint8Array(values);
  const bar = 0x7c; // "|", which joins the keys of a tuple's or frozenset's elements
  const keys: PyValue[] = [
    bytes(0x61, bar, 0x62, 0x62),
    new PyTuple([bytes(0x61, bar, 0x62, 0x62)]),
    new PyTuple([bytes(0x61), bytes(0x62)]),
    new PySet([bytes(0x61, bar, 0x62, 0x62)], true),
    new PySet([bytes(0x61), bytes(0x62)], true),
    ...Array.from({ length: 256 }, (_, b) => bytes(b)),
    "a|bb",
  ];
  const read = unpickle(pickle(new PyDict(keys.map((key, i) => [key, i] as const)))) as PyDict;
  assert.equal(read.size, keys.length);
  keys.forEach((key, i) => assert.equal(read.get(key), i));
});
