/**
 * The model of Python values that taskq reads from and writes to pickles.
 *
 * Python types that JavaScript has map to themselves: `None` is `null`, a
 * `bool` a boolean, a `str` a string, `bytes` a `Uint8Array`, a `list` an
 * array, and an `int` a number (when it is a safe integer) or a bigint. The
 * rest are small classes, so that no distinction Python makes is lost:
 * {@link PyFloat} (`7.0` is not `7`), {@link PyTuple}, {@link PySet} (also
 * `frozenset`), {@link PyDict} (keys of any hashable type, insertion order)
 * and, for the few classes the protocol needs, {@link PyGlobal} and
 * {@link PyObject}: data describing a class and how it was built, never
 * anything that runs.
 *
 * @module
 */

/** A Python value as taskq holds it. */
export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyFloat
  | PyValue[]
  | PyTuple
  | PySet
  | PyDict
  | PyGlobal
  | PyObject;

/**
 * A Python `float`.
 *
 * @example
 * ```ts
 * import { PyFloat } from "./values.ts";
 * import { pickle } from "./pickle_writer.ts";
 * import { unpickle } from "./pickle_reader.ts";
 * const back = unpickle(pickle(new PyFloat(7))); // Python's 7.0, not 7
 * console.log(back instanceof PyFloat, (back as PyFloat).value); // true 7
 * console.log(unpickle(pickle(7))); // 7 (an int)
 * ```
 */
export class PyFloat {
  /** The number. */
  readonly value: number;
  /** Wraps `value`. */
  constructor(value: number) {
    this.value = value;
  }
}

/**
 * A Python `tuple`.
 *
 * @example
 * ```ts
 * import { PyTuple } from "./values.ts";
 * import { pickle } from "./pickle_writer.ts";
 * import { unpickle } from "./pickle_reader.ts";
 * const point = new PyTuple([1, "two", null]); // (1, 'two', None)
 * const back = unpickle(pickle(point));
 * console.log(back instanceof PyTuple && back.items); // [ 1, "two", null ]
 * ```
 */
export class PyTuple {
  /** The elements. */
  readonly items: readonly PyValue[];
  /** Wraps `items`. */
  constructor(items: readonly PyValue[]) {
    this.items = items;
  }
}

/** Whether a value may be a dict key or set element (Python's hashable types here). */
export function isHashable(value: PyValue): boolean {
  if (value instanceof PyTuple) return value.items.every(isHashable);
  if (value instanceof PySet) return value.frozen;
  return !(Array.isArray(value) || value instanceof PyDict || value instanceof PyObject);
}

/**
 * Bytes as text, one character per byte (WHATWG's "latin1" is windows-1252,
 * which maps each of the 256 bytes to a different character): a fast, exact
 * {@link hashKey} for `bytes`, after their length (so that it ends where it
 * says, within a tuple's or frozenset's key).
 */
const bytesAsText = new TextDecoder("latin1");

/**
 * A text key equal for values Python finds equal as dict keys or set elements
 * (`1`, `1.0` and `True` are one key). Only for hashable values.
 */
export function hashKey(value: PyValue): string {
  if (value === null) return "N";
  if (typeof value === "boolean") return value ? "i1" : "i0";
  if (typeof value === "number" || typeof value === "bigint") return `i${value}`;
  if (value instanceof PyFloat) {
    const n = value.value;
    return Number.isInteger(n) ? `i${BigInt(n)}` : `f${Object.is(n, -0) ? 0 : n}`;
  }
  if (typeof value === "string") return `s${JSON.stringify(value)}`;
  if (value instanceof Uint8Array) return `b${value.length}:${bytesAsText.decode(value)}`;
  if (value instanceof PyTuple) return `t(${value.items.map(hashKey).join("|")})`;
  if (value instanceof PySet) return `z(${value.keys().sort().join("|")})`;
  if (value instanceof PyGlobal) return `g${JSON.stringify(value.qualifiedName)}`;
  throw new TypeError("unhashable value");
}

/**
 * A Python `set` or `frozenset`: elements in the order they came.
 *
 * @example
 * ```ts
 * import { PyFloat, PySet } from "./values.ts";
 * const set = new PySet([1, new PyFloat(1), true, "a"]); // {1, 'a'}: 1 == 1.0 == True
 * console.log(set.items.length, set.frozen); // 2 false
 * const frozen = new PySet(["x"], true); // frozenset({'x'})
 * console.log(frozen.frozen); // true
 * try {
 *   set.add([1, 2]); // a list is unhashable, as in Python
 * } catch (error) {
 *   console.log(error instanceof TypeError); // true
 * }
 * ```
 */
export class PySet {
  /** Whether it is a `frozenset`. */
  readonly frozen: boolean;
  readonly #items: PyValue[] = [];
  readonly #keys = new Set<string>();

  /** Creates a set holding `items` (duplicates are dropped, as Python does). */
  constructor(items: readonly PyValue[] = [], frozen = false) {
    this.frozen = frozen;
    for (const item of items) this.add(item);
  }

  /** The elements. */
  get items(): readonly PyValue[] {
    return this.#items;
  }

  /** The {@link hashKey} of each element. */
  keys(): string[] {
    return [...this.#keys];
  }

  /**
   * Adds an element unless an equal one is there.
   * @throws {TypeError} when the element is unhashable.
   */
  add(item: PyValue): void {
    if (!isHashable(item)) throw new TypeError("unhashable set element");
    const key = hashKey(item);
    if (this.#keys.has(key)) return;
    this.#keys.add(key);
    this.#items.push(item);
  }
}

/**
 * A Python `dict`: entries in insertion order, keys of any hashable type.
 *
 * @example
 * ```ts
 * import { PyDict, PyTuple } from "./values.ts";
 * const dict = new PyDict([["name", "job-1"], [new PyTuple([0, 0]), "origin"]]);
 * dict.set("name", "job-2"); // keeps its place, takes the new value
 * console.log(dict.size, dict.get("name")); // 2 job-2
 * console.log(dict.get(new PyTuple([0, 0]))); // origin
 * ```
 */
export class PyDict {
  readonly #entries: [PyValue, PyValue][] = [];
  readonly #index = new Map<string, number>();

  /** Creates a dict from `entries` (a repeated key keeps its first place and last value). */
  constructor(entries: Iterable<readonly [PyValue, PyValue]> = []) {
    for (const [key, value] of entries) this.set(key, value);
  }

  /** The entries, in insertion order. */
  get entries(): readonly (readonly [PyValue, PyValue])[] {
    return this.#entries;
  }

  /** The number of entries. */
  get size(): number {
    return this.#entries.length;
  }

  /**
   * Sets `key` to `value`, as Python's `d[key] = value` does.
   * @throws {TypeError} when the key is unhashable.
   */
  set(key: PyValue, value: PyValue): void {
    if (!isHashable(key)) throw new TypeError("unhashable dict key");
    const hash = hashKey(key);
    const at = this.#index.get(hash);
    if (at !== undefined) {
      this.#entries[at][1] = value;
      return;
    }
    this.#index.set(hash, this.#entries.length);
    this.#entries.push([key, value]);
  }

  /** The value of `key`, or `undefined` when absent. */
  get(key: PyValue): PyValue | undefined {
    const at = this.#index.get(hashKey(key));
    return at === undefined ? undefined : this.#entries[at][1];
  }
}

/**
 * A reference to a Python class or function by module and name (never resolved).
 *
 * @example
 * ```ts
 * import { PyGlobal } from "./values.ts";
 * const empty = new PyGlobal("_queue", "Empty");
 * console.log(empty.qualifiedName); // _queue.Empty
 * ```
 */
export class PyGlobal {
  /** The module, e.g. `_queue`. */
  readonly module: string;
  /** The qualified name in it, e.g. `Empty`. */
  readonly name: string;
  /** Creates the reference. */
  constructor(module: string, name: string) {
    this.module = module;
    this.name = name;
  }

  /** `module.name`. */
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** How a pickled object was built: `cls(*args)` or `cls.__new__(cls, *args)`. */
export type PyBuild = "reduce" | "newobj";

/**
 * An object of an allow-listed class, as data: its class, the arguments it is
 * built from, and the state applied to it afterwards (`BUILD`), if any.
 *
 * @example
 * ```ts
 * import { PyGlobal, PyObject } from "./values.ts";
 * import { pickle } from "./pickle_writer.ts";
 * import { unpickle } from "./pickle_reader.ts";
 * // ValueError("bad timeout"), as a manager sends it in an `#ERROR` reply.
 * const error = new PyObject(new PyGlobal("builtins", "ValueError"), ["bad timeout"], "reduce");
 * const back = unpickle(pickle(error)); // an allow-listed class: read as data, never run
 * if (back instanceof PyObject) {
 *   console.log(back.cls.qualifiedName, back.args); // builtins.ValueError [ "bad timeout" ]
 * }
 * ```
 */
export class PyObject {
  /** Its class. */
  readonly cls: PyGlobal;
  /** The arguments of the call that builds it. */
  readonly args: readonly PyValue[];
  /** How it is built. */
  readonly build: PyBuild;
  /** Keyword arguments of `__new__`, when built that way (`NEWOBJ_EX`). */
  readonly kwargs: PyDict | undefined;
  /** State applied with `BUILD`, if any. */
  state: PyValue | undefined = undefined;

  /** Creates the object description. */
  constructor(cls: PyGlobal, args: readonly PyValue[], build: PyBuild, kwargs?: PyDict) {
    this.cls = cls;
    this.args = args;
    this.build = build;
    this.kwargs = kwargs;
  }
}

/** A Python exception instance: `module.name(*args)`, built as Python pickles exceptions. */
export function pyException(module: string, name: string, ...args: PyValue[]): PyObject {
  return new PyObject(new PyGlobal(module, name), args, "reduce");
}

/** `queue.Empty()`, pickled as Python does: the C class `_queue.Empty`. */
export function queueEmpty(): PyObject {
  return pyException("_queue", "Empty");
}

/** `queue.Full()`: a pure-Python class, `queue.Full`. */
export function queueFull(): PyObject {
  return pyException("queue", "Full");
}

/** Whether `value` is an instance of one of the classes named `module.name`. */
export function isInstance(value: unknown, ...names: string[]): value is PyObject {
  return value instanceof PyObject && names.includes(value.cls.qualifiedName);
}

/** Python's truth value of a plain value (`bool(x)`). */
export function pyTruthy(value: PyValue): boolean {
  if (value === null || value === false) return false;
  if (value === true) return true;
  if (typeof value === "number") return value !== 0;
  if (typeof value === "bigint") return value !== 0n;
  if (value instanceof PyFloat) return value.value !== 0;
  if (typeof value === "string" || value instanceof Uint8Array || Array.isArray(value)) {
    return value.length > 0;
  }
  if (value instanceof PyTuple || value instanceof PySet) return value.items.length > 0;
  if (value instanceof PyDict) return value.size > 0;
  return true;
}

/** The Python type name of a value, for messages (`int`, `tuple`, `os.system`...). */
export function pyTypeName(value: PyValue): string {
  if (value === null) return "NoneType";
  if (typeof value === "boolean") return "bool";
  if (typeof value === "number" || typeof value === "bigint") return "int";
  if (typeof value === "string") return "str";
  if (value instanceof Uint8Array) return "bytes";
  if (value instanceof PyFloat) return "float";
  if (Array.isArray(value)) return "list";
  if (value instanceof PyTuple) return "tuple";
  if (value instanceof PySet) return value.frozen ? "frozenset" : "set";
  if (value instanceof PyDict) return "dict";
  if (value instanceof PyGlobal) return value.qualifiedName;
  return value.cls.qualifiedName;
}
