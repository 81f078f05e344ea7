/**
 * The msgpack codec: standard msgpack values in, standard msgpack values out.
 *
 * msgpackr was chosen over @msgpack/msgpack by measurement (a small task
 * message: 0.13 µs to encode and 0.12 µs to decode, against 1.0 µs and 0.26 µs).
 * It is configured for plain msgpack only (no records, no structured clone).
 * Decoding is strict: anything that is not plain data (the reserved 0xc1 byte,
 * msgpackr's `undefined` extension, unknown extensions, nesting deeper than
 * {@link MAX_VALUE_DEPTH}, trailing bytes) is a {@link ProtocolError}: a peer
 * sent bad bytes. A local caller's item is checked with
 * {@link checkItemArgument} instead, which throws `TypeError` or `RangeError`.
 *
 * Decoding is also bounded in what it builds, not just in frame size: before
 * msgpackr builds anything, a structural pre-scan walks the frame's headers
 * (iteratively, at most {@link MAX_VALUE_DEPTH} deep, never building a value)
 * and adds up an estimate of the memory the decoded value will take (bytes of
 * JS heap: so much per array, map, string, binary, number). A frame whose
 * estimate exceeds {@link DECODED_COST_PER_WIRE_BYTE} per byte received, plus
 * {@link DECODED_COST_ALLOWANCE_BYTES}, is refused: without this, a 16 MB frame
 * of empty maps decoded to a gigabyte. The bound is for what peers send; what
 * taskq wrote itself (its store's rows) or received from a master that proved
 * the key (the replies that carry items to workers) is decoded as
 * `"trusted"`: the same checks but no cost bound, so that whatever was
 * accepted once always decodes again, however it is packed with others.
 * {@link valueCost} gives the same estimate for a value in memory.
 *
 * @module
 */

// Pinned here rather than in deno.json's import map, so that a program importing
// lib/mod.ts by path or URL works without taskq's deno.json (tests/mod_import_test.ts).
// deno-lint-ignore no-import-prefix
import { Packr, Unpackr } from "npm:msgpackr@2.1.4";
import { ProtocolError } from "../errors.ts";

/** Deepest nesting of arrays and maps accepted in one frame. */
export const MAX_VALUE_DEPTH = 64;

/**
 * Deepest nesting accepted in one item: less than a frame allows, so that the
 * envelope around an item on its way out (a reply, a job record, a dead
 * letter) always fits.
 */
export const MAX_ITEM_DEPTH = 56;

/**
 * Estimated bytes of memory a frame may decode to per byte of the frame
 * (beyond {@link DECODED_COST_ALLOWANCE_BYTES}). Ordinary data stays well
 * below: text and binary about 1–3, numbers 3–24, records of a few fields
 * 5–27. What only hostile or degenerate input reaches is refused: an empty
 * array costs 40 per byte, an empty map 64, an empty binary 112.
 */
export const DECODED_COST_PER_WIRE_BYTE = 32;

/** Estimated bytes of memory any frame may decode to, whatever its size (1 MiB). */
export const DECODED_COST_ALLOWANCE_BYTES = 1024 * 1024;

// The cost model: estimated bytes of V8 heap, measured with Deno 2.9 (a
// million of each decoded, heap used before and after). Every value costs a
// slot where it is held, and then:
/** Bytes of the reference to a value, in the array or object holding it. */
const SLOT_BYTES = 8;
/** Bytes of a number that is not a small integer (a float, or beyond ±2^30): a heap number. */
const HEAP_NUMBER_BYTES = 16;
/** Bytes of a non-empty string besides its text (one byte per byte of UTF-8, at most). */
const STRING_BYTES = 24;
/** Bytes of a Uint8Array with its own ArrayBuffer, besides its contents. */
const BINARY_BYTES = 216;
/** Bytes of a Date. */
const DATE_BYTES = 96;
/** Bytes of an array, besides a slot per element. */
const ARRAY_BYTES = 32;
/** Bytes of a plain object, with room for a few properties (a key costs as a string). */
const OBJECT_BYTES = 56;
/** Integers in [-2^30, 2^30) are small integers (no heap number), whatever V8's pointer size. */
const SMALL_INT_LIMIT = 2 ** 30;
/** Most bytes of UTF-8 per UTF-16 unit of a string (a surrogate pair takes 4). */
const MAX_UTF8_PER_UNIT = 3;

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  // Frames are decoded out of a reused read buffer: binary data must be copied out.
  copyBuffers: true,
  int64AsType: "number",
});

/** Encodes one value as msgpack. The result stays valid (it is never overwritten). */
export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

/**
 * Who wrote what is decoded: a `"peer"` (held to the cost bound), or taskq
 * itself or a master that proved the key (`"trusted"`: every other check, no
 * cost bound).
 */
export type DecodeTrust = "peer" | "trusted";

/**
 * Decodes exactly one msgpack value filling all of `payload` and checks that it
 * is plain data, refusing first (before building anything) a peer's frame
 * that would decode to more than {@link DECODED_COST_PER_WIRE_BYTE} estimated
 * bytes of memory per byte, plus {@link DECODED_COST_ALLOWANCE_BYTES}.
 * @throws {ProtocolError} on malformed, trailing, unsupported, too deeply
 *   nested or (from a peer) too costly input.
 */
export function decode(payload: Uint8Array, trust: DecodeTrust = "peer"): unknown {
  scan(payload, trust === "peer");
  let value: unknown;
  try {
    value = unpackr.unpack(payload);
  } catch (cause) {
    const reason = cause instanceof RangeError ? "nested too deeply" : (cause as Error).message;
    throw new ProtocolError(`frame is not one valid msgpack value: ${reason}`, "bad_request", {
      cause,
    });
  }
  checkValue(value);
  return value;
}

/**
 * Checks, without building anything, that `bytes` hold exactly one msgpack
 * value that {@link decode} accepts from a trusted writer (plain data, nested
 * at most {@link MAX_VALUE_DEPTH} deep, the timestamp the only extension):
 * how a store vouches for values it hands on still encoded.
 * @throws {ProtocolError} when they do not.
 *
 * @example
 * ```ts
 * import { checkEncoded, encode } from "./codec.ts";
 * checkEncoded(encode({ a: [1, "b"] })); // passes
 * ```
 */
export function checkEncoded(bytes: Uint8Array): void {
  scan(bytes, false);
}

/**
 * Where the msgpack value that starts at `start` in `bytes` ends, checked as
 * {@link checkEncoded} checks a whole payload (without building anything):
 * how a store splits values kept one after the other.
 * @throws {ProtocolError} when no such value starts there.
 *
 * @example
 * ```ts
 * import { encode, encodedEnd } from "./codec.ts";
 * const a = encode("a"), b = encode([1]);
 * const both = new Uint8Array([...a, ...b]);
 * console.log(encodedEnd(both, 0) === a.length, encodedEnd(both, a.length) === both.length);
 * ```
 */
export function encodedEnd(bytes: Uint8Array, start: number): number {
  return scan(bytes, false, start, false);
}

// What the scan found a header to start.
const STRING = 0;
const BINARY = 1;
const EXTENSION = 2;
const ARRAY = 3;
const MAP = 4;

/** The msgpack timestamp extension type (-1) as a byte. */
const TIMESTAMP_TYPE = 0xff;

/** Bytes of the shortest timestamp (fixext 4: seconds). */
const TIMESTAMP_MIN_BYTES = 6;

/** Bytes after each token from 0xc0 to 0xdf that the scan reads before any contents. */
// deno-fmt-ignore
const HEADER_BYTES = new Uint8Array([
  0, 0, 0, 0, // 0xc0 nil, 0xc1 reserved, 0xc2 false, 0xc3 true
  1, 2, 4, // 0xc4–0xc6 bin 8/16/32: the length
  1, 2, 4, // 0xc7–0xc9 ext 8/16/32: the length (the type follows)
  4, 8, // 0xca float 32, 0xcb float 64
  1, 2, 4, 8, // 0xcc–0xcf uint 8/16/32/64
  1, 2, 4, 8, // 0xd0–0xd3 int 8/16/32/64
  0, 0, 0, 0, 0, // 0xd4–0xd8 fixext 1/2/4/8/16 (the type follows)
  1, 2, 4, // 0xd9–0xdb str 8/16/32: the length
  2, 4, // 0xdc–0xdd array 16/32: the count
  2, 4, // 0xde–0xdf map 16/32: the count
]);

/**
 * Values still to read in each open array or map, outermost first (shared by
 * every scan). A plain array of small integers: a typed array of doubles
 * would make the scan's counts doubles, and the scan twice as slow.
 */
const scanPending: number[] = new Array<number>(MAX_VALUE_DEPTH).fill(0);

/** A refusal of a frame that is not one msgpack value (truncated, trailing bytes, bad byte). */
function notOneValue(reason: string): ProtocolError {
  return new ProtocolError(`frame is not one valid msgpack value: ${reason}`);
}

/** The refusal of a value cut short at byte `at`. */
function truncated(at: number): ProtocolError {
  return notOneValue(`truncated (the value at byte ${at} runs past the end of the frame)`);
}

/** The refusal of a frame of `length` bytes that would cost `cost` bytes of memory, or more. */
function tooCostly(length: number, cost: number): ProtocolError {
  return new ProtocolError(
    `frame of ${length.toLocaleString("en-US")} bytes refused: it would decode to about ` +
      `${sizeText(cost)} of memory or more, more than a frame may (` +
      `${DECODED_COST_PER_WIRE_BYTE} bytes per byte received, plus ` +
      `${sizeText(DECODED_COST_ALLOWANCE_BYTES)}); it holds mostly empty or tiny arrays, maps ` +
      `or binaries, which take far more memory than bytes: send such data more compactly ` +
      `(e.g. null or a count instead of many empty values)`,
  );
}

/** `bytes` as a whole number of KiB or MiB, for messages. */
function sizeText(bytes: number): string {
  return bytes >= 1024 * 1024
    ? `${Math.round(bytes / (1024 * 1024)).toLocaleString("en-US")} MiB`
    : `${Math.round(bytes / 1024).toLocaleString("en-US")} KiB`;
}

/**
 * The structural pre-scan of a frame: walks its msgpack headers without
 * building anything (strings and binaries are skipped over by their length),
 * checking that they form exactly one value nested at most
 * {@link MAX_VALUE_DEPTH} deep whose only extension is the timestamp, and
 * adds up the memory the value will take once decoded.
 *
 * It is iterative, with a stack of one count per open array or map, and does
 * constant work per header: linear in the frame's size. Every element takes at
 * least one byte, so a count is checked against the bytes that remain.
 * Starts at `start` and returns where the value ends; unless `whole` is
 * false, that must be the frame's end.
 * @throws {ProtocolError} when the frame is not one such value, or would cost
 *   more than {@link DECODED_COST_PER_WIRE_BYTE} per byte plus
 *   {@link DECODED_COST_ALLOWANCE_BYTES}.
 */
function scan(bytes: Uint8Array, bounded: boolean, start = 0, whole = true): number {
  const end = bytes.length;
  const limit = bounded
    ? DECODED_COST_ALLOWANCE_BYTES + DECODED_COST_PER_WIRE_BYTE * end
    : Infinity;
  const pending = scanPending;
  let pos = start;
  let cost = 0;
  let depth = 0; // arrays and maps open around the next value
  let left = 1; // values still to read in the innermost open one (or at the top)
  for (;;) {
    if (left === 0) {
      if (depth === 0) break;
      left = pending[--depth];
      continue;
    }
    left--;
    if (pos >= end) throw truncated(pos);
    const at = pos;
    const token = bytes[pos++];
    cost += SLOT_BYTES;
    if (token < 0x80 || token >= 0xe0) continue; // positive or negative fixint
    let n: number; // bytes of a string, binary or extension; elements of an array; entries of a map
    let kind: number;
    if (token < 0x90) {
      n = token - 0x80;
      kind = MAP;
    } else if (token < 0xa0) {
      n = token - 0x90;
      kind = ARRAY;
    } else if (token < 0xc0) {
      n = token - 0xa0;
      kind = STRING;
    } else {
      // Every case below reads a fixed-size header: check it is all there first.
      const header = HEADER_BYTES[token - 0xc0];
      if (header > end - pos) throw truncated(at);
      switch (token) {
        case 0xc0: // nil
        case 0xc2: // false
        case 0xc3: // true
          continue;
        case 0xc1:
          throw notOneValue(`the reserved byte 0xc1 at byte ${at} (plain data only)`);
        case 0xcc: // uint 8
        case 0xcd: // uint 16
        case 0xd0: // int 8
        case 0xd1: // int 16
          pos += header;
          continue;
        case 0xce: // uint 32: a heap number from 2^30
          if (bytes[pos] >= 0x40) cost += HEAP_NUMBER_BYTES;
          pos += 4;
          continue;
        case 0xd2: {
          // int 32: a heap number from 2^30, or below -2^30
          const top = bytes[pos] >> 6;
          if (top === 1 || top === 2) cost += HEAP_NUMBER_BYTES;
          pos += 4;
          continue;
        }
        case 0xca: // float 32
        case 0xcb: // float 64
        case 0xcf: // uint 64
        case 0xd3: // int 64
          cost += HEAP_NUMBER_BYTES;
          pos += header;
          continue;
        case 0xc4:
          n = bytes[pos];
          kind = BINARY;
          break;
        case 0xc5:
          n = (bytes[pos] << 8) | bytes[pos + 1];
          kind = BINARY;
          break;
        case 0xc6:
          n = bytes[pos] * 0x1000000 +
            ((bytes[pos + 1] << 16) | (bytes[pos + 2] << 8) | bytes[pos + 3]);
          kind = BINARY;
          break;
        case 0xc7:
          n = bytes[pos];
          kind = EXTENSION;
          break;
        case 0xc8:
          n = (bytes[pos] << 8) | bytes[pos + 1];
          kind = EXTENSION;
          break;
        case 0xc9:
          n = bytes[pos] * 0x1000000 +
            ((bytes[pos + 1] << 16) | (bytes[pos + 2] << 8) | bytes[pos + 3]);
          kind = EXTENSION;
          break;
        case 0xd4:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
          n = 1 << (token - 0xd4); // fixext 1, 2, 4, 8, 16
          kind = EXTENSION;
          break;
        case 0xd9:
          n = bytes[pos];
          kind = STRING;
          break;
        case 0xda:
          n = (bytes[pos] << 8) | bytes[pos + 1];
          kind = STRING;
          break;
        case 0xdb:
          n = bytes[pos] * 0x1000000 +
            ((bytes[pos + 1] << 16) | (bytes[pos + 2] << 8) | bytes[pos + 3]);
          kind = STRING;
          break;
        case 0xdc:
          n = (bytes[pos] << 8) | bytes[pos + 1];
          kind = ARRAY;
          break;
        case 0xdd:
          n = bytes[pos] * 0x1000000 +
            ((bytes[pos + 1] << 16) | (bytes[pos + 2] << 8) | bytes[pos + 3]);
          kind = ARRAY;
          break;
        case 0xde:
          n = (bytes[pos] << 8) | bytes[pos + 1];
          kind = MAP;
          break;
        default: // 0xdf
          n = bytes[pos] * 0x1000000 +
            ((bytes[pos + 1] << 16) | (bytes[pos + 2] << 8) | bytes[pos + 3]);
          kind = MAP;
          break;
      }
      pos += header;
    }
    if (kind === STRING || kind === BINARY) {
      if (n > end - pos) throw truncated(at);
      pos += n;
      if (kind === BINARY) cost += BINARY_BYTES + n;
      else if (n > 0) cost += STRING_BYTES + n;
      continue;
    }
    if (kind === EXTENSION) {
      // The type byte, then the data.
      if (n >= end - pos) throw truncated(at);
      const type = bytes[pos];
      if (type !== TIMESTAMP_TYPE) {
        const signed = type > 127 ? type - 256 : type;
        throw notOneValue(
          `unsupported extension type ${signed}${signed === 0 ? " (msgpackr's undefined)" : ""} ` +
            `at byte ${at} (plain data only: the timestamp, type -1, is the one extension)`,
        );
      }
      pos += 1 + n;
      cost += DATE_BYTES;
      continue;
    }
    // An array or a map: its elements (a map's keys and values) follow.
    if (depth >= MAX_VALUE_DEPTH) {
      throw notOneValue(
        `nested too deeply (value nested more than ${MAX_VALUE_DEPTH} levels deep)`,
      );
    }
    if (kind === MAP) {
      cost += OBJECT_BYTES;
      n *= 2;
    } else {
      cost += ARRAY_BYTES;
    }
    if (cost > limit) throw tooCostly(end, cost);
    if (n === 0) continue;
    if (n > end - pos) throw truncated(at);
    pending[depth++] = left;
    left = n;
  }
  if (whole && pos !== end) {
    throw notOneValue(`${end - pos} bytes follow the value (one value per frame)`);
  }
  if (cost > limit) throw tooCostly(end, cost);
  return pos;
}

/** How a check refuses a value: for a bad type, or for a bad range (too deep, invalid Date). */
type Refuse = (problem: "type" | "range", message: string) => never;

/** A check: how it refuses, and what it says of a value nested too deep. */
interface Check {
  readonly refuse: Refuse;
  readonly tooDeep: string;
}

/** Refuses a peer's value: it sent bad bytes. */
const refusePeer: Refuse = (_problem, message) => {
  throw new ProtocolError(message);
};

/** Refuses a local caller's value: a bad argument. */
const refuseArgument: Refuse = (problem, message) => {
  throw problem === "type" ? new TypeError(message) : new RangeError(message);
};

const PEER_VALUE: Check = {
  refuse: refusePeer,
  tooDeep: `value nested more than ${MAX_VALUE_DEPTH} levels deep`,
};
const PEER_ITEM: Check = {
  refuse: refusePeer,
  tooDeep: `item nested more than ${MAX_ITEM_DEPTH} levels deep`,
};
const LOCAL_ITEM: Check = {
  refuse: refuseArgument,
  tooDeep: `item nested more than ${MAX_ITEM_DEPTH} levels deep (arrays and objects within ` +
    `each other)`,
};

/** Where an item's nesting starts, so that its envelope still fits in a frame. */
const ITEM_START_DEPTH = MAX_VALUE_DEPTH - MAX_ITEM_DEPTH;

/**
 * Checks that `value`, received from a peer, can be an item: plain data
 * nested at most {@link MAX_ITEM_DEPTH} deep.
 * @throws {ProtocolError} naming the first offending part.
 */
export function checkItem(value: unknown): void {
  walk(value, ITEM_START_DEPTH, PEER_ITEM);
}

/**
 * Checks that `value`, received from a peer, is plain msgpack data: null,
 * boolean, number, string, bytes, Date (msgpack timestamp), array or
 * string-keyed map, nested at most {@link MAX_VALUE_DEPTH} deep.
 * @throws {ProtocolError} naming the first offending part.
 */
export function checkValue(value: unknown, depth = 0): void {
  walk(value, depth, PEER_VALUE);
}

/**
 * Checks that `value`, a local caller's item (to put, or a result to ack
 * with), is plain data nested at most {@link MAX_ITEM_DEPTH} deep, before
 * anything is sent.
 * @throws {TypeError} naming the first part that is not plain data.
 * @throws {RangeError} for an invalid Date or nesting too deep.
 */
export function checkItemArgument(value: unknown): void {
  walk(value, ITEM_START_DEPTH, LOCAL_ITEM);
}

/**
 * Estimated bytes of memory `value` (plain data) takes, by the same model
 * the decoder's bound uses: what holding it costs.
 *
 * @example
 * ```ts
 * import { valueCost } from "./codec.ts";
 * console.log(valueCost([{}, {}]) > valueCost([1, 2])); // true
 * ```
 */
export function valueCost(value: unknown): number {
  tallyCost = tallyBytes = 0;
  tally(value);
  return tallyCost;
}

/** What plain data is, for messages. */
const PLAIN_DATA =
  "plain data only: null, boolean, number, string, Uint8Array, Date, array or plain object";

/** Estimated bytes of memory of what {@link tally} went over since it was zeroed. */
let tallyCost = 0;
/** Bytes the smallest msgpack encoding of what {@link tally} went over takes, at least. */
let tallyBytes = 0;

/** Adds a string (or map key) of `length` UTF-16 units to the tally. */
function tallyString(length: number): void {
  tallyBytes += 1 + length;
  tallyCost += length === 0 ? SLOT_BYTES : SLOT_BYTES + STRING_BYTES + MAX_UTF8_PER_UNIT * length;
}

/**
 * Adds `value`, plain data already checked by {@link walk}, to
 * {@link tallyCost} and {@link tallyBytes}: its memory at least as much as
 * {@link scan} counts for it in any encoding, its bytes at most as many as any
 * encoding takes.
 */
function tally(value: unknown): void {
  tallyCost += SLOT_BYTES;
  switch (typeof value) {
    case "string":
      tallyCost -= SLOT_BYTES;
      tallyString(value.length);
      return;
    case "number":
      tallyBytes += 1;
      if (!(Number.isInteger(value) && value >= -SMALL_INT_LIMIT && value < SMALL_INT_LIMIT)) {
        tallyCost += HEAP_NUMBER_BYTES;
      }
      return;
    case "boolean":
      tallyBytes += 1;
      return;
  }
  if (value === null) {
    tallyBytes += 1;
  } else if (value instanceof Uint8Array) {
    tallyBytes += 2 + value.length;
    tallyCost += BINARY_BYTES + value.length;
  } else if (value instanceof Date) {
    tallyBytes += TIMESTAMP_MIN_BYTES;
    tallyCost += DATE_BYTES;
  } else if (Array.isArray(value)) {
    tallyBytes += 1;
    tallyCost += ARRAY_BYTES;
    for (let i = 0; i < value.length; i++) tally(value[i]);
  } else {
    tallyBytes += 1;
    tallyCost += OBJECT_BYTES;
    for (const key in value as Record<string, unknown>) {
      tallyString(key.length);
      tally((value as Record<string, unknown>)[key]);
    }
  }
}

/** Checks `value` at nesting `depth`, refusing the first offending part as `check` says. */
function walk(value: unknown, depth: number, check: Check): void {
  switch (typeof value) {
    case "string":
    case "number":
    case "boolean":
      return;
    case "object":
      break;
    default:
      check.refuse("type", `unsupported value of type ${typeof value} (${PLAIN_DATA})`);
  }
  if (value === null || value instanceof Uint8Array) return;
  if (value instanceof Date) {
    // msgpackr decodes a timestamp of the wrong length, or beyond the range of
    // a Date, as an invalid Date, which it would re-encode as a bogus extension.
    if (Number.isNaN(value.getTime())) check.refuse("range", "invalid or out-of-range timestamp");
    return;
  }
  if (depth >= MAX_VALUE_DEPTH) check.refuse("range", check.tooDeep);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) walk(value[i], depth + 1, check);
    return;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    check.refuse(
      "type",
      `unsupported value ${proto?.constructor?.name ?? "object"} (${PLAIN_DATA})`,
    );
  }
  for (const key in value) walk((value as Record<string, unknown>)[key], depth + 1, check);
}
