/**
 * Python's framing (lib/wire/python/frame.ts): reassembly from arbitrary
 * reads, the -1 escape to an 8-byte length, refusal of negative lengths, and
 * refusal of oversized lengths (4 GiB included) before anything is allocated;
 * a server's reader that stays small while its peer sends little.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  PY_HANDSHAKE_MAX_BYTES,
  PY_HEADER_BYTES,
  PY_LONG_HEADER_BYTES,
  pyFrame,
  PyFrameReader,
} from "../lib/python/wire/frame.ts";
import { FrameTooLargeError, ProtocolError } from "../lib/errors.ts";
import { IDLE_BUFFER_BYTES } from "../lib/wire/frame.ts";
import { randomBytes, seededRandom } from "./_helpers.ts";

const MAX = 1 << 20;

function frames(reader: PyFrameReader): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let frame = reader.next(); frame !== undefined; frame = reader.next()) out.push(frame);
  return out;
}

Deno.test("messages are reassembled from reads split and merged anywhere", () => {
  const random = seededRandom(7);
  const payloads = Array.from(
    { length: 50 },
    (_, i) => randomBytes(random, i % 5 === 0 ? 0 : Math.floor(random() * 70_000)),
  );
  const stream = new Uint8Array(
    payloads.reduce((n, p) => n + PY_HEADER_BYTES + p.length, 0),
  );
  let offset = 0;
  for (const payload of payloads) {
    const framed = pyFrame(payload);
    assert.equal(new DataView(framed.buffer).getInt32(0), payload.length);
    stream.set(framed, offset);
    offset += framed.length;
  }
  const reader = new PyFrameReader(MAX);
  const got: Uint8Array[] = [];
  for (let at = 0; at < stream.length;) {
    const n = Math.min(stream.length - at, 1 + Math.floor(random() * 9000));
    reader.push(stream.subarray(at, at + n));
    got.push(...frames(reader));
    at += n;
  }
  assert.equal(got.length, payloads.length);
  got.forEach((frame, i) => assert.deepEqual(frame, payloads[i]));
  assert.equal(reader.pendingBytes, 0);
});

Deno.test("the -1 escape announces an 8-byte length, accepted for any size", () => {
  const reader = new PyFrameReader(MAX);
  const message = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4, 5]);
  reader.push(message.subarray(0, 6));
  assert.equal(reader.next(), undefined, "the long header is not complete yet");
  reader.push(message.subarray(6));
  assert.deepEqual(reader.next(), new Uint8Array([1, 2, 3, 4, 5]));
  assert.equal(reader.next(), undefined);
});

Deno.test("a negative length other than -1 is refused", () => {
  const reader = new PyFrameReader(MAX);
  reader.push(new Uint8Array([0xff, 0xff, 0xff, 0xfe]));
  assert.throws(() => reader.next(), ProtocolError);
});

Deno.test("an oversized length is refused before anything is allocated for it", () => {
  const short = new PyFrameReader(PY_HANDSHAKE_MAX_BYTES);
  const before = short.capacity;
  short.push(new Uint8Array([0, 0, 1, 1])); // 257 bytes
  assert.throws(() => short.next(), FrameTooLargeError);
  short.space();
  assert.equal(short.capacity, before);

  // 4 GiB behind the escape: refused from its 12 header bytes alone.
  const long = new PyFrameReader(MAX);
  const longBefore = long.capacity;
  long.push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0]));
  assert.throws(
    () => long.next(),
    (error: unknown) => error instanceof FrameTooLargeError && error.length === 2 ** 32,
  );
  long.space();
  assert.equal(long.capacity, longBefore, "no buffer was grown for it");
  assert.equal(PY_LONG_HEADER_BYTES, 12);
});

Deno.test("the maximum can be raised after the handshake", () => {
  const reader = new PyFrameReader(PY_HANDSHAKE_MAX_BYTES);
  const big = new Uint8Array(10_000).fill(9);
  reader.maxFrameBytes = MAX;
  reader.push(pyFrame(big));
  assert.deepEqual(reader.next(), big);
});

Deno.test("a server's reader stays small while the peer sends little, and grows for a large message", () => {
  const reader = new PyFrameReader(MAX, { shrinkWhenIdle: true });
  assert.equal(reader.capacity, IDLE_BUFFER_BYTES);
  // Small calls one at a time (a Python worker's get, then its put): the buffer stays small.
  const call = pyFrame(new Uint8Array(60).fill(1));
  for (let i = 0; i < 500; i++) {
    reader.space().set(call);
    reader.written(call.length);
    assert.equal(reader.next()?.length, 60);
    assert.equal(reader.capacity, IDLE_BUFFER_BYTES);
  }
  // A large message is read whole, in reads as large as the space offered.
  reader.push(pyFrame(randomBytes(seededRandom(3), 200_000)));
  assert.deepEqual(frames(reader).map((frame) => frame.length), [200_000]);
  assert.ok(reader.capacity > IDLE_BUFFER_BYTES);
  // Quiet again: small messages bring it back to the idle size.
  for (let i = 0; i < 4; i++) {
    reader.space().set(call);
    reader.written(call.length);
    assert.equal(reader.next()?.length, 60);
  }
  assert.equal(reader.capacity, IDLE_BUFFER_BYTES);
  // A client's reader (no option) keeps its full buffer.
  assert.ok(new PyFrameReader(MAX).capacity > IDLE_BUFFER_BYTES);
});
