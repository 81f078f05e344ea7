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
 * @module
 */

import { PY_HANDSHAKE_MAX_BYTES, pyFrame, PyFrameReader } from "./frame.ts";
import { ConnectionLostError } from "../../errors.ts";
import type { ByteStream } from "../../wire/stream.ts";

/** Received messages held for {@link PythonConnection.recv} before reading pauses. */
const MAX_QUEUED_MESSAGES = 8;

/**
 * Bytes of received messages held for {@link PythonConnection.recv} before
 * reading pauses (one message of any allowed size is always taken): 1 MiB.
 */
const MAX_QUEUED_BYTES = 1024 * 1024;

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

  /** Wraps `conn`; messages over {@link PY_HANDSHAKE_MAX_BYTES} are refused until raised. */
  constructor(conn: ByteStream) {
    this.conn = conn;
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.peer = addr.hostname.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
    this.#reader = new PyFrameReader(PY_HANDSHAKE_MAX_BYTES);
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
        while (
          (this.#queue.length >= MAX_QUEUED_MESSAGES || this.#queuedBytes >= MAX_QUEUED_BYTES) &&
          !this.#closed
        ) {
          this.#resume = Promise.withResolvers<void>();
          await this.#resume.promise;
        }
        let n: number | null;
        try {
          n = await this.conn.read(reader.space());
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
        this.#wake();
      }
    } catch (error) {
      // A refused length: what came before it is still delivered, then this error.
      this.#error = error as Error;
    } finally {
      this.#eof = true;
      this.#wake();
    }
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
        const resume = this.#resume;
        this.#resume = undefined;
        resume?.resolve();
        return frame;
      }
      if (this.#error !== undefined) throw this.#error;
      if (this.#eof || this.#closed) {
        throw new ConnectionLostError(`connection to ${this.peer} closed`);
      }
      this.#waiter ??= Promise.withResolvers<void>();
      await this.#waiter.promise;
    }
  }

  /**
   * Sends one message, after the ones sent before it.
   * @throws {ConnectionLostError} when it cannot be written.
   */
  send(payload: Uint8Array): Promise<void> {
    const bytes = pyFrame(payload);
    const write = this.#writing.then(async () => {
      if (this.#closed) throw new ConnectionLostError(`connection to ${this.peer} closed`);
      try {
        for (let offset = 0; offset < bytes.length;) {
          offset += await this.conn.write(bytes.subarray(offset));
        }
      } catch (cause) {
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
    const resume = this.#resume;
    this.#resume = undefined;
    resume?.resolve();
    this.#wake();
  }
}
