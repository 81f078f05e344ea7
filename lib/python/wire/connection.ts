/**
 * A TCP connection that speaks Python's framing (see {@link PyFrameReader}),
 * used by the master's Python front-end and by the worker that serves a
 * Python master.
 *
 * Reading runs in the background from the start, so the end of the
 * connection is noticed even while a request is being served (a Python peer
 * that dies during a blocking `get` must not be handed an item). Messages
 * wait in a short queue for {@link PythonConnection.recv}; Python never sends
 * more than a few ahead, and reading pauses while the queue is full.
 *
 * On the master, connections share a {@link ByteBudget} (the master's
 * buffers share of its memory budget, which the native connections charge
 * too): each charges the bytes it has read and `recv` has not taken yet
 * (whole messages, and the one being read) and the bytes it has not yet
 * written. While the budget is over its cap, a connection reads only
 * for a `recv` that waits with nothing queued (the message at hand), never
 * ahead, so however many peers pipeline large messages, what they make the
 * master hold stays near the cap plus one message per connection.
 *
 * @module
 */

import { PY_HANDSHAKE_MAX_BYTES, pyFrame, PyFrameReader } from "./frame.ts";
import { ConnectionLostError } from "../../errors.ts";
import type { ByteStream } from "../../wire/stream.ts";
import type { ByteBudget } from "../../util/memory.ts";

/** Received messages held for {@link PythonConnection.recv} before reading pauses. */
const MAX_QUEUED_MESSAGES = 8;

/**
 * Bytes of received messages held for {@link PythonConnection.recv} before
 * reading pauses (one message of any allowed size is always taken): 1 MiB.
 */
const MAX_QUEUED_BYTES = 1024 * 1024;

/**
 * How often, in ms, a connection that stopped reading ahead because the
 * shared budget was over looks again whether it is back under.
 */
const BUDGET_RECHECK_MS = 100;

/**
 * Per shared budget, the one connection reading the rest of a message while
 * the budget is over (see `#full`).
 */
const overdrafts = new WeakMap<ByteBudget, PythonConnection>();

/**
 * Most bytes one read takes when the connection charges a shared budget:
 * 256 KiB, so that connections reading at once overshoot the cap by little.
 */
const BUDGET_READ_BYTES = 256 * 1024;

/** Options of a {@link PythonConnection}. */
export interface PythonConnectionOptions {
  /** The budget its held messages and unwritten bytes are charged to, with every other connection's. */
  shared?: ByteBudget;
  /**
   * Keep the read buffer small while the peer sends little (a server's many
   * connections: see `ReaderOptions.shrinkWhenIdle` in lib/wire/frame.ts).
   */
  shrinkWhenIdle?: boolean;
}

/**
 * A Python-framed connection over a Deno TCP connection.
 *
 * @example
 * ```ts
 * import { PythonConnection } from "./connection.ts";
 * import { pickle } from "./pickle_writer.ts";
 * import { unpickle } from "./pickle_reader.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const accepted = listener.accept();
 * const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const client = new PythonConnection(tcp);
 * const server = new PythonConnection(await accepted);
 * await client.send(pickle(["ping", 1])); // one frame: 4-byte length, then the pickle
 * console.log(unpickle(await server.recv())); // [ "ping", 1 ]
 * client.close();
 * server.close();
 * await Promise.all([client.ended, server.ended]);
 * listener.close();
 * ```
 */
export class PythonConnection {
  /** The underlying connection. */
  readonly conn: ByteStream;
  /** The peer's address as `HOST:PORT`, for logs. */
  readonly peer: string;
  /** Resolves when the connection has ended (peer closed, error, or {@link close}). */
  readonly ended: Promise<void>;
  readonly #reader: PyFrameReader;
  readonly #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #waiter: PromiseWithResolvers<void> | undefined;
  #resume: PromiseWithResolvers<void> | undefined;
  #error: Error | undefined;
  #eof = false;
  #closed = false;
  #writing: Promise<void> = Promise.resolve();
  readonly #shared: ByteBudget | undefined;
  /** Bytes charged to {@link #shared} and not yet released. */
  #charged = 0;
  /** Bytes given to {@link send} and not yet written. */
  #unwritten = 0;

  /** Wraps `conn`; messages over {@link PY_HANDSHAKE_MAX_BYTES} are refused until raised. */
  constructor(conn: ByteStream, options: PythonConnectionOptions = {}) {
    this.conn = conn;
    this.#shared = options.shared;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.peer = addr.hostname.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
    this.#reader = new PyFrameReader(PY_HANDSHAKE_MAX_BYTES, {
      shrinkWhenIdle: options.shrinkWhenIdle,
    });
    this.ended = this.#pump();
  }

  /** Largest payload accepted from the peer from now on. */
  set maxFrameBytes(bytes: number) {
    this.#reader.maxFrameBytes = bytes;
  }

  /** Whether the connection has ended or was closed. */
  get closed(): boolean {
    return this.#closed || this.#eof;
  }

  async #pump(): Promise<void> {
    const reader = this.#reader;
    try {
      while (!this.#closed) {
        for (let full = this.#full(); full !== false && !this.#closed; full = this.#full()) {
          this.#resume = Promise.withResolvers<void>();
          if (full === "budget") {
            // Nothing of ours will wake us when others bring the budget back under.
            const timer = setTimeout(this.#wakeReader, BUDGET_RECHECK_MS);
            await this.#resume.promise;
            clearTimeout(timer);
          } else {
            await this.#resume.promise;
          }
        }
        let n: number | null;
        try {
          const space = reader.space();
          n = await this.conn.read(
            this.#shared === undefined || space.length <= BUDGET_READ_BYTES
              ? space
              : space.subarray(0, BUDGET_READ_BYTES),
          );
        } catch {
          n = null; // reset by the peer, or closed by us
        }
        if (n === null) {
          if (reader.pendingBytes > 0 && this.#error === undefined) {
            this.#error = new ConnectionLostError(
              `${this.peer} closed the connection in the middle of a message`,
            );
          }
          return;
        }
        reader.written(n);
        for (let frame = reader.next(); frame !== undefined; frame = reader.next()) {
          this.#queue.push(frame);
          this.#queuedBytes += frame.length;
        }
        if (this.#queue.length > 0) this.#releaseOverdraft();
        this.#recharge();
        this.#wake();
      }
    } catch (error) {
      // A refused length: what came before it is still delivered, then this error.
      this.#error = error as Error;
    } finally {
      this.#eof = true;
      this.#releaseOverdraft();
      this.#wake();
    }
  }

  /**
   * Why reading must wait now: `"queue"` while this connection holds enough
   * messages, `"budget"` while the shared budget is over and no `recv` waits
   * with nothing queued; false when it may read.
   */
  #full(): "queue" | "budget" | false {
    if (this.#queue.length >= MAX_QUEUED_MESSAGES || this.#queuedBytes >= MAX_QUEUED_BYTES) {
      return "queue";
    }
    const shared = this.#shared;
    if (shared === undefined || !shared.over) {
      this.#releaseOverdraft();
      return false;
    }
    // Over budget, a connection whose session waits for its next message with
    // none queued may still read that one message, so that no connection waits
    // for others for good. Its first bytes (one read) are always read; the rest
    // of a message by one connection at a time, so that such messages do not
    // add up past the budget.
    if (this.#waiter === undefined || this.#queue.length > 0) return "budget";
    if (this.#reader.pendingBytes === 0) {
      this.#releaseOverdraft();
      return false;
    }
    const holder = overdrafts.get(shared);
    if (holder !== undefined && holder !== this && !holder.closed) return "budget";
    overdrafts.set(shared, this);
    return false;
  }

  /** Gives up the right to read a message over budget, if this connection holds it. */
  #releaseOverdraft(): void {
    const shared = this.#shared;
    if (shared !== undefined && overdrafts.get(shared) === this) overdrafts.delete(shared);
  }

  /** Lets a paused reader look again whether it may read. */
  readonly #wakeReader = (): void => {
    const resume = this.#resume;
    this.#resume = undefined;
    resume?.resolve();
  };

  /**
   * Brings what is charged to the shared budget to what the connection holds:
   * bytes read and not yet taken by `recv` (whole messages and the one being
   * read) and bytes not yet written; nothing once closed.
   */
  #recharge(): void {
    const shared = this.#shared;
    if (shared === undefined) return;
    const held = this.#closed ? 0 : this.#queuedBytes + this.#reader.pendingBytes + this.#unwritten;
    const change = held - this.#charged;
    if (change > 0) shared.charge(change);
    else if (change < 0) shared.release(-change);
    this.#charged = held;
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.resolve();
  }

  /**
   * The next message's payload.
   * @throws {ConnectionLostError} once the connection has ended and every
   *   message received before that was taken.
   * @throws {FrameTooLargeError} or {ProtocolError} when the peer announced a
   *   length that is refused (after the messages before it).
   */
  async recv(): Promise<Uint8Array> {
    for (;;) {
      const frame = this.#queue.shift();
      if (frame !== undefined) {
        this.#queuedBytes -= frame.length;
        this.#recharge();
        this.#wakeReader();
        return frame;
      }
      if (this.#error !== undefined) throw this.#error;
      if (this.#eof || this.#closed) {
        throw new ConnectionLostError(`connection to ${this.peer} closed`);
      }
      this.#waiter ??= Promise.withResolvers<void>();
      this.#wakeReader(); // a reader held back by the budget may read for this recv
      await this.#waiter.promise;
    }
  }

  /**
   * Sends one message, after the ones sent before it.
   * @throws {ConnectionLostError} when it cannot be written.
   */
  send(payload: Uint8Array): Promise<void> {
    const bytes = pyFrame(payload);
    this.#unwritten += bytes.length;
    this.#recharge();
    const write = this.#writing.then(async () => {
      let offset = 0;
      try {
        if (this.#closed) throw new ConnectionLostError(`connection to ${this.peer} closed`);
        while (offset < bytes.length) {
          const n = await this.conn.write(bytes.subarray(offset));
          offset += n;
          this.#unwritten -= n;
          this.#recharge();
        }
      } catch (cause) {
        this.#unwritten -= bytes.length - offset;
        this.#recharge();
        if (cause instanceof ConnectionLostError) throw cause;
        this.close();
        throw new ConnectionLostError(
          `cannot write to ${this.peer}: ${(cause as Error).message}`,
          { cause },
        );
      }
    });
    this.#writing = write.catch(() => {});
    return write;
  }

  /** Resolves once everything sent so far is written (or failed). */
  drained(): Promise<void> {
    return this.#writing;
  }

  /** Closes at once. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed by the runtime
    }
    // What it held is dropped as far as the budget is concerned (recv may still take it).
    this.#recharge();
    this.#wakeReader();
    this.#wake();
  }
}
