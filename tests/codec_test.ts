/**
 * Tests of lib/wire/codec.ts: plain msgpack values round-trip unchanged (and
 * are standard msgpack on the wire), while anything that is not one plain
 * value is a ProtocolError: trailing bytes, truncation, the reserved 0xc1 byte,
 * unknown extensions, msgpackr's own extensions (undefined, bigint, Set,
 * RegExp, Error, typed arrays), nesting beyond MAX_VALUE_DEPTH (including
 * nesting deep enough to overflow a recursive decoder) and cyclic data.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Packr } from "msgpackr";
import {
  checkItem,
  checkItemArgument,
  checkValue,
  decode,
  encode,
  MAX_ITEM_DEPTH,
  MAX_VALUE_DEPTH,
} from "../lib/model/codec.ts";
import { ProtocolError } from "../lib/errors.ts";
import { plain } from "./_helpers.ts";

/** msgpackr with its non-standard extensions turned on, to produce what the codec must refuse. */
const extended = new Packr({ structuredClone: true, moreTypes: true, useRecords: false });

function nested(depth: number): unknown {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
}

function refused(payload: Uint8Array, pattern?: RegExp): void {
  assert.throws(() => decode(payload), (error: unknown) => {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${error}`);
    assert.equal(error.code, "bad_request");
    if (pattern) assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("codec: plain values round-trip unchanged", () => {
  const values: unknown[] = [
    null,
    true,
    false,
    0,
    -1,
    127,
    128,
    -33,
    65_535,
    2 ** 32,
    -(2 ** 40),
    Number.MAX_SAFE_INTEGER,
    1.5,
    -0.25,
    "",
    "hello",
    "ünïcødé ✓ 🚀",
    "x".repeat(70_000),
    new Uint8Array([0, 1, 255]),
    new Uint8Array(0),
    new Date(1_700_000_000_123),
    [],
    [1, "two", [3, [4]], { five: 5 }],
    {},
    { a: 1, b: { c: [null, true] }, "key with spaces": "v", "": 0 },
    nested(MAX_VALUE_DEPTH),
  ];
  for (const value of values) {
    const decoded = decode(encode(value));
    if (value instanceof Uint8Array) assert.ok(decoded instanceof Uint8Array);
    assert.deepEqual(plain(decoded), value);
  }
});

Deno.test("codec: encodes standard msgpack", () => {
  assert.deepEqual([...encode(null)], [0xc0]);
  assert.deepEqual([...encode(5)], [0x05]);
  assert.deepEqual([...encode("a")], [0xa1, 0x61]);
  assert.deepEqual([...encode([1, 2])], [0x92, 0x01, 0x02]);
  assert.deepEqual([...encode({ op: "x" })], [0x81, 0xa2, 0x6f, 0x70, 0xa1, 0x78]);
  assert.deepEqual([...encode(new Uint8Array([7]))], [0xc4, 0x01, 0x07]);
  // Hand-written standard msgpack decodes: map16 with one entry, int64, float64.
  assert.deepEqual(
    decode(new Uint8Array([0xde, 0x00, 0x01, 0xa1, 0x6b, 0xd3, 0, 0, 0, 1, 0, 0, 0, 0])),
    {
      k: 2 ** 32,
    },
  );
  assert.equal(decode(new Uint8Array([0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0])), 1.5);
});

Deno.test("codec: encode results stay valid after later encodes", () => {
  const first = encode({ a: "first" });
  const copy = first.slice();
  for (let i = 0; i < 100; i++) encode({ b: "x".repeat(i) });
  assert.deepEqual(first, copy);
});

Deno.test("codec: decoded binary is copied out of the input buffer", () => {
  const payload = encode({ data: new Uint8Array([1, 2, 3]) });
  const value = decode(payload) as { data: Uint8Array };
  payload.fill(0);
  assert.ok(value.data instanceof Uint8Array);
  assert.deepEqual([...value.data], [1, 2, 3]);
});

Deno.test("codec: malformed input is a ProtocolError", () => {
  refused(new Uint8Array(0), /not one valid msgpack value/);
  refused(new Uint8Array([0x01, 0x02]), /not one valid msgpack value/); // trailing byte
  refused(new Uint8Array([0x92, 0x01]), /not one valid msgpack value/); // truncated array
  refused(new Uint8Array([0xa5, 0x61]), /not one valid msgpack value/); // truncated string
  refused(new Uint8Array([0xc1]), /plain data only/); // reserved byte
  // Huge announced lengths are refused, not allocated.
  refused(new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff]));
  refused(new Uint8Array([0xdf, 0xff, 0xff, 0xff, 0xff]));
  refused(new Uint8Array([0xc6, 0xff, 0xff, 0xff, 0xff]));
  refused(new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xff]));
});

Deno.test("codec: extensions other than the timestamp are refused", () => {
  refused(new Uint8Array([0xd4, 0x05, 0x00]), /not one valid msgpack value/); // unknown type 5
  refused(new Uint8Array([0xd4, 0x00, 0x00]), /undefined/); // msgpackr's undefined
  for (const value of [new Set([1]), /x/g, new Error("e"), new Float64Array([1]), 2n ** 70n]) {
    refused(extended.pack(value), /plain data only/);
  }
  // The standard timestamp extension (-1) is a Date.
  assert.deepEqual(decode(new Uint8Array([0xd6, 0xff, 0, 0, 0, 1])), new Date(1000));
  // msgpackr's records and shared references are extensions too: refused
  // before they are built (a few bytes of references could stand for a tree).
  refused(new Packr({ useRecords: true }).pack([{ a: 1 }, { a: 2 }]), /plain data only/);
  const shared = [1];
  refused(extended.pack([shared, shared]), /plain data only/);
});

Deno.test("codec: nesting is limited to MAX_VALUE_DEPTH", () => {
  assert.equal(MAX_VALUE_DEPTH, 64);
  refused(encode(nested(MAX_VALUE_DEPTH + 1)), /nested more than 64 levels/);
  let deepMap: unknown = 1;
  for (let i = 0; i <= MAX_VALUE_DEPTH; i++) deepMap = { k: deepMap };
  refused(encode(deepMap), /nested more than 64 levels/);
  // So deep that a recursive decoder overflows its stack: still a ProtocolError.
  refused(new Uint8Array(200_000).fill(0x91), /nested too deeply/);
});

Deno.test("codec: cyclic data from msgpackr references is refused", () => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  refused(extended.pack(cyclic));
});

Deno.test("codec: checkValue accepts plain data and names what is not", () => {
  checkValue({ a: [1, "s", null, new Uint8Array(1), new Date(0)] });
  checkValue(Object.assign(Object.create(null), { a: 1 }));
  const cases: [unknown, RegExp][] = [
    [undefined, /type undefined/],
    [{ a: undefined }, /type undefined/],
    [[() => 1], /type function/],
    [Symbol("s"), /type symbol/],
    [1n, /type bigint/],
    [new Map(), /Map/],
    [new (class Thing {})(), /Thing/],
    [new Uint16Array(1), /Uint16Array/],
  ];
  for (const [value, pattern] of cases) {
    assert.throws(() => checkValue(value), (error: unknown) => {
      assert.ok(error instanceof ProtocolError);
      assert.match(error.message, pattern);
      return true;
    });
  }
});

Deno.test("codec: items may nest MAX_ITEM_DEPTH levels, leaving room for their envelope", () => {
  checkItem(nested(MAX_ITEM_DEPTH));
  assert.throws(() => checkItem(nested(MAX_ITEM_DEPTH + 1)), ProtocolError);
  // The deepest item still decodes inside a reply, a job record and a dead letter.
  const reply = {
    op: "ok",
    rid: 1,
    jobs: [{ id: 1, attempt: 1, value: { letter: nested(MAX_ITEM_DEPTH) } }],
  };
  assert.deepEqual(decode(encode(reply)), reply);
});

Deno.test("codec: a caller's own item is refused with TypeError or RangeError, a peer's with ProtocolError", () => {
  checkItemArgument({ a: [1, "s", null, new Uint8Array(1), new Date(0)] });
  checkItemArgument(nested(MAX_ITEM_DEPTH));
  const cases: [unknown, typeof TypeError | typeof RangeError, RegExp][] = [
    [undefined, TypeError, /type undefined/],
    [{ a: () => 1 }, TypeError, /type function/],
    [1n, TypeError, /type bigint/],
    [new Map(), TypeError, /Map/],
    [new (class Thing {})(), TypeError, /Thing/],
    [new Date(NaN), RangeError, /timestamp/],
    [nested(MAX_ITEM_DEPTH + 1), RangeError, new RegExp(`more than ${MAX_ITEM_DEPTH} levels`)],
  ];
  for (const [value, kind, pattern] of cases) {
    assert.throws(() => checkItemArgument(value), (error: unknown) => {
      assert.ok(error instanceof kind, `expected ${kind.name} for ${Deno.inspect(value)}`);
      assert.ok(!(error instanceof ProtocolError));
      assert.match(error.message, pattern);
      assert.match(error.message, kind === TypeError ? /plain data only: null, boolean/ : /./);
      return true;
    });
    // The same value from a peer is a protocol error.
    assert.throws(() => checkItem(value), ProtocolError);
  }
});
