/**
 * The strict pickle reader and the writer (lib/wire/python/pickle_reader.ts,
 * pickle_writer.ts, utf8.ts):
 *
 * - what Python pickles (protocols 4 and 5) of the value table reads to
 *   the right model, and what we write back loads in Python as exactly the
 *   same value (types included), under every installed Python 3.11+;
 * - the objects the protocol needs (`queue.Empty`, `queue.Full`, exceptions)
 *   load in Python as instances of their classes;
 * - hostile or malformed input is refused with a PickleError naming the
 *   reason: globals outside the allow-list (by GLOBAL or STACK_GLOBAL, with
 *   REDUCE, NEWOBJ or BUILD), lengths beyond the data (never allocated),
 *   huge integers, deep nesting, memo bombs, cycles, unhashable keys,
 *   unsupported opcodes, trailing bytes;
 * - integers and text at their edges: LONG encodings as Python writes them,
 *   lone surrogates and a leading BOM.
 *
 * @module
 */

import assert from "node:assert/strict";
import { decodeLong, MAX_INT_BYTES, unpickle } from "../lib/python/wire/pickle_reader.ts";
import { encodeLong, pickle } from "../lib/python/wire/pickle_writer.ts";
import {
  PyDict,
  pyException,
  PyFloat,
  PyGlobal,
  PyObject,
  PySet,
  PyTuple,
  type PyValue,
  queueEmpty,
  queueFull,
} from "../lib/python/wire/values.ts";
import { decodeUtf8, encodeUtf8 } from "../lib/python/wire/utf8.ts";
import { PickleError } from "../lib/python/errors.ts";
import { PY_SAME, pythonTest, runPython } from "./_python.ts";

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unhex(text: string): Uint8Array {
  return new Uint8Array(text.match(/../g)?.map((h) => parseInt(h, 16)) ?? []);
}

function bytesOf(...parts: (number[] | string)[]): Uint8Array {
  const out: number[] = [];
  for (const part of parts) {
    if (typeof part === "string") out.push(...new TextEncoder().encode(part));
    else out.push(...part);
  }
  return new Uint8Array(out);
}

const TABLE = `
import math, pickle, queue, sys, json

${PY_SAME}
shared = [1, 2]
VALUES = [
    0, 255, 256, 65535, 65536, -1, -129, 2**31 - 1, -2**31, 2**31, 2**63, -2**63 - 1, 2**1000,
    -(2**1000), 0.0, -0.0, 7.0, 0.1, 1e-310, float('inf'), float('nan'),
    '', 'abc', 'x' * 256, 'x' * 70000, '\\ud83d', '\\udc00\\ud800', '\\ufeff', '\\U0001f600',
    b'', b'\\x00', b'z' * 256, b'z' * 70000, True, False, None,
    [], [1], list(range(2500)), (), (1,), (1, 2), (1, 2, 3), tuple(range(10)),
    {}, {'k': 'v'}, {i: str(i) for i in range(1200)}, {(1, (2,)): frozenset({b'x'})},
    set(), set(range(1500)), frozenset(), frozenset({1, 'a'}),
    [shared, shared, {'s': shared}], {'a': [(), [], {}]},
]
`;

pythonTest("Python's pickles read to the right values, and ours load as the same values", async (
  python,
) => {
  const dir = await Deno.makeTempDir({ prefix: "taskq-pickle-" });
  try {
    await using dumper = await runPython(
      python,
      "dumper",
      TABLE + `
out = [[p, pickle.dumps(v, protocol=p).hex()] for v in VALUES for p in (4, 5)]
open(sys.argv[1], 'w').write(json.dumps(out))
`,
      { args: [`${dir}/in.json`] },
    );
    assert.equal((await dumper.finished()).code, 0, dumper.describe());
    const pickles: [number, string][] = JSON.parse(await Deno.readTextFile(`${dir}/in.json`));
    const values = pickles.map(([, text]) => unpickle(unhex(text)));

    // A few spot checks of the model (protocol 4 entries are every other one).
    const v4 = (i: number) => values[i * 2];
    assert.equal(v4(0), 0);
    assert.equal(v4(10), 2n ** 63n);
    assert.equal(v4(11), -(2n ** 63n) - 1n);
    const seven = v4(16);
    assert.ok(seven instanceof PyFloat && seven.value === 7, "7.0 is a float");
    const one = v4(40);
    assert.ok(one instanceof PyTuple && one.items.length === 1, "(1,) is a tuple");
    const frozen = v4(51);
    assert.ok(frozen instanceof PySet && frozen.frozen, "a frozenset");
    const sharedList = v4(52) as PyValue[];
    assert.equal(sharedList[0], sharedList[1], "a memo reference is the same object");

    const back = values.map((value) => hex(pickle(value)));
    await Deno.writeTextFile(`${dir}/out.json`, JSON.stringify(back));
    await using checker = await runPython(
      python,
      "checker",
      TABLE + `
back = json.loads(open(sys.argv[1]).read())
bad = [i for i, h in enumerate(back) if not same(pickle.loads(bytes.fromhex(h)), VALUES[i // 2])]
print('%d checked, bad: %s' % (len(back), bad))
`,
      { args: [`${dir}/out.json`] },
    );
    assert.equal((await checker.finished()).code, 0, checker.describe());
    assert.deepEqual(checker.lines, [`${pickles.length} checked, bad: []`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

pythonTest("queue.Empty, queue.Full and exceptions load in Python as instances", async (
  python,
) => {
  const objects = [
    queueEmpty(),
    queueFull(),
    pyException("builtins", "ValueError", "'timeout' must be a non-negative number"),
    new PyTuple(["#ERROR", queueEmpty()]),
  ];
  await using checker = await runPython(
    python,
    "checker",
    `import pickle, queue, sys
for h in sys.argv[1:]:
    v = pickle.loads(bytes.fromhex(h))
    if isinstance(v, tuple):
        print(v[0], isinstance(v[1], queue.Empty))
    else:
        print(type(v).__module__, type(v).__name__, repr(v.args))
`,
    { args: objects.map((o) => hex(pickle(o))) },
  );
  assert.equal((await checker.finished()).code, 0, checker.describe());
  assert.deepEqual(checker.lines, [
    "_queue Empty ()",
    "queue Full ()",
    `builtins ValueError ("'timeout' must be a non-negative number",)`,
    "#ERROR True",
  ]);
});

Deno.test("allow-listed objects are data: _queue.Empty, a Token built by NEWOBJ and BUILD", () => {
  // What a Python master sends for an empty queue.
  const empty = unpickle(bytesOf(
    [0x80, 4, 0x8c, 6],
    "_queue",
    [0x94, 0x8c, 5],
    "Empty",
    [0x94, 0x93, 0x94, 0x29, 0x52, 0x94, 0x2e],
  ));
  assert.ok(empty instanceof PyObject);
  assert.equal(empty.cls.qualifiedName, "_queue.Empty");
  assert.deepEqual(empty.args, []);

  const token = unpickle(bytesOf(
    [0x80, 4, 0x8c, 24],
    "multiprocessing.managers",
    [0x8c, 5],
    "Token",
    [0x93, 0x29, 0x81],
    [0x8c, 4],
    "name",
    [0x8c, 9],
    "127.0.0.1",
    [0x4d, 0x88, 0x13, 0x86, 0x8c, 2],
    "ab",
    [0x87, 0x62, 0x2e],
  ));
  assert.ok(token instanceof PyObject);
  assert.equal(token.build, "newobj");
  assert.ok(token.state instanceof PyTuple);
  assert.deepEqual(pickle(token).length > 0, true);
  assert.ok(unpickle(pickle(token)) instanceof PyObject);
});

/** Hand-made pickles that must be refused, with the reason expected. */
const HOSTILE: [string, Uint8Array, RegExp][] = [
  [
    "GLOBAL os.system",
    bytesOf([0x80, 2], "cos\nsystem\n", [0x8c, 2], "id", [0x85, 0x52, 0x2e]),
    /refused to load os\.system/,
  ],
  ["GLOBAL posix.system", bytesOf("cposix\nsystem\n(S'id'\ntR."), /refused to load posix\.system/],
  [
    "STACK_GLOBAL builtins.eval",
    bytesOf([0x80, 4, 0x8c, 8], "builtins", [0x8c, 4], "eval", [0x93, 0x2e]),
    /refused to load builtins\.eval/,
  ],
  [
    "STACK_GLOBAL subprocess.Popen",
    bytesOf([0x80, 4, 0x8c, 10], "subprocess", [0x8c, 5], "Popen", [0x93, 0x2e]),
    /refused to load subprocess\.Popen/,
  ],
  [
    "a user class by NEWOBJ",
    bytesOf([0x80, 4, 0x8c, 8], "__main__", [0x8c, 3], "Job", [0x93, 0x29, 0x81, 0x2e]),
    /refused to load __main__\.Job/,
  ],
  ["REDUCE on a string", bytesOf([0x80, 4, 0x8c, 1], "x", [0x29, 0x52, 0x2e]), /not a class/],
  ["BUILD on a list", bytesOf([0x80, 4, 0x5d, 0x7d, 0x62, 0x2e]), /BUILD on list/],
  [
    "a 4 GiB BINBYTES8",
    bytesOf([0x80, 4, 0x8e, 0, 0, 0, 0, 1, 0, 0, 0, 0x2e]),
    /announces 4294967296 bytes/,
  ],
  [
    "a 2^63 BINUNICODE8",
    bytesOf([0x80, 4, 0x8d, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x2e]),
    /announces 9223372036854775808 bytes/,
  ],
  [
    "a BINUNICODE beyond the data",
    bytesOf([0x80, 4, 0x58, 0xff, 0xff, 0xff, 0xff, 0x2e]),
    /needs 4294967295 more bytes/,
  ],
  [
    "a 1 MiB LONG4",
    bytesOf([0x80, 4, 0x8b, 0, 0, 0x10, 0, 0x2e]),
    new RegExp(`limit of ${MAX_INT_BYTES}`),
  ],
  [
    "a FRAME beyond the data",
    bytesOf([0x80, 4, 0x95, 0, 0, 0, 0, 0, 0, 0, 1, 0x4e, 0x2e]),
    /announces/,
  ],
  [
    "nesting 100 deep",
    bytesOf([0x80, 4], ...Array(100).fill([0x5d]), ...Array(99).fill([0x61]), [0x2e]),
    /nested more than/,
  ],
  [
    "a memo bomb",
    bytesOf(
      [0x80, 4, 0x5d, 0x94],
      ...Array.from({ length: 40 }, (_, i) => [0x30, 0x5d, 0x94, 0x28, 0x68, i, 0x68, i, 0x65]),
      [0x2e],
    ),
    /more than \d+ bytes/,
  ],
  [
    "a list containing itself",
    bytesOf([0x80, 4, 0x5d, 0x94, 0x68, 0, 0x61, 0x2e]),
    /contains itself/,
  ],
  [
    "a list as a dict key",
    bytesOf([0x80, 4, 0x7d, 0x5d, 0x4e, 0x73, 0x2e]),
    /unhashable dict key of type list/,
  ],
  [
    "a dict in a frozenset",
    bytesOf([0x80, 4, 0x28, 0x7d, 0x91, 0x2e]),
    /unhashable frozenset element/,
  ],
  [
    "BYTEARRAY8",
    bytesOf([0x80, 5, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0x2e]),
    /bytearray is not supported/,
  ],
  ["a persistent id", bytesOf([0x80, 4, 0x4e, 0x51, 0x2e]), /persistent ids/],
  ["INST", bytesOf("(ios\nsystem\n."), /INST builds arbitrary objects/],
  ["protocol 6", bytesOf([0x80, 6, 0x4e, 0x2e]), /unsupported pickle protocol 6/],
  ["an unknown opcode", bytesOf([0x80, 4, 0xff, 0x2e]), /opcode 0xff refused/],
  ["bytes after STOP", bytesOf([0x80, 4, 0x4e, 0x2e, 0x4e]), /bytes after STOP/],
  ["two values at STOP", bytesOf([0x80, 4, 0x4e, 0x4e, 0x2e]), /STOP with 2 values/],
  ["an open MARK at STOP", bytesOf([0x80, 4, 0x28, 0x4e, 0x2e]), /unclosed MARK/],
  ["no STOP", bytesOf([0x80, 4, 0x4e]), /ends without STOP/],
  ["empty", new Uint8Array(0), /ends without STOP/],
  ["stack underflow", bytesOf([0x80, 4, 0x85, 0x2e]), /stack underflow/],
  ["a memo entry never stored", bytesOf([0x80, 4, 0x68, 3, 0x2e]), /memo entry 3/],
  ["invalid UTF-8", bytesOf([0x80, 4, 0x8c, 2, 0xc3, 0x28, 0x2e]), /not UTF-8/],
  ["an overlong UTF-8 form", bytesOf([0x80, 4, 0x8c, 2, 0xc0, 0xaf, 0x2e]), /not UTF-8/],
  [
    "a flood of EMPTY_SET (tests/pickle_cost_test.ts has them at full size)",
    bytesOf([0x80, 4], Array(20_000).fill(0x8f), [0x2e]),
    /more than a pickle may build/,
  ],
  ["a flood of MARK", bytesOf([0x80, 4], Array(1000).fill(0x28), [0x2e]), /MARKs open/],
  [
    "a 64 KiB bytes key set again 100 times",
    bytesOf(
      [0x80, 4, 0x7d, 0x42, 0, 0, 1, 0],
      Array(65_536).fill(7),
      [0x94, 0x4e, 0x73],
      ...Array(100).fill([0x68, 0, 0x4e, 0x73]),
      [0x2e],
    ),
    /to hash after/,
  ],
];

Deno.test("hostile and malformed pickles are refused, naming the reason", () => {
  for (const [what, data, pattern] of HOSTILE) {
    assert.throws(
      () => unpickle(data),
      (error: unknown) => {
        assert.ok(error instanceof PickleError, `${what}: ${error}`);
        assert.match(error.message, pattern, what);
        return true;
      },
      what,
    );
  }
});

Deno.test("shared references within the limits are fine; the limits can be set", () => {
  // MARK, 'abc', MEMOIZE, BINGET 0, BINGET 0, TUPLE: ('abc', 'abc', 'abc') sharing one string.
  const shared = bytesOf([0x80, 4, 0x28, 0x8c, 3], "abc", [0x94, 0x68, 0, 0x68, 0, 0x74, 0x2e]);
  const value = unpickle(shared);
  assert.ok(value instanceof PyTuple && value.items.length === 3);
  assert.throws(() => unpickle(shared, { maxSize: 10 }), /more than 10 bytes/);
  const nested = bytesOf([0x80, 4, 0x5d, 0x5d, 0x5d, 0x61, 0x61, 0x2e]);
  assert.deepEqual(unpickle(nested), [[[]]]);
  assert.throws(() => unpickle(nested, { maxDepth: 2 }), /nested more than 2 levels/);
});

Deno.test("integers: LONG bytes as Python writes them, and back", () => {
  const cases: [bigint, number[]][] = [
    [0n, []],
    [1n, [0x01]],
    [-1n, [0xff]],
    [127n, [0x7f]],
    [128n, [0x80, 0x00]],
    [255n, [0xff, 0x00]],
    [-128n, [0x80]],
    [-129n, [0x7f, 0xff]],
    [-256n, [0x00, 0xff]],
    [2n ** 63n, [0, 0, 0, 0, 0, 0, 0, 0x80, 0x00]],
  ];
  for (const [value, bytes] of cases) {
    assert.deepEqual(encodeLong(value), new Uint8Array(bytes), `encode ${value}`);
    const decoded = decodeLong(new Uint8Array(bytes));
    assert.equal(BigInt(decoded), value, `decode ${value}`);
    assert.equal(typeof decoded, value >= -(2n ** 53n) && value < 2n ** 53n ? "number" : "bigint");
  }
  for (const value of [2n ** 70n, -(2n ** 70n), 10n ** 300n, -(10n ** 300n) + 1n]) {
    assert.equal(decodeLong(encodeLong(value)), value);
    assert.equal(unpickle(pickle(value)), value);
  }
  for (
    const value of [0, 255, 256, 65535, 65536, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 53 - 1]
  ) {
    assert.equal(unpickle(pickle(value)), value);
  }
});

Deno.test("text: lone surrogates and a leading BOM survive, as Python's surrogatepass writes them", () => {
  for (const text of ["\ud800", "a\udc00b", "\ufeffbom", "\u{1f600}", "é", ""]) {
    assert.equal(decodeUtf8(encodeUtf8(text)), text);
    assert.equal(unpickle(pickle(text)), text);
  }
  assert.deepEqual(encodeUtf8("\ud800"), new Uint8Array([0xed, 0xa0, 0x80]));
});

Deno.test("dicts keep insertion order; a repeated key keeps its place and last value", () => {
  const dict = new PyDict([[1, "a"], ["x", "b"], [true, "c"], [new PyFloat(1), "d"]]);
  assert.deepEqual(dict.entries, [[1, "d"], ["x", "b"]]);
  const read = unpickle(pickle(new PyDict([[new PyTuple([1, "t"]), null], [2n ** 80n, 1]])));
  assert.ok(read instanceof PyDict);
  assert.equal(read.get(new PyTuple([1, "t"])), null);
  assert.equal(read.get(2n ** 80n), 1);
  assert.ok(new PyGlobal("a", "b").qualifiedName === "a.b");
});
