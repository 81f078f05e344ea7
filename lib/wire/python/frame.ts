/**
 * Python's framing (`multiprocessing.connection.Connection` over TCP): each
 * message is a 4-byte big-endian **signed** length and then the payload; a
 * length of -1 means an 8-byte big-endian unsigned length follows instead.
 *
 * {@link PyFrameReader} reassembles messages from reads that split or merge
 * them arbitrarily. It checks every announced length against its maximum
 * before allocating anything for it, so a peer announcing 4 GiB costs nothing.
 * Other negative lengths (which Python itself reads as empty messages) are
 * refused.
 *
 * @module
 */

import { FrameTooLargeError, ProtocolError } from "../../errors.ts";

/** Bytes of the ordinary length prefix. */
export const PY_HEADER_BYTES = 4;

/** Bytes of the prefix of a message that uses the large-length escape (-1, then a u64). */
export const PY_LONG_HEADER_BYTES = 12;

/** The ordinary prefix value that announces an 8-byte length. */
export const PY_LENGTH_ESCAPE = -1;

/** Largest payload Python writes with the ordinary 4-byte prefix. */
export const PY_MAX_SHORT_LENGTH = 0x7fff_ffff;

/** Largest message either side accepts during Python's handshake. */
export const PY_HANDSHAKE_MAX_BYTES = 256;

/** Free space kept at the end of the read buffer for each read. */
const MIN_READ_BYTES = 16 * 1024;

/** Reassembles Python-framed messages from a byte stream. */
export class PyFrameReader {
  #buf = new Uint8Array(MIN_READ_BYTES * 2);
  #view = new DataView(this.#buf.buffer);
  #start = 0;
  #end = 0;
  /** Largest payload accepted; may be changed between messages. */
  maxFrameBytes: number;

  /** Creates a reader that refuses payloads longer than `maxFrameBytes`. */
  constructor(maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes received that do not yet form a whole message. */
  get pendingBytes(): number {
    return this.#end - this.#start;
  }

  /** Bytes currently allocated for buffering (for tests and diagnostics). */
  get capacity(): number {
    return this.#buf.length;
  }

  /**
   * The pending message's header size and payload length, once the header is
   * complete; `undefined` before that.
   * @throws {FrameTooLargeError} when the length exceeds the maximum.
   * @throws {ProtocolError} on a negative length other than the escape.
   */
  #header(): { header: number; length: number } | undefined {
    const pending = this.#end - this.#start;
    if (pending < PY_HEADER_BYTES) return undefined;
    const short = this.#view.getInt32(this.#start);
    if (short >= 0) {
      if (short > this.maxFrameBytes) throw new FrameTooLargeError(short, this.maxFrameBytes);
      return { header: PY_HEADER_BYTES, length: short };
    }
    if (short !== PY_LENGTH_ESCAPE) {
      throw new ProtocolError(`message length ${short} is negative (only -1 is meaningful)`);
    }
    if (pending < PY_LONG_HEADER_BYTES) return undefined;
    const long = this.#view.getBigUint64(this.#start + PY_HEADER_BYTES);
    if (long > BigInt(this.maxFrameBytes)) {
      throw new FrameTooLargeError(Number(long), this.maxFrameBytes);
    }
    return { header: PY_LONG_HEADER_BYTES, length: Number(long) };
  }

  /**
   * The free space to read into next; call {@link written} with the count read.
   * Grows so that a pending message of an accepted length fits whole.
   */
  space(): Uint8Array {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    let need = MIN_READ_BYTES;
    const pending = this.#end - this.#start;
    let header: { header: number; length: number } | undefined;
    try {
      header = this.#header();
    } catch {
      header = undefined; // refused by next(); never allocate for it
    }
    if (header !== undefined) need = Math.max(need, header.header + header.length - pending);
    if (this.#buf.length - this.#end < need) {
      if (this.#start > 0 && this.#buf.length - pending >= need) {
        this.#buf.copyWithin(0, this.#start, this.#end);
      } else {
        const grown = new Uint8Array(Math.max(this.#buf.length * 2, pending + need));
        grown.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = grown;
        this.#view = new DataView(grown.buffer);
      }
      this.#start = 0;
      this.#end = pending;
    }
    return this.#buf.subarray(this.#end);
  }

  /** Records that `n` bytes were read into the last {@link space}. */
  written(n: number): void {
    this.#end += n;
  }

  /** Appends bytes (for callers that do not read into {@link space} directly). */
  push(bytes: Uint8Array): void {
    let offset = 0;
    while (offset < bytes.length) {
      const space = this.space();
      const n = Math.min(space.length, bytes.length - offset);
      space.set(bytes.subarray(offset, offset + n));
      this.written(n);
      offset += n;
    }
  }

  /**
   * The next whole message's payload (a copy), or `undefined` when more bytes
   * are needed.
   * @throws {FrameTooLargeError} when the announced length exceeds the maximum.
   * @throws {ProtocolError} on a negative length other than the escape.
   */
  next(): Uint8Array | undefined {
    const header = this.#header();
    if (header === undefined) return undefined;
    if (this.#end - this.#start < header.header + header.length) return undefined;
    const from = this.#start + header.header;
    this.#start = from + header.length;
    return this.#buf.slice(from, from + header.length);
  }
}

/**
 * Prefixes `payload` for Python: a 4-byte signed length, or the -1 escape and
 * an 8-byte length for payloads over {@link PY_MAX_SHORT_LENGTH} bytes.
 */
export function pyFrame(payload: Uint8Array): Uint8Array {
  const long = payload.length > PY_MAX_SHORT_LENGTH;
  const header = long ? PY_LONG_HEADER_BYTES : PY_HEADER_BYTES;
  const out = new Uint8Array(header + payload.length);
  const view = new DataView(out.buffer);
  if (long) {
    view.setInt32(0, PY_LENGTH_ESCAPE);
    view.setBigUint64(PY_HEADER_BYTES, BigInt(payload.length));
  } else {
    view.setInt32(0, payload.length);
  }
  out.set(payload, header);
  return out;
}
