/**
 * The client library: connect to a master, then put, get, ack and nack items
 * of named queues.
 *
 * Requests are pipelined: each carries an id, many may be in flight on one
 * connection, and replies are matched by id in whatever order they come.
 * The client checks the master's proof of the key before sending anything
 * else, so it never takes work from an impostor.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { connect } from "./client.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const client = await connect({ address: master.address, authkey: "abc" });
 * const tasks = client.queue("tasks");
 * await tasks.put(42);
 * const job = await tasks.get(1000);
 * if (job) await tasks.ack(job);
 * await client.close();
 * await master.close();
 * ```
 *
 * @module
 */

import { checkItemArgument } from "../model/codec.ts";
import { checkQueueNameArgument } from "../model/queue_names.ts";
import { checkIntegerArgument, describeValue } from "../util/arguments.ts";
import {
  MAX_ATTEMPTS_LIMIT,
  MAX_BATCH,
  MAX_CLIENT_NAME_LENGTH,
  MAX_DURATION_MS,
  MAX_FAILURE_TEXT,
  type OkReply,
  type QueueStats,
  type Request,
  type ServerMessage,
} from "../wire/messages.ts";
import {
  type Address,
  ADDRESS_ENV,
  DEFAULT_ADDRESS,
  formatAddress,
  loadAuthKey,
  parseAddress,
} from "../config.ts";
import { openSession, type Session, type SessionParams } from "./handshake.ts";
import { checkTlsClientOptions, type TlsClientOptions } from "../wire/tls.ts";
import {
  AuthenticationError,
  ConnectionLostError,
  LeaseLostError,
  ProtocolError,
  RemoteError,
} from "../errors.ts";

/** The protocol's limits a caller's arguments must keep to: items per call, and durations. */
export { MAX_BATCH, MAX_DURATION_MS };

/** Time allowed to connect and complete the handshake: 5 s. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** Request ids wrap around at 2^32 to stay small on the wire. */
const RID_MODULUS = 2 ** 32;

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** `HOST:PORT` of the master; `TASKQ_ADDR` or 127.0.0.1:5000 by default. */
  address?: string | Address;
  /** The shared key; `TASKQ_AUTHKEY` (or none, for a keyless loopback master) by default. */
  authkey?: Uint8Array | string;
  /** Name the master shows for this client; host and pid by default. */
  name?: string;
  /** Largest frame accepted from the master. */
  maxFrameBytes?: number;
  /**
   * Time allowed to connect and complete the handshake
   * ({@link DEFAULT_CONNECT_TIMEOUT_MS} by default), retries of the first
   * connection included (see {@link connect}).
   */
  timeoutMs?: number;
  /**
   * Reconnect by itself (capped exponential backoff with jitter) when an
   * established connection drops; on by default. Requests in flight at the
   * drop fail with {@link ConnectionLostError}; later ones wait for the new
   * connection. A rejected key stops reconnection for good. When on,
   * {@link connect} also retries a first connection the master's port
   * refuses or resets (a master restarting), within {@link timeoutMs}.
   */
  reconnect?: boolean;
  /** Called after each successful reconnection (for logs). */
  onReconnect?: (attempt: number) => void;
  /** Called when a connection drops and reconnection starts (for logs). */
  onDisconnect?: (reason: Error) => void;
  /**
   * Connect over TLS (PEM text, not file names): `ca` the master's
   * certificate must chain to (the system's roots when absent), `cert` and
   * `key` for a master that requires client certificates, `serverName` the
   * name its certificate must carry (the host connected to by default). Plain
   * TCP when absent. The key's handshake still runs inside TLS.
   */
  tls?: TlsClientOptions;
}

/** First reconnection delay (before jitter). */
export const RECONNECT_BASE_MS = 100;

/** Longest reconnection delay. */
export const RECONNECT_MAX_MS = 5_000;

/**
 * Refusals of a connection that a master may accept a moment later: one of
 * too many connections mid-handshake (a flood), an address throttled after
 * wrong keys, a master shutting down. {@link connect} retries them.
 */
const TRANSIENT_REFUSALS: ReadonlySet<string> = new Set(["too_many_connections", "shutting_down"]);

/** How a throttling master says how long it will refuse: `... refused for N s`. */
const REFUSED_FOR = /refused for (\d+) s\b/;

/** Milliseconds in a second. */
const MS_PER_SECOND = 1_000;

/** Least time left, in ms, for {@link connect} to start another attempt. */
const MIN_ATTEMPT_MS = 50;

/**
 * The wait before reconnection attempt `attempt` (1 for the first): random
 * ("full jitter") up to {@link RECONNECT_BASE_MS} doubled per attempt, capped
 * at {@link RECONNECT_MAX_MS}.
 */
function backoffMs(attempt: number): number {
  return Math.random() * Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** (attempt - 1));
}

/** Whether `error` (or its cause) is the master's port refusing or resetting the connection. */
function isRefusedOrReset(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 3; e = e.cause, depth++) {
    if (
      e instanceof Deno.errors.ConnectionRefused || e instanceof Deno.errors.ConnectionReset ||
      e instanceof Deno.errors.ConnectionAborted
    ) return true;
  }
  return false;
}

/**
 * Whether a failed first connection is worth another attempt, and if so the
 * least wait before it in ms (what a throttling master announced, else 0);
 * `undefined` for a failure that another attempt would not change (a wrong
 * key, another protocol version, TLS, a master that does not answer).
 */
function transientWaitMs(error: unknown, reconnect: boolean): number | undefined {
  if (error instanceof RemoteError && TRANSIENT_REFUSALS.has(error.code)) {
    const announced = REFUSED_FOR.exec(error.message);
    return announced === null ? 0 : Number(announced[1]) * MS_PER_SECOND;
  }
  if (reconnect && isRefusedOrReset(error)) return 0;
  return undefined;
}

/**
 * Opens the first session, retrying transient failures ({@link transientWaitMs})
 * with {@link backoffMs} until `params.timeoutMs` has passed; then, or at once
 * for any other failure, throws the last attempt's error.
 */
async function openFirstSession(params: SessionParams, reconnect: boolean): Promise<Session> {
  const deadline = Date.now() + params.timeoutMs;
  for (let attempt = 1;; attempt++) {
    try {
      return await openSession(params, deadline);
    } catch (error) {
      const least = transientWaitMs(error, reconnect);
      if (least === undefined) throw error;
      const left = deadline - Date.now();
      // Half of what is left at most, so that one more attempt still fits.
      const wait = Math.max(least, Math.min(backoffMs(attempt), left / 2));
      if (left - wait < MIN_ATTEMPT_MS) throw error;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

/** A leased item, as returned by {@link Queue.get}. */
export interface Job<T = unknown> {
  /** The item's id, unique on its master. */
  readonly id: number;
  /** The queue it came from. */
  readonly queue: string;
  /** The item. */
  readonly value: T;
  /** 1 on first delivery, +1 each time it is served again. */
  readonly attempt: number;
}

/** Options of a put. */
export interface PutOptions {
  /** Milliseconds before the items may be served. */
  delayMs?: number;
  /** Deliveries allowed before the item is dead-lettered; the master's policy by default. */
  maxAttempts?: number;
}

/** Options of an ack. */
export interface AckOptions {
  /** One result per acked item, put on `queue` together with the acks. */
  results?: { queue: string; values: readonly unknown[] };
}

/** Options of a nack. */
export interface NackOptions {
  /** Milliseconds before the items may be served again. */
  delayMs?: number;
}

/** Options of a get. */
export interface GetOptions {
  /** How long the lease lasts; the master's default (30 s) when absent. */
  leaseMs?: number;
}

/** Statistics as returned by {@link Client.stats}. */
export interface Stats {
  /** Per-queue figures. */
  queues: QueueStats[];
  /** Authenticated connections on the master. */
  clients: number;
}

/** A job, or just its id, wherever jobs are settled. */
export type JobRef = Job | number;

/**
 * The ids of `jobs` (jobs or ids, one or a list).
 * @throws {TypeError} for something that is neither a job nor an id.
 * @throws {RangeError} for an id that is not a non-negative whole number, or
 *   more than {@link MAX_BATCH} of them.
 */
function idsOf(jobs: JobRef | readonly JobRef[]): number[] {
  const list: readonly unknown[] = Array.isArray(jobs) ? jobs : [jobs];
  if (list.length > MAX_BATCH) {
    throw new RangeError(`at most ${MAX_BATCH} jobs at once, not ${list.length}: split the list`);
  }
  return list.map((job) => {
    const id = typeof job === "object" && job !== null ? (job as { id?: unknown }).id : job;
    if (typeof id !== "number") {
      throw new TypeError(`expected a job (from get) or its id, not ${describeValue(job)}`);
    }
    return checkIntegerArgument("a job id", id, 0, Number.MAX_SAFE_INTEGER);
  });
}

/** The name a client gives the master by default: host and process id. */
export function defaultClientName(): string {
  let host = "unknown-host";
  try {
    host = Deno.hostname();
  } catch {
    // no --allow-sys: the pid alone still tells clients apart
  }
  return `${host}:${Deno.pid}`;
}

interface Pending {
  resolve(reply: OkReply): void;
  reject(error: Error): void;
}

/** The connection each job came on: its lease dies with that connection. */
const jobSession = new WeakMap<object, number>();

/** How a {@link Queue} sends its requests through its client (kept out of the public API). */
type Send = (request: Request) => Promise<OkReply>;

/** Each client's sending function, set when it is made, for its queues. */
const senders = new WeakMap<Client, Send>();

/**
 * Operations on one named queue, through a {@link Client}.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { connect, type Queue } from "./client.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const client = await connect({ address: master.address, authkey: "abc" });
 * const tasks: Queue = client.queue("tasks");
 * await tasks.putMany(["a", "b"]);
 * console.log(await tasks.size()); // 2
 * const [first, second] = await tasks.getMany(2, 1000);
 * // Done: ack it, putting its result on "results" in the same step.
 * await tasks.ack(first, { results: { queue: "results", values: ["A"] } });
 * // Not now: give it back to be served again.
 * await tasks.nack(second);
 * console.log(await tasks.size()); // 1
 * await client.close();
 * await master.close();
 * ```
 */
export class Queue {
  /** The queue's name. */
  readonly name: string;
  readonly #client: Client;
  readonly #send: Send;

  /** Use {@link Client.queue}. */
  constructor(client: Client, name: string) {
    this.#client = client;
    this.#send = senders.get(client) as Send;
    this.name = checkQueueNameArgument(name);
  }

  /** Adds one item; resolves with its id once the master has it. */
  async put(value: unknown, options: PutOptions = {}): Promise<number> {
    const ids = await this.putMany([value], options);
    return ids[0];
  }

  /**
   * Adds items (at most {@link MAX_BATCH}) in one request; resolves with their
   * ids in order.
   * @throws {TypeError} when an item is not plain data.
   * @throws {RangeError} when an item is nested too deep, there are too many,
   *   or an option is out of range.
   */
  async putMany(values: readonly unknown[], options: PutOptions = {}): Promise<number[]> {
    if (!Array.isArray(values)) {
      throw new TypeError(`putMany takes an array of items, not ${describeValue(values)}`);
    }
    if (values.length > MAX_BATCH) {
      throw new RangeError(
        `putMany takes at most ${MAX_BATCH} items at once, not ${values.length}: split the batch`,
      );
    }
    for (const value of values) checkItemArgument(value);
    const request: Request = { op: "put", rid: 0, queue: this.name, items: values as unknown[] };
    if (options.delayMs !== undefined) {
      const delay = checkDuration("delayMs", options.delayMs);
      if (delay > 0) request.delay = delay;
    }
    if (options.maxAttempts !== undefined) {
      request.maxAttempts = checkIntegerArgument(
        "maxAttempts",
        options.maxAttempts,
        0,
        MAX_ATTEMPTS_LIMIT,
      );
    }
    if (values.length === 0) return [];
    const reply = await this.#send(request);
    return expect(reply, "ids");
  }

  /**
   * Takes one item, waiting up to `timeoutMs` (forever when omitted) for one to
   * be ready. Resolves with `null` when the time runs out. The item is leased:
   * {@link ack} it when done or it will be served again.
   */
  async get<T = unknown>(timeoutMs?: number, options: GetOptions = {}): Promise<Job<T> | null> {
    const jobs = await this.getMany<T>(1, timeoutMs, options);
    return jobs.length > 0 ? jobs[0] : null;
  }

  /** Takes up to `max` items, waiting up to `timeoutMs` (forever when omitted) for the first. */
  async getMany<T = unknown>(
    max: number,
    timeoutMs?: number,
    options: GetOptions = {},
  ): Promise<Job<T>[]> {
    for (;;) {
      const timeout = timeoutMs === undefined
        ? MAX_DURATION_MS
        : checkDuration("timeoutMs", timeoutMs);
      const request: Request = { op: "get", rid: 0, queue: this.name, max, timeout };
      if (options.leaseMs !== undefined) request.lease = checkDuration("leaseMs", options.leaseMs);
      const reply = await this.#send(request);
      const records = expect(reply, "jobs");
      if (records.length === 0 && timeoutMs === undefined) continue;
      const session = this.#client.sessionNumber;
      return records.map((r) => {
        const job: Job<T> = { id: r.id, queue: this.name, value: r.value as T, attempt: r.attempt };
        jobSession.set(job, session);
        return job;
      });
    }
  }

  /**
   * Marks items done. With `options.results`, also puts one result per item on
   * another queue in the same step: the master commits each result together
   * with its item's ack, and drops the results of items whose lease was lost.
   * @throws {LeaseLostError} for items whose lease had already ended (the
   *   others are acked).
   */
  async ack(jobs: JobRef | readonly JobRef[], options: AckOptions = {}): Promise<void> {
    const request: Request = { op: "ack", rid: 0, ids: idsOf(jobs) };
    if (options.results !== undefined) {
      const { queue, values } = options.results;
      if (!Array.isArray(values)) {
        throw new TypeError(`ack results take an array of values, not ${describeValue(values)}`);
      }
      if (values.length !== request.ids.length) {
        throw new RangeError(
          `ack needs one result per item: ${request.ids.length} items, ${values.length} results`,
        );
      }
      for (const value of values) checkItemArgument(value);
      request.resultQueue = checkQueueNameArgument(queue);
      request.results = values as unknown[];
    }
    if (request.ids.length === 0) return;
    throwIfFailed(await this.#send(request));
  }

  /**
   * Gives items back to the queue to be served again, at once or after `delayMs`.
   * @throws {LeaseLostError} for items whose lease had already ended.
   */
  async nack(jobs: JobRef | readonly JobRef[], options: NackOptions = {}): Promise<void> {
    const request: Request = { op: "nack", rid: 0, ids: idsOf(jobs) };
    if (options.delayMs !== undefined) {
      const delay = checkDuration("delayMs", options.delayMs);
      if (delay > 0) request.delay = delay;
    }
    if (request.ids.length === 0) return;
    throwIfFailed(await this.#send(request));
  }

  /**
   * Reports that work on items failed with `error`: the master retries each
   * after a backoff, or moves it to the dead-letter queue (`NAME.dead`) once it
   * has had its maximum attempts.
   * @throws {LeaseLostError} for items whose lease had already ended.
   */
  async fail(jobs: JobRef | readonly JobRef[], error: string): Promise<void> {
    if (typeof error !== "string") {
      throw new TypeError(
        `fail takes what went wrong as a string (e.g. error.message), not ${describeValue(error)}`,
      );
    }
    const request: Request = {
      op: "fail",
      rid: 0,
      ids: idsOf(jobs),
      error: error.slice(0, MAX_FAILURE_TEXT),
    };
    if (request.ids.length === 0) return;
    throwIfFailed(await this.#send(request));
  }

  /**
   * Renews leases so they last `leaseMs` from now; call it while working on
   * long items.
   * @throws {LeaseLostError} for items whose lease had already ended.
   */
  async extend(jobs: JobRef | readonly JobRef[], leaseMs: number): Promise<void> {
    const request: Request = {
      op: "extend",
      rid: 0,
      ids: idsOf(jobs),
      lease: checkDuration("leaseMs", leaseMs),
    };
    if (request.ids.length === 0) return;
    throwIfFailed(await this.#send(request));
  }

  /** Number of items ready to be taken. */
  async size(): Promise<number> {
    const stats = await this.#client.stats(this.name);
    return stats.queues[0]?.ready ?? 0;
  }
}

/**
 * Checks a duration argument: whole milliseconds from `min` (0 by default) to
 * {@link MAX_DURATION_MS}.
 * @throws {TypeError} when it is not a number.
 * @throws {RangeError} when it is out of range or not whole.
 */
function checkDuration(name: string, ms: unknown, min = 0): number {
  return checkIntegerArgument(name, ms, min, MAX_DURATION_MS, " of milliseconds");
}

function expect<K extends "ids" | "jobs" | "failed" | "queues">(
  reply: OkReply,
  field: K,
): NonNullable<OkReply[K]> {
  const value = reply[field];
  if (value === undefined) {
    throw new ProtocolError(`master's reply lacks the "${field}" field`);
  }
  return value as NonNullable<OkReply[K]>;
}

function throwIfFailed(reply: OkReply): void {
  const failed = expect(reply, "failed");
  if (failed.length > 0) throw new LeaseLostError(failed);
}

/**
 * A connection to a master, which re-establishes itself when it drops.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { type Client, connect } from "./client.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const client: Client = await connect({ address: master.address, authkey: "abc" });
 * await client.ping();
 * await client.queue("tasks").put({ n: 1 });
 * const stats = await client.stats("tasks");
 * console.log(stats.queues[0].ready, stats.clients); // 1 1
 * await client.close();
 * console.log(client.closed); // true
 * await master.close();
 * ```
 */
export class Client {
  /** The master's address. */
  readonly address: string;
  readonly #params: SessionParams;
  readonly #options: ConnectOptions;
  #session: Session;
  #sessionNumber = 1;
  #pending = new Map<number, Pending>();
  #nextRid = 1;
  /** Set once the client is closed for good. */
  #closeReason: Error | undefined;
  /** While reconnecting: resolves when a session is up again (or the client closed). */
  #reconnecting: Promise<void> | undefined;
  readonly #done = Promise.withResolvers<void>();
  readonly #queues = new Map<string, Queue>();
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #wakeRetry: (() => void) | undefined;

  /** Use {@link connect}. */
  constructor(session: Session, params: SessionParams, options: ConnectOptions) {
    this.address = formatAddress(params.address);
    this.#params = params;
    this.#options = options;
    this.#session = session;
    senders.set(this, (request) => this.#request(request));
    this.#adopt(session);
  }

  /** Lease length the master grants by default. */
  get defaultLeaseMs(): number {
    return this.#session.welcome.leaseMs;
  }

  /** Whether the client is closed for good. */
  get closed(): boolean {
    return this.#closeReason !== undefined;
  }

  /** Whether a connection is up right now. */
  get connected(): boolean {
    return this.#closeReason === undefined && this.#reconnecting === undefined;
  }

  /** Resolves when the client is closed for good. */
  get done(): Promise<void> {
    return this.#done.promise;
  }

  /** Requests awaiting a reply. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /**
   * Whether this client may still hold `job`'s lease: false once the
   * connection it came on has dropped (the master then served it again).
   */
  mayHoldLease(job: Job): boolean {
    return this.connected && jobSession.get(job) === this.#sessionNumber;
  }

  /** Counts connections: 1 for the first, +1 with each reconnection. */
  get sessionNumber(): number {
    return this.#sessionNumber;
  }

  /** The queue called `name` (created on the master on first use). */
  queue(name: string): Queue {
    let queue = this.#queues.get(name);
    if (queue === undefined) {
      queue = new Queue(this, name);
      this.#queues.set(name, queue);
    }
    return queue;
  }

  /** Statistics of one queue, or of all queues. */
  async stats(queue?: string): Promise<Stats> {
    const request: Request = { op: "stats", rid: 0 };
    if (queue !== undefined) request.queue = checkQueueNameArgument(queue);
    const reply = await this.#request(request);
    return { queues: expect(reply, "queues"), clients: reply.clients ?? 0 };
  }

  /** Round trip to the master; resolves when it answers. */
  async ping(): Promise<void> {
    await this.#request({ op: "ping", rid: 0 });
  }

  /**
   * Sends a request (its `rid` is assigned here) and resolves with the reply.
   * While reconnecting, waits for the new connection first.
   * @throws {ConnectionLostError} if the connection drops before the reply
   *   (the request may or may not have taken effect).
   * @throws {RemoteError} if the master answers with an error.
   */
  async #request(request: Request): Promise<OkReply> {
    while (this.#reconnecting !== undefined) await this.#reconnecting;
    if (this.#closeReason) throw this.#closeReason;
    const rid = this.#nextRid;
    this.#nextRid = (this.#nextRid + 1) % RID_MODULUS;
    request.rid = rid;
    const conn = this.#session.conn;
    return await new Promise<OkReply>((resolve, reject) => {
      conn.send(request);
      this.#pending.set(rid, { resolve, reject });
    });
  }

  #adopt(session: Session): void {
    const { conn, welcome, pump, route } = session;
    conn.maxSendBytes = welcome.maxFrameBytes;
    route.handler = (msg) => this.#onMessage(msg);
    pump.then(
      () =>
        this.#lost(session, new ConnectionLostError(`connection to master ${this.address} closed`)),
      (error) =>
        this.#lost(
          session,
          new ConnectionLostError(
            `connection to master ${this.address} broke: ${(error as Error).message}`,
            { cause: error },
          ),
        ),
    );
  }

  #onMessage(msg: ServerMessage): void {
    if (msg.op === "ok" || (msg.op === "error" && msg.rid !== undefined)) {
      const pending = this.#pending.get(msg.rid as number);
      if (pending === undefined) {
        throw new ProtocolError(`master replied to unknown request ${msg.rid}`);
      }
      this.#pending.delete(msg.rid as number);
      if (msg.op === "ok") pending.resolve(msg);
      else pending.reject(new RemoteError(msg.code, msg.message));
      return;
    }
    if (msg.op === "error") {
      // Not about one request: the master is closing this connection.
      this.#failPending(
        new ConnectionLostError(
          `master ${this.address} closed the connection: ${msg.message} (${msg.code})`,
        ),
      );
      this.#session.conn.close();
      return;
    }
    throw new ProtocolError(`unexpected "${msg.op}" after the handshake`);
  }

  #failPending(reason: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(reason);
  }

  /** The current connection ended: fail what was in flight, then reconnect or close. */
  #lost(session: Session, reason: Error): void {
    session.conn.close();
    if (session !== this.#session) return;
    this.#failPending(reason);
    if (this.#closeReason) return;
    if (this.#options.reconnect === false) {
      this.#finish(reason);
      return;
    }
    this.#options.onDisconnect?.(reason);
    this.#reconnecting = this.#reconnect();
  }

  async #reconnect(): Promise<void> {
    for (let attempt = 1; this.#closeReason === undefined; attempt++) {
      await new Promise<void>((resolve) => {
        this.#wakeRetry = resolve;
        this.#retryTimer = setTimeout(resolve, backoffMs(attempt));
      });
      this.#wakeRetry = undefined;
      if (this.#closeReason) break;
      try {
        const session = await openSession(this.#params);
        if (this.#closeReason) {
          session.conn.close();
          await session.pump.catch(() => {});
          break;
        }
        this.#session = session;
        this.#sessionNumber++;
        this.#reconnecting = undefined;
        this.#adopt(session);
        this.#options.onReconnect?.(attempt);
        return;
      } catch (error) {
        if (error instanceof AuthenticationError) {
          this.#finish(error);
          break;
        }
      }
    }
    this.#reconnecting = undefined;
  }

  #finish(reason: Error): void {
    this.#closeReason ??= reason;
    this.#failPending(this.#closeReason);
    clearTimeout(this.#retryTimer);
    this.#wakeRetry?.();
    this.#session.pump.catch(() => {}).finally(() => this.#done.resolve());
  }

  /**
   * Closes the client for good. Items it still holds go back to their queues
   * at once; requests in flight fail with {@link ConnectionLostError}.
   */
  async close(): Promise<void> {
    this.#finish(new ConnectionLostError("client closed"));
    this.#session.conn.close();
    await this.#reconnecting;
    await this.#done.promise;
  }
}

/** Largest TCP port. */
const MAX_PORT = 65_535;

/** Largest frame a 4-byte length prefix can announce. */
const MAX_FRAME_LENGTH = 0xffff_ffff;

/**
 * What {@link connect} needs to open sessions, from its options.
 * @throws {TypeError | RangeError} for an option of the wrong type or out of range.
 * @throws {ConfigError} for an address that does not parse.
 */
function sessionParams(options: ConnectOptions): SessionParams {
  const { address, authkey, name, maxFrameBytes, timeoutMs, tls } = options;
  if (address !== undefined && typeof address !== "string" && typeof address !== "object") {
    throw new TypeError(
      `address must be "HOST:PORT" or { hostname, port }, not ${describeValue(address)}`,
    );
  }
  if (typeof address === "object" && address !== null) {
    if (typeof address.hostname !== "string") {
      throw new TypeError(
        `address.hostname must be a string, not ${describeValue(address.hostname)}`,
      );
    }
    checkIntegerArgument("address.port", address.port, 0, MAX_PORT);
  }
  if (authkey !== undefined && typeof authkey !== "string" && !(authkey instanceof Uint8Array)) {
    throw new TypeError(`authkey must be a string or a Uint8Array, not ${describeValue(authkey)}`);
  }
  if (name !== undefined) {
    if (typeof name !== "string") {
      throw new TypeError(`name must be a string, not ${describeValue(name)}`);
    }
    if (name.length > MAX_CLIENT_NAME_LENGTH) {
      throw new RangeError(
        `name must be at most ${MAX_CLIENT_NAME_LENGTH} characters, not ${name.length}`,
      );
    }
  }
  if (maxFrameBytes !== undefined) {
    checkIntegerArgument("maxFrameBytes", maxFrameBytes, 1, MAX_FRAME_LENGTH, " of bytes");
  }
  if (tls !== undefined) checkTlsClientOptions(tls);
  return {
    address: typeof address === "object" && address !== null
      ? address
      : parseAddress(address ?? Deno.env.get(ADDRESS_ENV) ?? DEFAULT_ADDRESS),
    key: typeof authkey === "string"
      ? new TextEncoder().encode(authkey)
      : authkey ?? loadAuthKey() ?? new Uint8Array(0),
    name: name ?? defaultClientName(),
    maxFrameBytes,
    timeoutMs: timeoutMs === undefined
      ? DEFAULT_CONNECT_TIMEOUT_MS
      : checkDuration("timeoutMs", timeoutMs, 1),
    tls,
  };
}

/**
 * Connects to a master and completes the mutual handshake.
 *
 * A first connection the master refuses for now is tried again, with the
 * reconnections' capped exponential backoff and jitter, until
 * {@link ConnectOptions.timeoutMs} has passed: `too_many_connections` (a
 * flood of connections, or this address throttled after wrong keys: when the
 * master says it refuses for longer than the time left, the refusal is thrown
 * at once) and `shutting_down`; with {@link ConnectOptions.reconnect} on (the
 * default), also a port that refuses or resets the connection (a master
 * restarting). A wrong key, another protocol version or a TLS failure is
 * never retried.
 * @throws {ConnectionLostError} when the master cannot be reached in time.
 * @throws {AuthenticationError} when the key is rejected or the master cannot
 *   prove it holds the key.
 * @throws {RemoteError} when the master still refuses (`too_many_connections`,
 *   `shutting_down`) once the time is up.
 * @throws {TypeError | RangeError} for an option of the wrong type or out of
 *   range (before anything is sent).
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { connect } from "./client.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const client = await connect({
 *   address: `127.0.0.1:${master.address.port}`, // TASKQ_ADDR by default
 *   authkey: "abc", // TASKQ_AUTHKEY by default
 *   name: "example-client",
 *   timeoutMs: 2_000,
 *   onDisconnect: (reason) => console.log("reconnecting:", reason.message),
 * });
 * console.log(client.connected); // true
 * await client.close();
 * await master.close();
 * ```
 */
export async function connect(options: ConnectOptions = {}): Promise<Client> {
  const params = sessionParams(options);
  const session = await openFirstSession(params, options.reconnect !== false);
  return new Client(session, params, options);
}
