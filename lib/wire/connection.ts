/**
 * A TCP connection that speaks frames of msgpack values, used by both the
 * master and the client.
 *
 * Outgoing messages are encoded at once and queued; everything queued during
 * one turn of the event loop goes out in a single `write()`. Incoming bytes are
 * read straight into the frame reader's buffer and every whole frame is
 * decoded and handed on in order. When the peer does not read what we send,
 * reading from it pauses until the queue drains (back-pressure), so a slow
 * peer cannot make us buffer without limit.
 *
 * Replies can still pile up without a new request (items for gets that
 * waited), so two more limits hold: a connection with more than
 * {@link DEFAULT_HARD_LIMIT_BYTES} queued is closed at once, and connections
 * may share a {@link ByteBudget} (the master's buffers share of its memory
 * budget): while all of them together queue more than its cap, none with
 * bytes queued is read, and one that has queued bytes the peer has not taken
 * for {@link SLOW_CONSUMER_MS} is closed. Closing drops its replies; the
 * master gives back the items they carried.
 *
 * @module
 */

import { DEFAULT_MAX_FRAME_BYTES, FRAME_HEADER_BYTES, FrameReader, joinFrames } from "./frame.ts";
import { decode, type DecodeTrust, encode } from "../model/codec.ts";
import { FrameTooLargeError, ProtocolError } from "../errors.ts";
import type { ByteStream } from "./stream.ts";
import type { ByteBudget } from "../util/memory.ts";

/** Queued outgoing bytes above which reading from the peer pauses. */
export const DEFAULT_HIGH_WATER_BYTES: number = 8 * 1024 * 1024;

/** Queued outgoing bytes past which the connection is closed (its peer is far behind). */
export const DEFAULT_HARD_LIMIT_BYTES: number = 8 * DEFAULT_HIGH_WATER_BYTES;

/**
 * Time, in ms, a peer may take none of our bytes while the shared budget is
 * over its cap, before its connection is closed.
 */
export const SLOW_CONSUMER_MS = 2_000;

/** Bytes read ahead from a peer whose next message waits (enough to notice it leave). */
export const WATCH_WHILE_PAUSED_BYTES: number = 1024 * 1024;

/**
 * Longest time, in ms, one connection's frames are handled before the pump
 * lets the event loop run. A peer that pipelines requests always has bytes
 * ready, and such reads complete at once: with no yield, one connection held
 * the master (every other connection, every timer) for as long as it kept
 * sending (100,000 pipelined gets stalled other clients for 0.8 s).
 */
export const PUMP_SLICE_MS = 10;

/**
 * Resolves after the event loop has handled pending I/O (other connections'
 * reads). `setImmediate`, not `setTimeout(0)`, which waits milliseconds here.
 */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Options of a {@link FramedConnection}. */
export interface FramedConnectionOptions {
  /** Largest frame payload accepted from the peer. */
  maxFrameBytes?: number;
  /** Queued outgoing bytes above which reading pauses. */
  highWaterBytes?: number;
  /** Queued outgoing bytes past which the connection is closed. */
  hardLimitBytes?: number;
  /** The budget every connection's queued outgoing bytes are charged to together. */
  shared?: ByteBudget;
  /**
   * Keep the read buffer at about a kilobyte while the peer sends little
   * (see `shrinkWhenIdle` of frame.ts's `ReaderOptions`): the master's connections,
   * thousands of which may wait in a get.
   */
  shrinkWhenIdle?: boolean;
}

/** A framed msgpack connection over a Deno TCP connection. */
export class FramedConnection {
  /** The underlying connection. */
  readonly conn: ByteStream;
  /** The peer's address as `HOST:PORT`, for logs. */
  readonly peer: string;
  readonly #reader: FrameReader;
  readonly #highWater: number;
  readonly #hardLimit: number;
  readonly #shared: ByteBudget | undefined;
  /** Bytes charged to {@link #shared} and not yet released. */
  #charged = 0;
  /** When the peer last took bytes, or the queue last became non-empty (ms since the epoch). */
  #progressAt = 0;
  #out: Uint8Array[] = [];
  #outPayloadBytes = 0;
  #inFlightBytes = 0;
  #flushScheduled = false;
  #closed = false;
  #drainWaiters: Array<() => void> = [];
  /** Largest payload {@link send} lets through (the peer's limit, once known). */
  maxSendBytes = Infinity;
  readonly #flushNow = () => this.#flush();

  /** Wraps `conn`. */
  constructor(conn: ByteStream, options: FramedConnectionOptions = {}) {
    this.conn = conn;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.peer = addr.hostname.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
    this.#reader = new FrameReader(options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES, {
      shrinkWhenIdle: options.shrinkWhenIdle,
    });
    this.#highWater = options.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
    this.#hardLimit = Math.max(
      options.hardLimitBytes ?? DEFAULT_HARD_LIMIT_BYTES,
      2 * this.#highWater,
    );
    this.#shared = options.shared;
  }

  /** Largest frame payload accepted from the peer from now on. */
  set maxFrameBytes(bytes: number) {
    this.#reader.maxFrameBytes = bytes;
  }

  /**
   * Whose frames these are: a `"peer"`'s are held to the decoder's cost bound;
   * a master's that proved the key are `"trusted"` (see {@link decode}).
   */
  trust: DecodeTrust = "peer";

  /** Whether {@link close} was called or the connection broke. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Outgoing bytes queued or being written. */
  get queuedBytes(): number {
    return this.#outPayloadBytes + this.#out.length * FRAME_HEADER_BYTES + this.#inFlightBytes;
  }

  /**
   * Encodes `message` and queues it; it is written with the rest of this turn's
   * messages. Does nothing once closed.
   * @throws {FrameTooLargeError} when the payload exceeds {@link maxSendBytes}.
   */
  send(message: unknown): void {
    if (this.#closed) return;
    const payload = encode(message);
    if (payload.length > this.maxSendBytes) {
      throw new FrameTooLargeError(payload.length, this.maxSendBytes);
    }
    if (this.queuedBytes === 0) this.#progressAt = Date.now();
    this.#out.push(payload);
    this.#outPayloadBytes += payload.length;
    const shared = this.#shared;
    if (shared !== undefined) {
      this.#charged += payload.length + FRAME_HEADER_BYTES;
      shared.charge(payload.length + FRAME_HEADER_BYTES);
    }
    if (
      this.queuedBytes > this.#hardLimit ||
      (shared?.over && Date.now() - this.#progressAt > SLOW_CONSUMER_MS)
    ) {
      this.close(); // a peer that does not read: drop what it would not take
      return;
    }
    if (!this.#flushScheduled && this.#inFlightBytes === 0) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flushNow);
    }
  }

  async #flush(): Promise<void> {
    this.#flushScheduled = false;
    try {
      while (this.#out.length > 0 && !this.#closed) {
        const buf = joinFrames(this.#out, this.#outPayloadBytes);
        this.#out = [];
        this.#outPayloadBytes = 0;
        this.#inFlightBytes = buf.length;
        let offset = 0;
        while (offset < buf.length) {
          const n = await this.conn.write(offset === 0 ? buf : buf.subarray(offset));
          offset += n;
          this.#progressAt = Date.now();
          this.#release(n);
        }
        this.#inFlightBytes = 0;
      }
    } catch {
      this.close();
    } finally {
      this.#inFlightBytes = 0;
      const waiters = this.#drainWaiters;
      this.#drainWaiters = [];
      for (const wake of waiters) wake();
    }
  }

  /** Gives back to the shared budget `bytes` the peer took (or that were dropped). */
  #release(bytes: number): void {
    if (this.#shared === undefined || this.#charged === 0) return;
    const n = Math.min(bytes, this.#charged);
    this.#charged -= n;
    this.#shared.release(n);
  }

  /** Resolves once everything queued so far is written (or the connection closed). */
  drained(): Promise<void> {
    if (this.#closed || (this.#out.length === 0 && this.#inFlightBytes === 0)) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * Reads frames until the peer closes the connection, calling `onMessage` with
   * each decoded value in order. When `onMessage` returns a promise, the next
   * frame waits until it settles (back-pressure on the peer); meanwhile bytes
   * are still read into the buffer, up to {@link WATCH_WHILE_PAUSED_BYTES}, so
   * a peer that goes away while held is noticed at once.
   * @throws {ProtocolError} on an oversized or undecodable frame, or whatever
   *   `onMessage` throws; the caller decides whether to reply and close.
   */
  async pump(onMessage: (message: unknown) => void | Promise<void>): Promise<void> {
    const reader = this.#reader;
    let busyMs = 0; // time spent handling frames since the pump last let others run
    while (!this.#closed) {
      // The read awaited here, not in a helper: an idle connection (thousands may
      // wait in a get) holds one suspended call the less.
      let n: number | null;
      try {
        n = await this.#startRead();
      } catch {
        n = null; // reset by peer, or closed by us
      }
      this.#reading = undefined;
      if (n === null) return;
      reader.written(n);
      let start = performance.now();
      for (let frame = reader.next(); frame !== undefined; frame = reader.next()) {
        const paused = onMessage(decode(frame, this.trust));
        if (paused !== undefined && !(await this.#watchWhile(paused))) return;
        // The peer is not reading our replies: read no more from it until it does.
        // While all connections together queue too much, none with bytes queued is read.
        if (
          this.queuedBytes > this.#highWater ||
          (this.#shared?.over && this.queuedBytes > 0)
        ) await this.drained();
        if (this.#closed) return;
        // Let the other connections and the timers have their turn (see PUMP_SLICE_MS).
        const now = performance.now();
        if (busyMs + now - start > PUMP_SLICE_MS) {
          await nextTurn();
          busyMs = 0;
          start = performance.now();
          if (this.#closed) return;
        }
      }
      busyMs += performance.now() - start;
    }
  }

  /** The read in flight (into the reader's free space), if any. */
  #reading: Promise<number | null> | undefined;

  /** Starts a read unless one is in flight. */
  #startRead(): Promise<number | null> {
    return this.#reading ??= this.conn.read(this.#reader.space());
  }

  /** Completes the read in flight (starting one if needed); false once the peer is gone. */
  async #readSome(): Promise<boolean> {
    let n: number | null;
    try {
      n = await this.#startRead();
    } catch {
      n = null; // reset by peer, or closed by us
    }
    this.#reading = undefined;
    if (n === null) return false;
    this.#reader.written(n);
    return true;
  }

  /**
   * Waits for `paused` while still reading (a bounded amount) from the peer.
   * Resolves false if the peer closed meanwhile. A read still in flight when
   * `paused` settles is left for the pump to complete.
   * @throws {ProtocolError} when the peer sends {@link WATCH_WHILE_PAUSED_BYTES}
   *   more while held: it is not waiting for its replies, and a peer that
   *   closed behind that much data could never be noticed (what it holds, its
   *   leases and waiting gets, would stay).
   */
  async #watchWhile(paused: Promise<void>): Promise<boolean> {
    let settled = false;
    const done = paused.then(() => settled = true, () => settled = true);
    while (!settled) {
      if (this.#reader.pendingBytes >= WATCH_WHILE_PAUSED_BYTES) {
        throw new ProtocolError(
          `kept sending ${WATCH_WHILE_PAUSED_BYTES} bytes more while its earlier requests were ` +
            `held (too many outstanding, or a full queue): wait for replies before sending more`,
        );
      }
      const read = this.#startRead().then(() => true, () => true);
      if (await Promise.race([read, done.then(() => false)])) {
        if (!(await this.#readSome())) return false;
      }
    }
    await paused;
    return true;
  }

  /** Closes at once, dropping anything not yet written. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#out = [];
    this.#release(this.#charged);
    try {
      this.conn.close();
    } catch {
      // already closed by the runtime
    }
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const wake of waiters) wake();
  }

  /** Sends `message`, waits (briefly) for it to be written, then closes. */
  async sendAndClose(message: unknown, graceMs = 1000): Promise<void> {
    this.send(message);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.drained(),
      new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs)),
    ]);
    clearTimeout(timer);
    this.close();
  }
}
