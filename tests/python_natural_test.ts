/**
 * The value mapping between Python and native values
 * (lib/wire/python/natural.ts): each row of the documented table both ways,
 * the `exact` flag that tells the front-end to keep the Python original, and
 * the refusal of objects and classes as queue items.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fromNatural, toNatural } from "../lib/python/wire/natural.ts";
import {
  PyDict,
  PyFloat,
  PyGlobal,
  PySet,
  PyTuple,
  type PyValue,
  queueEmpty,
} from "../lib/python/wire/values.ts";
import { checkValue } from "../lib/model/codec.ts";
import { PythonCallError } from "../lib/python/errors.ts";

const bytes = new Uint8Array([0, 255]);

/** Python value, its native form, and whether that form loses nothing. */
const TABLE: [string, PyValue, unknown, boolean][] = [
  ["None", null, null, true],
  ["True", true, true, true],
  ["an int", 42, 42, true],
  ["-(2**53 - 1)", -(2 ** 53 - 1), -(2 ** 53 - 1), true],
  ["2**53", 2n ** 53n, "9007199254740992", false],
  ["-2**70", -(2n ** 70n), "-1180591620717411303424", false],
  ["1.5", new PyFloat(1.5), 1.5, true],
  ["7.0", new PyFloat(7), 7, false],
  ["-0.0", new PyFloat(-0), -0, false],
  ["inf", new PyFloat(Infinity), Infinity, true],
  ["a str", "héllo", "héllo", true],
  ["a lone surrogate", "\ud800", "\ud800", false],
  ["bytes", bytes, bytes, true],
  ["a list", [1, "a", [null]], [1, "a", [null]], true],
  ["a tuple", new PyTuple([1, 2]), [1, 2], false],
  ["a set", new PySet([3, 1]), [3, 1], false],
  ["a frozenset", new PySet(["x"], true), ["x"], false],
  ["a str-keyed dict", new PyDict([["a", 1], ["b", [true]]]), { a: 1, b: [true] }, true],
  ["an int-keyed dict", new PyDict([[1, "x"], [2, "y"]]), { 1: "x", 2: "y" }, false],
  ["scalar keys", new PyDict([[null, 0], [true, 1], [new PyFloat(2.5), 2]]), {
    null: 0,
    true: 1,
    "2.5": 2,
  }, false],
  ["keys that would merge", new PyDict([["1", "s"], [1, "i"]]), [["1", "s"], [1, "i"]], false],
  ["a tuple key", new PyDict([[new PyTuple([1]), bytes]]), [[[1], bytes]], false],
];

Deno.test("Python values map to natural native values, flagged exact when nothing is lost", () => {
  for (const [what, python, natural, exact] of TABLE) {
    const got = toNatural(python);
    assert.deepEqual(got.value, natural, what);
    assert.equal(got.exact, exact, `${what}: exact`);
    checkValue(got.value);
    if (exact) assert.deepEqual(fromNatural(got.value), python, `${what}: back`);
  }
});

Deno.test("a __proto__ key stays an ordinary key", () => {
  const { value } = toNatural(new PyDict([["__proto__", 1]]));
  assert.deepEqual(Object.keys(value as object), ["__proto__"]);
  assert.equal(Object.getPrototypeOf(value), Object.prototype);
});

Deno.test("native values map to natural Python values", () => {
  const cases: [unknown, PyValue][] = [
    [null, null],
    [undefined, null],
    [false, false],
    [3, 3],
    [-0, -0],
    [2.5, new PyFloat(2.5)],
    [2 ** 60, new PyFloat(2 ** 60)],
    [NaN, new PyFloat(NaN)],
    [12n, 12n],
    ["s", "s"],
    [bytes, bytes],
    [[1, [2]], [1, [2]]],
    [{ a: { b: null } }, new PyDict([["a", new PyDict([["b", null]])]])],
    [new Date(Date.UTC(2024, 0, 2, 3, 4, 5)), "2024-01-02T03:04:05.000Z"],
  ];
  for (const [native, python] of cases) assert.deepEqual(fromNatural(native), python);
});

Deno.test("objects and classes cannot be queued: a TypeError for the Python peer", () => {
  for (
    const value of [queueEmpty(), new PyGlobal("builtins", "int"), [new PyTuple([queueEmpty()])]]
  ) {
    assert.throws(
      () => toNatural(value),
      (error: unknown) =>
        error instanceof PythonCallError && error.exceptionType === "builtins.TypeError" &&
        /queue items must be plain values/.test(error.message),
    );
  }
});
