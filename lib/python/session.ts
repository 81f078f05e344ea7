/**
 * The master's front-end for Python's `multiprocessing.managers` protocol:
 * one session per connection from an unmodified Python worker or producer,
 * turning its manager and queue calls into broker calls on the same queues
 * the native protocol serves.
 *
 * A session first runs Python's handshake (either challenge style) within a
 * deadline. After it, each request is a pickle read by the strict reader;
 * one that cannot be read or is refused gets a `#TRACEBACK` reply naming the
 * reason (the Python caller raises it as `RemoteError`) and the connection
 * stays usable, as with a Python master. Calls Python itself would reject get
 * the exception Python would raise (`TypeError`, `ValueError`), and an empty
 * queue raises `queue.Empty`.
 *
 * At-least-once: an item a connection takes with `get` is leased to it (its
 * lease renewed while the connection stays open) and counts as done (acked)
 * at that connection's next call, which is what a worker that gets, works and
 * puts its result does; the ack and a result `put` are committed together.
 * If the connection closes first (the worker died), the item goes back to the
 * front of its queue.
 *
 * @module
 */

import type { Broker, BrokerSession, Delivery } from "../broker/broker.ts";
import { QueueFullError } from "../broker/errors.ts";
import type { PythonConnection } from "./wire/connection.ts";
import { acceptChallenge, type ChallengeStyle, deliverChallenge } from "./wire/handshake.ts";
import { unpickle } from "./wire/pickle_reader.ts";
import {
  bindArgs,
  encodeReply,
  errorReply,
  type Param,
  parseRequest,
  type PyRequest,
} from "./wire/rpc.ts";
import { PyFloat, pyTruthy, PyTuple, pyTypeName, type PyValue } from "./wire/values.ts";
import { fromNatural, toNatural } from "./wire/natural.ts";
import { checkItem } from "../model/codec.ts";
import type { QueueStats } from "../model/types.ts";
import { MAX_CLIENT_NAME_LENGTH, MAX_DURATION_MS } from "../wire/messages.ts";
import { AuthenticationError, ConnectionLostError, TaskqError } from "../errors.ts";
import { PickleError, PythonCallError } from "./errors.ts";
import type { Logger } from "../log.ts";
import type { AuthThrottle } from "../server/auth_throttle.ts";
import { printable } from "../util/printable.ts";

/** The methods a queue exposes to Python, as `queue.Queue` does. */
export const QUEUE_METHODS: readonly string[] = [
  "empty",
  "full",
  "get",
  "get_nowait",
  "join",
  "put",
  "put_nowait",
  "qsize",
  "task_done",
];

/** Leases held by a Python connection are renewed this many times per lease length. */
const RENEWALS_PER_LEASE = 3;

/** The exception `queue.get` raises on an empty queue, pickled as Python does. */
const EMPTY = "_queue.Empty";

/** The exception `queue.put` raises on a full queue. */
const FULL = "queue.Full";

/** What a session needs from the front-end that runs it. */
export interface PythonSessionContext {
  /** The broker whose queues are served. */
  readonly broker: Broker;
  /** The shared key. */
  readonly key: Uint8Array;
  /** Largest message accepted after the handshake. */
  readonly maxFrameBytes: number;
  /** Time allowed to complete the handshake. */
  readonly handshakeTimeoutMs: number;
  /** The challenge this side sends. */
  readonly challenge: ChallengeStyle;
  /** Registered names (`get_task_queue`) and the queues they stand for. */
  readonly queues: ReadonlyMap<string, string>;
  /** Where events are logged. */
  readonly log: Logger;
  /** Refuses throttled addresses before their handshake; told each wrong key (shared with the native side). */
  readonly authThrottle: AuthThrottle;
  /** Called once the peer has authenticated. */
  onAuthenticated(session: PythonSession): void;
}

/** The Python form of an item whose native form loses detail (see {@link Delivery.original}). */
export class PythonOriginal {
  /** The value exactly as the Python peer sent it. */
  readonly value: PyValue;
  /** Wraps `value`. */
  constructor(value: PyValue) {
    this.value = value;
  }
}

/** The value a Python peer gets for an item: its Python original, or its native value mapped. */
export function pythonValueOf(item: Delivery): PyValue {
  return item.original instanceof PythonOriginal ? item.original.value : fromNatural(item.value);
}

const GET_PARAMS: readonly Param[] = [["block", true], ["timeout", null]];
const PUT_PARAMS: readonly Param[] = [["item"], ["block", true], ["timeout", null]];

/** Milliseconds of a Python `timeout` argument; `undefined` for `None` (no limit). */
function timeoutMs(value: PyValue): number | undefined {
  if (value === null) return undefined;
  let seconds: number;
  if (typeof value === "number" || typeof value === "boolean") seconds = Number(value);
  else if (typeof value === "bigint") seconds = Number(value);
  else if (value instanceof PyFloat) seconds = value.value;
  else {
    throw new PythonCallError(
      "builtins.TypeError",
      `'<' not supported between instances of '${pyTypeName(value)}' and 'int'`,
    );
  }
  if (!(seconds >= 0)) {
    throw new PythonCallError("builtins.ValueError", "'timeout' must be a non-negative number");
  }
  return Math.min(Math.round(seconds * 1000), MAX_DURATION_MS);
}

/** The traceback text a Python caller shows for a refusal. */
function traceback(message: string): string {
  return `taskq master refused the request: ${message}\n`;
}

const CLOSED: unique symbol = Symbol("closed");

/**
 * Frames at least this large that a refused call leaves behind are freed at
 * once ({@link freeNow}); smaller ones are left to the collector.
 */
const FREE_AT_ONCE_BYTES = 64 * 1024;

/**
 * Frees the memory of `frame`, a frame the connection handed over as its own
 * buffer (`PythonConnection.recv`), now rather than when the collector finds
 * it: its buffer is detached (transferred to an empty one), which releases
 * the bytes at once. Every view of it is empty afterwards: only for a frame
 * nothing will read again.
 */
function freeNow(frame: Uint8Array): void {
  const buffer = frame.buffer;
  if (buffer instanceof ArrayBuffer && !buffer.detached) buffer.transfer(0);
}

/** What a throttled peer is sent instead of a challenge (Python shows it in its error). */
const THROTTLED_PREFIX = "#TASKQ-THROTTLED#";

/** Longest message Python's client reads in place of a challenge, in bytes. */
const MAX_THROTTLED_MESSAGE_BYTES = 256;

/**
 * The name a peer gave `accept_connection`, as it is shown: cut to
 * {@link MAX_CLIENT_NAME_LENGTH} characters (a native `hello` allows no more;
 * Python's own server takes any, so a longer one is cut rather than refused)
 * without splitting a character, with control characters escaped.
 *
 * @example
 * ```ts
 * import { clientName } from "./session.ts";
 * console.log(clientName("worker\x1b[31m-1")); // worker\x1b[31m-1
 * console.log(clientName("x".repeat(8 << 20)).length); // 200
 * ```
 */
export function clientName(name: string): string {
  let cut = name.slice(0, MAX_CLIENT_NAME_LENGTH);
  if (cut.length < name.length && /[\ud800-\udbff]$/.test(cut)) cut = cut.slice(0, -1);
  return printable(cut);
}

/** One connection speaking Python's managers protocol. */
export class PythonSession {
  /** The framed connection. */
  readonly conn: PythonConnection;
  readonly #ctx: PythonSessionContext;
  #authenticated = false;
  #name = "";
  #session: BrokerSession | undefined;
  #held: number[] = [];
  /** Whether the request being served was refused or failed (nothing of its frame kept). */
  #refused = false;
  #renewal: ReturnType<typeof setInterval> | undefined;
  /** Aborts when the connection ends, to end a `join()` it waits in. */
  readonly #ended = new AbortController();

  /** Creates a session on an accepted connection. */
  constructor(conn: PythonConnection, ctx: PythonSessionContext) {
    this.conn = conn;
    this.#ctx = ctx;
  }

  /** Whether the handshake has completed. */
  get authenticated(): boolean {
    return this.#authenticated;
  }

  /** Serves the connection until it closes; never throws. */
  async run(): Promise<void> {
    const { log } = this.#ctx;
    try {
      if (!await this.#handshake()) return;
      for (;;) {
        let frame: Uint8Array;
        try {
          frame = await this.conn.recv();
        } catch (error) {
          if (!(error instanceof ConnectionLostError)) {
            // A refused length: answer it, then stop reading this stream.
            log.warn("closing Python connection after bad input", {
              peer: this.conn.peer,
              error: (error as Error).message,
            });
            await this.conn.send(encodeReply("#TRACEBACK", traceback((error as Error).message)))
              .catch(() => {});
          }
          return;
        }
        this.#refused = false;
        const reply = await this.#handle(frame);
        if (reply === CLOSED) return;
        // A refused call kept nothing of its frame: free a large one now, not
        // when the collector gets to it (a peer sending refused 16 MiB puts
        // would otherwise pile them up in memory).
        if (this.#refused && frame.byteLength >= FREE_AT_ONCE_BYTES) freeNow(frame);
        await this.conn.send(reply);
      }
    } catch (error) {
      if (!(error instanceof ConnectionLostError)) {
        log.error("Python session failed", { peer: this.conn.peer, error: String(error) });
      }
    } finally {
      await this.#release();
      this.conn.close();
    }
  }

  /** Closes the connection; whatever it held goes back to its queue. */
  close(): void {
    this.conn.close();
  }

  async #handshake(): Promise<boolean> {
    const { log } = this.#ctx;
    const refusal = this.#ctx.authThrottle.refusal(this.conn.peer);
    if (refusal !== undefined) {
      // No challenge, no HMAC: Python's client raises AuthenticationError
      // (3.11: AssertionError) quoting this text.
      const text = `${THROTTLED_PREFIX} ${refusal.message}`.slice(0, MAX_THROTTLED_MESSAGE_BYTES);
      await this.conn.send(new TextEncoder().encode(text)).catch(() => {});
      return false;
    }
    let proven = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.#ctx.handshakeTimeoutMs);
    });
    try {
      const shaking = (async () => {
        await deliverChallenge(this.conn, this.#ctx.key, this.#ctx.challenge);
        proven = true;
        // The peer holds the key: its first request (sent right after our answer) may be large.
        this.conn.maxFrameBytes = this.#ctx.maxFrameBytes;
        await acceptChallenge(this.conn, this.#ctx.key);
        return true;
      })();
      const ok = await Promise.race([shaking, expired]);
      if (!ok) {
        log.warn("Python handshake timed out", { peer: this.conn.peer });
        this.#ctx.broker.telemetry.countError("auth_failed");
        return false;
      }
    } catch (error) {
      if (error instanceof AuthenticationError) {
        if (proven) {
          log.warn("Python peer failed authentication", {
            peer: this.conn.peer,
            error: error.message,
          });
        } else {
          this.#ctx.authThrottle.failed(this.conn.peer); // a wrong key: logged in aggregate
        }
        this.#ctx.broker.telemetry.countError("auth_failed");
      } else if (!(error instanceof ConnectionLostError)) {
        log.warn("Python handshake failed", { peer: this.conn.peer, error: String(error) });
      }
      return false;
    } finally {
      clearTimeout(timer);
    }
    this.#authenticated = true;
    log.debug("Python peer authenticated", { peer: this.conn.peer });
    this.#ctx.onAuthenticated(this);
    return true;
  }

  /** Reads and serves one request; the reply to send, or {@link CLOSED}. */
  async #handle(frame: Uint8Array): Promise<Uint8Array | typeof CLOSED> {
    this.#session?.touch();
    let request: PyRequest;
    try {
      request = parseRequest(unpickle(frame, { maxSize: this.#ctx.maxFrameBytes }));
    } catch (error) {
      if (!(error instanceof PickleError)) throw error;
      this.#ctx.log.warn("refused a Python request", {
        peer: this.conn.peer,
        error: error.message,
      });
      this.#ctx.broker.telemetry.countError("bad_request");
      return this.#refuse(encodeReply("#TRACEBACK", traceback(error.message)));
    }
    // The connection's next call: what it took before is done.
    await this.#settleHeld();
    let result: PyValue | typeof CLOSED;
    try {
      result = await Promise.race([
        this.#dispatch(request),
        this.conn.ended.then((): typeof CLOSED => CLOSED),
      ]);
      if (result === CLOSED) return CLOSED;
    } catch (error) {
      if (error instanceof PythonCallError) return this.#refuse(errorReply(error));
      if (error instanceof TaskqError) {
        return this.#refuse(encodeReply("#TRACEBACK", traceback(error.message)));
      }
      this.#ctx.log.error("internal error serving a Python request", {
        peer: this.conn.peer,
        method: request.method,
        error: String(error),
      });
      this.#ctx.broker.telemetry.countError("internal");
      return this.#refuse(encodeReply("#TRACEBACK", traceback(`internal error: ${String(error)}`)));
    }
    return encodeReply("#RETURN", result);
  }

  /** Notes that the request being served was refused or failed (see {@link run}); returns `reply`. */
  #refuse(reply: Uint8Array): Uint8Array {
    this.#refused = true;
    return reply;
  }

  #dispatch(request: PyRequest): PyValue | Promise<PyValue> {
    if (request.ident === null) return this.#control(request);
    const queue = this.#queueOf(request.ident);
    const { method, args, kwargs } = request;
    switch (method) {
      case "get": {
        const bound = bindArgs(method, GET_PARAMS, args, kwargs);
        const block = pyTruthy(bound.get("block") as PyValue);
        return this.#get(queue, block, timeoutMs(bound.get("timeout") as PyValue));
      }
      case "get_nowait":
        bindArgs(method, [], args, kwargs);
        return this.#get(queue, false, undefined);
      case "put": {
        const bound = bindArgs(method, PUT_PARAMS, args, kwargs);
        const block = pyTruthy(bound.get("block") as PyValue);
        const wait = timeoutMs(bound.get("timeout") as PyValue);
        return this.#put(queue, bound.get("item") as PyValue, block, wait);
      }
      case "put_nowait": {
        const bound = bindArgs(method, [["item"]], args, kwargs);
        return this.#put(queue, bound.get("item") as PyValue, false, undefined);
      }
      case "qsize":
        bindArgs(method, [], args, kwargs);
        return this.#stats(queue).then((stats) => stats.ready);
      case "empty":
        bindArgs(method, [], args, kwargs);
        return this.#stats(queue).then((stats) => stats.ready === 0);
      case "full": {
        bindArgs(method, [], args, kwargs);
        const limit = this.#ctx.broker.settings.maxQueueLength;
        return this.#stats(queue).then(({ ready, leased, delayed }) =>
          limit > 0 && ready + leased + delayed >= limit
        );
      }
      case "task_done":
        bindArgs(method, [], args, kwargs);
        return null;
      case "join":
        bindArgs(method, [], args, kwargs);
        return this.#ctx.broker.waitEmpty(queue, this.#ended.signal).then(() => null);
      case "__str__":
      case "__repr__":
        return `<taskq queue '${queue}'>`;
      case "#GETVALUE":
        throw new TaskqError("a taskq queue cannot be copied to the client");
      default:
        throw new TaskqError(
          `'${method}' is not a method of taskq queues (they have ${QUEUE_METHODS.join(", ")})`,
        );
    }
  }

  #control(request: PyRequest): PyValue {
    const { method, args, kwargs } = request;
    switch (method) {
      case "dummy":
        return null;
      case "create": {
        if (args.length !== 1 || kwargs.size > 0 || typeof args[0] !== "string") {
          throw new TaskqError("create takes one registered name, e.g. 'get_task_queue'");
        }
        const queue = this.#ctx.queues.get(args[0]);
        if (queue === undefined) {
          const known = [...this.#ctx.queues.keys()].map((name) => `'${name}'`).join(", ");
          throw new TaskqError(
            `this master serves no '${args[0]}' (it serves ${known}; map more names to queues ` +
              `with taskq master --python-queue NAME=QUEUE)`,
          );
        }
        return new PyTuple([queue, new PyTuple(QUEUE_METHODS)]);
      }
      case "incref":
      case "decref": {
        const bound = bindArgs(method, [["ident"]], args, kwargs);
        this.#queueOf(bound.get("ident") as PyValue);
        return null;
      }
      case "accept_connection": {
        const bound = bindArgs(method, [["name"]], args, kwargs);
        const name = bound.get("name");
        this.#name = typeof name === "string" ? clientName(name) : "";
        return null;
      }
      case "get_methods":
        bindArgs(method, [["token"]], args, kwargs);
        return new PyTuple(QUEUE_METHODS);
      case "number_of_objects":
        return new Set(this.#ctx.queues.values()).size;
      case "debug_info":
        return [...this.#ctx.queues].map(([name, queue]) => `${name}: queue '${queue}'`).join("\n");
      case "shutdown":
        throw new TaskqError(
          "a taskq master does not stop at a client's request; stop it with Ctrl-C or SIGTERM",
        );
      default:
        throw new TaskqError(`'${method}' is not a function of this manager`);
    }
  }

  /** The queue an ident stands for (idents are the queue names the mapping serves). */
  #queueOf(ident: PyValue): string {
    if (typeof ident === "string") {
      for (const queue of this.#ctx.queues.values()) if (queue === ident) return queue;
    }
    throw new TaskqError(`no object with id ${String(ident)} on this master`);
  }

  async #stats(queue: string): Promise<QueueStats> {
    return (await this.#ctx.broker.stats(queue)).queues[0];
  }

  async #ensureSession(): Promise<BrokerSession> {
    this.#session ??= await this.#ctx.broker.open({
      name: `python ${this.conn.peer}${this.#name ? ` ${this.#name}` : ""}`,
      address: this.conn.peer,
    });
    return this.#session;
  }

  async #get(queue: string, block: boolean, waitMs: number | undefined): Promise<PyValue> {
    const session = await this.#ensureSession();
    for (;;) {
      const wait = block ? waitMs ?? MAX_DURATION_MS : 0;
      const items = await session.get(queue, { max: 1, timeoutMs: wait });
      if (items.length > 0) {
        this.#hold(items[0]);
        return pythonValueOf(items[0]);
      }
      if (!block || waitMs !== undefined || this.conn.closed) {
        throw new PythonCallError(EMPTY, "");
      }
    }
  }

  async #put(
    queue: string,
    item: PyValue,
    block: boolean,
    waitMs: number | undefined,
  ): Promise<PyValue> {
    const natural = toNatural(item);
    checkItem(natural.value);
    const session = await this.#ensureSession();
    try {
      await session.put(queue, [natural.value], {
        originals: natural.exact ? undefined : [new PythonOriginal(item)],
        roomTimeoutMs: block ? waitMs : 0,
      });
    } catch (error) {
      if (error instanceof QueueFullError) throw new PythonCallError(FULL, "");
      throw error;
    }
    return null;
  }

  /** Keeps an item this connection took leased until its next call. */
  #hold(item: Delivery): void {
    this.#held.push(item.id);
    if (this.#renewal !== undefined) return;
    const leaseMs = this.#ctx.broker.settings.defaultLeaseMs;
    this.#renewal = setInterval(() => {
      if (this.#session === undefined || this.#held.length === 0) return;
      void this.#session.extend(this.#held, leaseMs);
    }, Math.max(1, Math.floor(leaseMs / RENEWALS_PER_LEASE)));
  }

  /** Acks what this connection took: it has made its next call. */
  async #settleHeld(): Promise<void> {
    clearInterval(this.#renewal);
    this.#renewal = undefined;
    if (this.#held.length === 0 || this.#session === undefined) return;
    const held = this.#held;
    this.#held = [];
    const lost = await this.#session.ack(held);
    if (lost.length > 0) {
      this.#ctx.log.warn("a Python connection's lease ended before its next call", {
        peer: this.conn.peer,
        ids: lost,
      });
    }
  }

  /** The connection is gone: unsettled items go back to their queues. */
  async #release(): Promise<void> {
    clearInterval(this.#renewal);
    this.#renewal = undefined;
    this.#ended.abort();
    if (this.#session !== undefined) {
      if (this.#held.length > 0) {
        this.#ctx.log.info("Python connection closed holding items; they are served again", {
          peer: this.conn.peer,
          ids: this.#held,
        });
      }
      this.#held = [];
      await this.#session.close();
    }
  }
}
