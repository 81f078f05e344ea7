/**
 * Seeded fuzzing of the two decoders of untrusted bytes: the msgpack codec
 * (lib/model/codec.ts, `decode`) and the pickle reader
 * (lib/python/wire/pickle_reader.ts, `unpickle`). Shared by
 * tests/fuzz_test.ts (a few thousand cases in CI) and scripts/fuzz.ts (as many
 * as fit in a given time).
 *
 * Each case is made from its own seed (the run's seed and the case's index),
 * so a failure is replayed alone. A case starts from a valid encoding of a
 * random value (or from noise, or an opcode soup) and applies one to three
 * mutations: bit flips, truncation, splicing in part of another encoding,
 * corrupting what looks like a length field, runs of repeated structural
 * bytes or opcodes, duplicated chunks. One case in ten is a flood instead:
 * many values of one kind that the decoder must build or hash one by one
 * (now and then enough to reach its cost limits), mutated or not.
 *
 * The property checked: every input either decodes to a value or is refused
 * with the decoder's own error ({@link ProtocolError}, {@link PickleError}),
 * never another error, never a hang (a case slower than {@link SLOW_CASE_MS}
 * is a failure). For msgpack, a value that passes `checkItem` must also
 * encode and decode again, alone and in a reply (what the store and workers
 * do with it).
 *
 * @module
 */

import { checkItem, decode, encode } from "../lib/model/codec.ts";
import { ProtocolError } from "../lib/errors.ts";
import { unpickle } from "../lib/python/wire/pickle_reader.ts";
import { pickle } from "../lib/python/wire/pickle_writer.ts";
import { OP } from "../lib/python/wire/opcodes.ts";
import {
  PyDict,
  pyException,
  PyFloat,
  PySet,
  PyTuple,
  type PyValue,
  queueEmpty,
} from "../lib/python/wire/values.ts";
import { PickleError } from "../lib/python/errors.ts";
import { seededRandom } from "./_helpers.ts";

/** A case slower than this is reported as a (near) hang. */
export const SLOW_CASE_MS = 5_000;

/** Deepest random value generated (mutations nest deeper). */
const MAX_GENERATED_DEPTH = 5;

/** Most elements of one generated container. */
const MAX_GENERATED_ELEMENTS = 8;

/** Chance that a generated value is not a container (so values stay small). */
const LEAF_CHANCE = 0.55;

/** Longest run of one repeated structural byte, usually. */
const SHORT_RUN = 300;

/** Longest run, now and then: enough to reach the decoders' cost limits. */
const LONG_RUN = 400_000;

/** Chance that a run inserted by a mutation is long. */
const LONG_RUN_CHANCE = 0.01;

/** Chance that a flood is long. */
const LONG_FLOOD_CHANCE = 0.1;

/** The decoders fuzzed. */
export type Target = "msgpack" | "pickle";

/** A pseudo-random source in [0, 1). */
export type Random = () => number;

/** One failing case: enough to replay it. */
export interface Failure {
  /** The decoder. */
  target: Target;
  /** The run's seed. */
  seed: number;
  /** The case's index in the run. */
  index: number;
  /** What went wrong. */
  problem: string;
  /** The input, in hex (its first 2,000 bytes). */
  inputHex: string;
  /** The input's length. */
  inputBytes: number;
}

/** What a run did. */
export interface FuzzStats {
  /** Cases run. */
  cases: number;
  /** Inputs that decoded to a value. */
  decoded: number;
  /** Inputs refused with the decoder's own error. */
  refused: number;
  /** The slowest case, in milliseconds. */
  slowestMs: number;
  /** The index of the slowest case. */
  slowestIndex: number;
  /** Cases that failed the property. */
  failures: Failure[];
}

/** The seed of case `index` of a run seeded with `seed`. */
export function caseSeed(seed: number, index: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(index + 1, 0xc2b2ae35)) >>> 0;
}

/** An integer in [0, n). */
function below(random: Random, n: number): number {
  return Math.floor(random() * n);
}

/** One of `choices`. */
function pick<T>(random: Random, choices: readonly T[]): T {
  return choices[below(random, choices.length)];
}

/** A length skewed towards small ones. */
function smallLength(random: Random, max: number): number {
  return Math.floor(max * random() ** 3);
}

/** A random string: empty, ASCII, accented, emoji, long. */
function randomText(random: Random): string {
  switch (below(random, 5)) {
    case 0:
      return "";
    case 1:
      return "abcdefghij".slice(0, 1 + below(random, 10));
    case 2:
      return "é".repeat(1 + below(random, 40));
    case 3:
      return "🚀x".repeat(1 + below(random, 5));
    default:
      return "k".repeat(smallLength(random, 70_000));
  }
}

/** A random number of one of msgpack's sizes. */
function randomNumber(random: Random): number {
  switch (below(random, 6)) {
    case 0:
      return below(random, 128);
    case 1:
      return -below(random, 33);
    case 2:
      return below(random, 2 ** 16) - 2 ** 15;
    case 3:
      return below(random, 2 ** 32) * (random() < 0.5 ? 1 : -1);
    case 4:
      return Math.floor((random() - 0.5) * Number.MAX_SAFE_INTEGER);
    default:
      return (random() - 0.5) * 1e6;
  }
}

/** A random plain value, as the native protocol carries. */
export function randomPlain(random: Random, depth = 0): unknown {
  const leaf = depth >= MAX_GENERATED_DEPTH || random() < LEAF_CHANCE;
  switch (leaf ? below(random, 6) : 6 + below(random, 2)) {
    case 0:
      return null;
    case 1:
      return random() < 0.5;
    case 2:
      return randomNumber(random);
    case 3:
      return randomText(random);
    case 4:
      return new Uint8Array(smallLength(random, 300)).map(() => below(random, 256));
    case 5:
      return new Date(below(random, 2 ** 42) - 2 ** 40);
    case 6:
      return Array.from(
        { length: below(random, MAX_GENERATED_ELEMENTS) },
        () => randomPlain(random, depth + 1),
      );
    default: {
      const map: Record<string, unknown> = {};
      const entries = below(random, MAX_GENERATED_ELEMENTS);
      for (let i = 0; i < entries; i++) {
        map[randomText(random).slice(0, 12)] = randomPlain(random, depth + 1);
      }
      return map;
    }
  }
}

/** A random hashable Python value (a dict key or set element). */
function randomKey(random: Random, depth: number): PyValue {
  switch (below(random, depth >= MAX_GENERATED_DEPTH ? 5 : 7)) {
    case 0:
      return null;
    case 1:
      return randomNumber(random) | 0;
    case 2:
      return randomText(random).slice(0, 20);
    case 3:
      return new Uint8Array(below(random, 20)).map(() => below(random, 256));
    case 4:
      return BigInt(randomNumber(random) | 0) * 2n ** BigInt(below(random, 200));
    case 5:
      return new PyTuple(
        Array.from({ length: below(random, 4) }, () => randomKey(random, depth + 1)),
      );
    default:
      return new PySet(
        Array.from({ length: below(random, 4) }, () => randomKey(random, depth + 1)),
        true,
      );
  }
}

/** A random Python value, as a Python peer sends. */
export function randomPy(random: Random, depth = 0): PyValue {
  const leaf = depth >= MAX_GENERATED_DEPTH || random() < LEAF_CHANCE;
  const count = () => below(random, MAX_GENERATED_ELEMENTS);
  switch (leaf ? below(random, 6) : 6 + below(random, 5)) {
    case 0:
      return null;
    case 1:
      return random() < 0.5;
    case 2:
      return random() < 0.5 ? randomNumber(random) | 0 : new PyFloat(randomNumber(random));
    case 3:
      return randomKey(random, depth);
    case 4:
      return random() < 0.5 ? queueEmpty() : pyException("builtins", "ValueError", "bad");
    case 5:
      return randomText(random);
    case 6:
      return Array.from({ length: count() }, () => randomPy(random, depth + 1));
    case 7:
      return new PyTuple(Array.from({ length: count() }, () => randomPy(random, depth + 1)));
    case 8:
      return new PyDict(
        Array.from(
          { length: count() },
          () => [randomKey(random, depth + 1), randomPy(random, depth + 1)] as const,
        ),
      );
    case 9:
      return new PySet(Array.from({ length: count() }, () => randomKey(random, depth + 1)));
    default:
      return randomKey(random, depth);
  }
}

/** Bytes that start or shape msgpack structure, for runs and corruption. */
const MSGPACK_STRUCTURE: readonly number[][] = [
  [0x80],
  [0x90],
  [0x91],
  [0x81, 0xa0],
  [0xdc, 0xff],
  [0xdd, 0xff, 0xff, 0xff],
  [0xde, 0xff],
  [0xdf],
  [0xc4, 0x00],
  [0xc5],
  [0xc6, 0xff],
  [0xd9, 0x00],
  [0xdb],
  [0xc1],
  [0xd4, 0x00, 0x00],
  [0xd4, 0xff, 0x00],
  [0xd6, 0xff, 0, 0, 0, 0],
  [0xc7, 0x0c, 0xff],
  [0xd4, 0x72, 0x00],
  [0xd6, 0x70, 0, 0, 0, 0],
  [0xcb],
  [0xcf, 0xff],
];

/** Opcodes (with arguments) that build or shape pickles, for runs and soups. */
const PICKLE_STRUCTURE: readonly number[][] = [
  [OP.EMPTY_DICT],
  [OP.EMPTY_SET],
  [OP.EMPTY_LIST],
  [OP.EMPTY_TUPLE],
  [OP.MARK],
  [OP.MEMOIZE],
  [OP.DUP],
  [OP.POP],
  [OP.POP_MARK],
  [OP.NONE],
  [OP.NEWTRUE],
  [OP.BININT1, 7],
  [OP.BININT, 0xff, 0xff, 0xff, 0x7f],
  [OP.BINGET, 0],
  [OP.BINGET, 1],
  [OP.LONG_BINGET, 0, 0, 0, 0],
  [OP.BINPUT, 0],
  [OP.TUPLE1],
  [OP.TUPLE2],
  [OP.TUPLE3],
  [OP.TUPLE],
  [OP.APPEND],
  [OP.APPENDS],
  [OP.SETITEM],
  [OP.SETITEMS],
  [OP.ADDITEMS],
  [OP.FROZENSET],
  [OP.SHORT_BINUNICODE, 1, 0x61],
  [OP.SHORT_BINBYTES, 2, 0, 1],
  [OP.BINUNICODE, 0xff, 0xff, 0xff, 0xff],
  [OP.BINBYTES8, 0, 0, 0, 0, 0, 0, 0, 0x80],
  [OP.LONG1, 2, 0xff, 0x7f],
  [OP.LONG4, 0, 0x10, 0, 0],
  [OP.BINFLOAT, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
  [OP.FRAME, 0xff, 0, 0, 0, 0, 0, 0, 0],
  [OP.STACK_GLOBAL],
  [OP.REDUCE],
  [OP.NEWOBJ],
  [OP.BUILD],
  [OP.PROTO, 5],
  [OP.STOP],
];

/** `chunk` repeated to `count` copies. */
function run(chunk: readonly number[], count: number): Uint8Array {
  const out = new Uint8Array(chunk.length * count);
  if (chunk.length === 1) return out.fill(chunk[0]);
  for (let i = 0; i < count; i++) out.set(chunk, i * chunk.length);
  return out;
}

/** `parts` joined. */
function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Noise: `n` random bytes. */
function noise(random: Random, n: number): Uint8Array {
  return new Uint8Array(n).map(() => below(random, 256));
}

/** How one mutation changes an input, given bytes of the same kind to splice from. */
type Mutation = (
  random: Random,
  input: Uint8Array,
  other: Uint8Array,
  structure: readonly number[][],
) => Uint8Array;

const MUTATIONS: readonly Mutation[] = [
  // Bit flips.
  (random, input) => {
    const out = input.slice();
    const flips = 1 + below(random, 8);
    for (let i = 0; i < flips && out.length > 0; i++) {
      out[below(random, out.length)] ^= 1 << below(random, 8);
    }
    return out;
  },
  // Truncation.
  (random, input) => input.slice(0, below(random, input.length + 1)),
  // Splice: part of another encoding in place of part of this one.
  (random, input, other) => {
    const at = below(random, input.length + 1);
    const from = below(random, other.length + 1);
    return concat(
      input.subarray(0, at),
      other.subarray(from, from + below(random, other.length - from + 1)),
      input.subarray(Math.min(input.length, at + below(random, 16))),
    );
  },
  // A length field corrupted: bytes after a byte that announces one set high.
  (random, input) => {
    const out = input.slice();
    if (out.length === 0) return out;
    const at = below(random, out.length);
    const width = pick(random, [1, 2, 4, 8]);
    const value = pick(random, [0xff, 0x7f, 0x80, 0x00, below(random, 256)]);
    for (let i = 1; i <= width && at + i < out.length; i++) out[at + i] = value;
    return out;
  },
  // A run of one structural byte or opcode: short, or now and then long.
  (random, input, _other, structure) => {
    const count = random() < LONG_RUN_CHANCE
      ? below(random, LONG_RUN)
      : 1 + below(random, SHORT_RUN);
    const at = below(random, input.length + 1);
    return concat(input.subarray(0, at), run(pick(random, structure), count), input.subarray(at));
  },
  // A chunk duplicated a few times.
  (random, input) => {
    const from = below(random, input.length + 1);
    const chunk = input.subarray(from, from + 1 + below(random, 64));
    const at = below(random, input.length + 1);
    return concat(
      input.subarray(0, at),
      run([...chunk], 1 + below(random, 50)),
      input.subarray(at),
    );
  },
];

/** Elements of msgpack floods: values, cheap or costly to build. */
const MSGPACK_ELEMENTS: readonly number[][] = [
  [0x80],
  [0x90],
  [0xc0],
  [0xc4, 0x00],
  [0xa0],
  [0xa2, 0x61, 0x62],
  [0x91, 0x80],
  [0x81, 0xa1, 0x6b, 0x90],
  [0xd6, 0xff, 0, 0, 0, 1],
  [0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
  [0xdf, 0, 0, 0, 0],
];

/** Opcodes that each push one value, for pickle floods. */
const PICKLE_ELEMENTS: readonly number[][] = [
  [OP.EMPTY_DICT],
  [OP.EMPTY_SET],
  [OP.EMPTY_LIST],
  [OP.EMPTY_TUPLE],
  [OP.EMPTY_DICT, OP.MEMOIZE],
  [OP.EMPTY_LIST, OP.MEMOIZE],
  [OP.NONE],
  [OP.BININT1, 1],
  [OP.SHORT_BINBYTES, 0],
  [OP.SHORT_BINUNICODE, 1, 0x61, OP.MEMOIZE],
  [OP.NONE, OP.TUPLE1],
  [OP.BINFLOAT, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
  [OP.DUP],
];

/** A count for a flood: short, or now and then long. */
function floodCount(random: Random): number {
  return random() < LONG_FLOOD_CHANCE ? below(random, LONG_RUN) : 1 + below(random, SHORT_RUN);
}

/**
 * A flood: many values of one kind where a container's count or a pickle's
 * stream makes the decoder build every one (for msgpack an array or map 32
 * announcing them; for pickle a list appended to, or a dict whose one key is
 * set again and again).
 */
function flood(target: Target, random: Random): Uint8Array {
  const count = floodCount(random);
  if (target === "msgpack") {
    const map = random() < 0.2;
    const element = pick(random, MSGPACK_ELEMENTS);
    const header = [map ? 0xdf : 0xdd, count >>> 24, (count >>> 16) & 0xff, (count >>> 8) & 0xff];
    return concat(new Uint8Array([...header, count & 0xff]), run(element, map ? 2 * count : count));
  }
  if (random() < 0.3) {
    // One key, memoized, set again and again: a hash flood.
    const key = pick(random, [
      [OP.SHORT_BINBYTES, 4, 1, 2, 3, 4],
      [OP.BINBYTES, 0, 0, 1, 0, ...new Array(65_536).fill(7)],
      [OP.NONE, OP.NONE, OP.TUPLE2],
    ]);
    return concat(
      new Uint8Array([OP.PROTO, 4, OP.EMPTY_DICT, ...key, OP.MEMOIZE, OP.NONE, OP.SETITEM]),
      run([OP.BINGET, 0, OP.NONE, OP.SETITEM], count),
      new Uint8Array([OP.STOP]),
    );
  }
  return concat(
    new Uint8Array([OP.PROTO, 4, OP.EMPTY_LIST, OP.MARK]),
    run(pick(random, PICKLE_ELEMENTS), count),
    new Uint8Array([OP.APPENDS, OP.STOP]),
  );
}

/** Opcodes and arguments at random, between PROTO and STOP. */
function opcodeSoup(random: Random): Uint8Array {
  const parts: number[] = [OP.PROTO, 4];
  const count = smallLength(random, 400);
  for (let i = 0; i < count; i++) parts.push(...pick(random, PICKLE_STRUCTURE));
  parts.push(OP.STOP);
  return new Uint8Array(parts);
}

/** The input of one case: a valid encoding, mutated, or noise, or (for pickle) an opcode soup. */
export function makeInput(target: Target, random: Random): Uint8Array {
  const valid = () => target === "msgpack" ? encode(randomPlain(random)) : pickle(randomPy(random));
  const structure = target === "msgpack" ? MSGPACK_STRUCTURE : PICKLE_STRUCTURE;
  const start = below(random, 10);
  if (start === 0) {
    const bytes = noise(random, smallLength(random, 2000));
    if (target === "pickle" && random() < 0.5) return concat(new Uint8Array([OP.PROTO, 4]), bytes);
    return bytes;
  }
  if (start === 1 && target === "pickle") return opcodeSoup(random);
  if (start === 3) {
    const bytes = flood(target, random);
    return random() < 0.7 ? bytes : pick(random, MUTATIONS)(random, bytes, valid(), structure);
  }
  let input = valid();
  const other = valid();
  const mutations = start === 2 ? 0 : 1 + below(random, 3);
  for (let i = 0; i < mutations; i++) {
    input = pick(random, MUTATIONS)(random, input, other, structure);
  }
  return input;
}

/** The hex of the first 2,000 bytes of `bytes`. */
function hex(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 2000), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Checks one msgpack input: decoded or refused with a ProtocolError, and a
 * value fit to be an item encodes and decodes again (trusted, as taskq reads
 * its own store and a worker its master's replies), alone and in a reply.
 * @returns whether it decoded, or the problem found.
 */
function checkMsgpack(input: Uint8Array): boolean | string {
  let value: unknown;
  try {
    value = decode(input);
  } catch (error) {
    return error instanceof ProtocolError ? false : `decode threw ${describe(error)}`;
  }
  try {
    checkItem(value);
  } catch (error) {
    return error instanceof ProtocolError ? true : `checkItem threw ${describe(error)}`;
  }
  try {
    // As the store reads it back, and as a worker reads it from its master.
    decode(encode(value), "trusted");
    decode(encode({ op: "ok", rid: 1, jobs: [{ id: 1, attempt: 1, value }] }), "trusted");
  } catch (error) {
    return `an item that passed checkItem does not decode again: ${describe(error)}`;
  }
  return true;
}

/**
 * Checks one pickle: read or refused with a PickleError.
 * @returns whether it was read, or the problem found.
 */
function checkPickle(input: Uint8Array): boolean | string {
  try {
    unpickle(input);
    return true;
  } catch (error) {
    return error instanceof PickleError ? false : `unpickle threw ${describe(error)}`;
  }
}

/** An unexpected error, for a report. */
function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message.slice(0, 300)}` : String(error);
}

/** When a run stops: after so many cases, or at a time. */
export interface FuzzBudget {
  /** Cases to run (from index `first`, 0 unless given). */
  cases?: number;
  /** Time (from `performance.now()`) after which no case starts. */
  until?: number;
  /** The index of the first case. */
  first?: number;
}

/** Statistics of no cases yet. */
export function emptyFuzzStats(): FuzzStats {
  return { cases: 0, decoded: 0, refused: 0, slowestMs: 0, slowestIndex: -1, failures: [] };
}

/** Runs cases of `target` seeded by `seed` within `budget`. */
export function fuzz(target: Target, seed: number, budget: FuzzBudget): FuzzStats {
  const stats = emptyFuzzStats();
  const first = budget.first ?? 0;
  const last = budget.cases === undefined ? Infinity : first + budget.cases;
  for (let index = first; index < last; index++) {
    if (budget.until !== undefined && performance.now() >= budget.until) break;
    const input = makeInput(target, seededRandom(caseSeed(seed, index)));
    const started = performance.now();
    let outcome = target === "msgpack" ? checkMsgpack(input) : checkPickle(input);
    const ms = performance.now() - started;
    if (ms > stats.slowestMs) {
      stats.slowestMs = ms;
      stats.slowestIndex = index;
    }
    if (ms > SLOW_CASE_MS && typeof outcome !== "string") {
      outcome = `took ${Math.round(ms)} ms (more than ${SLOW_CASE_MS})`;
    }
    stats.cases++;
    if (typeof outcome === "string") {
      stats.failures.push({
        target,
        seed,
        index,
        problem: outcome,
        inputHex: hex(input),
        inputBytes: input.length,
      });
    } else if (outcome) {
      stats.decoded++;
    } else {
      stats.refused++;
    }
  }
  return stats;
}
