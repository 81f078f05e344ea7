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

/** Limits of {@link unpickle}. */
export interface UnpickleLimits {
  /** Deepest nesting of containers. */
  maxDepth: number;
  /** Largest size of the value with every shared reference counted as a copy (about bytes). */
  maxSize: number;
}

/** The limits used when none are given. */
export const DEFAULT_UNPICKLE_LIMITS: UnpickleLimits = {
  maxDepth: MAX_VALUE_DEPTH + ENVELOPE_DEPTH,
  maxSize: DEFAULT_MAX_FRAME_BYTES,
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

class Reader {
  readonly #data: Uint8Array;
  readonly #view: DataView;
  #pos = 0;
  #stack: PyValue[] = [];
  readonly #metastack: PyValue[][] = [];
  readonly #memo = new Map<number, PyValue>();

  constructor(data: Uint8Array) {
    this.#data = data;
    this.#view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  #fail(message: string): never {
    throw new PickleError(`bad pickle (at byte ${this.#pos}): ${message}`);
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

  #tuple(items: PyValue[]): void {
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
      try {
        set.add(item);
      } catch {
        this.#fail(`unhashable set element of type ${pyTypeName(item)}`);
      }
    }
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
          this.#push(this.#top());
          break;
        case OP.NONE:
          this.#push(null);
          break;
        case OP.NEWTRUE:
          this.#push(true);
          break;
        case OP.NEWFALSE:
          this.#push(false);
          break;
        case OP.BININT:
          this.#push(this.#i32());
          break;
        case OP.BININT1:
          this.#push(this.#u8());
          break;
        case OP.BININT2:
          this.#push(this.#u16());
          break;
        case OP.LONG1:
          this.#push(decodeLong(this.#take(this.#u8())));
          break;
        case OP.LONG4: {
          const n = this.#i32();
          if (n < 0) this.#fail("negative LONG4 length");
          if (n > MAX_INT_BYTES) {
            this.#fail(`integer of ${n} bytes is longer than the limit of ${MAX_INT_BYTES}`);
          }
          this.#push(decodeLong(this.#take(n)));
          break;
        }
        case OP.BINFLOAT: {
          const at = this.#pos;
          this.#take(8);
          this.#push(new PyFloat(this.#view.getFloat64(at, false)));
          break;
        }
        case OP.SHORT_BINUNICODE:
          this.#push(this.#text(this.#take(this.#u8())));
          break;
        case OP.BINUNICODE:
          this.#push(this.#text(this.#take(this.#u32())));
          break;
        case OP.BINUNICODE8:
          this.#push(this.#text(this.#take(this.#u64())));
          break;
        case OP.SHORT_BINBYTES:
          this.#push(this.#take(this.#u8()).slice());
          break;
        case OP.BINBYTES:
          this.#push(this.#take(this.#u32()).slice());
          break;
        case OP.BINBYTES8:
          this.#push(this.#take(this.#u64()).slice());
          break;
        case OP.EMPTY_TUPLE:
          this.#tuple([]);
          break;
        case OP.TUPLE1:
          this.#tuple([this.#pop()]);
          break;
        case OP.TUPLE2: {
          const b = this.#pop();
          this.#tuple([this.#pop(), b]);
          break;
        }
        case OP.TUPLE3: {
          const c = this.#pop();
          const b = this.#pop();
          this.#tuple([this.#pop(), b, c]);
          break;
        }
        case OP.TUPLE:
          this.#tuple(this.#popMark());
          break;
        case OP.EMPTY_LIST:
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
          this.#push(new PySet());
          break;
        case OP.ADDITEMS: {
          const items = this.#popMark();
          this.#addItems(this.#top(), items);
          break;
        }
        case OP.FROZENSET: {
          const items = this.#popMark();
          const set = new PySet([], true);
          for (const item of items) {
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
          this.#memo.set(this.#memo.size, this.#top());
          break;
        case OP.BINPUT:
          this.#memo.set(this.#u8(), this.#top());
          break;
        case OP.LONG_BINPUT:
          this.#memo.set(this.#u32(), this.#top());
          break;
        case OP.BINGET:
          this.#push(this.#getMemo(this.#u8()));
          break;
        case OP.LONG_BINGET:
          this.#push(this.#getMemo(this.#u32()));
          break;
        case OP.GLOBAL: {
          const module = this.#line();
          this.#push(this.#global(module, this.#line()));
          break;
        }
        case OP.STACK_GLOBAL: {
          const name = this.#pop();
          const module = this.#pop();
          if (typeof module !== "string" || typeof name !== "string") {
            this.#fail("STACK_GLOBAL needs two strings");
          }
          this.#push(this.#global(module, name));
          break;
        }
        case OP.REDUCE: {
          const args = this.#popTuple("REDUCE");
          this.#push(new PyObject(this.#popGlobal("REDUCE"), args.items, "reduce"));
          break;
        }
        case OP.NEWOBJ: {
          const args = this.#popTuple("NEWOBJ");
          this.#push(new PyObject(this.#popGlobal("NEWOBJ"), args.items, "newobj"));
          break;
        }
        case OP.NEWOBJ_EX: {
          const kwargs = this.#pop();
          if (!(kwargs instanceof PyDict)) this.#fail("NEWOBJ_EX needs a dict of keywords");
          const args = this.#popTuple("NEWOBJ_EX");
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
  };
  const value = new Reader(data).read();
  measure(value, full);
  return value;
}
