/**
 * A pickle writer for {@link PyValue}s: protocol 4, as every Python from 3.4
 * reads it, without frames or memo (both optional for a reader).
 *
 * Each Python type is written with the opcode Python itself uses for it, so
 * the peer gets back exactly the type it sent: `7` and `7.0`, a list and a
 * tuple, a set and a frozenset stay distinct, and integers of any size keep
 * every digit. The few objects the protocol needs ({@link PyObject}: the
 * `queue.Empty` exception and its kin) are written as a global and the call
 * that builds them. The writer never emits a cycle: values come from the
 * engine or from the strict reader, which refuses them.
 *
 * @module
 */

import {
  PyDict,
  PyFloat,
  PyGlobal,
  type PyObject,
  PySet,
  PyTuple,
  type PyValue,
} from "./values.ts";
import { encodeUtf8 } from "./utf8.ts";
import { OP } from "./opcodes.ts";

/** The protocol written. */
export const PICKLE_PROTOCOL = 4;

/** Elements per APPENDS, SETITEMS or ADDITEMS group, as Python batches them. */
const BATCH = 1000;

const MAX_U8 = 0xff;
const MAX_U16 = 0xffff;
const MAX_U32 = 0xffff_ffff;
const MIN_I32 = -0x8000_0000;
const MAX_I32 = 0x7fff_ffff;

/** Initial output buffer size. */
const INITIAL_BYTES = 256;

class Writer {
  #buf = new Uint8Array(INITIAL_BYTES);
  #view = new DataView(this.#buf.buffer);
  #len = 0;

  #ensure(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const grown = new Uint8Array(Math.max(this.#buf.length * 2, this.#len + n));
    grown.set(this.#buf.subarray(0, this.#len));
    this.#buf = grown;
    this.#view = new DataView(grown.buffer);
  }

  op(code: number): void {
    this.#ensure(1);
    this.#buf[this.#len++] = code;
  }

  u8(n: number): void {
    this.op(n);
  }

  u16(n: number): void {
    this.#ensure(2);
    this.#view.setUint16(this.#len, n, true);
    this.#len += 2;
  }

  i32(n: number): void {
    this.#ensure(4);
    this.#view.setInt32(this.#len, n, true);
    this.#len += 4;
  }

  u32(n: number): void {
    this.#ensure(4);
    this.#view.setUint32(this.#len, n, true);
    this.#len += 4;
  }

  u64(n: number): void {
    this.#ensure(8);
    this.#view.setBigUint64(this.#len, BigInt(n), true);
    this.#len += 8;
  }

  f64(n: number): void {
    this.#ensure(8);
    this.#view.setFloat64(this.#len, n, false); // BINFLOAT is big-endian
    this.#len += 8;
  }

  bytes(bytes: Uint8Array): void {
    this.#ensure(bytes.length);
    this.#buf.set(bytes, this.#len);
    this.#len += bytes.length;
  }

  result(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}

/** An integer's minimal little-endian two's-complement bytes (empty for 0), as LONG1/LONG4 hold. */
export function encodeLong(value: bigint): Uint8Array {
  if (value === 0n) return new Uint8Array(0);
  const magnitude = value < 0n ? -value - 1n : value;
  const bits = magnitude.toString(2).length;
  const n = Math.floor(bits / 8) + 1; // room for the sign bit
  let rest = value < 0n ? value + (1n << BigInt(n * 8)) : value;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return out;
}

function writeInt(w: Writer, value: number | bigint): void {
  if (typeof value === "number" && !Number.isSafeInteger(value)) {
    throw new TypeError(`not an integer: ${value}`);
  }
  if (value >= 0 && value <= MAX_U8) {
    w.op(OP.BININT1);
    w.u8(Number(value));
  } else if (value >= 0 && value <= MAX_U16) {
    w.op(OP.BININT2);
    w.u16(Number(value));
  } else if (value >= MIN_I32 && value <= MAX_I32) {
    w.op(OP.BININT);
    w.i32(Number(value));
  } else {
    const bytes = encodeLong(BigInt(value));
    if (bytes.length <= MAX_U8) {
      w.op(OP.LONG1);
      w.u8(bytes.length);
    } else {
      w.op(OP.LONG4);
      w.i32(bytes.length);
    }
    w.bytes(bytes);
  }
}

function writeSized(w: Writer, data: Uint8Array, short: number, mid: number, long: number): void {
  if (data.length <= MAX_U8) {
    w.op(short);
    w.u8(data.length);
  } else if (data.length <= MAX_U32) {
    w.op(mid);
    w.u32(data.length);
  } else {
    w.op(long);
    w.u64(data.length);
  }
  w.bytes(data);
}

function writeItems(w: Writer, items: readonly PyValue[], single: number, group: number): void {
  for (let i = 0; i < items.length; i += BATCH) {
    const batch = items.slice(i, i + BATCH);
    if (batch.length === 1) {
      writeValue(w, batch[0]);
      w.op(single);
      continue;
    }
    w.op(OP.MARK);
    for (const item of batch) writeValue(w, item);
    w.op(group);
  }
}

function writeValue(w: Writer, value: PyValue): void {
  if (value === null) w.op(OP.NONE);
  else if (value === true) w.op(OP.NEWTRUE);
  else if (value === false) w.op(OP.NEWFALSE);
  else if (typeof value === "number" || typeof value === "bigint") writeInt(w, value);
  else if (typeof value === "string") {
    writeSized(w, encodeUtf8(value), OP.SHORT_BINUNICODE, OP.BINUNICODE, OP.BINUNICODE8);
  } else if (value instanceof Uint8Array) {
    writeSized(w, value, OP.SHORT_BINBYTES, OP.BINBYTES, OP.BINBYTES8);
  } else if (value instanceof PyFloat) {
    w.op(OP.BINFLOAT);
    w.f64(value.value);
  } else if (Array.isArray(value)) {
    w.op(OP.EMPTY_LIST);
    writeItems(w, value, OP.APPEND, OP.APPENDS);
  } else if (value instanceof PyTuple) {
    writeTuple(w, value.items);
  } else if (value instanceof PySet) {
    if (value.frozen) {
      w.op(OP.MARK);
      for (const item of value.items) writeValue(w, item);
      w.op(OP.FROZENSET);
    } else {
      w.op(OP.EMPTY_SET);
      for (let i = 0; i < value.items.length; i += BATCH) {
        w.op(OP.MARK);
        for (const item of value.items.slice(i, i + BATCH)) writeValue(w, item);
        w.op(OP.ADDITEMS);
      }
    }
  } else if (value instanceof PyDict) {
    w.op(OP.EMPTY_DICT);
    const flat: PyValue[] = [];
    for (const [key, item] of value.entries) flat.push(key, item);
    writeItems(w, flat, OP.SETITEM, OP.SETITEMS);
  } else if (value instanceof PyGlobal) {
    writeGlobal(w, value);
  } else {
    writeObject(w, value);
  }
}

function writeTuple(w: Writer, items: readonly PyValue[]): void {
  if (items.length === 0) {
    w.op(OP.EMPTY_TUPLE);
    return;
  }
  if (items.length <= 3) {
    for (const item of items) writeValue(w, item);
    w.op(OP.TUPLE1 + items.length - 1); // TUPLE1, TUPLE2, TUPLE3
    return;
  }
  w.op(OP.MARK);
  for (const item of items) writeValue(w, item);
  w.op(OP.TUPLE);
}

function writeGlobal(w: Writer, global: PyGlobal): void {
  writeValue(w, global.module);
  writeValue(w, global.name);
  w.op(OP.STACK_GLOBAL);
}

function writeObject(w: Writer, object: PyObject): void {
  writeGlobal(w, object.cls);
  writeTuple(w, object.args);
  if (object.build === "reduce") w.op(OP.REDUCE);
  else if (object.kwargs !== undefined) {
    writeValue(w, object.kwargs);
    w.op(OP.NEWOBJ_EX);
  } else {
    w.op(OP.NEWOBJ);
  }
  if (object.state !== undefined) {
    writeValue(w, object.state);
    w.op(OP.BUILD);
  }
}

/** Pickles `value` (protocol 4). */
export function pickle(value: PyValue): Uint8Array {
  const w = new Writer();
  w.op(OP.PROTO);
  w.u8(PICKLE_PROTOCOL);
  writeValue(w, value);
  w.op(OP.STOP);
  return w.result();
}
