/**
 * Python's framing (`multiprocessing.connection.Connection` over TCP): each
 * message is a 4-byte big-endian **signed** length and then the payload; a
 * length of -1 means an 8-byte big-endian unsigned length follows instead.
 *
 * {@link PyFrameReader} reassembles messages from reads that split or merge
 * them arbitrarily. It checks every announced length against its maximum
 * before allocating anything for it, so a peer announcing 4 GiB costs nothing.
 * Other negative lengths (which Python itself reads as empty messages) are
 * refused. Only the header differs from this protocol's framing: the buffer
 * management is the shared {@link LengthPrefixedReader}.
 *
 * @module
 */

import { FrameTooLargeError, ProtocolError } from "../../errors.ts";
import { type FrameHeader, LengthPrefixedReader, type ReaderOptions } from "../../wire/frame.ts";

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

/**
 * The header of a Python message: a 4-byte signed length, or the -1 escape
 * and an 8-byte unsigned length; `undefined` while incomplete.
 * @throws {FrameTooLargeError} when the length exceeds `maxFrameBytes`.
 * @throws {ProtocolError} on a negative length other than the escape.
 */
export function decodePyHeader(
  view: DataView,
  offset: number,
  available: number,
  maxFrameBytes: number,
): FrameHeader | undefined {
  if (available < PY_HEADER_BYTES) return undefined;
  const short = view.getInt32(offset);
  if (short >= 0) {
    if (short > maxFrameBytes) throw new FrameTooLargeError(short, maxFrameBytes);
    return { headerBytes: PY_HEADER_BYTES, payloadBytes: short };
  }
  if (short !== PY_LENGTH_ESCAPE) {
    throw new ProtocolError(`message length ${short} is negative (only -1 is meaningful)`);
  }
  if (available < PY_LONG_HEADER_BYTES) return undefined;
  const long = view.getBigUint64(offset + PY_HEADER_BYTES);
  if (long > BigInt(maxFrameBytes)) throw new FrameTooLargeError(Number(long), maxFrameBytes);
  return { headerBytes: PY_LONG_HEADER_BYTES, payloadBytes: Number(long) };
}

/** Reassembles Python-framed messages from a byte stream. */
export class PyFrameReader extends LengthPrefixedReader {
  /**
   * Creates a reader that refuses payloads longer than `maxFrameBytes`
   * (`options` as {@link LengthPrefixedReader}'s).
   */
  constructor(maxFrameBytes: number, options: ReaderOptions = {}) {
    super(decodePyHeader, maxFrameBytes, MIN_READ_BYTES, options);
  }

  /**
   * The next whole message's payload, the caller's to keep (a copy of a small
   * one; a large one's own buffer), or `undefined` when more bytes are needed.
   * @throws {FrameTooLargeError} when the announced length exceeds the maximum.
   * @throws {ProtocolError} on a negative length other than the escape.
   */
  override next(): Uint8Array | undefined {
    return super.take();
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
