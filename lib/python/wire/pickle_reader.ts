/**
 * A strict pickle reader that builds plain data only.
 *
 * It reads what Python 3 writes with protocols 4 and 5 (and the binary
 * opcodes of 2 and 3) for the types of {@link PyValue}: about forty opcodes,
 * with the memo, and with FRAME optional. It never imports or calls
 * anything: a global (a class or function named in the pickle) is allowed
 * only if it is on {@link ALLOWED_GLOBALS}, a short list of the exception and
 * token classes the managers protocol itself sends, and even those become
 * data ({@link PyGlobal}, {@link PyObject}). Any other global (`os.system`,
 * `builtins.eval`, a user's class) is refused with a {@link PickleError} that
 * names it, before anything further is read.
 *
 * Sizes are bounded: every length is checked against the bytes that remain
 * before anything is allocated for it, integers are limited to
 * {@link MAX_INT_BYTES}, nesting to a depth, and the whole value, counted as
 * if every shared reference were copied, to a size (so a few bytes of
 * memo references cannot stand for an exponential tree). Cycles are refused.
 *
 * So is the work of reading, as it goes, relative to the bytes read so far
 * (and absolutely), so that a small message cannot make it build or hash
 * without end:
 *
 * - what it builds, estimated in bytes of memory (so much per dict, set,
 *   list, tuple, string, memo entry, MARK...), to
 *   {@link PICKLE_COST_PER_BYTE} per byte read plus
 *   {@link PICKLE_COST_ALLOWANCE_BYTES}, and at most
 *   {@link MAX_PICKLE_COST_BYTES}; and in objects, to
 *   {@link PICKLE_OBJECTS_PER_BYTE} per byte read plus
 *   {@link PICKLE_OBJECTS_ALLOWANCE}, at most {@link MAX_PICKLE_OBJECTS}:
 *   floods of EMPTY_DICT, EMPTY_SET, EMPTY_LIST... are refused after a few
 *   thousand, and MARKs left open beyond the depth limit at once;
 * - what it hashes (dict keys and set elements, each time it adds one,
 *   counted as the size of the key with shared parts copied), to
 *   {@link HASHED_BYTES_PER_PICKLE_BYTE} per byte read plus
 *   {@link HASHED_BYTES_ALLOWANCE}, and at most {@link MAX_HASHED_BYTES}: a
 *   large key memoized once and set again and again is refused early;
 * - each dict and set, to {@link MAX_PICKLE_CONTAINER_ENTRIES} entries.
 *
 * @module
 */

import {
  PyDict,
  PyFloat,
  PyGlobal,
  PyObject,
  PySet,
  PyTuple,
  pyTypeName,
  type PyValue,
} from "./values.ts";
import { decodeUtf8 } from "./utf8.ts";
import { PickleError } from "../errors.ts";
import { MAX_VALUE_DEPTH } from "../../model/codec.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../../wire/frame.ts";
import { OP } from "./opcodes.ts";

/** Highest pickle protocol read. */
export const MAX_PICKLE_PROTOCOL = 5;

/** Longest integer read, in bytes (about 9,800 decimal digits). */
export const MAX_INT_BYTES = 4096;

/**
 * Levels of nesting a pickle may add around a queue item: the request tuple
 * and its argument tuple (the item itself is then held to the native limit).
 */
export const ENVELOPE_DEPTH = 3;

/** Classes a pickle may name: those the managers protocol sends. Nothing else loads. */
export const ALLOWED_GLOBALS: ReadonlySet<string> = new Set([
  // queue.Empty is the C class _queue.Empty; Full is pure Python.
  "_queue.Empty",
  "queue.Empty",
  "queue.Full",
  // The manager's object reference, and the error a manager raises from a traceback.
  "multiprocessing.managers.Token",
  "multiprocessing.managers.RemoteError",
  // Exceptions a manager may send as '#ERROR' values.
  "builtins.Exception",
  "builtins.ValueError",
  "builtins.TypeError",
  "builtins.KeyError",
  "builtins.IndexError",
  "builtins.AttributeError",
  "builtins.RuntimeError",
  "builtins.NotImplementedError",
  "builtins.EOFError",
  "builtins.OSError",
  "builtins.ConnectionError",
  "builtins.TimeoutError",
]);

/**
 * Estimated bytes of memory a pickle may build per byte read so far (beyond
 * {@link PICKLE_COST_ALLOWANCE_BYTES}). Python's pickles of ordinary values
 * stay below: numbers and text 2–6, tuples 13, records 15, short bytes 25,
 * lists of one-key dicts (the costliest ordinary shape here: a dict is a Map
 * and an array) 40–45. An empty dict or set costs about 130 per byte.
 */
export const PICKLE_COST_PER_BYTE = 64;

/** Estimated bytes of memory any pickle may build, whatever its size (1 MiB). */
export const PICKLE_COST_ALLOWANCE_BYTES = 1024 * 1024;

/** Estimated bytes of memory no pickle may build beyond, whatever its size (1 GiB). */
export const MAX_PICKLE_COST_BYTES = 1024 * 1024 * 1024;

/**
 * Objects (containers, strings, bytes, floats, big integers, MARKs) a pickle
 * may build per byte read so far (beyond {@link PICKLE_OBJECTS_ALLOWANCE}).
 * Python memoizes what it pickles, so each object takes two bytes or more
 * (`]` then MEMOIZE; the empty tuple, a singleton, is one byte but no new
 * object): its pickles stay at about 0.5 or below. A flood of one-byte
 * opcodes is at 1.
 */
export const PICKLE_OBJECTS_PER_BYTE = 0.75;

/** Objects any pickle may build, whatever its size. */
export const PICKLE_OBJECTS_ALLOWANCE = 65_536;

/** Objects no pickle may build beyond, whatever its size (16 Mi). */
export const MAX_PICKLE_OBJECTS = 16 * 1024 * 1024;

/**
 * Bytes of dict keys and set elements a pickle may hash per byte read so far
 * (beyond {@link HASHED_BYTES_ALLOWANCE}): each key is hashed each time it is
 * set, and counts its whole size, shared parts copied. Records whose keys are
 * memoized strings of up to about 60 characters stay below.
 */
export const HASHED_BYTES_PER_PICKLE_BYTE = 16;

/** Bytes of keys any pickle may hash, whatever its size (1 MiB). */
export const HASHED_BYTES_ALLOWANCE = 1024 * 1024;

/** Bytes of keys no pickle may hash beyond, whatever its size (256 MiB). */
export const MAX_HASHED_BYTES = 256 * 1024 * 1024;

/** Most entries of one dict, set or frozenset, by default (well below a JS Map's 16.7 million). */
export const MAX_PICKLE_CONTAINER_ENTRIES = 4 * 1024 * 1024;

// The cost model: estimated bytes of V8 heap, measured with Deno 2.9 by
// reading Python's pickles of 200,000 of each (heap used before and after).
/** Bytes of the reference to a value, on the stack and then in its container. */
const SLOT_BYTES = 8;
/** Bytes of a PyFloat and its number. */
const FLOAT_BYTES = 48;
/** Bytes of an integer read with BININT (it may be a heap number). */
const BININT_BYTES = 16;
/** Bytes of a big integer, besides one per byte of it. */
const LONG_BYTES = 32;
/** Bytes of a non-empty string, besides one per byte of its UTF-8. */
const STRING_BYTES = 24;
/** Bytes of a bytes object (a Uint8Array with its own buffer), besides its contents. */
const BYTES_BYTES = 216;
/** Bytes of a PyTuple and its array, besides a slot per element. */
const TUPLE_BYTES = 64;
/** Bytes of an empty list. */
const LIST_BYTES = 32;
/** Bytes of a PyDict: its entries array and its index Map, allocated at the first entry. */
const DICT_BYTES = 224;
/** Bytes of a dict entry (a key-value pair, an index entry), besides its hash key's text. */
const DICT_ENTRY_BYTES = 96;
/** Bytes of a PySet: its items array and its Set of hash keys. */
const SET_BYTES = 224;
/** Bytes of a set element's entries, besides its hash key's text. */
const SET_ENTRY_BYTES = 48;
/** Bytes of a memo entry. */
const MEMO_ENTRY_BYTES = 32;
/** Bytes of a MARK: a new stack array, and the old one's place on the meta-stack. */
const MARK_BYTES = 40;
/** Bytes of a PyGlobal, besides its names. */
const GLOBAL_BYTES = 64;
/** Bytes of a PyObject. */
const OBJECT_BYTES = 96;
/** Bytes counted for hashing a number, bool, None or float (the length of its key, about). */
const SCALAR_HASH_BYTES = 24;
/** Largest small integer: beyond it (either sign) an integer read with BININT may be a heap number. */
const SMALL_INT_LIMIT = 2 ** 30;

/** Limits of {@link unpickle}. */
export interface UnpickleLimits {
  /** Deepest nesting of containers. */
  maxDepth: number;
  /** Largest size of the value with every shared reference counted as a copy (about bytes). */
  maxSize: number;
  /** Most entries of one dict, set or frozenset. */
  maxEntries: number;
}

/** The limits used when none are given. */
export const DEFAULT_UNPICKLE_LIMITS: UnpickleLimits = {
  maxDepth: MAX_VALUE_DEPTH + ENVELOPE_DEPTH,
  maxSize: DEFAULT_MAX_FRAME_BYTES,
  maxEntries: MAX_PICKLE_CONTAINER_ENTRIES,
};

/** Bytes counted for a number, bool or None in the size limit. */
const SCALAR_SIZE = 9;

/** Opcodes taskq knows but refuses, and why. */
const REFUSED_OPS: ReadonlyMap<number, string> = new Map([
  [OP.BYTEARRAY8, "bytearray is not supported: send bytes"],
  [0x97, "out-of-band buffers are not supported"],
  [0x98, "out-of-band buffers are not supported"],
  [0x50, "persistent ids are not supported"],
  [0x51, "persistent ids are not supported"],
  [0x82, "the extension registry is not supported"],
  [0x83, "the extension registry is not supported"],
  [0x84, "the extension registry is not supported"],
  [0x69, "INST builds arbitrary objects"],
  [0x6f, "OBJ builds arbitrary objects"],
]);

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** An integer from its little-endian two's-complement bytes: a number when safe, else a bigint. */
export function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let hex = "";
  for (let i = bytes.length - 1; i >= 0; i--) hex += bytes[i].toString(16).padStart(2, "0");
  let value = BigInt(`0x${hex}`);
  if (bytes[bytes.length - 1] & 0x80) value -= 1n << BigInt(bytes.length * 8);
  return value >= -MAX_SAFE && value <= MAX_SAFE ? Number(value) : value;
}

/** `bytes` in MiB (or KiB below one), for messages. */
function mib(bytes: number): string {
  return bytes >= 1024 * 1024
    ? `${Math.round(bytes / (1024 * 1024)).toLocaleString("en-US")} MiB`
    : `${Math.round(bytes / 1024).toLocaleString("en-US")} KiB`;
}

/** Powers of 2 up to which a big integer has at most so many decimal digits, ascending. */
const BIGINT_DIGITS: readonly (readonly [bigint, number])[] = [
  [1n << 64n, 20],
  [1n << 256n, 78],
  [1n << 1024n, 309],
  [1n << 4096n, 1234],
];

/**
 * About the decimal digits of `value` (its hash key's length), without
 * converting it: a few comparisons, not a conversion per time it is hashed.
 */
function bigintDigits(value: bigint): number {
  for (const [limit, digits] of BIGINT_DIGITS) {
    if (value < limit && value > -limit) return digits + 2;
  }
  return Math.ceil(MAX_INT_BYTES * 8 * Math.LOG10E * Math.LN2) + 2;
}

class Reader {
  readonly #data: Uint8Array;
  readonly #view: DataView;
  #pos = 0;
  #stack: PyValue[] = [];
  readonly #metastack: PyValue[][] = [];
  readonly #memo = new Map<number, PyValue>();
  readonly #maxDepth: number;
  readonly #maxEntries: number;
  /** Estimated bytes of memory built so far. */
  #built = 0;
  /** Objects built so far. */
  #objects = 0;
  /** Bytes of keys hashed so far. */
  #hashed = 0;
  /** The hash cost of each tuple and frozenset asked for so far (they never change). */
  readonly #hashCosts = new Map<PyTuple | PySet, number>();
  /** The empty tuple, shared by every EMPTY_TUPLE. */
  readonly #emptyTuple = new PyTuple([]);

  constructor(data: Uint8Array, limits: UnpickleLimits) {
    this.#data = data;
    this.#maxDepth = limits.maxDepth;
    this.#maxEntries = limits.maxEntries;
    this.#view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  #fail(message: string): never {
    throw new PickleError(`bad pickle (at byte ${this.#pos}): ${message}`);
  }

  /**
   * Counts `bytes` of memory and `objects` objects about to be built, and
   * refuses the pickle if that exceeds what the bytes read so far allow.
   */
  #charge(bytes: number, objects: number): void {
    this.#built += bytes;
    this.#objects += objects;
    if (
      this.#built > PICKLE_COST_ALLOWANCE_BYTES + PICKLE_COST_PER_BYTE * this.#pos ||
      this.#built > MAX_PICKLE_COST_BYTES
    ) {
      this.#fail(
        `its value would take more than ${mib(this.#built)} of memory after ${this.#pos} bytes, ` +
          `more than a pickle may build (${PICKLE_COST_PER_BYTE} bytes per byte, plus ` +
          `${mib(PICKLE_COST_ALLOWANCE_BYTES)}, at most ${mib(MAX_PICKLE_COST_BYTES)}): it is ` +
          `mostly empty or tiny containers (dicts, sets, lists, tuples), which take far more ` +
          `memory than bytes; send such data more compactly (e.g. None or a count instead of ` +
          `many empty containers)`,
      );
    }
    if (
      this.#objects > PICKLE_OBJECTS_ALLOWANCE + PICKLE_OBJECTS_PER_BYTE * this.#pos ||
      this.#objects > MAX_PICKLE_OBJECTS
    ) {
      this.#fail(
        `${this.#objects} objects (containers, strings, bytes, floats, big integers, MARKs) ` +
          `after ${this.#pos} bytes, more than a pickle may build (${PICKLE_OBJECTS_PER_BYTE} ` +
          `per byte, plus ${PICKLE_OBJECTS_ALLOWANCE}, at most ${MAX_PICKLE_OBJECTS}): not what ` +
          `Python's pickle writes; send fewer values per message`,
      );
    }
  }

  /**
   * Counts hashing `key` (to set or add it), refusing the pickle beyond what
   * its bytes allow; returns the cost, about the length of the key's text.
   */
  #chargeHash(key: PyValue): number {
    const cost = this.#hashCost(key, 0);
    this.#hashed += cost;
    if (
      this.#hashed > HASHED_BYTES_ALLOWANCE + HASHED_BYTES_PER_PICKLE_BYTE * this.#pos ||
      this.#hashed > MAX_HASHED_BYTES
    ) {
      this.#fail(
        `its dict keys and set elements take ${mib(this.#hashed)} to hash after ${this.#pos} ` +
          `bytes, more than a pickle may (${HASHED_BYTES_PER_PICKLE_BYTE} bytes per byte, plus ` +
          `${mib(HASHED_BYTES_ALLOWANCE)}, at most ${mib(MAX_HASHED_BYTES)}): the same large ` +
          `key is set again and again; use smaller keys`,
      );
    }
    return cost;
  }

  /**
   * About the length of {@link hashKey}'s text for `value`: what hashing it
   * costs, shared parts counted as copies. A tuple's or frozenset's is
   * computed once, from its elements'; nesting beyond the depth limit is
   * refused here, as {@link measure} would.
   */
  #hashCost(value: PyValue, level: number): number {
    if (typeof value === "string") return value.length + 2;
    if (value instanceof Uint8Array) return value.length + 8;
    if (typeof value === "bigint") return bigintDigits(value);
    if (!(value instanceof PyTuple || (value instanceof PySet && value.frozen))) {
      // A scalar, or an unhashable value (refused as soon as it is looked at).
      return value instanceof PyGlobal ? value.qualifiedName.length + 3 : SCALAR_HASH_BYTES;
    }
    const known = this.#hashCosts.get(value);
    if (known !== undefined) return known;
    if (level >= this.#maxDepth) this.#fail(`nested more than ${this.#maxDepth} levels deep`);
    let cost = 3;
    for (const item of value.items) cost += this.#hashCost(item, level + 1) + 1;
    this.#hashCosts.set(value, cost);
    return cost;
  }

  /** Refuses adding an entry to a dict or set of `size` entries already. */
  #checkRoom(size: number): void {
    if (size >= this.#maxEntries) {
      this.#fail(`a dict or set of more than ${this.#maxEntries} entries`);
    }
  }

  #take(n: number): Uint8Array {
    if (n > this.#data.length - this.#pos) {
      this.#fail(`needs ${n} more bytes, only ${this.#data.length - this.#pos} remain`);
    }
    const out = this.#data.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  #u8(): number {
    return this.#take(1)[0];
  }

  #u16(): number {
    const at = this.#pos;
    this.#take(2);
    return this.#view.getUint16(at, true);
  }

  #i32(): number {
    const at = this.#pos;
    this.#take(4);
    return this.#view.getInt32(at, true);
  }

  #u32(): number {
    const at = this.#pos;
    this.#take(4);
    return this.#view.getUint32(at, true);
  }

  /** An 8-byte length, refused (before any allocation) when more than what remains. */
  #u64(): number {
    const at = this.#pos;
    this.#take(8);
    const n = this.#view.getBigUint64(at, true);
    if (n > BigInt(this.#data.length - this.#pos)) {
      this.#fail(`announces ${n} bytes, only ${this.#data.length - this.#pos} remain`);
    }
    return Number(n);
  }

  #line(): string {
    const end = this.#data.indexOf(0x0a, this.#pos);
    if (end < 0) this.#fail("unterminated line");
    return this.#text(this.#take(end - this.#pos + 1).subarray(0, -1));
  }

  #text(bytes: Uint8Array): string {
    try {
      return decodeUtf8(bytes);
    } catch (error) {
      this.#fail(`text is not UTF-8: ${(error as Error).message}`);
    }
  }

  #push(value: PyValue): void {
    this.#stack.push(value);
  }

  /** Pushes a new string from `bytes` of UTF-8, counting it first. */
  #pushText(bytes: Uint8Array): void {
    this.#charge(SLOT_BYTES + STRING_BYTES + bytes.length, 1);
    this.#push(this.#text(bytes));
  }

  /**
   * Pushes `bytes`, counting it first: a copy, unless it is most of the
   * message (a large binary item), which is then kept as a view of the
   * message's own buffer instead of a second copy of it.
   */
  #pushBytes(bytes: Uint8Array): void {
    this.#charge(SLOT_BYTES + BYTES_BYTES + bytes.length, 1);
    const mostOfTheMessage = bytes.length * 2 > this.#data.length;
    this.#push(mostOfTheMessage ? bytes : bytes.slice());
  }

  /** Pushes the integer of `bytes` (LONG1, LONG4), counting it first. */
  #pushLong(bytes: Uint8Array): void {
    this.#charge(SLOT_BYTES + LONG_BYTES + bytes.length, 1);
    this.#push(decodeLong(bytes));
  }

  /** Pushes a reference to a value already built (DUP, BINGET...). */
  #pushRef(value: PyValue): void {
    this.#charge(SLOT_BYTES, 0);
    this.#push(value);
  }

  /** Stores the top of the stack in the memo at `index`. */
  #memoize(index: number): void {
    const value = this.#top();
    this.#charge(MEMO_ENTRY_BYTES, 0);
    this.#memo.set(index, value);
  }

  #pop(): PyValue {
    if (this.#stack.length === 0) this.#fail("stack underflow");
    return this.#stack.pop() as PyValue;
  }

  #top(): PyValue {
    if (this.#stack.length === 0) this.#fail("stack underflow");
    return this.#stack[this.#stack.length - 1];
  }

  #popMark(): PyValue[] {
    const items = this.#stack;
    const outer = this.#metastack.pop();
    if (outer === undefined) this.#fail("no MARK to pop to");
    this.#stack = outer;
    return items;
  }

  #global(module: string, name: string): PyGlobal {
    const qualified = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(qualified)) {
      throw new PickleError(
        `refused to load ${qualified}: taskq never imports or calls what a pickle names; ` +
          `queue items must be plain values (int, float, str, bytes, bool, None, list, tuple, ` +
          `dict, set, frozenset)`,
      );
    }
    return new PyGlobal(module, name);
  }

  #getMemo(index: number): PyValue {
    const value = this.#memo.get(index);
    if (value === undefined) this.#fail(`memo entry ${index} was never stored`);
    return value;
  }

  /** Pushes a tuple of `items`: `fresh` when its array is new (else it is a MARK's stack). */
  #tuple(items: PyValue[], fresh: boolean): void {
    this.#charge(SLOT_BYTES + TUPLE_BYTES + (fresh ? SLOT_BYTES * items.length : 0), 1);
    this.#push(new PyTuple(items));
  }

  #popTuple(what: string): PyTuple {
    const value = this.#pop();
    if (!(value instanceof PyTuple)) this.#fail(`${what} needs a tuple, got ${pyTypeName(value)}`);
    return value;
  }

  #popGlobal(what: string): PyGlobal {
    const value = this.#pop();
    if (!(value instanceof PyGlobal)) {
      this.#fail(`${what} applies to ${pyTypeName(value)}, which is not a class`);
    }
    return value;
  }

  #setItems(dict: PyValue, items: PyValue[]): void {
    if (!(dict instanceof PyDict)) this.#fail(`SETITEMS on ${pyTypeName(dict)}`);
    if (items.length % 2 !== 0) this.#fail("SETITEMS with an odd number of items");
    for (let i = 0; i < items.length; i += 2) {
      this.#checkRoom(dict.size);
      this.#charge(DICT_ENTRY_BYTES + this.#chargeHash(items[i]), 0);
      try {
        dict.set(items[i], items[i + 1]);
      } catch {
        this.#fail(`unhashable dict key of type ${pyTypeName(items[i])}`);
      }
    }
  }

  #addItems(set: PyValue, items: PyValue[]): void {
    if (!(set instanceof PySet) || set.frozen) this.#fail(`ADDITEMS on ${pyTypeName(set)}`);
    for (const item of items) {
      this.#addCharged(set, item);
      try {
        set.add(item);
      } catch {
        this.#fail(`unhashable set element of type ${pyTypeName(item)}`);
      }
    }
  }

  /** Counts adding `item` to `set` (room, hashing, memory) before it is added. */
  #addCharged(set: PySet, item: PyValue): void {
    this.#checkRoom(set.items.length);
    this.#charge(SET_ENTRY_BYTES + this.#chargeHash(item), 0);
  }

  read(): PyValue {
    const data = this.#data;
    while (this.#pos < data.length) {
      const op = data[this.#pos++];
      switch (op) {
        case OP.PROTO: {
          const proto = this.#u8();
          if (proto > MAX_PICKLE_PROTOCOL) this.#fail(`unsupported pickle protocol ${proto}`);
          break;
        }
        case OP.FRAME:
          this.#u64(); // frames only group bytes; the stream reads the same without them
          break;
        case OP.STOP: {
          if (this.#metastack.length > 0) this.#fail("STOP inside an unclosed MARK");
          if (this.#stack.length !== 1) this.#fail(`STOP with ${this.#stack.length} values`);
          if (this.#pos !== data.length) this.#fail("bytes after STOP");
          return this.#stack[0];
        }
        case OP.MARK:
          // Each MARK open is a container being built around the next: no
          // more of them than the nesting allowed.
          if (this.#metastack.length >= this.#maxDepth) {
            this.#fail(`nested more than ${this.#maxDepth} levels deep (MARKs open)`);
          }
          this.#charge(MARK_BYTES, 1);
          this.#metastack.push(this.#stack);
          this.#stack = [];
          break;
        case OP.POP:
          if (this.#stack.length > 0) this.#stack.pop();
          else this.#popMark();
          break;
        case OP.POP_MARK:
          this.#popMark();
          break;
        case OP.DUP:
          this.#pushRef(this.#top());
          break;
        case OP.NONE:
          this.#pushRef(null);
          break;
        case OP.NEWTRUE:
          this.#pushRef(true);
          break;
        case OP.NEWFALSE:
          this.#pushRef(false);
          break;
        case OP.BININT: {
          const n = this.#i32();
          const small = n >= -SMALL_INT_LIMIT && n < SMALL_INT_LIMIT;
          this.#charge(SLOT_BYTES + (small ? 0 : BININT_BYTES), 0);
          this.#push(n);
          break;
        }
        case OP.BININT1:
          this.#pushRef(this.#u8());
          break;
        case OP.BININT2:
          this.#pushRef(this.#u16());
          break;
        case OP.LONG1:
          this.#pushLong(this.#take(this.#u8()));
          break;
        case OP.LONG4: {
          const n = this.#i32();
          if (n < 0) this.#fail("negative LONG4 length");
          if (n > MAX_INT_BYTES) {
            this.#fail(`integer of ${n} bytes is longer than the limit of ${MAX_INT_BYTES}`);
          }
          this.#pushLong(this.#take(n));
          break;
        }
        case OP.BINFLOAT: {
          const at = this.#pos;
          this.#take(8);
          this.#charge(SLOT_BYTES + FLOAT_BYTES, 1);
          this.#push(new PyFloat(this.#view.getFloat64(at, false)));
          break;
        }
        case OP.SHORT_BINUNICODE:
          this.#pushText(this.#take(this.#u8()));
          break;
        case OP.BINUNICODE:
          this.#pushText(this.#take(this.#u32()));
          break;
        case OP.BINUNICODE8:
          this.#pushText(this.#take(this.#u64()));
          break;
        case OP.SHORT_BINBYTES:
          this.#pushBytes(this.#take(this.#u8()));
          break;
        case OP.BINBYTES:
          this.#pushBytes(this.#take(this.#u32()));
          break;
        case OP.BINBYTES8:
          this.#pushBytes(this.#take(this.#u64()));
          break;
        case OP.EMPTY_TUPLE:
          // One shared empty tuple, as in Python: it is immutable.
          this.#pushRef(this.#emptyTuple);
          break;
        case OP.TUPLE1:
          this.#tuple([this.#pop()], true);
          break;
        case OP.TUPLE2: {
          const b = this.#pop();
          this.#tuple([this.#pop(), b], true);
          break;
        }
        case OP.TUPLE3: {
          const c = this.#pop();
          const b = this.#pop();
          this.#tuple([this.#pop(), b, c], true);
          break;
        }
        case OP.TUPLE:
          this.#tuple(this.#popMark(), false);
          break;
        case OP.EMPTY_LIST:
          this.#charge(SLOT_BYTES + LIST_BYTES, 1);
          this.#push([]);
          break;
        case OP.APPEND: {
          const value = this.#pop();
          const list = this.#top();
          if (!Array.isArray(list)) this.#fail(`APPEND to ${pyTypeName(list)}`);
          list.push(value);
          break;
        }
        case OP.APPENDS: {
          const items = this.#popMark();
          const list = this.#top();
          if (!Array.isArray(list)) this.#fail(`APPENDS to ${pyTypeName(list)}`);
          for (const item of items) list.push(item);
          break;
        }
        case OP.EMPTY_DICT:
          this.#charge(SLOT_BYTES + DICT_BYTES, 1);
          this.#push(new PyDict());
          break;
        case OP.SETITEM: {
          const value = this.#pop();
          const key = this.#pop();
          this.#setItems(this.#top(), [key, value]);
          break;
        }
        case OP.SETITEMS: {
          const items = this.#popMark();
          this.#setItems(this.#top(), items);
          break;
        }
        case OP.EMPTY_SET:
          this.#charge(SLOT_BYTES + SET_BYTES, 1);
          this.#push(new PySet());
          break;
        case OP.ADDITEMS: {
          const items = this.#popMark();
          this.#addItems(this.#top(), items);
          break;
        }
        case OP.FROZENSET: {
          const items = this.#popMark();
          this.#charge(SLOT_BYTES + SET_BYTES, 1);
          const set = new PySet([], true);
          for (const item of items) {
            this.#addCharged(set, item);
            try {
              set.add(item);
            } catch {
              this.#fail(`unhashable frozenset element of type ${pyTypeName(item)}`);
            }
          }
          this.#push(set);
          break;
        }
        case OP.MEMOIZE:
          this.#memoize(this.#memo.size);
          break;
        case OP.BINPUT:
          this.#memoize(this.#u8());
          break;
        case OP.LONG_BINPUT:
          this.#memoize(this.#u32());
          break;
        case OP.BINGET:
          this.#pushRef(this.#getMemo(this.#u8()));
          break;
        case OP.LONG_BINGET:
          this.#pushRef(this.#getMemo(this.#u32()));
          break;
        case OP.GLOBAL: {
          const module = this.#line();
          const name = this.#line();
          this.#charge(SLOT_BYTES + GLOBAL_BYTES + module.length + name.length, 1);
          this.#push(this.#global(module, name));
          break;
        }
        case OP.STACK_GLOBAL: {
          const name = this.#pop();
          const module = this.#pop();
          if (typeof module !== "string" || typeof name !== "string") {
            this.#fail("STACK_GLOBAL needs two strings");
          }
          this.#charge(SLOT_BYTES + GLOBAL_BYTES, 1);
          this.#push(this.#global(module, name));
          break;
        }
        case OP.REDUCE: {
          const args = this.#popTuple("REDUCE");
          this.#charge(SLOT_BYTES + OBJECT_BYTES, 1);
          this.#push(new PyObject(this.#popGlobal("REDUCE"), args.items, "reduce"));
          break;
        }
        case OP.NEWOBJ: {
          const args = this.#popTuple("NEWOBJ");
          this.#charge(SLOT_BYTES + OBJECT_BYTES, 1);
          this.#push(new PyObject(this.#popGlobal("NEWOBJ"), args.items, "newobj"));
          break;
        }
        case OP.NEWOBJ_EX: {
          const kwargs = this.#pop();
          if (!(kwargs instanceof PyDict)) this.#fail("NEWOBJ_EX needs a dict of keywords");
          const args = this.#popTuple("NEWOBJ_EX");
          this.#charge(SLOT_BYTES + OBJECT_BYTES, 1);
          this.#push(new PyObject(this.#popGlobal("NEWOBJ_EX"), args.items, "newobj", kwargs));
          break;
        }
        case OP.BUILD: {
          const state = this.#pop();
          const target = this.#top();
          if (!(target instanceof PyObject) || target.state !== undefined) {
            this.#fail(`BUILD on ${pyTypeName(target)}`);
          }
          target.state = state;
          break;
        }
        default: {
          const why = REFUSED_OPS.get(op) ??
            "not an opcode Python 3 writes for plain values with protocols 2 to 5";
          this.#pos--;
          this.#fail(`opcode 0x${op.toString(16).padStart(2, "0")} refused: ${why}`);
        }
      }
    }
    this.#fail("ends without STOP");
  }
}

interface Measure {
  depth: number;
  size: number;
}

/** Checks nesting, expanded size and cycles of a value, visiting each shared part once. */
function measure(root: PyValue, limits: UnpickleLimits): void {
  const done = new Map<object, Measure>();
  const active = new Set<object>();
  const visit = (value: PyValue, level: number): Measure => {
    if (value === null || typeof value === "boolean" || typeof value === "number") {
      return { depth: 0, size: SCALAR_SIZE };
    }
    if (typeof value === "bigint") return { depth: 0, size: SCALAR_SIZE };
    if (typeof value === "string" || value instanceof Uint8Array) {
      return { depth: 0, size: value.length + 1 };
    }
    if (value instanceof PyFloat || value instanceof PyGlobal) {
      return { depth: 0, size: SCALAR_SIZE };
    }
    const known = done.get(value);
    if (known !== undefined) return known;
    if (active.has(value)) throw new PickleError("bad pickle: a value contains itself");
    if (level >= limits.maxDepth) {
      throw new PickleError(`bad pickle: nested more than ${limits.maxDepth} levels deep`);
    }
    active.add(value);
    let depth = 0;
    let size = 1;
    const child = (part: PyValue) => {
      const m = visit(part, level + 1);
      depth = Math.max(depth, m.depth + 1);
      size += m.size;
      if (size > limits.maxSize) {
        throw new PickleError(
          `bad pickle: its value would take more than ${limits.maxSize} bytes once its shared ` +
            `parts are copied`,
        );
      }
    };
    if (Array.isArray(value)) value.forEach(child);
    else if (value instanceof PyTuple || value instanceof PySet) value.items.forEach(child);
    else if (value instanceof PyDict) {
      for (const [key, item] of value.entries) {
        child(key);
        child(item);
      }
    } else {
      value.args.forEach(child);
      if (value.kwargs !== undefined) child(value.kwargs);
      if (value.state !== undefined) child(value.state);
    }
    active.delete(value);
    const result = { depth, size };
    done.set(value, result);
    return result;
  };
  visit(root, 0);
}

/**
 * Reads one pickle that fills all of `data`.
 * @throws {PickleError} when it is malformed, exceeds a limit, contains a
 *   cycle, or names a global that is not allowed.
 */
export function unpickle(data: Uint8Array, limits: Partial<UnpickleLimits> = {}): PyValue {
  const full: UnpickleLimits = {
    maxDepth: limits.maxDepth ?? DEFAULT_UNPICKLE_LIMITS.maxDepth,
    maxSize: limits.maxSize ?? DEFAULT_UNPICKLE_LIMITS.maxSize,
    maxEntries: limits.maxEntries ?? DEFAULT_UNPICKLE_LIMITS.maxEntries,
  };
  const value = new Reader(data, full).read();
  measure(value, full);
  return value;
}
