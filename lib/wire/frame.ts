/**
 * Length-prefixed framing: every frame is a 4-byte big-endian unsigned length
 * followed by exactly that many payload bytes (one msgpack value).
 *
 * {@link FrameReader} reassembles frames from reads that may split or merge
 * them arbitrarily, reading straight into its own buffer (no copy per read) and
 * checking the announced length against the maximum before allocating for it.
 * Its buffer management, {@link LengthPrefixedReader}, is shared with Python's
 * framing, which differs only in its header.
 *
 * @module
 */

import { FrameTooLargeError } from "../errors.ts";

/** Bytes in a frame's length prefix. */
export const FRAME_HEADER_BYTES = 4;

/** Default largest payload a peer may send: 16 MiB. */
export const DEFAULT_MAX_FRAME_BYTES: number = 16 * 1024 * 1024;

/** Free space kept at the end of the read buffer for each read. */
const MIN_READ_BYTES = 64 * 1024;

/** A complete frame header: its own size and the payload length it announces. */
export interface FrameHeader {
  /** Bytes of the header itself. */
  headerBytes: number;
  /** Bytes of the payload that follows it. */
  payloadBytes: number;
}

/**
 * Parses the header of the pending frame from `available` bytes at `offset`
 * of `view`: `undefined` while the header is incomplete. It must throw (e.g.
 * {@link FrameTooLargeError}) for a length over `maxFrameBytes` or a malformed
 * header, so that nothing is ever allocated for such a length.
 */
export type FrameHeaderDecoder = (
  view: DataView,
  offset: number,
  available: number,
  maxFrameBytes: number,
) => FrameHeader | undefined;

/**
 * The header of this protocol's frames: a 4-byte big-endian unsigned length.
 * @throws {FrameTooLargeError} when the length exceeds `maxFrameBytes`.
 */
export function decodeFrameHeader(
  view: DataView,
  offset: number,
  available: number,
  maxFrameBytes: number,
): FrameHeader | undefined {
  if (available < FRAME_HEADER_BYTES) return undefined;
  const length = view.getUint32(offset);
  if (length > maxFrameBytes) throw new FrameTooLargeError(length, maxFrameBytes);
  return { headerBytes: FRAME_HEADER_BYTES, payloadBytes: length };
}

/**
 * Reassembles length-prefixed frames from a byte stream, whatever their
 * header: the header is parsed by a {@link FrameHeaderDecoder}, the buffer
 * management (reading in place, compacting, growing to fit a frame whose
 * length is allowed) is the same for every framing.
 */
/** Room for a header and the start of the next frame beyond the largest payload. */
const READ_SLACK_BYTES = 64;

export class LengthPrefixedReader {
  readonly #decodeHeader: FrameHeaderDecoder;
  readonly #minReadBytes: number;
  #buf: Uint8Array;
  #view: DataView;
  /** Size of the buffer between large frames, in bytes. */
  #baseBytes: number;
  #start = 0;
  #end = 0;
  #maxFrameBytes: number;

  /**
   * Creates a reader whose headers `decodeHeader` parses, refusing payloads
   * over `maxFrameBytes` and keeping at least `minReadBytes` free for each read.
   */
  constructor(decodeHeader: FrameHeaderDecoder, maxFrameBytes: number, minReadBytes: number) {
    this.#decodeHeader = decodeHeader;
    this.#minReadBytes = minReadBytes;
    this.#maxFrameBytes = maxFrameBytes;
    this.#baseBytes = this.#readBytes(maxFrameBytes) * 2;
    this.#buf = new Uint8Array(this.#baseBytes);
    this.#view = new DataView(this.#buf.buffer);
  }

  /**
   * Free space kept for each read: `minReadBytes`, or less while frames are
   * limited to less (an unauthenticated peer, allowed 1 KiB, costs no 128 KiB
   * buffer: a flood of them would bloat the master).
   */
  #readBytes(maxFrameBytes: number): number {
    return Math.min(this.#minReadBytes, maxFrameBytes + READ_SLACK_BYTES);
  }

  /** Largest payload accepted; may be raised or lowered between frames. */
  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  set maxFrameBytes(bytes: number) {
    this.#maxFrameBytes = bytes;
    this.#baseBytes = this.#readBytes(bytes) * 2;
  }

  /** Bytes received that do not yet form a whole frame. */
  get pendingBytes(): number {
    return this.#end - this.#start;
  }

  /** Bytes currently allocated for buffering (for tests and diagnostics). */
  get capacity(): number {
    return this.#buf.length;
  }

  /** The pending frame's header, once complete; throws as the decoder does. */
  #header(): FrameHeader | undefined {
    return this.#decodeHeader(
      this.#view,
      this.#start,
      this.#end - this.#start,
      this.#maxFrameBytes,
    );
  }

  /**
   * The free space to read into next; call {@link written} with the count read.
   * Grows (once the pending frame's length is known and allowed) so that the
   * whole pending frame fits.
   */
  space(): Uint8Array {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    let need = this.#readBytes(this.#maxFrameBytes);
    const pending = this.#end - this.#start;
    let header: FrameHeader | undefined;
    try {
      header = this.#header();
    } catch {
      header = undefined; // refused by next(); never allocate for it
    }
    if (header !== undefined) {
      need = Math.max(need, header.headerBytes + header.payloadBytes - pending);
    }
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
   * The next whole frame's payload, or `undefined` when more bytes are needed.
   * The returned view is valid until the next call to {@link space} or {@link push}.
   * @throws {FrameTooLargeError} when the announced length exceeds the maximum,
   * or whatever else the header decoder throws.
   */
  next(): Uint8Array | undefined {
    return this.#frame();
  }

  /** The next frame's payload, handing a grown buffer over with a large one. */
  #frame(): Uint8Array | undefined {
    const header = this.#header();
    if (header === undefined) return undefined;
    if (this.#end - this.#start < header.headerBytes + header.payloadBytes) return undefined;
    const from = this.#start + header.headerBytes;
    this.#start = from + header.payloadBytes;
    const payload = this.#buf.subarray(from, from + header.payloadBytes);
    if (this.#buf.length > this.#baseBytes && header.payloadBytes > this.#baseBytes / 2) {
      // A large frame: the buffer grew for it. Hand that buffer over with the
      // frame (no copy) and go on in one of the usual size, so a connection
      // that sent one large frame does not keep its size for good.
      const rest = this.#buf.subarray(this.#start, this.#end);
      this.#buf = new Uint8Array(Math.max(this.#baseBytes, rest.length));
      this.#buf.set(rest);
      this.#view = new DataView(this.#buf.buffer);
      this.#start = 0;
      this.#end = rest.length;
    }
    return payload;
  }

  /**
   * Like {@link next}, but the payload is the caller's to keep: a copy when the
   * frame is small, the buffer it was read into (no copy) when it is large.
   */
  take(): Uint8Array | undefined {
    const bufferBefore = this.#buf;
    const payload = this.#frame();
    if (payload === undefined) return undefined;
    return this.#buf === bufferBefore ? payload.slice() : payload;
  }
}

/** Reassembles this protocol's frames from a byte stream. */
export class FrameReader extends LengthPrefixedReader {
  /** Creates a reader that refuses frames whose payload exceeds `maxFrameBytes`. */
  constructor(maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {
    super(decodeFrameHeader, maxFrameBytes, MIN_READ_BYTES);
  }
}

/** Concatenates payloads into one buffer of frames, ready for a single write. */
export function joinFrames(payloads: readonly Uint8Array[], totalPayloadBytes: number): Uint8Array {
  const out = new Uint8Array(totalPayloadBytes + payloads.length * FRAME_HEADER_BYTES);
  const view = new DataView(out.buffer);
  let offset = 0;
  for (const payload of payloads) {
    view.setUint32(offset, payload.length);
    out.set(payload, offset + FRAME_HEADER_BYTES);
    offset += FRAME_HEADER_BYTES + payload.length;
  }
  return out;
}
