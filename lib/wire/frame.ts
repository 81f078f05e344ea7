/**
 * Length-prefixed framing: every frame is a 4-byte big-endian unsigned length
 * followed by exactly that many payload bytes (one msgpack value).
 *
 * {@link FrameReader} reassembles frames from reads that may split or merge
 * them arbitrarily, reading straight into its own buffer (no copy per read) and
 * checking the announced length against the maximum before allocating for it.
 * Its buffer management, {@link LengthPrefixedReader}, is shared with Python's
 * framing, which differs only in its header. On the master's connections it
 * keeps a buffer of about a kilobyte while the peer sends little (a worker
 * waiting in a get), and full-size reads while it streams.
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

/** Room for a header and the start of the next frame beyond the largest payload. */
const READ_SLACK_BYTES = 64;

/**
 * Capacity of a reader's buffer while its peer sends little at a time, in
 * bytes: what an idle connection (a worker blocked in a get) holds for the
 * read it has pending, instead of a buffer sized for pipelined batches. A
 * request that fits (a get, an ack of some dozens of ids) keeps it this size.
 */
export const IDLE_BUFFER_BYTES = 1024;

/**
 * Consecutive small reads (each {@link IDLE_BUFFER_BYTES} or less) after
 * which a reader with nothing pending gives its larger buffer back and reads
 * into one of {@link IDLE_BUFFER_BYTES} again.
 */
export const SHRINK_AFTER_SMALL_READS = 2;

/** Options of a {@link LengthPrefixedReader}. */
export interface ReaderOptions {
  /**
   * Keep the buffer at {@link IDLE_BUFFER_BYTES} while the peer sends little
   * (see {@link LengthPrefixedReader}): for a server's many connections.
   * Off by default: a client's one connection keeps its full buffer, and a
   * reply after a wait is read in one read rather than two.
   */
  shrinkWhenIdle?: boolean;
}

/**
 * Reassembles length-prefixed frames from a byte stream, whatever their
 * header: the header is parsed by a {@link FrameHeaderDecoder}, the buffer
 * management (reading in place, compacting, growing to fit a frame whose
 * length is allowed) is the same for every framing.
 *
 * With {@link ReaderOptions.shrinkWhenIdle} the buffer follows the traffic:
 * it starts at {@link IDLE_BUFFER_BYTES}; a read that fills the space offered
 * shows the peer has more to send, and the next read is offered the full
 * `minReadBytes`; after {@link SHRINK_AFTER_SMALL_READS} small reads with
 * nothing left pending it goes back to the idle size. So a connection that
 * waits (a worker blocked in a get) costs about a kilobyte, and one that
 * streams batches still reads them in large reads.
 *
 * @example
 * ```ts
 * import { decodeFrameHeader, LengthPrefixedReader } from "./frame.ts";
 * const reader = new LengthPrefixedReader(decodeFrameHeader, 1 << 20, 64 * 1024, {
 *   shrinkWhenIdle: true,
 * });
 * reader.push(new Uint8Array([0, 0, 0, 2, 7, 8]));
 * console.log([...reader.next()!]); // [7, 8]
 * console.log(reader.capacity); // 1024
 * ```
 */
export class LengthPrefixedReader {
  readonly #decodeHeader: FrameHeaderDecoder;
  readonly #minReadBytes: number;
  readonly #shrinkWhenIdle: boolean;
  #buf: Uint8Array;
  #view: DataView;
  #start = 0;
  #end = 0;
  #maxFrameBytes: number;
  /** Free space offered to the next read while the buffer stays as it is. */
  #wantRead: number;
  /** Length of the space last handed out by {@link space}. */
  #offered = 0;
  /** Reads in a row that each brought {@link IDLE_BUFFER_BYTES} or less. */
  #smallReads = 0;

  /**
   * Creates a reader whose headers `decodeHeader` parses, refusing payloads
   * over `maxFrameBytes` and offering up to `minReadBytes` of free space to
   * each read while the peer keeps sending.
   */
  constructor(
    decodeHeader: FrameHeaderDecoder,
    maxFrameBytes: number,
    minReadBytes: number,
    options: ReaderOptions = {},
  ) {
    this.#decodeHeader = decodeHeader;
    this.#minReadBytes = minReadBytes;
    this.#maxFrameBytes = maxFrameBytes;
    this.#shrinkWhenIdle = options.shrinkWhenIdle ?? false;
    this.#wantRead = this.#idleBytes();
    this.#buf = new Uint8Array(this.#shrinkWhenIdle ? this.#wantRead : 2 * this.#wantRead);
    this.#view = new DataView(this.#buf.buffer);
  }

  /**
   * Free space kept for each read while the peer streams: `minReadBytes`, or
   * less while frames are limited to less (an unauthenticated peer, allowed
   * 1 KiB, costs no 64 KiB buffer: a flood of them would bloat the master).
   */
  #busyBytes(): number {
    return Math.min(this.#minReadBytes, this.#maxFrameBytes + READ_SLACK_BYTES);
  }

  /** The room offered to a read while the peer sends little. */
  #idleBytes(): number {
    const busy = this.#busyBytes();
    return this.#shrinkWhenIdle ? Math.min(IDLE_BUFFER_BYTES, busy) : busy;
  }

  /** Largest payload accepted; may be raised or lowered between frames. */
  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  set maxFrameBytes(bytes: number) {
    this.#maxFrameBytes = bytes;
    this.#wantRead = this.#shrinkWhenIdle
      ? Math.min(this.#wantRead, this.#busyBytes())
      : this.#busyBytes();
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
   * whole pending frame fits; shrinks back to the idle size once the peer has
   * sent little for a while and nothing is pending.
   */
  space(): Uint8Array {
    const pending = this.#end - this.#start;
    if (pending === 0) {
      this.#start = this.#end = 0;
      if (this.#smallReads >= SHRINK_AFTER_SMALL_READS && this.#shrinkWhenIdle) {
        this.#wantRead = this.#idleBytes();
        if (this.#buf.length > this.#wantRead) this.#replace(new Uint8Array(this.#wantRead), 0);
      }
    }
    // Room for the read: in a small buffer, what it is meant to take less what
    // it holds, never none (while frames wait unconsumed, the peer is still
    // read); in a large one, all that a read is offered.
    let need = this.#wantRead <= IDLE_BUFFER_BYTES
      ? Math.max(this.#wantRead - pending, READ_SLACK_BYTES)
      : this.#wantRead;
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
        this.#start = 0;
        this.#end = pending;
      } else {
        const grown = new Uint8Array(Math.max(this.#buf.length * 2, pending + need));
        grown.set(this.#buf.subarray(this.#start, this.#end));
        this.#replace(grown, pending);
      }
    }
    const space = this.#buf.subarray(this.#end);
    this.#offered = space.length;
    return space;
  }

  /** Reads into `buffer` from now on, its first `pending` bytes the pending ones. */
  #replace(buffer: Uint8Array, pending: number): void {
    this.#buf = buffer;
    this.#view = new DataView(buffer.buffer);
    this.#start = 0;
    this.#end = pending;
  }

  /** Records that `n` bytes were read into the last {@link space}. */
  written(n: number): void {
    this.#end += n;
    if (n >= this.#offered) {
      // The read filled what it was offered: the peer has more; offer the next one more room.
      this.#wantRead = this.#busyBytes();
      this.#smallReads = 0;
    } else if (n <= IDLE_BUFFER_BYTES) {
      this.#smallReads++;
    } else {
      this.#smallReads = 0;
    }
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
    const busy = this.#busyBytes();
    if (this.#buf.length > 2 * busy && header.payloadBytes > busy) {
      // A large frame: the buffer grew for it. Hand that buffer over with the
      // frame (no copy) and go on in one of the usual size, so a connection
      // that sent one large frame does not keep its size for good.
      const rest = this.#buf.subarray(this.#start, this.#end);
      const usual = new Uint8Array(Math.max(2 * this.#wantRead, rest.length));
      usual.set(rest);
      this.#replace(usual, rest.length);
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
  /**
   * Creates a reader that refuses frames whose payload exceeds
   * `maxFrameBytes`, its buffer kept small while idle if `options` ask.
   */
  constructor(maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES, options: ReaderOptions = {}) {
    super(decodeFrameHeader, maxFrameBytes, MIN_READ_BYTES, options);
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
