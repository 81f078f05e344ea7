/**
 * The mapping between Python values and taskq's native (msgpack) values.
 *
 * Python to native ({@link toNatural}), what `taskq get` and TypeScript
 * clients see:
 *
 * | Python                     | native                                            |
 * | -------------------------- | ------------------------------------------------- |
 * | `None`, `bool`, `str`      | nil, boolean, string (a lone surrogate as U+FFFD) |
 * | `bytes`                    | binary                                            |
 * | `int` within ±(2^53 − 1)   | number                                            |
 * | any other `int`            | its decimal digits as a string (nothing is lost)  |
 * | `float`                    | number (`7.0` is `7`)                             |
 * | `list`, `tuple`            | array                                             |
 * | `set`, `frozenset`         | array, in the set's order                         |
 * | `dict` with `str` keys     | map                                               |
 * | other `dict`s              | map with keys as JSON writes them (`1` → `"1"`),  |
 * |                            | or, when that would merge keys or a key is a      |
 * |                            | tuple, bytes or frozenset, an array of `[k, v]`   |
 *
 * Native to Python ({@link fromNatural}): nil → `None`, boolean → `bool`,
 * string → `str`, binary → `bytes`, a whole number within ±(2^53 − 1) →
 * `int`, any other number → `float`, bigint → `int`, array → `list`, map →
 * `dict` with `str` keys, timestamp → ISO 8601 `str`.
 *
 * A Python value whose native form loses nothing is flagged `exact`; for the
 * others, the front-end keeps the Python value beside the item so that a
 * Python consumer gets back exactly what a Python producer put.
 *
 * @module
 */

import { PythonCallError } from "../errors.ts";
import { PyDict, PyFloat, PyGlobal, PySet, PyTuple, pyTypeName, type PyValue } from "./values.ts";

/** A Python value in native form. */
export interface Natural {
  /** The native value. */
  value: unknown;
  /** Whether {@link fromNatural} of it gives back the Python value exactly. */
  exact: boolean;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** How JSON (and Python's `json`) writes a scalar dict key; `undefined` for other keys. */
function jsonKey(key: PyValue): string | undefined {
  if (typeof key === "string") return key;
  if (key === null) return "null";
  if (typeof key === "boolean") return key ? "true" : "false";
  if (typeof key === "number" || typeof key === "bigint") return String(key);
  if (key instanceof PyFloat) return Number.isFinite(key.value) ? String(key.value) : undefined;
  return undefined;
}

/**
 * The native form of a Python value.
 * @throws {PythonCallError} (a `TypeError` for the peer) when it holds an
 *   object or a class: only plain values can be queued.
 */
export function toNatural(value: PyValue): Natural {
  let exact = true;
  const convert = (v: PyValue): unknown => {
    if (typeof v === "string") {
      // msgpack strings are UTF-8, which has no lone surrogates.
      if (!v.isWellFormed()) exact = false;
      return v;
    }
    if (v === null || typeof v === "boolean" || v instanceof Uint8Array) return v;
    if (typeof v === "number") return v;
    if (typeof v === "bigint") {
      if (v >= -MAX_SAFE && v <= MAX_SAFE) return Number(v);
      exact = false;
      return v.toString();
    }
    if (v instanceof PyFloat) {
      // A whole float reads back as an int; so does -0.0.
      if (Number.isInteger(v.value)) exact = false;
      return v.value;
    }
    if (Array.isArray(v)) return v.map(convert);
    if (v instanceof PyTuple || v instanceof PySet) {
      exact = false;
      return v.items.map(convert);
    }
    if (v instanceof PyDict) {
      const keys = v.entries.map(([key]) => jsonKey(key));
      const distinct = new Set(keys);
      if (keys.every((key) => key !== undefined) && distinct.size === keys.length) {
        if (v.entries.some(([key]) => typeof key !== "string")) exact = false;
        const out: Record<string, unknown> = {};
        v.entries.forEach(([, item], i) => {
          // defineProperty: a key such as "__proto__" stays an ordinary key.
          Object.defineProperty(out, keys[i] as string, {
            value: convert(item),
            enumerable: true,
            writable: true,
            configurable: true,
          });
        });
        return out;
      }
      exact = false;
      return v.entries.map(([key, item]) => [convert(key), convert(item)]);
    }
    const what = v instanceof PyGlobal ? `the class ${v.qualifiedName}` : pyTypeName(v);
    throw new PythonCallError(
      "builtins.TypeError",
      `cannot queue ${what}: queue items must be plain values (int, float, str, bytes, bool, ` +
        `None, list, tuple, dict, set, frozenset)`,
    );
  };
  const natural = convert(value);
  return { value: natural, exact };
}

/** The Python value of a native value (see the module documentation). */
export function fromNatural(value: unknown): PyValue {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "boolean":
    case "string":
    case "bigint":
      return value;
    case "number":
      return Number.isSafeInteger(value) ? value : new PyFloat(value);
  }
  if (value instanceof Uint8Array) return value;
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(fromNatural);
  const dict = new PyDict();
  for (const key of Object.keys(value as object)) {
    dict.set(key, fromNatural((value as Record<string, unknown>)[key]));
  }
  return dict;
}
