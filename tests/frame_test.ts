/**
 * Tests of lib/wire/frame.ts: reassembling length-prefixed frames from reads
 * that split or merge them arbitrarily (byte by byte, many per read, across
 * buffer growth), refusing an oversized length prefix before allocating for
 * it (up to 0xFFFFFFFF), the zero-length frame, the exact maximum, and
 * joinFrames; and the master's idle-shrinking reader against a reference
 * framing (reads split at every byte), its idle size, its growth for batches
 * and its shrinking back.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  DEFAULT_MAX_FRAME_BYTES,
  FRAME_HEADER_BYTES,
  FrameReader,
  IDLE_BUFFER_BYTES,
  joinFrames,
  SHRINK_AFTER_SMALL_READS,
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

// ------------------------------------------------------------ shrinkWhenIdle (#15)

/** A reader as the master's connections have it: small while idle. */
function idleReader(max: number = DEFAULT_MAX_FRAME_BYTES): FrameReader {
  return new FrameReader(max, { shrinkWhenIdle: true });
}

/**
 * Feeds `stream` as reads of the given sizes (cycled; each at most the space
 * offered), checking each read against the reference framing (every frame
 * comes out whole, in order, the same bytes) and the reader's bounds.
 */
function checkAgainstReference(
  stream: Uint8Array,
  sent: Uint8Array[],
  chunkSizes: number[],
  reader: FrameReader = idleReader(),
): void {
  const got: Uint8Array[] = [];
  let offset = 0;
  for (let i = 0; offset < stream.length; i++) {
    const space = reader.space();
    assert.ok(space.length > 0, "space() must offer room to read into");
    const n = Math.min(chunkSizes[i % chunkSizes.length], space.length, stream.length - offset);
    space.set(stream.subarray(offset, offset + n));
    reader.written(n);
    offset += n;
    for (let f = reader.next(); f !== undefined; f = reader.next()) got.push(f.slice());
    // The reference: frames wholly within the first `offset` bytes, and what is left pending.
    let whole = 0;
    let at = 0;
    while (whole < sent.length && at + FRAME_HEADER_BYTES + sent[whole].length <= offset) {
      at += FRAME_HEADER_BYTES + sent[whole].length;
      whole++;
    }
    assert.equal(got.length, whole, `after ${offset} bytes`);
    assert.equal(reader.pendingBytes, offset - at, `pending after ${offset} bytes`);
  }
  assert.deepEqual(got, sent);
}

Deno.test("frame: an idle-shrinking reader splits nothing wrongly, at every byte boundary", () => {
  const random = seededRandom(15);
  // Small frames (gets, acks), one a little over the idle buffer, one larger than a full read.
  const sent = [
    ...payloads(random, 12, 40),
    randomBytes(random, IDLE_BUFFER_BYTES + 10),
    ...payloads(random, 5, 300),
    randomBytes(random, 70_000),
    ...payloads(random, 3, 20),
  ];
  const stream = joinFrames(sent, sent.reduce((n, p) => n + p.length, 0));
  // Two reads split at every byte of the first few frames and of the idle-size frame's edges,
  // then every 97th byte further on.
  for (let split = 1; split < stream.length; split += split < 2_000 ? 1 : 97) {
    checkAgainstReference(stream, sent, [split, stream.length]);
  }
  // Byte by byte, and random read sizes.
  checkAgainstReference(stream, sent, [1]);
  for (let round = 0; round < 20; round++) {
    const sizes = Array.from({ length: 17 }, () => 1 + Math.floor(random() * 3_000));
    checkAgainstReference(stream, sent, sizes);
  }
});

Deno.test("frame: an idle connection's reader stays at the idle size", () => {
  const reader = idleReader();
  assert.equal(reader.capacity, IDLE_BUFFER_BYTES);
  // A worker's requests one at a time (a get, an ack): each fits, and the buffer stays small.
  const get = frameOf(new Uint8Array(40).fill(1));
  const ack = frameOf(new Uint8Array(600).fill(2));
  for (let i = 0; i < 1_000; i++) {
    const frame = i % 2 === 0 ? get : ack;
    const space = reader.space();
    assert.ok(space.length >= frame.length);
    space.set(frame);
    reader.written(frame.length);
    assert.equal(reader.next()?.length, frame.length - FRAME_HEADER_BYTES);
    assert.equal(reader.capacity, IDLE_BUFFER_BYTES);
  }
  // Before authentication (1 KiB frames) it is no larger.
  assert.ok(idleReader(1024).capacity <= IDLE_BUFFER_BYTES);
});

Deno.test("frame: a read that fills the buffer earns full reads; small reads shrink it back", () => {
  const reader = idleReader();
  const frame = frameOf(new Uint8Array(100).fill(3));
  const batch = new Uint8Array(frame.length * 2_000);
  for (let i = 0; i < 2_000; i++) batch.set(frame, i * frame.length);
  let offset = 0;
  let reads = 0;
  let frames = 0;
  while (offset < batch.length) {
    const space = reader.space();
    if (reads > 0) assert.ok(space.length >= 64 * 1024, `read ${reads} offered ${space.length}`);
    const n = Math.min(space.length, batch.length - offset);
    space.set(batch.subarray(offset, offset + n));
    reader.written(n);
    offset += n;
    reads++;
    while (reader.next() !== undefined) frames++;
  }
  assert.equal(frames, 2_000);
  assert.ok(reads <= 2 + Math.ceil(batch.length / (64 * 1024)), `${reads} reads`);
  assert.ok(reader.capacity > IDLE_BUFFER_BYTES);
  // The batch is over: small requests again, and the large buffer goes.
  for (let i = 0; i < SHRINK_AFTER_SMALL_READS + 1; i++) {
    reader.push(frame);
    assert.equal(reader.next()?.length, 100);
  }
  reader.space();
  assert.equal(reader.capacity, IDLE_BUFFER_BYTES);
});

Deno.test("frame: an idle-shrinking reader hands a large frame over and refuses oversized ones", () => {
  const random = seededRandom(16);
  const big = randomBytes(random, 1_000_000);
  const reader = idleReader(2_000_000);
  reader.push(frameOf(big));
  assert.deepEqual(reader.take(), big);
  assert.ok(reader.capacity <= 2 * 64 * 1024, `kept ${reader.capacity} bytes`);

  const refusing = idleReader(1024);
  const before = refusing.capacity;
  refusing.push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 1]));
  refusing.space();
  assert.equal(refusing.capacity, before, "nothing is allocated for a refused length");
  assert.throws(() => refusing.next(), FrameTooLargeError);
});

Deno.test("frame: frames left unconsumed still leave room to read (a held peer is watched)", () => {
  const reader = idleReader();
  const frame = frameOf(new Uint8Array(30).fill(4));
  let total = 0;
  for (let i = 0; i < 500; i++) {
    const space = reader.space();
    assert.ok(space.length > 0);
    const n = Math.min(space.length, frame.length);
    space.set(frame.subarray(0, n));
    reader.written(n);
    total += n;
    if (n < frame.length) reader.push(frame.subarray(n)), total += frame.length - n;
  }
  assert.equal(reader.pendingBytes, total);
  let frames = 0;
  while (reader.next() !== undefined) frames++;
  assert.equal(frames, 500);
});
