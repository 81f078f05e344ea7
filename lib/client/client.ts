/**
 * The client library: connect to a master, then put, get, ack and nack items
 * of named queues.
 *
 * Requests are pipelined: each carries an id, many may be in flight on one
 * connection, and replies are matched by id in whatever order they come.
 * The client checks the master's proof of the key before sending anything
 * else, so it never takes work from an impostor.
 *
 * A client may be given several masters that serve the same queues (sharing
 * one database): it uses one at a time and moves to another when that one
 * cannot be reached or dies ({@link connect} tells how).
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
  parseAddressList,
} from "../config.ts";
import { openSession, type Session, type SessionParams } from "./handshake.ts";
import { checkTlsClientOptions, type TlsClientOptions } from "../wire/tls.ts";
import {
  AuthenticationError,
  ConfigError,
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
  /**
   * The master: `HOST:PORT` (`[IPv6]:PORT`) or `{ hostname, port }`; or
   * several masters that serve the same queues (sharing one database), as a
   * comma-separated string, the form of `--connect` and `TASKQ_ADDR`
   * (`"10.0.0.5:5000,10.0.0.6:5000"`), or as an array. The client uses one at
   * a time and moves to another when it cannot be reached or its connection
   * drops (see {@link connect}). `TASKQ_ADDR` or 127.0.0.1:5000 by default.
   */
  address?: string | Address | readonly (string | Address)[];
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
  /**
   * Called after each successful reconnection (for logs), with the number of
   * connection attempts it took (one per master tried) and the master it
   * reached.
   */
  onReconnect?: (attempt: number, address: string) => void;
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

/**
 * First reconnection delay (before jitter), in ms. With several masters the
 * delay comes before each round over all of them, not before each master.
 */
export const RECONNECT_BASE_MS = 100;

/** Longest reconnection delay, in ms. */
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

/** One master's failed connection attempt. */
interface Failure {
  /** The master, as `HOST:PORT`. */
  where: string;
  /** Why it failed. */
  error: unknown;
}

/**
 * The error of a first connection that failed on every master: a single
 * master's own error, or for several a {@link ConnectionLostError} naming
 * each one's failure (their errors are its cause, an `AggregateError`).
 */
function noMasterError(failures: readonly Failure[]): unknown {
  if (failures.length === 1) return failures[0].error;
  const reasons = failures.map(({ where, error }) => {
    const message = error instanceof Error ? error.message : String(error);
    return message.includes(where) ? message : `master ${where}: ${message}`;
  });
  return new ConnectionLostError(
    `none of the ${failures.length} masters could be reached: ${reasons.join("; ")}`,
    { cause: new AggregateError(failures.map((f) => f.error)) },
  );
}

/**
 * Opens the first session on one of `addresses`, trying them in turn from
 * `start` (each gets an equal share of the time still left for the round, so
 * one that does not answer leaves time for the others); after a round in
 * which every one failed, tries another round if a failure was transient
 * ({@link transientWaitMs}), after {@link backoffMs}, until `params.timeoutMs`
 * has passed. A rejected key ({@link AuthenticationError}) is thrown at once.
 * @returns the session and the index of its master in `addresses`.
 */
async function openFirstSession(
  params: SessionParams,
  addresses: readonly Address[],
  start: number,
  reconnect: boolean,
): Promise<{ session: Session; index: number }> {
  const deadline = Date.now() + params.timeoutMs;
  const several = addresses.length > 1;
  for (let round = 1;; round++) {
    const failures: Failure[] = [];
    /** Least wait before another round may succeed; undefined when none would. */
    let least: number | undefined;
    for (let i = 0; i < addresses.length; i++) {
      const index = (start + i) % addresses.length;
      const share = Math.max(0, deadline - Date.now()) / (addresses.length - i);
      const attempt: SessionParams = {
        ...params,
        address: addresses[index],
        // Messages name the time this master had; a single one had it all.
        timeoutMs: several ? Math.max(1, Math.round(share)) : params.timeoutMs,
      };
      try {
        return { session: await openSession(attempt, Date.now() + share), index };
      } catch (error) {
        if (error instanceof AuthenticationError) throw error;
        failures.push({ where: formatAddress(addresses[index]), error });
        const wait = transientWaitMs(error, reconnect);
        if (wait !== undefined) least = Math.min(least ?? Infinity, wait);
      }
    }
    if (least === undefined) throw noMasterError(failures);
    const left = deadline - Date.now();
    // Half of what is left at most, so that one more round still fits.
    const wait = Math.max(least, Math.min(backoffMs(round), left / 2));
    if (left - wait < MIN_ATTEMPT_MS) throw noMasterError(failures);
    await new Promise((resolve) => setTimeout(resolve, wait));
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
 * A connection to a master, which re-establishes itself when it drops (given
 * several masters, with the next one).
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
  /** Every master this client may connect to, as `HOST:PORT`, in the order given. */
  readonly addresses: readonly string[];
  readonly #masters: readonly Address[];
  /** Index in {@link #masters} of the current connection's master. */
  #current: number;
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

  /**
   * Use {@link connect}. `masters` are the masters to reconnect to (the
   * session's alone by default), `current` the index of the session's.
   */
  constructor(
    session: Session,
    params: SessionParams,
    options: ConnectOptions,
    masters: readonly Address[] = [params.address],
    current = 0,
  ) {
    this.#masters = masters;
    this.addresses = masters.map(formatAddress);
    this.#current = current;
    this.#params = params;
    this.#options = options;
    this.#session = session;
    senders.set(this, (request) => this.#request(request));
    this.#adopt(session);
  }

  /**
   * The master of the current connection, as `HOST:PORT` (while reconnecting,
   * of the one that dropped).
   */
  get address(): string {
    return this.addresses[this.#current];
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
    const where = this.address;
    conn.maxSendBytes = welcome.maxFrameBytes;
    route.handler = (msg) => this.#onMessage(msg);
    pump.then(
      () => this.#lost(session, new ConnectionLostError(`connection to master ${where} closed`)),
      (error) =>
        this.#lost(
          session,
          new ConnectionLostError(
            `connection to master ${where} broke: ${(error as Error).message}`,
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

  /**
   * Reconnects: in rounds over every master, from the one after the master
   * that dropped (which comes last), each round after a {@link backoffMs}
   * wait, until one takes the connection, the key is rejected (the client is
   * then closed for good) or the client is closed.
   */
  async #reconnect(): Promise<void> {
    const count = this.#masters.length;
    const dropped = this.#current;
    let attempt = 0;
    rounds: for (let round = 1; this.#closeReason === undefined; round++) {
      await new Promise<void>((resolve) => {
        this.#wakeRetry = resolve;
        this.#retryTimer = setTimeout(resolve, backoffMs(round));
      });
      this.#wakeRetry = undefined;
      for (let i = 1; i <= count; i++) {
        if (this.#closeReason) break rounds;
        const index = (dropped + i) % count;
        attempt++;
        let session: Session;
        try {
          session = await openSession({ ...this.#params, address: this.#masters[index] });
        } catch (error) {
          if (error instanceof AuthenticationError) {
            this.#finish(error);
            break rounds;
          }
          continue;
        }
        if (this.#closeReason) {
          session.conn.close();
          await session.pump.catch(() => {});
          break rounds;
        }
        this.#session = session;
        this.#current = index;
        this.#sessionNumber++;
        this.#reconnecting = undefined;
        this.#adopt(session);
        this.#options.onReconnect?.(attempt, this.address);
        return;
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
 * Checks one master given as `{ hostname, port }` (`name` names it in errors).
 * @throws {TypeError} when it is not such an object.
 * @throws {RangeError} when its port is not from 1 to 65535.
 */
function checkAddressObject(name: string, address: unknown): Address {
  if (typeof address !== "object" || address === null) {
    throw new TypeError(
      `${name} must be "HOST:PORT" or { hostname, port }, not ${describeValue(address)}`,
    );
  }
  const { hostname, port } = address as Partial<Address>;
  if (typeof hostname !== "string") {
    throw new TypeError(`${name}.hostname must be a string, not ${describeValue(hostname)}`);
  }
  checkIntegerArgument(`${name}.port`, port, 1, MAX_PORT);
  return { hostname, port: port as number };
}

/**
 * The masters named by {@link ConnectOptions.address} (or `TASKQ_ADDR`, or
 * the default), in order.
 * @throws {TypeError | RangeError} for an option of the wrong type or out of range.
 * @throws {ConfigError} naming an entry that does not parse, or an empty one.
 */
function masterList(address: ConnectOptions["address"]): Address[] {
  if (address === undefined) return parseAddressList(Deno.env.get(ADDRESS_ENV) ?? DEFAULT_ADDRESS);
  if (typeof address === "string") return parseAddressList(address);
  if (!Array.isArray(address)) return [checkAddressObject("address", address)];
  if (address.length === 0) {
    throw new RangeError("address lists no master: give at least one HOST:PORT");
  }
  return (address as readonly unknown[]).map((entry, i) => {
    if (typeof entry !== "string") return checkAddressObject(`address[${i}]`, entry);
    const [one, ...more] = parseAddressList(entry);
    if (more.length > 0) {
      throw new ConfigError(
        `address[${i}] "${entry}" names several masters: give one per array entry`,
      );
    }
    return one;
  });
}

/**
 * What {@link connect} needs to open sessions, from its options: the
 * settings, and the masters (the settings name the first).
 * @throws {TypeError | RangeError} for an option of the wrong type or out of range.
 * @throws {ConfigError} for an address that does not parse.
 */
function sessionParams(options: ConnectOptions): { params: SessionParams; masters: Address[] } {
  const { address, authkey, name, maxFrameBytes, timeoutMs, tls } = options;
  const masters = masterList(address);
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
  const params: SessionParams = {
    address: masters[0],
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
  return { params, masters };
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
 *
 * Several masters ({@link ConnectOptions.address} with a list): the client
 * starts at a random one of them, so that many clients spread over the
 * masters, and moves to the next in the list (wrapping around) whenever one
 * cannot be reached: refused, no answer, a TLS failure, something that is not
 * a master, a refusal for now. Each gets an equal share of the time left, so
 * one that does not answer leaves time for the others; the retries above
 * repeat the whole round. Only an authentication failure (a rejected key, a
 * master that cannot prove it holds the key, another protocol version) ends
 * it at once, on any master. When a connection drops, the client
 * reconnects to the next master after it, that one last; the backoff comes
 * before each round over the list, so a dead master does not delay the move
 * to a live one. {@link Client.address} names the master in use.
 * @throws {ConnectionLostError} when the master cannot be reached in time
 *   (with several, naming each one's failure).
 * @throws {AuthenticationError} when the key is rejected or the master cannot
 *   prove it holds the key.
 * @throws {RemoteError} when the master still refuses (`too_many_connections`,
 *   `shutting_down`) once the time is up.
 * @throws {TlsHandshakeError} when TLS fails with the (only) master.
 * @throws {TypeError | RangeError} for an option of the wrong type or out of
 *   range (before anything is sent).
 * @throws {ConfigError} for an address that does not parse, naming the entry.
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
 *
 * @example Failing over between two masters
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { connect } from "./client.ts";
 * const masters = [
 *   await serve({ listen: "127.0.0.1:0", authkey: "abc" }),
 *   await serve({ listen: "127.0.0.1:0", authkey: "abc" }),
 * ];
 * const list = masters.map((m) => `127.0.0.1:${m.address.port}`);
 * const moved = Promise.withResolvers<string>();
 * const client = await connect({
 *   address: list.join(","), // or the array; TASKQ_ADDR=HOST:PORT,HOST:PORT
 *   authkey: "abc",
 *   onReconnect: (_attempt, address) => moved.resolve(address),
 * });
 * const first = list.indexOf(client.address); // a random one of the two
 * await masters[first].close();
 * console.log((await moved.promise) === list[1 - first]); // true
 * await client.queue("tasks").put("on the other master");
 * console.log((await masters[1 - first].broker.stats("tasks")).queues[0].ready); // 1
 * await client.close();
 * await masters[1 - first].close();
 * ```
 */
export async function connect(options: ConnectOptions = {}): Promise<Client> {
  const { params, masters } = sessionParams(options);
  // A random first master per client, so that many clients spread over them.
  const start = Math.floor(Math.random() * masters.length);
  const { session, index } = await openFirstSession(
    params,
    masters,
    start,
    options.reconnect !== false,
  );
  return new Client(session, params, options, masters, index);
}
