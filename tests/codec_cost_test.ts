/**
 * The msgpack codec's bound on what a frame decodes to (lib/model/codec.ts):
 *
 * - the hostile frames of the issue on decoded size, at full size (a 15.9 MB
 *   put of 65,536 items of 240 empty maps each, 16.7 million empty maps, 8
 *   million empty binaries) are refused before anything is built, with a
 *   message that says what to do, and without the heap growing;
 * - what msgpackr alone would build beyond plain msgpack (its record,
 *   structured-clone and reference extensions: a 300-byte frame standing for a
 *   tree of 4 million leaves) is refused by the pre-scan;
 * - ordinary large frames still decode: 16 MiB of binary or of text, 100,000
 *   small integers, 10,000 small maps;
 * - an item is held to the same bound whatever bytes it came as, so what was
 *   accepted once always decodes again: alone (as the store keeps it) and in
 *   a reply of any number of jobs.
 *
 * No test asserts a duration: each asserts the refusal (and, where it is
 * robust, that the heap barely grew).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Packr } from "msgpackr";
import {
  checkItem,
  checkItemArgument,
  decode,
  DECODED_COST_ALLOWANCE_BYTES,
  DECODED_COST_PER_WIRE_BYTE,
  encode,
  MAX_ITEM_DEPTH,
} from "../lib/model/codec.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../lib/wire/frame.ts";
import { MAX_BATCH } from "../lib/wire/messages.ts";
import { ProtocolError } from "../lib/errors.ts";

/** Most the heap may grow while a hostile frame is refused (it should not grow at all). */
const HEAP_GROWTH_LIMIT_BYTES = 200 * 1024 * 1024;

/** A hand-written msgpack writer, for frames no encoder would write. */
class Writer {
  #bytes = new Uint8Array(1024);
  #length = 0;

  /** Appends raw bytes. */
  raw(...bytes: number[]): this {
    this.#room(bytes.length);
    this.#bytes.set(bytes, this.#length);
    this.#length += bytes.length;
    return this;
  }

  /** Appends `bytes` `count` times. */
  copies(bytes: Uint8Array, count: number): this {
    this.#room(bytes.length * count);
    for (let i = 0; i < count; i++, this.#length += bytes.length) {
      this.#bytes.set(bytes, this.#length);
    }
    return this;
  }

  /** Appends `byte` `count` times. */
  repeat(byte: number, count: number): this {
    this.#room(count);
    this.#bytes.fill(byte, this.#length, this.#length + count);
    this.#length += count;
    return this;
  }

  /** Appends an encoded value. */
  value(value: unknown): this {
    const bytes = encode(value);
    this.#room(bytes.length);
    this.#bytes.set(bytes, this.#length);
    this.#length += bytes.length;
    return this;
  }

  /** Appends an array 32 header for `count` elements. */
  array32(count: number): this {
    return this.raw(0xdd, count >>> 24, (count >>> 16) & 0xff, (count >>> 8) & 0xff, count & 0xff);
  }

  /** Appends the start of a put frame whose items follow: `{op, rid, queue, items: [...]}`. */
  put(count: number): this {
    return this.raw(0x84).value("op").value("put").value("rid").value(1).value("queue")
      .value("tasks").value("items").array32(count);
  }

  /** The bytes written. */
  done(): Uint8Array {
    return this.#bytes.subarray(0, this.#length);
  }

  #room(n: number): void {
    if (this.#length + n <= this.#bytes.length) return;
    const grown = new Uint8Array(Math.max(2 * this.#bytes.length, this.#length + n));
    grown.set(this.#bytes.subarray(0, this.#length));
    this.#bytes = grown;
  }
}

/** Asserts that decoding `frame` is refused with a ProtocolError matching `pattern`. */
function refused(frame: Uint8Array, pattern: RegExp): ProtocolError {
  let caught: unknown;
  try {
    decode(frame);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ProtocolError, `expected a ProtocolError, got ${caught}`);
  assert.equal(caught.code, "bad_request");
  assert.match(caught.message, pattern);
  return caught;
}

/** Asserts that decoding `frame` is refused as too costly, and that the heap did not grow. */
function refusedAsCostly(frame: Uint8Array): void {
  const before = Deno.memoryUsage().heapUsed;
  const error = refused(frame, /would decode to about [\d,]+ MiB of memory/);
  const grown = Deno.memoryUsage().heapUsed - before;
  assert.ok(grown < HEAP_GROWTH_LIMIT_BYTES, `the heap grew by ${grown} bytes`);
  // The message says what the limit is and what to do.
  assert.match(error.message, new RegExp(`${DECODED_COST_PER_WIRE_BYTE} bytes per byte received`));
  assert.match(error.message, /send such data more compactly/);
}

Deno.test("cost: a 15.9 MB put of 65,536 items of 240 empty maps is refused unbuilt", () => {
  const item = new Writer().raw(0xdc, 0, 240).repeat(0x80, 240).done();
  const frame = new Writer().put(65_536).copies(item, 65_536).done();
  assert.ok(frame.length > 15_900_000 && frame.length <= DEFAULT_MAX_FRAME_BYTES);
  refusedAsCostly(frame);
  // Five of them (which killed the master) are five refusals.
  for (let i = 0; i < 4; i++) refusedAsCostly(frame);
});

Deno.test("cost: 16.7 million empty maps (or arrays, or binaries) in one frame are refused", () => {
  const count = DEFAULT_MAX_FRAME_BYTES - 5;
  refusedAsCostly(new Writer().array32(count).repeat(0x80, count).done());
  refusedAsCostly(new Writer().array32(count).repeat(0x90, count).done());
  const binaryCount = Math.floor(count / 2);
  const empty = new Uint8Array([0xc4, 0]);
  refusedAsCostly(new Writer().array32(binaryCount).copies(empty, binaryCount).done());
  // 8 million empty maps in a put.
  refusedAsCostly(new Writer().put(1).array32(8_000_000).repeat(0x80, 8_000_000).done());
});

Deno.test("cost: the limit is the allowance plus so much per byte, in the estimate's terms", () => {
  // Empty maps cost 64 each (a slot and an object); the array 40; each frame
  // may cost the allowance plus 32 per byte. Find the first refused count.
  const frame = (count: number) => new Writer().array32(count).repeat(0x80, count).done();
  const cost = (count: number) => 40 + 64 * count;
  const limit = (count: number) =>
    DECODED_COST_ALLOWANCE_BYTES + DECODED_COST_PER_WIRE_BYTE * (5 + count);
  let count = 1;
  while (cost(count) <= limit(count)) count++;
  decode(frame(count - 1));
  refusedAsCostly(frame(count));
});

Deno.test("cost: ordinary large frames still decode", () => {
  const limit = DEFAULT_MAX_FRAME_BYTES;
  // One big binary, one big text (ASCII and not), each filling a 16 MiB frame.
  const binary = decode(encode(new Uint8Array(limit - 5).fill(7))) as Uint8Array;
  assert.equal(binary.length, limit - 5);
  assert.equal((decode(encode("x".repeat(limit - 5))) as string).length, limit - 5);
  const accented = Math.floor((limit - 5) / 2);
  assert.equal((decode(encode("é".repeat(accented))) as string).length, accented);
  // Puts of 100,000 small integers and of 10,000 small maps (and 100,000 floats).
  const put = (items: unknown[]) => {
    const message = { op: "put", rid: 1, queue: "tasks", items };
    assert.deepEqual(decode(encode(message)), message);
    for (const item of items) checkItem(item);
  };
  put(Array.from({ length: 100_000 }, (_, i) => i % 100));
  put(Array.from({ length: 100_000 }, (_, i) => i * 1_000));
  put(Array.from({ length: 100_000 }, (_, i) => i + 0.5));
  put(Array.from({ length: 10_000 }, (_, i) => ({ n: i % 100 })));
  put(Array.from({ length: 10_000 }, (_, i) => ({ id: i, name: `job-${i}`, tags: ["a", "b"] })));
  // A batch of the smallest maps that are not empty: a million.
  put(Array.from({ length: 1_000_000 }, (_, i) => ({ n: i % 100 })));
  // Timestamps and a mix.
  put(Array.from({ length: 10_000 }, (_, i) => ({ at: new Date(i * 1000), ok: true, x: null })));
});

Deno.test("cost: msgpackr's own extensions are refused unbuilt, before they can stand for more", () => {
  // Structured clone: a 22-level binary tree of shared arrays, 4 million leaves in 300 bytes.
  const cloning = new Packr({ structuredClone: true, useRecords: false });
  let tree: unknown = [1];
  for (let i = 0; i < 22; i++) tree = [tree, tree];
  const shared = cloning.pack(tree);
  assert.ok(shared.length < 400);
  refused(shared, /unsupported extension type 105 .*plain data only/);
  // Records: a definition (ext 0x72) and record references.
  const records = new Packr({ useRecords: true }).pack([{ a: 1 }, { a: 2 }]);
  refused(records, /unsupported extension type 114/);
  // msgpackr's undefined (type 0) and bundled strings (0x62), as any extension but -1.
  refused(new Uint8Array([0xd4, 0x00, 0x00]), /type 0 \(msgpackr's undefined\)/);
  refused(new Uint8Array([0xc7, 0x01, 0x62, 0x00]), /unsupported extension type 98/);
  refused(new Uint8Array([0xd4, 0x80, 0x00]), /unsupported extension type -128/);
  // The timestamp (-1) is a Date, in each of its three sizes.
  assert.deepEqual(decode(new Uint8Array([0xd6, 0xff, 0, 0, 0, 2])), new Date(2000));
  for (const at of [new Date(1_700_000_000_123), new Date(2 ** 35 * 1000), new Date(-1000)]) {
    assert.deepEqual(decode(encode(at)), at);
  }
});

Deno.test("cost: malformed headers are refused by the pre-scan with what is wrong", () => {
  refused(new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff]), /truncated/);
  refused(new Uint8Array([0xdf, 0x80, 0, 0, 0, 0x01]), /truncated/);
  refused(new Uint8Array([0x92, 0x01]), /truncated \(the value at byte 0/);
  refused(new Uint8Array([0xcb, 0, 0]), /truncated/);
  refused(new Uint8Array([0xd6, 0xff, 0, 0]), /truncated/);
  refused(new Uint8Array([0xc7, 0x05, 0xff, 0]), /truncated/);
  refused(new Uint8Array([0x91, 0xc1]), /reserved byte 0xc1 at byte 1/);
  refused(new Uint8Array([0x90, 0x90]), /1 bytes follow the value/);
  refused(new Uint8Array(65).fill(0x91), /nested too deeply/);
  // Empty containers count for nesting too; 64 levels are fine.
  decode(new Uint8Array(64).fill(0x91).map((b, i) => (i === 63 ? 0x90 : b)));
  refused(new Uint8Array(65).fill(0x91).map((b, i) => (i === 64 ? 0x80 : b)), /nested too/);
});

/** Items made mostly of tiny values: far more memory than bytes, but ordinary as items. */
const TINY_VALUE_ITEMS: readonly unknown[] = [
  Array.from({ length: 200 }, () => ({})),
  Array.from({ length: 500 }, () => []),
  Array.from({ length: 50 }, () => new Uint8Array(0)),
  (() => {
    let value: unknown = 1;
    for (let i = 0; i < MAX_ITEM_DEPTH; i++) value = [value];
    return value;
  })(),
];

Deno.test("cost: items of tiny values are items; the bound is on a peer's frame as a whole", () => {
  for (const item of TINY_VALUE_ITEMS) {
    checkItem(item);
    checkItemArgument(item);
    // A put of one of them is far within a frame's allowance.
    assert.ok(decode(encode({ op: "put", rid: 1, queue: "q", items: [item] })) !== undefined);
  }
  // A peer's frame of many of them is refused, however the bytes are padded.
  const count = 100_000;
  const map32 = new Uint8Array([0xdf, 0, 0, 0, 0]);
  const compact = encode({ items: Array.from({ length: count }, () => ({})) });
  assert.throws(() => decode(compact), /would decode to about/);
  const padded = new Writer().put(1).array32(count).copies(map32, count).done();
  assert.ok(decode(padded) !== undefined, "padding buys room, within the bound per byte");
  // What taskq wrote itself, or a master that proved the key, is decoded trusted.
  assert.equal((decode(compact, "trusted") as { items: unknown[] }).items.length, count);
});

/** Jobs in a reply: enough for their items to add up far beyond a peer frame's bound. */
const REPLY_JOBS = 16_384;

Deno.test("cost: a master's reply of many jobs of tiny values decodes as trusted, not from a peer", () => {
  assert.ok(REPLY_JOBS <= MAX_BATCH);
  for (const item of TINY_VALUE_ITEMS.slice(0, 3)) {
    const jobs = Array.from(
      { length: REPLY_JOBS },
      (_, i) => ({ id: i + 1, attempt: 1, value: item }),
    );
    const reply = encode({ op: "ok", rid: 1, jobs });
    assert.throws(() => decode(reply), /would decode to about/);
    assert.equal((decode(reply, "trusted") as { jobs: unknown[] }).jobs.length, REPLY_JOBS);
  }
});
