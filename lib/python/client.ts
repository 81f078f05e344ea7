/**
 * The client side of Python's `multiprocessing.managers` protocol: what an
 * unmodified Python worker does when it connects to a `BaseManager` server,
 * so that taskq can serve a Python master.
 *
 * As Python does, every manager function (`create`, `decref`) runs on a fresh
 * authenticated connection, and method calls on the manager's objects run on
 * one long-lived connection opened with `accept_connection`. Replies are read
 * by the strict pickle reader: an `#ERROR` becomes a {@link PythonRemoteError}
 * carrying the exception's class (`_queue.Empty` for an empty queue), a
 * `#TRACEBACK` one carrying the text.
 *
 * @module
 */

import { PythonConnection } from "./wire/connection.ts";
import { type ChallengeStyle, clientHandshake, DEFAULT_CHALLENGE_STYLE } from "./wire/handshake.ts";
import { unpickle } from "./wire/pickle_reader.ts";
import { encodeRequest, exceptionText, parseReply } from "./wire/rpc.ts";
import { PyObject, PyTuple, pyTypeName, type PyValue } from "./wire/values.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/frame.ts";
import { type Address, formatAddress, parseAddress } from "../config.ts";
import { ConnectionLostError, ProtocolError } from "../errors.ts";
import { PythonRemoteError } from "./errors.ts";
import { DEFAULT_CONNECT_TIMEOUT_MS } from "../client/client.ts";

/** The classes an empty queue's exception may be named by. */
export const EMPTY_EXCEPTIONS: readonly string[] = ["_queue.Empty", "queue.Empty"];

/** Options of a {@link PythonManagerClient}. */
export interface PythonManagerOptions {
  /** The manager's `HOST:PORT`. */
  address: string | Address;
  /** The manager's authkey (text is taken as UTF-8). */
  authkey: Uint8Array | string;
  /** The challenge this side sends (Python accepts both); modern by default. */
  challenge?: ChallengeStyle;
  /** Time allowed to connect and authenticate. */
  timeoutMs?: number;
  /** Largest reply accepted. */
  maxFrameBytes?: number;
}

/** An object the manager created for us: its id and the methods it exposes. */
export interface RemoteObject {
  /** The manager's id of the object. */
  ident: string;
  /** The method names it may be called with. */
  exposed: readonly string[];
}

/** Whether `error` is the manager's `queue.Empty`. */
export function isEmptyError(error: unknown): boolean {
  return error instanceof PythonRemoteError && error.kind === "#ERROR" &&
    EMPTY_EXCEPTIONS.includes(error.exceptionType ?? "");
}

function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => timer = setTimeout(() => reject(onTimeout()), ms)),
  ]).finally(() => clearTimeout(timer));
}

/**
 * A connection that carries calls, one at a time.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { pythonFrontEnd } from "./frontend.ts";
 * import { type PythonCallConnection, PythonManagerClient } from "./client.ts";
 * import { PythonRemoteError } from "./errors.ts";
 * const master = await serve({
 *   listen: "127.0.0.1:0",
 *   authkey: "secret",
 *   frontEnds: [pythonFrontEnd({ listen: "127.0.0.1:0" })],
 * });
 * const address = master.frontEnds[0].address;
 * const manager = new PythonManagerClient({ address, authkey: "secret" });
 * const { ident } = await manager.create("get_task_queue");
 * const calls: PythonCallConnection = await manager.openCalls("example");
 * await calls.call(ident, "put", [7]);
 * console.log(await calls.call(ident, "qsize")); // 1
 * console.log(await calls.call(ident, "get")); // 7
 * try {
 *   await calls.call(ident, "get_nowait");
 * } catch (error) {
 *   console.log((error as PythonRemoteError).exceptionType); // _queue.Empty
 * }
 * calls.close();
 * await manager.decref(ident);
 * await master.close();
 * ```
 */
export class PythonCallConnection {
  /** The framed connection. */
  readonly conn: PythonConnection;
  readonly #maxFrameBytes: number;
  #busy: Promise<unknown> = Promise.resolve();

  /** Wraps an authenticated connection. */
  constructor(conn: PythonConnection, maxFrameBytes: number) {
    this.conn = conn;
    this.#maxFrameBytes = maxFrameBytes;
  }

  /** Whether the connection has ended. */
  get closed(): boolean {
    return this.conn.closed;
  }

  /**
   * Calls `method` on the object `ident` (`null`: the manager itself) and
   * returns the result. With `deadlineMs`, a reply that takes longer closes
   * the connection.
   * @throws {PythonRemoteError} when the manager replies with an error.
   * @throws {ConnectionLostError} when the connection ends first.
   * @throws {PickleError} when the reply cannot be read (the connection stays usable).
   */
  call(
    ident: string | null,
    method: string,
    args: readonly PyValue[] = [],
    kwargs: Record<string, PyValue> = {},
    deadlineMs?: number,
  ): Promise<PyValue> {
    const run = this.#busy.catch(() => {}).then(async () => {
      await this.conn.send(encodeRequest(ident, method, args, kwargs));
      const received = deadlineMs === undefined ? this.conn.recv() : withTimeout(
        this.conn.recv(),
        deadlineMs,
        () => {
          this.conn.close();
          return new ConnectionLostError(
            `${this.conn.peer} did not answer ${method} within ${deadlineMs} ms`,
          );
        },
      );
      const reply = parseReply(unpickle(await received, { maxSize: this.#maxFrameBytes }));
      switch (reply.kind) {
        case "#RETURN":
          return reply.value;
        case "#ERROR": {
          const type = reply.value instanceof PyObject
            ? reply.value.cls.qualifiedName
            : pyTypeName(reply.value);
          throw new PythonRemoteError(
            "#ERROR",
            `the Python manager raised ${exceptionText(reply.value)} for ${method}`,
            type,
          );
        }
        default: {
          // A traceback's last line says what happened ("KeyError: 'get_foo'").
          const text = typeof reply.value === "string" ? reply.value : pyTypeName(reply.value);
          const last = text.trim().split("\n").at(-1)?.trim() ?? "";
          throw new PythonRemoteError(
            reply.kind,
            `the Python manager refused ${method} (${reply.kind}): ${last}`,
          );
        }
      }
    });
    this.#busy = run;
    return run;
  }

  /** Closes the connection. */
  close(): void {
    this.conn.close();
  }
}

/**
 * A client of one Python manager.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { pythonFrontEnd } from "./frontend.ts";
 * import { PythonManagerClient } from "./client.ts";
 * // taskq's own Python front-end stands in for a Python `BaseManager` here.
 * const master = await serve({
 *   listen: "127.0.0.1:0",
 *   authkey: "secret",
 *   frontEnds: [pythonFrontEnd({ listen: "127.0.0.1:0" })],
 * });
 * // Nothing connects until a call.
 * const manager = new PythonManagerClient({
 *   address: master.frontEnds[0].address,
 *   authkey: "secret",
 *   timeoutMs: 2_000,
 * });
 * const { ident } = await manager.create("get_task_queue");
 * const calls = await manager.openCalls("producer");
 * await calls.call(ident, "put", [42]);
 * calls.close();
 * await manager.decref(ident);
 * console.log((await master.broker.stats("tasks")).queues[0].ready); // 1
 * await master.close();
 * ```
 */
export class PythonManagerClient {
  /** The manager's address. */
  readonly address: Address;
  readonly #key: Uint8Array;
  readonly #challenge: ChallengeStyle;
  readonly #timeoutMs: number;
  readonly #maxFrameBytes: number;

  /** Creates a client; nothing connects until a call. */
  constructor(options: PythonManagerOptions) {
    this.address = typeof options.address === "string"
      ? parseAddress(options.address)
      : options.address;
    this.#key = typeof options.authkey === "string"
      ? new TextEncoder().encode(options.authkey)
      : options.authkey;
    this.#challenge = options.challenge ?? DEFAULT_CHALLENGE_STYLE;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  /**
   * Opens an authenticated connection.
   * @throws {ConnectionLostError} when the manager cannot be reached in time.
   * @throws {AuthenticationError} when either side rejects the other's key (see
   *   lib/wire/python/handshake.ts).
   */
  async open(): Promise<PythonCallConnection> {
    const where = formatAddress(this.address);
    let tcp: Deno.TcpConn;
    const connecting = Deno.connect({ hostname: this.address.hostname, port: this.address.port });
    try {
      tcp = await withTimeout(
        connecting,
        this.#timeoutMs,
        () => new ConnectionLostError(`cannot reach the Python manager at ${where}: timed out`),
      );
    } catch (cause) {
      // A connection that succeeds after the deadline is closed, not leaked.
      connecting.then((late) => late.close(), () => {});
      if (cause instanceof ConnectionLostError) throw cause;
      throw new ConnectionLostError(
        `cannot reach the Python manager at ${where}: ${(cause as Error).message}`,
        { cause },
      );
    }
    try {
      tcp.setNoDelay(true);
    } catch {
      // the handshake will notice
    }
    const conn = new PythonConnection(tcp);
    try {
      await withTimeout(
        clientHandshake(conn, this.#key, this.#challenge),
        this.#timeoutMs,
        () =>
          new ConnectionLostError(`the Python manager at ${where} did not authenticate in time`),
      );
    } catch (error) {
      conn.close();
      throw error;
    }
    conn.maxFrameBytes = this.#maxFrameBytes;
    return new PythonCallConnection(conn, this.#maxFrameBytes);
  }

  /** Calls one manager function on a fresh connection, as Python does. */
  async callManager(method: string, args: readonly PyValue[] = []): Promise<PyValue> {
    const conn = await this.open();
    try {
      return await conn.call(null, method, args);
    } finally {
      conn.close();
    }
  }

  /**
   * Asks the manager for the object registered as `typeid` (e.g. `get_task_queue`).
   * @throws {ProtocolError} when the reply is not `(ident, exposed)`.
   */
  async create(typeid: string): Promise<RemoteObject> {
    const reply = await this.callManager("create", [typeid]);
    if (
      reply instanceof PyTuple && reply.items.length === 2 && typeof reply.items[0] === "string" &&
      reply.items[1] instanceof PyTuple && reply.items[1].items.every((m) => typeof m === "string")
    ) {
      return { ident: reply.items[0], exposed: reply.items[1].items as string[] };
    }
    throw new ProtocolError(`the Python manager's reply to create is not (ident, exposed)`);
  }

  /** Releases our reference to an object the manager created for us. */
  async decref(ident: string): Promise<void> {
    await this.callManager("decref", [ident]);
  }

  /** Opens the long-lived connection that carries method calls, named `name` on the manager. */
  async openCalls(name: string): Promise<PythonCallConnection> {
    const conn = await this.open();
    try {
      await conn.call(null, "accept_connection", [name]);
    } catch (error) {
      conn.close();
      throw error;
    }
    return conn;
  }
}
