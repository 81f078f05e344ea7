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
 * Jobs (protocol version 2, taskq 0.2): a put may give a priority, a group and
 * a unique key; {@link Client.cancel} cancels items wherever they are, and a
 * cancelled job this client holds has its {@link LeasedJob.signal} aborted;
 * {@link Client.job} looks an item up; {@link Client.limits} reads and changes
 * a queue's rate and concurrency limits; {@link Queue.progress} reports a
 * running job's progress. Against an older master these throw
 * {@link UnsupportedError}; everything else works as before.
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
import { checkQueueNameArgument, deadLetterQueue } from "../model/queue_names.ts";
import { checkIntegerArgument, describeValue } from "../util/arguments.ts";
import {
  checkLabel,
  checkLimits,
  checkPriority,
  DEFAULT_PRIORITY,
  type JobInfo,
  type LimitChanges,
  MAX_GROUP_LENGTH,
  MAX_KEY_LENGTH,
  MAX_PROGRESS_MESSAGE,
  type NamedQueueLimits,
} from "../model/jobs.ts";
import {
  CONTROL_ACTIONS,
  type ControlAction,
  type ExtendRequest,
  type HeldItemRecord,
  type ItemsRequest,
  type JobRecord,
  type LimitRequest,
  LISTED_STATES,
  type ListedState,
  MAX_ATTEMPTS_LIMIT,
  MAX_BATCH,
  MAX_CLIENT_NAME_LENGTH,
  MAX_DURATION_MS,
  MAX_FAILURE_TEXT,
  MAX_ITEMS_PAGE,
  MAX_SESSION_TEXT,
  type OkReply,
  type ProgressRequest,
  type PutRequest,
  type QueueStats,
  type Request,
  type ServerMessage,
  type SessionRecord,
} from "../wire/messages.ts";
import type { ItemPage, ItemsQuery } from "../model/admin.ts";
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
  JobCancelledError,
  LeaseLostError,
  ProtocolError,
  RemoteError,
  UnsupportedError,
} from "../errors.ts";

/** The protocol's limits a caller's arguments must keep to: items per call, and durations. */
export { MAX_BATCH, MAX_DURATION_MS };

/** Time allowed to connect and complete the handshake: 5 s. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** Request ids wrap around at 2^32 to stay small on the wire. */
const RID_MODULUS = 2 ** 32;

/**
 * The protocol version that brought priorities, groups, unique keys,
 * cancellation, job lookup, limits and progress, and the taskq release that
 * first spoke it (named when an older master is asked for them).
 */
const JOBS_PROTOCOL_VERSION = 2;
const JOBS_RELEASE = "0.2";

/**
 * The protocol version that brought listing items, bulk dead-letter handling,
 * purging, listing sessions and controlling them, and its taskq release.
 */
const OPS_PROTOCOL_VERSION = 3;
const OPS_RELEASE = "0.3";

/** What an operator may ask of a client ({@link Client.control}, {@link Client.onControl}). */
export type { ControlAction, HeldItemRecord, ItemPage, ItemsQuery, ListedState, SessionRecord };
export { CONTROL_ACTIONS, LISTED_STATES, MAX_ITEMS_PAGE };

/**
 * How long after its lease ran out (as far as this client knows) a job it
 * never settled is forgotten, in ms: the master has taken it back by then.
 */
const FORGET_AFTER_MS = 5_000;

/** Held jobs tracked before the first sweep of those whose lease ran out. */
const MIN_SWEEP_SIZE = 1_024;

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
   * Whether {@link connect} retries a first connection the master's port
   * refuses or resets, within {@link timeoutMs}: as {@link reconnect} by
   * default. `false` fails at once (`taskq worker --fail-fast`) while still
   * reconnecting later when {@link reconnect} is on.
   */
  retryFirstConnection?: boolean;
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

/**
 * A job as a {@link Client} delivers it ({@link Queue.get}, and the handler
 * of {@link runWorker}): a {@link Job} that also hears of its cancellation
 * and can report its progress.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { connect } from "./client.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const client = await connect({ address: master.address, authkey: "abc" });
 * const tasks = client.queue("tasks");
 * await tasks.put("a long one");
 * const job = (await tasks.get(1000))!;
 * job.signal.addEventListener("abort", () => console.log("cancelled: stop"));
 * console.log(job.signal.aborted); // false
 * await tasks.ack(job);
 * await client.close();
 * await master.close();
 * ```
 */
export interface LeasedJob<T = unknown> extends Job<T> {
  /**
   * Aborts, with a {@link JobCancelledError} as its reason, when the item is
   * cancelled while this client holds it (the master says so at once; its
   * lease is gone, so stop the work and do not settle it). Never aborts on a
   * connection to a master older than taskq 0.2.
   */
  readonly signal: AbortSignal;
  /**
   * Reports how far along the work is (shown by job lookup) and renews the
   * lease: {@link Queue.progress} with this job. Resolves with false when the
   * lease is no longer held.
   * @throws {RangeError} for a percent not from 0 to 100, or a message longer
   *   than `MAX_PROGRESS_MESSAGE` characters.
   * @throws {UnsupportedError} on a connection to a master older than taskq 0.2.
   */
  progress(percent?: number, message?: string): Promise<boolean>;
}

/** Options of a put. */
export interface PutOptions {
  /** Milliseconds before the items may be served. */
  delayMs?: number;
  /** Deliveries allowed before the item is dead-lettered; the master's policy by default. */
  maxAttempts?: number;
  /**
   * From −1000 to 1000 (0 by default): within a queue a higher priority is
   * served first, first in first out within one priority; a retry keeps it.
   */
  priority?: number;
  /**
   * The items' group (a tenant, a customer; 1 to 256 characters): deliveries
   * within a queue go round-robin across the groups that have items ready.
   */
  group?: string;
  /**
   * The item's unique key in its queue (1 to 256 characters): while an item
   * with the same key is ready, delayed or leased, the put adds nothing and
   * resolves with that item's id ({@link Queue.put} only; see
   * {@link PutManyOptions.keys}).
   */
  key?: string;
  /**
   * With a key: how long the key stays taken after its item finished (done,
   * dead-lettered or cancelled), in ms; a put of it meanwhile adds nothing.
   */
  keyHoldMs?: number;
}

/** Options of {@link Queue.putMany}: those of a put, with one key per value. */
export interface PutManyOptions extends Omit<PutOptions, "key"> {
  /**
   * One unique key (or `undefined` for none) per value, in order: a value
   * whose key is taken in the queue (or by an earlier value of the same put)
   * adds nothing, its id is the existing item's, and its index is listed in
   * {@link PutIds.existing}.
   */
  keys?: readonly (string | undefined)[];
}

/**
 * The ids a {@link Queue.putMany} resolves with, in order of its values: new
 * items' ids, and for a value whose unique key was taken, the existing item's.
 */
export type PutIds = number[] & {
  /** Indexes (into the ids) of the values that added nothing; absent when every value was added. */
  existing?: number[];
};

/** What a running job reports with {@link Queue.progress}. */
export interface ProgressReport {
  /** How far along, from 0 to 100 (fractions allowed). */
  percent?: number;
  /** What it is doing now (at most `MAX_PROGRESS_MESSAGE` characters). */
  message?: string;
}

/** What {@link Client.cancel} did. */
export interface CancelOutcome {
  /** Ids cancelled now: ready or delayed items removed, leased ones revoked (their holder told). */
  cancelled: number[];
  /** Ids not cancelled: unknown, or already finished. */
  missing: number[];
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

/** What a client knows of a job it delivered, for as long as it may hold its lease. */
interface Lease {
  /** The queue it came from (for {@link LeasedJob.progress}). */
  readonly queue: Queue;
  /** The connection it came on: its lease dies with that connection. */
  readonly session: number;
  /** The lease length its get asked for (the master's default when it named none). */
  readonly leaseMs: number;
  /** When the lease runs out as far as this client knows (ms since the epoch). */
  expiresAt: number;
  /** Made when its signal is first asked for. */
  controller?: AbortController;
  /** Set when the master said it was cancelled. */
  cancelled?: JobCancelledError;
  /** Called when the master says it was cancelled (see {@link whenCancelled}). */
  onCancel?: (reason: JobCancelledError) => void;
}

/** Reads a job's {@link Lease}, if this module made the job. */
let leaseOf: (job: Job) => Lease | undefined;

/**
 * Calls `then` once if the master cancels `job` while this client holds it
 * (at once if it already did): what {@link LeasedJob.signal} tells, without
 * an `AbortController` and a listener per job, for loops that handle many
 * jobs (the worker). One callback per job; a later call replaces it.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { connect, whenCancelled } from "./client.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const client = await connect({ address: master.address, authkey: "abc" });
 * await client.queue("tasks").put(7);
 * const job = await client.queue("tasks").get(1000);
 * let stopped = false;
 * whenCancelled(job!, () => stopped = true);
 * await client.cancel(job!.id);
 * await client.ping(); // the notice comes before this reply
 * console.log(stopped); // true
 * await client.close();
 * await master.close();
 * ```
 */
export function whenCancelled(job: Job, then: (reason: JobCancelledError) => void): void {
  const lease = leaseOf(job);
  if (lease === undefined) return;
  if (lease.cancelled !== undefined) then(lease.cancelled);
  else lease.onCancel = then;
}

/**
 * Whether the master cancelled `job` while this client held it (what
 * `job.signal.aborted` says, without making the signal).
 *
 * @example
 * ```ts
 * import { wasCancelled } from "./client.ts";
 * console.log(wasCancelled({ id: 1, queue: "q", value: 0, attempt: 1 })); // false
 * ```
 */
export function wasCancelled(job: Job): boolean {
  return leaseOf(job)?.cancelled !== undefined;
}

/**
 * A job as a client delivers it: a {@link LeasedJob}. Its four fields are its
 * only own enumerable ones, so it serializes (and prints) as a plain job; the
 * lease state is private.
 */
class ClientJob<T> implements LeasedJob<T> {
  readonly id: number;
  readonly queue: string;
  readonly value: T;
  readonly attempt: number;
  readonly #lease: Lease;

  /** Made by {@link Queue.getMany}. */
  constructor(id: number, queue: string, value: T, attempt: number, lease: Lease) {
    this.id = id;
    this.queue = queue;
    this.value = value;
    this.attempt = attempt;
    this.#lease = lease;
  }

  static {
    leaseOf = (job) => #lease in job ? job.#lease : undefined;
  }

  /** See {@link LeasedJob.signal} (made on first use). */
  get signal(): AbortSignal {
    const lease = this.#lease;
    if (lease.controller === undefined) {
      lease.controller = new AbortController();
      if (lease.cancelled !== undefined) lease.controller.abort(lease.cancelled);
    }
    return lease.controller.signal;
  }

  /** See {@link LeasedJob.progress}. */
  progress(percent?: number, message?: string): Promise<boolean> {
    const report: ProgressReport = {};
    if (percent !== undefined) report.percent = percent;
    if (message !== undefined) report.message = message;
    return this.#lease.queue.progress(this, report);
  }
}

/** How a {@link Queue} reaches its client's connection (kept out of the public API). */
interface ClientLink {
  /**
   * Sends a request and resolves with its reply; with `feature`, first checks
   * that the connection speaks protocol version 2 (else
   * {@link UnsupportedError} naming the feature).
   */
  send(request: Request, feature?: string): Promise<OkReply>;
  /**
   * Makes the jobs a get delivered (leased for `leaseMs`, the master's default
   * when undefined) and tracks them by id until they are settled.
   */
  deliver<T>(
    queue: Queue,
    records: readonly JobRecord[],
    leaseMs: number | undefined,
  ): LeasedJob<T>[];
  /** Stops tracking settled jobs. */
  forget(jobs: JobRef | readonly JobRef[]): void;
  /** Records that the leases of `ids` (not those in `failed`) now run `leaseMs` from `now`. */
  renewed(ids: readonly number[], failed: readonly number[], leaseMs: number, now: number): void;
  /** The lease length of the held job with this id, if this client holds it. */
  leaseOf(id: number): number | undefined;
}

/** Each client's link, set when it is made, for its queues. */
const links = new WeakMap<Client, ClientLink>();

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
  readonly #link: ClientLink;

  /** Use {@link Client.queue}. */
  constructor(client: Client, name: string) {
    this.#client = client;
    this.#link = links.get(client) as ClientLink;
    this.name = checkQueueNameArgument(name);
  }

  /**
   * Adds one item; resolves with its id once the master has it. With a
   * {@link PutOptions.key} that is taken in the queue, adds nothing and
   * resolves with the existing item's id.
   * @throws {TypeError | RangeError} for an item or option {@link putMany} refuses.
   * @throws {UnsupportedError} for a priority, group or key on a connection
   *   to a master older than taskq 0.2.
   *
   * @example
   * ```ts
   * import { serve } from "../server/master.ts";
   * import { connect } from "./client.ts";
   * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
   * const client = await connect({ address: master.address, authkey: "abc" });
   * const mail = client.queue("mail");
   * const first = await mail.put({ to: "a@b.c" }, { key: "invoice-42", priority: 5 });
   * const again = await mail.put({ to: "a@b.c" }, { key: "invoice-42" });
   * console.log(first === again); // true: the key was taken, nothing was added
   * await client.close();
   * await master.close();
   * ```
   */
  async put(value: unknown, options: PutOptions = {}): Promise<number> {
    checkOptionsObject("put", options);
    if ("keys" in options) {
      throw new TypeError(`put takes one "key"; "keys" (one per value) is for putMany`);
    }
    const { key, ...rest } = options;
    const many: PutManyOptions = rest;
    if (key !== undefined) many.keys = [key];
    const ids = await this.putMany([value], many);
    return ids[0];
  }

  /**
   * Adds items (at most {@link MAX_BATCH}) in one request; resolves with their
   * ids in order. A value whose unique key ({@link PutManyOptions.keys}) was
   * taken adds nothing: its id is the existing item's, and its index is in
   * the ids' {@link PutIds.existing}.
   * @throws {TypeError} when an item is not plain data, or an option is of
   *   the wrong type.
   * @throws {RangeError} when an item is nested too deep, there are too many,
   *   or an option is out of range (a priority outside −1000…1000, an empty or
   *   too long group or key, not one key per value).
   * @throws {UnsupportedError} for a priority, group or key on a connection
   *   to a master older than taskq 0.2.
   *
   * @example
   * ```ts
   * import { serve } from "../server/master.ts";
   * import { connect } from "./client.ts";
   * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
   * const client = await connect({ address: master.address, authkey: "abc" });
   * const tasks = client.queue("tasks");
   * const ids = await tasks.putMany(["a", "b", "c"], {
   *   keys: ["k1", undefined, "k1"], // "c" has the key of "a": it adds nothing
   *   group: "tenant-7",
   * });
   * console.log(ids[2] === ids[0], ids.existing); // true [ 2 ]
   * await client.close();
   * await master.close();
   * ```
   */
  async putMany(values: readonly unknown[], options: PutManyOptions = {}): Promise<PutIds> {
    if (!Array.isArray(values)) {
      throw new TypeError(`putMany takes an array of items, not ${describeValue(values)}`);
    }
    if (values.length > MAX_BATCH) {
      throw new RangeError(
        `putMany takes at most ${MAX_BATCH} items at once, not ${values.length}: split the batch`,
      );
    }
    checkOptionsObject("putMany", options);
    if ("key" in options) {
      throw new TypeError(`putMany takes "keys" (one per value); "key" is for put`);
    }
    for (const value of values) checkItemArgument(value);
    const request: PutRequest = { op: "put", rid: 0, queue: this.name, items: values as unknown[] };
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
    const feature = jobFields(request, options, values.length);
    if (values.length === 0) return [];
    const reply = await this.#link.send(request, feature);
    const ids: PutIds = expect(reply, "ids");
    if (reply.existing !== undefined) ids.existing = reply.existing;
    return ids;
  }

  /**
   * Takes one item, waiting up to `timeoutMs` (forever when omitted) for one to
   * be ready. Resolves with `null` when the time runs out. The item is leased:
   * {@link ack} it when done or it will be served again.
   */
  async get<T = unknown>(
    timeoutMs?: number,
    options: GetOptions = {},
  ): Promise<LeasedJob<T> | null> {
    const jobs = await this.getMany<T>(1, timeoutMs, options);
    return jobs.length > 0 ? jobs[0] : null;
  }

  /** Takes up to `max` items, waiting up to `timeoutMs` (forever when omitted) for the first. */
  async getMany<T = unknown>(
    max: number,
    timeoutMs?: number,
    options: GetOptions = {},
  ): Promise<LeasedJob<T>[]> {
    for (;;) {
      const timeout = timeoutMs === undefined
        ? MAX_DURATION_MS
        : checkDuration("timeoutMs", timeoutMs);
      const request: Request = { op: "get", rid: 0, queue: this.name, max, timeout };
      if (options.leaseMs !== undefined) request.lease = checkDuration("leaseMs", options.leaseMs);
      const reply = await this.#link.send(request);
      const records = expect(reply, "jobs");
      if (records.length === 0 && timeoutMs === undefined) continue;
      return this.#link.deliver<T>(this, records, request.lease);
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
    await this.#settle(jobs, request);
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
    await this.#settle(jobs, request);
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
    await this.#settle(jobs, request);
  }

  /** Sends an ack, nack or fail; once answered, the jobs are no longer held. */
  async #settle(jobs: JobRef | readonly JobRef[], request: Request): Promise<void> {
    const reply = await this.#link.send(request);
    this.#link.forget(jobs);
    throwIfFailed(reply);
  }

  /**
   * Renews leases so they last `leaseMs` from now; call it while working on
   * long items.
   * @throws {LeaseLostError} for items whose lease had already ended.
   */
  async extend(jobs: JobRef | readonly JobRef[], leaseMs: number): Promise<void> {
    const request: ExtendRequest = {
      op: "extend",
      rid: 0,
      ids: idsOf(jobs),
      lease: checkDuration("leaseMs", leaseMs),
    };
    if (request.ids.length === 0) return;
    const reply = await this.#link.send(request);
    const failed = expect(reply, "failed");
    this.#link.renewed(request.ids, failed, request.lease, Date.now());
    if (failed.length > 0) throw new LeaseLostError(failed);
  }

  /**
   * Reports a held job's progress (shown by job lookup: `taskq job ID`) and
   * renews its lease to last `leaseMs` from now: by default the lease its get
   * asked for, else the master's default. Resolves with false when this
   * client no longer holds the job's lease (it expired, was cancelled, or
   * the job was settled). {@link LeasedJob.progress} is the same on the job.
   * @throws {TypeError} for a job that is neither a job nor an id, or a
   *   report of the wrong shape.
   * @throws {RangeError} for a percent not from 0 to 100 (fractions allowed),
   *   a message longer than `MAX_PROGRESS_MESSAGE` characters, or a bad lease.
   * @throws {UnsupportedError} on a connection to a master older than taskq 0.2.
   *
   * @example
   * ```ts
   * import { serve } from "../server/master.ts";
   * import { connect } from "./client.ts";
   * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
   * const client = await connect({ address: master.address, authkey: "abc" });
   * const tasks = client.queue("tasks");
   * const id = await tasks.put("resize photo.jpg");
   * const job = (await tasks.get(1000))!;
   * await tasks.progress(job, { percent: 40, message: "resizing" });
   * await job.progress(80); // the same, on the job
   * console.log((await client.job(id))?.progress?.percent); // 80
   * await tasks.ack(job);
   * await client.close();
   * await master.close();
   * ```
   */
  async progress(job: JobRef, report: ProgressReport = {}, leaseMs?: number): Promise<boolean> {
    if (Array.isArray(job)) {
      throw new TypeError("progress takes one job (or its id), not a list");
    }
    const [id] = idsOf(job);
    checkOptionsObject("the progress report", report);
    const request: ProgressRequest = { op: "progress", rid: 0, id };
    const { percent, message } = report;
    if (percent !== undefined) {
      if (typeof percent !== "number") {
        throw new TypeError(`a progress percent must be a number, not ${describeValue(percent)}`);
      }
      if (!Number.isFinite(percent) || percent < 0 || percent > MAX_PERCENT) {
        throw new RangeError(`a progress percent must be from 0 to ${MAX_PERCENT}, not ${percent}`);
      }
      request.percent = percent;
    }
    if (message !== undefined) {
      if (typeof message !== "string") {
        throw new TypeError(`a progress message must be a string, not ${describeValue(message)}`);
      }
      if (message.length > MAX_PROGRESS_MESSAGE) {
        throw new RangeError(
          `a progress message must be at most ${MAX_PROGRESS_MESSAGE} characters, ` +
            `not ${message.length}`,
        );
      }
      request.message = message;
    }
    const lease = leaseMs === undefined
      ? this.#link.leaseOf(id)
      : checkDuration("leaseMs", leaseMs);
    if (lease !== undefined) request.lease = lease;
    const reply = await this.#link.send(request, "progress");
    const failed = expect(reply, "failed");
    this.#link.renewed([id], failed, lease ?? this.#client.defaultLeaseMs, Date.now());
    return !failed.includes(id);
  }

  /** Number of items ready to be taken. */
  async size(): Promise<number> {
    const stats = await this.#client.stats(this.name);
    return stats.queues[0]?.ready ?? 0;
  }
}

/** Highest progress percentage. */
const MAX_PERCENT = 100;

/** The fields of {@link LimitChanges}. */
const LIMIT_FIELDS: ReadonlySet<string> = new Set([
  "rateCount",
  "ratePeriodMs",
  "concurrency",
  "groupConcurrency",
]);

/**
 * Checks that `options` (named `what` in the error) is an options object.
 * @throws {TypeError} when it is not.
 */
function checkOptionsObject(what: string, options: unknown): void {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(`${what} options must be an object, not ${describeValue(options)}`);
  }
}

/**
 * Checks a put's priority, group, keys and key hold and adds them to
 * `request` (a priority of 0 and a hold of 0 are the defaults, not sent);
 * returns the feature they need protocol version 2 for, if any.
 * @throws {TypeError} for an option of the wrong type, or a key hold without keys.
 * @throws {RangeError} for an option out of range, or not one key per value.
 */
function jobFields(
  request: PutRequest,
  options: PutManyOptions,
  count: number,
): string | undefined {
  const { priority, group, keys, keyHoldMs } = options;
  let feature: string | undefined;
  if (priority !== undefined) {
    if (typeof priority !== "number") {
      throw new TypeError(`priority must be a number, not ${describeValue(priority)}`);
    }
    if (checkPriority(priority) !== DEFAULT_PRIORITY) {
      request.priority = priority;
      feature ??= "a put with a priority";
    }
  }
  if (group !== undefined) {
    if (typeof group !== "string") {
      throw new TypeError(`group must be a string, not ${describeValue(group)}`);
    }
    request.group = checkLabel(group, "group", MAX_GROUP_LENGTH);
    feature ??= "a put with a group";
  }
  if (keys !== undefined) {
    if (!Array.isArray(keys)) {
      throw new TypeError(`keys must be an array (one key per value), not ${describeValue(keys)}`);
    }
    if (keys.length !== count) {
      throw new RangeError(
        `keys needs one key (or undefined) per value: ${count} values, ` +
          `${keys.length} keys`,
      );
    }
    let any = false;
    for (const key of keys as readonly unknown[]) {
      if (key === undefined) continue;
      if (typeof key !== "string") {
        throw new TypeError(`a key must be a string or undefined, not ${describeValue(key)}`);
      }
      checkLabel(key, "key", MAX_KEY_LENGTH);
      any = true;
    }
    if (any) {
      // msgpack's nil stands for "no key" (an undefined would not encode as one).
      request.keys = keys.map((key) => key ?? null) as (string | undefined)[];
      feature ??= "a put with a unique key";
    }
  }
  if (keyHoldMs !== undefined) {
    if (keys === undefined) {
      throw new TypeError(`keyHoldMs needs a key (put) or keys (putMany) to hold`);
    }
    const hold = checkDuration("keyHoldMs", keyHoldMs);
    if (hold > 0 && request.keys !== undefined) request.keyHold = hold;
  }
  return feature;
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

function expect<K extends Exclude<keyof OkReply, "op" | "rid">>(
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
   * The leases of the jobs this client holds on the current connection, by
   * id, so that the master's word that one was cancelled reaches its signal:
   * from delivery until settled (acked, nacked, failed), cancelled, the
   * connection dropped, or (never settled) {@link FORGET_AFTER_MS} after its
   * lease ran out. Leases only, not the jobs: their values are not kept alive.
   */
  readonly #held = new Map<number, Lease>();
  /** {@link #held}'s size at which it is next swept of jobs whose lease ran out. */
  #sweepAt = MIN_SWEEP_SIZE;
  /** Called with each `control` notice (see {@link onControl}). */
  #controlHandler: ((action: ControlAction) => void) | undefined;

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
    links.set(this, {
      send: (request, feature) => this.#request(request, feature),
      deliver: (queue, records, leaseMs) => this.#deliver(queue, records, leaseMs),
      forget: (jobs) => this.#forget(jobs),
      renewed: (ids, failed, leaseMs, now) => this.#renewed(ids, failed, leaseMs, now),
      leaseOf: (id) => this.#held.get(id)?.leaseMs,
    });
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

  /** Largest frame the master takes, in bytes (a request with larger results is refused here). */
  get maxFrameBytes(): number {
    return this.#session.welcome.maxFrameBytes;
  }

  /**
   * The protocol version the current connection speaks, agreed with the
   * master in the handshake: 2 with a master of taskq 0.2 or later, 1 with an
   * older one (whose connections lack priorities, groups, unique keys,
   * cancellation, job lookup, limits and progress).
   */
  get protocolVersion(): number {
    return this.#session.version;
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
   * connection it came on has dropped (the master then served it again), or
   * once the master said the job was cancelled.
   */
  mayHoldLease(job: Job): boolean {
    const lease = leaseOf(job);
    return this.connected && lease !== undefined && lease.session === this.#sessionNumber &&
      lease.cancelled === undefined;
  }

  /**
   * The {@link sessionNumber} of the connection `job` came on; `undefined`
   * for a job this client did not deliver.
   */
  deliveredOn(job: Job): number | undefined {
    return leaseOf(job)?.session;
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
   * Cancels items by id, wherever they are: a ready or delayed item is
   * removed; a leased one's lease is revoked at once and its holder told (a
   * {@link LeasedJob.signal} aborts; `taskq worker` kills the command's
   * process group). A cancelled item is never retried nor dead-lettered: it
   * ends in the `cancelled` state. Items already finished, or unknown, are
   * `missing`.
   * @throws {TypeError | RangeError} for an id that is not a non-negative
   *   whole number, or more than {@link MAX_BATCH} of them.
   * @throws {UnsupportedError} on a connection to a master older than taskq 0.2.
   *
   * @example
   * ```ts
   * import { serve } from "../server/master.ts";
   * import { connect } from "./client.ts";
   * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
   * const client = await connect({ address: master.address, authkey: "abc" });
   * const id = await client.queue("tasks").put("not needed after all");
   * console.log(await client.cancel([id, 999])); // { cancelled: [ 1 ], missing: [ 999 ] }
   * console.log((await client.job(id))?.state); // cancelled
   * await client.close();
   * await master.close();
   * ```
   */
  async cancel(ids: number | readonly number[]): Promise<CancelOutcome> {
    const list = idsOf(ids);
    if (list.length === 0) return { cancelled: [], missing: [] };
    const reply = await this.#request({ op: "cancel", rid: 0, ids: list }, "cancel");
    return { cancelled: reply.cancelled ?? [], missing: reply.failed ?? [] };
  }

  /**
   * Looks up the item with id `id`: its state (`ready`, `delayed`, `leased`
   * and by whom since when, `done`, `dead`, `cancelled`), attempts, last
   * error, result, progress and times; `undefined` when the master knows no
   * such item (never put, or finished longer ago than it keeps records).
   * @throws {TypeError | RangeError} for an id that is not a non-negative whole number.
   * @throws {UnsupportedError} on a connection to a master older than taskq 0.2.
   *
   * @example
   * ```ts
   * import { serve } from "../server/master.ts";
   * import { connect } from "./client.ts";
   * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
   * const client = await connect({ address: master.address, authkey: "abc" });
   * const id = await client.queue("tasks").put("x", { priority: 3 });
   * const info = await client.job(id);
   * console.log(info?.state, info?.priority, info?.attempts); // ready 3 0
   * console.log(await client.job(12345)); // undefined
   * await client.close();
   * await master.close();
   * ```
   */
  async job(id: number): Promise<JobInfo | undefined> {
    const checked = checkIntegerArgument("a job id", id, 0, Number.MAX_SAFE_INTEGER);
    const reply = await this.#request({ op: "job", rid: 0, id: checked }, "job lookup");
    return reply.job;
  }

  /**
   * Reads a queue's delivery limits, and with `changes` changes them first
   * (fields absent stay as they are; a zero lifts a limit; a `rateCount`
   * without `ratePeriodMs` is per second): at most `rateCount` deliveries per
   * `ratePeriodMs`, `concurrency` items leased at once, `groupConcurrency`
   * of one group, across every worker and every master. Resolves with the
   * limits in force. A change wakes waiting getters at once.
   * @throws {TypeError} for a queue name or change of the wrong type, or an
   *   unknown field.
   * @throws {RangeError} for a change out of range.
   * @throws {UnsupportedError} on a connection to a master older than taskq 0.2.
   *
   * @example
   * ```ts
   * import { serve } from "../server/master.ts";
   * import { connect } from "./client.ts";
   * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
   * const client = await connect({ address: master.address, authkey: "abc" });
   * await client.limits("emails", { rateCount: 50, concurrency: 3 });
   * const limits = await client.limits("emails");
   * console.log(limits.rateCount, limits.ratePeriodMs, limits.concurrency); // 50 1000 3
   * await client.close();
   * await master.close();
   * ```
   */
  async limits(queue: string, changes?: LimitChanges): Promise<NamedQueueLimits> {
    const request: LimitRequest = { op: "limit", rid: 0, queue: checkQueueNameArgument(queue) };
    if (changes !== undefined) {
      checkOptionsObject("limit", changes);
      for (const [key, value] of Object.entries(changes)) {
        if (!LIMIT_FIELDS.has(key)) {
          throw new TypeError(
            `unknown limit "${key.slice(0, 40)}": the limits are ${[...LIMIT_FIELDS].join(", ")}`,
          );
        }
        if (value !== undefined && typeof value !== "number") {
          throw new TypeError(`limit "${key}" must be a number, not ${describeValue(value)}`);
        }
      }
      const checked = checkLimits(changes);
      if (checked.rateCount !== undefined) request.rate = checked.rateCount;
      if (checked.ratePeriodMs !== undefined) request.ratePeriod = checked.ratePeriodMs;
      if (checked.concurrency !== undefined) request.concurrency = checked.concurrency;
      if (checked.groupConcurrency !== undefined) {
        request.groupConcurrency = checked.groupConcurrency;
      }
    }
    const reply = await this.#request(request, "limits");
    return expect(reply, "limits");
  }

  /**
   * Lists a page of a queue's live items without taking them: `ready` ones
   * in the order they will be served, `delayed` ones by when they become
   * ready, `leased` ones by when their lease began (with their holder).
   * Resolves with the page and how many items of that state the queue holds.
   * The dead letters of a queue are the ready items of `NAME.dead`.
   * @throws {TypeError | RangeError} for a bad queue name, state, offset or
   *   limit (1 to {@link MAX_ITEMS_PAGE}).
   * @throws {UnsupportedError} on a connection to a master older than taskq 0.3.
   *
   * @example
   * ```ts
   * import { serve } from "../server/master.ts";
   * import { connect } from "./client.ts";
   * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
   * const client = await connect({ address: master.address, authkey: "abc" });
   * await client.queue("tasks").putMany(["a", "b", "c"]);
   * const page = await client.items("tasks", { state: "ready", offset: 1, limit: 1 });
   * console.log(page.total, page.items.map((item) => item.value)); // 3 [ "b" ]
   * console.log(await client.queue("tasks").size()); // 3: nothing was taken
   * await client.close();
   * await master.close();
   * ```
   */
  async items(queue: string, query: ItemsQuery): Promise<ItemPage> {
    checkOptionsObject("items", query);
    const { state, offset, limit } = query;
    if (!LISTED_STATES.includes(state)) {
      throw new TypeError(
        `items state must be one of ${LISTED_STATES.join(", ")}, not ${describeValue(state)}`,
      );
    }
    const request: ItemsRequest = {
      op: "items",
      rid: 0,
      queue: checkQueueNameArgument(queue),
      state,
    };
    if (offset !== undefined) {
      request.offset = checkIntegerArgument("offset", offset, 0, Number.MAX_SAFE_INTEGER);
    }
    if (limit !== undefined) {
      request.limit = checkIntegerArgument("limit", limit, 1, MAX_ITEMS_PAGE);
    }
    const reply = await this.#request(request, "listing items", OPS_PROTOCOL_VERSION);
    return { items: expect(reply, "items"), total: expect(reply, "total") };
  }

  /**
   * Moves dead letters back to the queue they failed in, as new items (with
   * fresh attempts): those with the given ids (as {@link items} of
   * `NAME.dead` lists them), or `"all"` of them. `queue` names the queue or
   * its dead-letter queue (`tasks` and `tasks.dead` are the same here).
   * Resolves with the new items' ids; an id that is not a dead letter there
   * is skipped.
   * @throws {TypeError | RangeError} for a bad queue name or id, or more
   *   than {@link MAX_BATCH} ids.
   * @throws {UnsupportedError} on a connection to a master older than taskq 0.3.
   *
   * @example
   * ```ts
   * import { serve } from "../server/master.ts";
   * import { connect } from "./client.ts";
   * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
   * const client = await connect({ address: master.address, authkey: "abc" });
   * const tasks = client.queue("tasks");
   * await tasks.put("flaky", { maxAttempts: 1 });
   * await tasks.fail((await tasks.get(1000))!, "it broke");
   * const dead = await client.items("tasks.dead", { state: "ready" });
   * console.log(dead.total); // 1
   * const ids = await client.requeueDead("tasks", "all");
   * console.log(ids.length, await tasks.size()); // 1 1
   * await client.close();
   * await master.close();
   * ```
   */
  async requeueDead(queue: string, ids: readonly number[] | "all"): Promise<number[]> {
    const dead = deadLetterQueue(checkQueueNameArgument(queue));
    const request: Request = ids === "all"
      ? { op: "requeue", rid: 0, queue: dead, all: true }
      : { op: "requeue", rid: 0, queue: dead, ids: idsOf(ids as readonly number[]) };
    if (request.ids?.length === 0) return [];
    const reply = await this.#request(request, "re-queueing dead letters", OPS_PROTOCOL_VERSION);
    return expect(reply, "ids");
  }

  /**
   * Removes ready items of a queue for good: those with the given ids, or
   * `"all"` of them (delayed and leased items stay; see {@link purge}).
   * Dead letters are dropped from `NAME.dead`. Resolves with how many went.
   * @throws {TypeError | RangeError} for a bad queue name or id, or more
   *   than {@link MAX_BATCH} ids.
   * @throws {UnsupportedError} on a connection to a master older than taskq 0.3.
   *
   * @example
   * ```ts
   * import { serve } from "../server/master.ts";
   * import { connect } from "./client.ts";
   * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
   * const client = await connect({ address: master.address, authkey: "abc" });
   * const [first] = await client.queue("tasks").putMany(["a", "b", "c"]);
   * console.log(await client.drop("tasks", [first])); // 1
   * console.log(await client.drop("tasks", "all")); // 2
   * await client.close();
   * await master.close();
   * ```
   */
  async drop(queue: string, ids: readonly number[] | "all"): Promise<number> {
    const name = checkQueueNameArgument(queue);
    const request: Request = ids === "all"
      ? { op: "drop", rid: 0, queue: name, all: true }
      : { op: "drop", rid: 0, queue: name, ids: idsOf(ids as readonly number[]) };
    if (request.ids?.length === 0) return 0;
    const reply = await this.#request(request, "dropping items", OPS_PROTOCOL_VERSION);
    return expect(reply, "count");
  }

  /**
   * Removes every ready and delayed item of a queue; leased items finish as
   * usual. Resolves with how many went.
   * @throws {TypeError | RangeError} for a bad queue name.
   * @throws {UnsupportedError} on a connection to a master older than taskq 0.3.
   *
   * @example
   * ```ts
   * import { serve } from "../server/master.ts";
   * import { connect } from "./client.ts";
   * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
   * const client = await connect({ address: master.address, authkey: "abc" });
   * await client.queue("tasks").putMany(["now", "now"]);
   * await client.queue("tasks").put("later", { delayMs: 60_000 });
   * console.log(await client.purge("tasks")); // 3
   * await client.close();
   * await master.close();
   * ```
   */
  async purge(queue: string): Promise<number> {
    const request: Request = { op: "purge", rid: 0, queue: checkQueueNameArgument(queue) };
    const reply = await this.#request(request, "purging a queue", OPS_PROTOCOL_VERSION);
    return expect(reply, "count");
  }

  /**
   * The master's connected sessions (workers and other clients): name,
   * address, times, how many items each holds and the oldest of them, and
   * the last {@link control} action sent to it.
   * @throws {UnsupportedError} on a connection to a master older than taskq 0.3.
   *
   * @example
   * ```ts
   * import { serve } from "../server/master.ts";
   * import { connect } from "./client.ts";
   * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
   * const client = await connect({ address: master.address, authkey: "abc", name: "me" });
   * const [me] = await client.sessions();
   * console.log(me.name, me.leased, me.holding); // me 0 []
   * await client.close();
   * await master.close();
   * ```
   */
  async sessions(): Promise<SessionRecord[]> {
    const reply = await this.#request(
      { op: "sessions", rid: 0 },
      "listing sessions",
      OPS_PROTOCOL_VERSION,
    );
    return expect(reply, "sessions");
  }

  /**
   * Asks the client of one session (an id {@link sessions} lists) to go
   * `quiet` (take no more work, finish what it holds, then exit) or `stop`
   * (stop as on SIGTERM, within its grace). The master tells that client at
   * once (its {@link onControl} handler; `taskq worker` acts on it); resolves
   * with false when no such session is connected.
   * @throws {TypeError} for a session id that is not a non-empty string, or
   *   an unknown action.
   * @throws {UnsupportedError} on a connection to a master older than taskq 0.3.
   *
   * @example
   * ```ts
   * import { serve } from "../server/master.ts";
   * import { connect } from "./client.ts";
   * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
   * const worker = await connect({ address: master.address, authkey: "abc", name: "w" });
   * const told = Promise.withResolvers<string>();
   * worker.onControl((action) => told.resolve(action));
   * const admin = await connect({ address: master.address, authkey: "abc" });
   * const session = (await admin.sessions()).find((s) => s.name === "w")!;
   * console.log(await admin.control(session.id, "quiet")); // true
   * console.log(await told.promise); // quiet
   * console.log(await admin.control("no-such-session", "stop")); // false
   * await admin.close();
   * await worker.close();
   * await master.close();
   * ```
   */
  async control(sessionId: string, action: ControlAction): Promise<boolean> {
    if (typeof sessionId !== "string" || sessionId.length === 0) {
      throw new TypeError(
        `a session id must be a non-empty string, not ${describeValue(sessionId)}`,
      );
    }
    if (sessionId.length > MAX_SESSION_TEXT) {
      throw new RangeError(
        `a session id is at most ${MAX_SESSION_TEXT} characters, not ${sessionId.length}`,
      );
    }
    if (!CONTROL_ACTIONS.includes(action)) {
      throw new TypeError(
        `a control action is one of ${CONTROL_ACTIONS.join(", ")}, not ${describeValue(action)}`,
      );
    }
    const reply = await this.#request(
      { op: "control", rid: 0, session: sessionId, action },
      "controlling a session",
      OPS_PROTOCOL_VERSION,
    );
    return expect(reply, "found");
  }

  /**
   * Registers `handler` for what an operator asks of this client through
   * the master ({@link control}, `taskq quiet`, `taskq stop`, the
   * dashboard): `quiet` (take no more work, finish what is held, then exit)
   * or `stop` (stop as on SIGTERM). One handler: a later call replaces it,
   * `undefined` removes it. A master older than taskq 0.3 never asks, so
   * the handler is never called on such a connection (registering does not
   * throw).
   *
   * @example
   * ```ts
   * import { serve } from "../server/master.ts";
   * import { connect } from "./client.ts";
   * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
   * const client = await connect({ address: master.address, authkey: "abc" });
   * let asked: string | undefined;
   * client.onControl((action) => asked = action);
   * const [me] = await client.sessions();
   * await client.control(me.id, "stop");
   * console.log(asked); // stop: the notice comes before the reply
   * await client.close();
   * await master.close();
   * ```
   */
  onControl(handler: ((action: ControlAction) => void) | undefined): void {
    if (handler !== undefined && typeof handler !== "function") {
      throw new TypeError(`onControl takes a function, not ${describeValue(handler)}`);
    }
    this.#controlHandler = handler;
  }

  /**
   * Sends a request (its `rid` is assigned here) and resolves with the reply.
   * While reconnecting, waits for the new connection first.
   * @throws {ConnectionLostError} if the connection drops before the reply
   *   (the request may or may not have taken effect).
   * @throws {RemoteError} if the master answers with an error.
   * @throws {UnsupportedError} when `feature` is given (the request needs
   *   protocol version 2) and the connection speaks an older version.
   */
  async #request(
    request: Request,
    feature?: string,
    needs = JOBS_PROTOCOL_VERSION,
  ): Promise<OkReply> {
    while (this.#reconnecting !== undefined) await this.#reconnecting;
    if (this.#closeReason) throw this.#closeReason;
    if (feature !== undefined && this.#session.version < needs) {
      throw new UnsupportedError(
        feature,
        this.#session.version,
        needs,
        needs === OPS_PROTOCOL_VERSION ? OPS_RELEASE : JOBS_RELEASE,
      );
    }
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
    route.handler = (msg) => this.#onMessage(msg, session);
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

  #onMessage(msg: ServerMessage, session: Session): void {
    if (msg.op === "cancelled" && session.version >= JOBS_PROTOCOL_VERSION) {
      // Unasked: the master revoked leases. Those of a connection since replaced are gone anyway.
      if (session === this.#session) this.#onCancelled(msg.ids);
      return;
    }
    if (msg.op === "control" && session.version >= OPS_PROTOCOL_VERSION) {
      // Unasked: an operator asked this client to go quiet or stop.
      if (session === this.#session) this.#controlHandler?.(msg.action);
      return;
    }
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

  /** The master revoked the leases of held jobs: their signals abort, and they are forgotten. */
  #onCancelled(ids: readonly number[]): void {
    for (const id of ids) {
      const lease = this.#held.get(id);
      if (lease === undefined) continue;
      this.#held.delete(id);
      lease.cancelled = new JobCancelledError(id);
      lease.controller?.abort(lease.cancelled);
      lease.onCancel?.(lease.cancelled);
    }
  }

  /** Makes the jobs a get delivered on the current connection, and holds them. */
  #deliver<T>(
    queue: Queue,
    records: readonly JobRecord[],
    leaseMs: number | undefined,
  ): LeasedJob<T>[] {
    const ms = leaseMs ?? this.defaultLeaseMs;
    const expiresAt = Date.now() + ms;
    const session = this.#sessionNumber;
    const jobs = new Array<LeasedJob<T>>(records.length);
    for (let i = 0; i < records.length; i++) {
      const { id, value, attempt } = records[i];
      const lease: Lease = { queue, session, leaseMs: ms, expiresAt };
      jobs[i] = new ClientJob<T>(id, queue.name, value as T, attempt, lease);
      // A job delivered again (its lease ran out here) replaces its earlier delivery.
      this.#held.set(id, lease);
    }
    if (this.#held.size >= this.#sweepAt) this.#sweep();
    return jobs;
  }

  /** Forgets held jobs whose lease ran out long enough ago: the master took them back. */
  #sweep(): void {
    const before = Date.now() - FORGET_AFTER_MS;
    for (const [id, lease] of this.#held) {
      if (lease.expiresAt < before) this.#held.delete(id);
    }
    this.#sweepAt = Math.max(MIN_SWEEP_SIZE, 2 * this.#held.size);
  }

  /** Forgets settled jobs (a job object only if it is the delivery held under its id). */
  #forget(jobs: JobRef | readonly JobRef[]): void {
    const list: readonly JobRef[] = Array.isArray(jobs) ? jobs : [jobs as JobRef];
    for (const job of list) {
      const id = typeof job === "number" ? job : job.id;
      if (typeof job === "number" || this.#held.get(id) === leaseOf(job)) this.#held.delete(id);
    }
  }

  /** Records renewed leases: those of `ids` not in `failed` now run `leaseMs` from `now`. */
  #renewed(ids: readonly number[], failed: readonly number[], leaseMs: number, now: number): void {
    const lost = failed.length === 0 ? undefined : new Set(failed);
    for (const id of ids) {
      if (lost?.has(id)) continue;
      const lease = this.#held.get(id);
      if (lease !== undefined) lease.expiresAt = now + leaseMs;
    }
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
    // The master takes back every lease the connection held.
    this.#held.clear();
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
 * master that cannot prove it holds the key, no protocol version in common)
 * ends it at once, on any master. A master of an older release that refuses
 * this client's protocol version is connected to once more, offering the
 * older version ({@link Client.protocolVersion}). When a connection drops, the client
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
    options.retryFirstConnection ?? options.reconnect !== false,
  );
  return new Client(session, params, options, masters, index);
}
