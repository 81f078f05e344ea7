/**
 * Tests of lib/wire/frame.ts: reassembling length-prefixed frames from reads
 * that split or merge them arbitrarily (byte by byte, many per read, across
 * buffer growth), refusing an oversized length prefix before allocating for
 * it (up to 0xFFFFFFFF), the zero-length frame, the exact maximum, and
 * joinFrames.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  DEFAULT_MAX_FRAME_BYTES,
  FRAME_HEADER_BYTES,
  FrameReader,
  joinFrames,
} from "../lib/wire/frame.ts";
import { FrameTooLargeError, ProtocolError } from "../lib/errors.ts";
import { frameOf, randomBytes, seededRandom } from "./_helpers.ts";

/** The largest read buffer a reader may hold while no allowed frame needs more. */
const SMALL_BUFFER_BYTES = 256 * 1024;

function payloads(random: () => number, count: number, maxLength: number): Uint8Array[] {
  return Array.from(
    { length: count },
    () => randomBytes(random, Math.floor(random() * maxLength)),
  );
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) out.set(part, offset), offset += part.length;
  return out;
}

/** Feeds `stream` to a reader in chunks of the given sizes (cycled) and collects the frames. */
function readAll(stream: Uint8Array, chunkSizes: number[], reader = new FrameReader()) {
  const frames: Uint8Array[] = [];
  let offset = 0;
  for (let i = 0; offset < stream.length; i++) {
    const space = reader.space();
    assert.ok(space.length > 0, "space() must offer room to read into");
    const n = Math.min(chunkSizes[i % chunkSizes.length], space.length, stream.length - offset);
    space.set(stream.subarray(offset, offset + n));
    reader.written(n);
    offset += n;
    // The returned view is only valid until the next space(): copy it.
    for (let f = reader.next(); f !== undefined; f = reader.next()) frames.push(f.slice());
  }
  return { frames, pending: reader.pendingBytes };
}

Deno.test("frame: joinFrames writes a 4-byte big-endian length before each payload", () => {
  const joined = joinFrames([new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array([9])], 4);
  assert.deepEqual(
    [...joined],
    [0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 1, 9],
  );
  assert.equal(FRAME_HEADER_BYTES, 4);
  const big = new Uint8Array(0x010203);
  assert.deepEqual([...joinFrames([big], big.length).subarray(0, 4)], [0, 1, 2, 3]);
});

Deno.test("frame: frames split byte by byte are reassembled", () => {
  const random = seededRandom(1);
  const sent = payloads(random, 20, 50);
  const { frames, pending } = readAll(joinFrames(sent, sent.reduce((n, p) => n + p.length, 0)), [
    1,
  ]);
  assert.deepEqual(frames, sent);
  assert.equal(pending, 0);
});

Deno.test("frame: many frames in one read, and frames split at random points", () => {
  const random = seededRandom(2);
  const sent = payloads(random, 300, 3000);
  const stream = joinFrames(sent, sent.reduce((n, p) => n + p.length, 0));
  for (const sizes of [[stream.length], [7, 13, 4096, 1], [65_536], [3, 100_000]]) {
    const { frames, pending } = readAll(stream, sizes);
    assert.equal(frames.length, sent.length, `chunk sizes ${sizes}`);
    assert.deepEqual(frames, sent);
    assert.equal(pending, 0);
  }
});

Deno.test("frame: a frame larger than the initial buffer makes it grow to fit", () => {
  const random = seededRandom(3);
  const big = randomBytes(random, 1_000_000);
  const small = randomBytes(random, 10);
  const stream = concat([frameOf(small), frameOf(big), frameOf(small)]);
  const { frames } = readAll(stream, [70_000, 5]);
  assert.equal(frames.length, 3);
  assert.deepEqual(frames[1], big);
  assert.deepEqual(frames[2], small);
});

Deno.test("frame: a zero-length frame is a frame", () => {
  const reader = new FrameReader();
  reader.push(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 1, 42]));
  assert.deepEqual([...(reader.next() as Uint8Array)], []);
  assert.deepEqual([...(reader.next() as Uint8Array)], [42]);
  assert.equal(reader.next(), undefined);
});

Deno.test("frame: an incomplete header or payload yields nothing yet", () => {
  const reader = new FrameReader();
  reader.push(new Uint8Array([0, 0]));
  assert.equal(reader.next(), undefined);
  reader.push(new Uint8Array([0, 3, 1, 2]));
  assert.equal(reader.next(), undefined);
  assert.equal(reader.pendingBytes, 6);
  reader.push(new Uint8Array([3]));
  assert.deepEqual([...(reader.next() as Uint8Array)], [1, 2, 3]);
  assert.equal(reader.pendingBytes, 0);
});

Deno.test("frame: a 0xFFFFFFFF length prefix is refused without allocating for it", () => {
  const reader = new FrameReader();
  reader.push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
  // Asking for room to read the rest must not try to fit a 4 GiB frame.
  assert.ok(reader.space().length <= SMALL_BUFFER_BYTES);
  assert.throws(() => reader.next(), (error: unknown) => {
    assert.ok(error instanceof FrameTooLargeError);
    assert.ok(error instanceof ProtocolError);
    assert.equal(error.code, "frame_too_large");
    assert.equal(error.length, 0xffffffff);
    assert.equal(error.max, DEFAULT_MAX_FRAME_BYTES);
    assert.match(error.message, /4294967295 bytes is larger than the maximum/);
    return true;
  });
  assert.ok(reader.space().length <= SMALL_BUFFER_BYTES);
});

Deno.test("frame: the configured maximum is allowed, one byte more is refused", () => {
  const max = 300_000; // larger than the initial read buffer
  const ok = new FrameReader(max);
  ok.push(frameOf(new Uint8Array(max).fill(7)));
  assert.equal(ok.next()?.length, max);

  const tooBig = new FrameReader(max);
  const header = new Uint8Array(4);
  new DataView(header.buffer).setUint32(0, max + 1);
  tooBig.push(header);
  assert.ok(tooBig.space().length < max, "no room is made for a refused frame");
  assert.throws(() => tooBig.next(), FrameTooLargeError);
});

Deno.test("frame: the buffer is reused instead of growing without bound", () => {
  const reader = new FrameReader();
  const frame = frameOf(new Uint8Array(1000).fill(1));
  let largest = 0;
  for (let i = 0; i < 2000; i++) {
    const space = reader.space();
    largest = Math.max(largest, space.byteOffset + space.length);
    space.set(frame.subarray(0, 600));
    reader.written(600);
    assert.equal(reader.next(), undefined);
    reader.push(frame.subarray(600));
    assert.equal(reader.next()?.length, 1000);
  }
  assert.ok(largest <= SMALL_BUFFER_BYTES, `buffer grew to ${largest} bytes`);
});
