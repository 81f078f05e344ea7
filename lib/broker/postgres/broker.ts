/**
 * The PostgreSQL broker: any number of masters on one database serve the
 * same queues. A put on one master is got on another; a master that dies
 * (kill -9, machine lost) stops heartbeating and the others return its
 * leases within {@link PostgresBrokerOptions.masterTimeoutMs}, or as each
 * lease expires, whichever is first.
 *
 * Everything an item is lives in its row (schema.ts): nothing the broker
 * promises depends on one master's memory. A lease is the row's owner (a
 * session id, unique across masters), its expiry and the item's attempt
 * number, the fencing token: an ack, nack, fail or extend names the attempt
 * its session was given, so a late or foreign one matches no row and is
 * refused.
 *
 * Fast paths are batched (batcher.ts, statements.ts): puts of every session,
 * and acks with their results, are written in one statement per batch; the
 * gets waiting on a queue are served by one claim that leases each row to
 * the getter it is meant for, first come first served. Blocking gets wake on
 * `LISTEN/NOTIFY` from the other masters as a hint only: a poll every
 * {@link PostgresBrokerOptions.pollMs} serves them whatever notifications
 * are lost, and a timer set at the next delayed item's time serves delays.
 * What is rare (fail, expiry, closing a session, admin calls) runs as a
 * short transaction of its own.
 *
 * What issue #13 added holds across masters because it lives in the
 * database too. Priorities are a column the claim order starts with; a put
 * with unique keys runs on its own, the unique index on `(queue, ukey)`
 * settling races. A queue with limits (`limits` table) or grouped items
 * claims through `claim_special` (schema.ts), which locks the queue's limits
 * row (a rate limit's GCRA state, and the count of its leased rows, are then
 * the same for every master) and serves groups round-robin; the plain claim
 * sees such a queue in the same statement and leaves it, so the plain
 * workload keeps its path and a master never passes a limit on a stale
 * belief. The end of a lease on a queue with a concurrency limit, and a
 * limit change, wake waiting gets (`NOTIFY`, and at once on this master); a
 * rate-limited queue's waiting gets wake at the time the rate next allows.
 * Cancelling deletes the item (so its holder's settlements match nothing)
 * and tells the holder's master on the hint channel. An ack, a dead letter
 * or a cancel records the item in `finished` in the same transaction,
 * pruned by the sweeps to {@link PostgresBrokerOptions.historyCount} and
 * {@link PostgresBrokerOptions.historyMs}.
 *
 * @example
 * ```ts ignore
 * import { openPostgresBroker } from "./broker.ts";
 * const broker = await openPostgresBroker({ url: "postgres://taskq@127.0.0.1:5432/taskq" });
 * const session = await broker.open({ name: "example", address: "" });
 * await session.put("tasks", [1, 2, 3]);
 * const [job] = await session.get("tasks", { max: 1, timeoutMs: 0 });
 * await session.ack([job.id]);
 * await broker.close();
 * ```
 *
 * @module
 */

// Pinned here, not only in deno.json: a program may import lib/mod.ts without taskq's deno.json.
// deno-lint-ignore no-import-prefix
import postgres from "npm:postgres@3.4.9";
import { setImmediate } from "node:timers";
import { decode, encode } from "../../model/codec.ts";
import {
  type DeadLetter,
  DEFAULT_LEASE_MS,
  DEFAULT_RETRY_POLICY,
  emptyQueueStats,
  type QueueStats,
  type RetryPolicy,
} from "../../model/types.ts";
import { deadLetterQueue, isDeadLetterOf, isDeadLetterQueue } from "../../model/queue_names.ts";
import type { Logger } from "../../log.ts";
import { redactUrl } from "../../config.ts";
import { silentLogger } from "../../log.ts";
import {
  checkLabel,
  checkLimits,
  checkPriority,
  DEFAULT_HISTORY_MS,
  DEFAULT_SHARED_HISTORY_COUNT,
  type JobInfo,
  type JobState,
  type LimitChanges,
  MAX_GROUP_LENGTH,
  MAX_HISTORY_VALUE_BYTES,
  MAX_KEY_LENGTH,
  MAX_PROGRESS_MESSAGE,
  type NamedQueueLimits,
  NO_LIMITS,
  type QueueLimits,
  RATE_BURST_MS,
} from "../../model/jobs.ts";
import type {
  AckResults,
  Broker,
  BrokerSession,
  BrokerSettings,
  BrokerStats,
  CancelOutcome,
  ControlAction,
  Delivery,
  GetOptions,
  HeldItem,
  ItemPage,
  ItemsQuery,
  JobOptions,
  PeekedItem,
  ProgressReport,
  PutIds,
  PutOptions,
  SessionInfo,
  SessionView,
} from "../broker.ts";
import { checkItemsQuery, CONTROL_ACTIONS, MAX_HELD_LISTED, STATS_QUEUE_LIMIT } from "../broker.ts";
import {
  BrokerClosedError,
  DatabaseUnavailableError,
  MemoryFullError,
  NotSavedError,
  QueueFullError,
  SessionClosedError,
  TooManyQueuesError,
} from "../errors.ts";
import { Telemetry } from "../telemetry.ts";
import { byteaArray, intArray, textArray } from "./arrays.ts";
import { Batcher } from "./batcher.ts";
import { DEFAULT_PG_SCHEMA, FRONT_SPACING, migrate, quoteSchema } from "./schema.ts";
import { ackVariant, currentProgress, type Statements, statements } from "./statements.ts";

/** Default most queues (as the local broker's). */
const DEFAULT_MAX_QUEUES = 100_000;

/** How often a master records that it lives, in ms. */
export const DEFAULT_HEARTBEAT_MS = 1_000;

/** After how long without a heartbeat a master counts as dead, in ms. */
export const DEFAULT_MASTER_TIMEOUT_MS = 5_000;

/**
 * How often waiting gets and held puts look for work without a hint, in ms.
 * Hints (`NOTIFY`) are only lost while the listening connection is down, and
 * every reconnection of it polls at once, so the poll is a safety net: it
 * costs one claim per waited queue per interval, which must stay cheap with
 * thousands of idle queues.
 */
export const DEFAULT_POLL_MS = 2_000;

/** How often expired leases are looked for, at the latest, in ms. */
const SWEEP_MS = 1_000;

/**
 * Counter lanes (see schema.ts): each statement a master may have in flight
 * at once counts in a row of its own. Put batches use lanes from
 * `PUT_LANES`, ack batches from `ACK_LANES` (one per batch in flight);
 * admitting held puts, nacks, and the slow path (fail, expiry, close, admin)
 * one each.
 */
const PUT_LANES = 0;
const ACK_LANES = 8;
const ADMIT_LANE = 16;
const NACK_LANE = 17;
const SLOW_LANE = 18;
const KEYED_LANE = 19;

/** Connections of the pool that claims, committing asynchronously. */
const CLAIM_POOL_SIZE = 2;

/** Connections of the pool for admin calls, heartbeats, sweeps and the slow path. */
const ADMIN_POOL_SIZE = 2;

/**
 * Planner settings of the hot pools: their statements find rows by the
 * primary key or walk `items_claimable` in queue order, and that plan is
 * right whatever the table's statistics say. A table created seconds ago
 * has none (autovacuum analyzes it a minute later at best), and the
 * planner then sorts the whole queue for every claim: measured three times
 * slower on a queue of 100,000.
 */
const PINNED_PLANS: Record<string, string> = { enable_seqscan: "off", enable_bitmapscan: "off" };

/** Connections of the hot pool (puts, acks) by default: a master has this, the claim and admin pools, and a listener. */
export const DEFAULT_POOL_SIZE = 6;

/** How long connecting to the database may take, in seconds. */
const CONNECT_TIMEOUT_S = 10;

/**
 * Claims in flight at once per queue: while one is written, the next
 * getters' claim is already on its way (rows locked by one are skipped by
 * the other).
 */
const CLAIMS_PER_QUEUE = 2;

/** Most rows one claim leases. */
const MAX_CLAIM_ROWS = 1_000;

/** Most bytes of values one claim hands out (one reply's worth). */
const MAX_CLAIM_BYTES = 16 * 1024 * 1024;

/** Most items per put or ack batch. */
const MAX_BATCH_ITEMS = 2_000;

/** Rows one expiry sweep returns at most. */
const SWEEP_ROWS = 1_000;

/** Slack after a lease's expiry before the sweep that returns it, in ms. */
const EXPIRY_SLACK_MS = 2;

/** Longest single wait `setTimeout` supports, in ms. */
const MAX_TIMER_MS = 2_147_483_647;

/** Queue names a master remembers as existing (for the queue cap), at most. */
const KNOWN_QUEUES_LIMIT = 100_000;

/** Front-end forms of items (Python tuples...) a master keeps in memory, at most. */
const ORIGINALS_KEPT = 100_000;

/** Why an item's lease ended when its session closed. */
const CLOSED_REASON = "its connection closed before it was acked";

/** Why an item's lease ended when it ran out. */
const EXPIRED_REASON = "its lease expired before it was acked";

/**
 * First character of a cancel notice on the hint channel (`!OWNER ID,ID,...`):
 * a queue hint starts with the master's id, a digit.
 */
const CANCEL_MARK = "!";

/**
 * Starts a notice that asks the master holding a session to pass an action
 * to it (`?SESSION ACTION`, see {@link PostgresBroker.control}).
 */
const CONTROL_MARK = "?";

/** Dead letters one transaction of a requeue of all of them moves. */
const REQUEUE_CHUNK = 1_000;

/** Sessions whose last control action this master remembers (those it sent or received). */
const CONTROLLED_KEPT = 10_000;

/** Most characters of ids in one cancel notice (a notification's payload is at most 8,000 bytes). */
const NOTICE_IDS_CHARS = 7_000;

/** How often the history, key holds and group rotation records are pruned, at most, in ms. */
const PRUNE_MS = 1_000;

/** Advisory lock key (two int4) of the prune: one master prunes at a time. */
const PRUNE_LOCK = [0x7471, 0x0002] as const;

/** Times a put with unique keys looks again for a key whose item went away meanwhile. */
const KEYED_PUT_ROUNDS = 5;

/**
 * Longest a master waits to tell the others that leases of a queue with a
 * concurrency limit ended, in ms: the ends of leases meanwhile go in one
 * notification, not one per ack.
 */
const TELL_MS = 5;

/** Queues a master remembers as having limits or groups (their claim path), at most. */
const SPECIAL_QUEUES_LIMIT = 100_000;

/** Options of {@link openPostgresBroker}. */
export interface PostgresBrokerOptions extends JobOptions {
  /** The database: `postgres://USER@HOST:PORT/DB` (no password in it: see {@link password}). */
  url: string;
  /** The password, when the server asks for one (else `PGPASSWORD`, else none). */
  password?: string;
  /** The schema taskq keeps its tables in (`taskq` by default). */
  schema?: string;
  /** Lease length for gets that name none, in ms. */
  defaultLeaseMs?: number;
  /** How failed items are retried and when they are dead-lettered. */
  retry?: Partial<RetryPolicy>;
  /** Items a queue may hold before puts to it wait (0, the default: no limit). */
  maxQueueLength?: number;
  /** Most queues at once (100 000 by default; 0: no limit). */
  maxQueues?: number;
  /**
   * Most bytes of item values the database may hold for these queues
   * (`Infinity`, the default: no limit); a put past it is refused with
   * {@link MemoryFullError}. Checked before each put, so masters putting at
   * the same moment may pass it by a batch each.
   */
  maxStoredBytes?: number;
  /** This process's memory budget, for the front-ends' buffers (bytes). */
  maxMemoryBytes?: number;
  /** This master's name in the database (host and pid by default). */
  masterName?: string;
  /** How often this master records that it lives, in ms. */
  heartbeatMs?: number;
  /** After how long without a heartbeat another master counts as dead, in ms. */
  masterTimeoutMs?: number;
  /** How often waiting gets and held puts look for work without a hint, in ms. */
  pollMs?: number;
  /** Database connections to use. */
  poolSize?: number;
  /** Where to report the database going away and coming back. */
  log?: Logger;
}

/** Per-queue counter deltas, added to the `counters` table in one statement. */
interface CounterDelta {
  put: number;
  /** Items taken out of the queue by an admin call (drop, requeue of a dead letter). */
  removed: number;
  acked: number;
  nacked: number;
  expired: number;
  failed: number;
  dead: number;
  bytes: number;
}

/** A row of an item being settled by the slow path. */
interface SettleRow {
  id: number;
  queue: string;
  attempts: number;
  max_attempts: number;
  last_error: string | null;
  value: Uint8Array;
  now: number;
}

/** A get waiting for its turn in a claim. */
interface GetRequest {
  readonly session: PgSession;
  readonly max: number;
  readonly leaseMs: number;
  /** Whether it waits when nothing is ready. */
  readonly waits: boolean;
  readonly resolve: (items: readonly Delivery[]) => void;
  readonly reject: (error: unknown) => void;
  timer?: ReturnType<typeof setTimeout>;
  /** Its time ran out (resolved with none unless a claim in flight includes it). */
  timedOut: boolean;
  /** Part of the claim in flight. */
  claiming: boolean;
  done: boolean;
}

/** The gets waiting on one queue, served first come, first served. */
interface GetQueue {
  readonly name: string;
  requests: GetRequest[];
  /** Claims in flight (at most {@link CLAIMS_PER_QUEUE}). */
  claims: number;
  /**
   * The last claim got all it asked for: more claims may run at once. After
   * one that came back short, claims run one at a time, so a getter that
   * came later never overtakes an earlier one whose claim missed a put.
   */
  plentiful: boolean;
  /** Another claim is wanted once this one ends. */
  again: boolean;
  /** The queue has limits or grouped items: it claims through `claim_special`, one claim at a time. */
  special: boolean;
  /** The last claim got less than it asked for because of a concurrency limit: a lease's end serves it. */
  blocked: boolean;
  /** Timer for the next delayed item's time. */
  timer?: ReturnType<typeof setTimeout>;
  timerAt: number;
}

/** A put waiting for room in a full queue. */
interface HeldPut {
  readonly session: PgSession;
  readonly values: Uint8Array[];
  readonly options: PutOptions;
  readonly resolve: (ids: PutIds) => void;
  readonly reject: (error: unknown) => void;
  timer?: ReturnType<typeof setTimeout>;
  done: boolean;
}

/** The puts held for room in one queue. */
interface PutQueue {
  readonly name: string;
  puts: HeldPut[];
  admitting: boolean;
  again: boolean;
}

/** One put in a put batch. */
interface PutRequest {
  readonly queue: string;
  readonly values: readonly Uint8Array[];
  readonly delayMs: number;
  readonly maxAttempts: number;
  readonly priority: number;
  readonly group: string | null;
}

/** One ack in an ack batch. */
interface AckRequest {
  readonly owner: string;
  readonly ids: readonly number[];
  readonly attempts: readonly number[];
  /** Some item acked has a key hold to record. */
  readonly holds: boolean;
  readonly results?: {
    queue: string;
    values: Uint8Array[];
    /** The acked id each result belongs to, and that id's attempt in this ack. */
    sources: number[];
    attempts: number[];
  };
}

/** A put of encoded `values` to `queue` with `options`, as the put statement takes it. */
function putRequest(
  queue: string,
  values: readonly Uint8Array[],
  options: PutOptions,
): PutRequest {
  return {
    queue,
    values,
    delayMs: Math.max(0, options.delayMs ?? 0),
    maxAttempts: options.maxAttempts ?? 0,
    priority: options.priority ?? 0,
    group: options.group ?? null,
  };
}

/** Whether a put names unique keys (so it takes the keyed path, not the batch). */
function keyed(options: PutOptions): boolean {
  return options.keys !== undefined && options.keys.some((key) => key !== undefined);
}

/**
 * Checks a put's priority, group, keys and key hold (what a front-end
 * validated already; a program calling the broker directly may not have).
 * @throws {RangeError} naming the first one out of range.
 */
function checkPutOptions(options: PutOptions, count: number): void {
  if (options.priority !== undefined) checkPriority(options.priority);
  if (options.group !== undefined) checkLabel(options.group, "group", MAX_GROUP_LENGTH);
  const keys = options.keys;
  if (keys !== undefined) {
    if (keys.length !== count) {
      throw new RangeError("a put needs exactly one key (or none) per value");
    }
    for (const key of keys) if (key !== undefined) checkLabel(key, "key", MAX_KEY_LENGTH);
  }
  const hold = options.keyHoldMs;
  if (hold !== undefined && (!Number.isInteger(hold) || hold < 0 || hold > MAX_TIMER_MS)) {
    throw new RangeError(`keyHoldMs must be an integer from 0 to ${MAX_TIMER_MS}`);
  }
}

/**
 * Checks a progress report.
 * @throws {RangeError} when its percent is not a number from 0 to 100 or its message is too long.
 */
function checkProgress(report: ProgressReport): void {
  const { percent, message } = report;
  if (
    percent !== undefined &&
    (typeof percent !== "number" || !Number.isFinite(percent) || percent < 0 || percent > 100)
  ) {
    throw new RangeError("a progress percent must be a number from 0 to 100");
  }
  if (
    message !== undefined && (typeof message !== "string" || message.length > MAX_PROGRESS_MESSAGE)
  ) {
    throw new RangeError(
      `a progress message must be a string of at most ${MAX_PROGRESS_MESSAGE} characters`,
    );
  }
}

/** A whole number of at least 0 from an option, or `fallback`. */
function countOption(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(`${what} must be an integer of at least 0, not ${value}`);
  }
  return value;
}

/**
 * A put with unique keys found, round after round, that a key it could not
 * insert had no item by the time it looked (items with its keys finishing
 * as fast as it tried): it added nothing for them.
 */
class KeyChurnError extends Error {
  /** Creates the error for a put to `queue`. */
  constructor(queue: string) {
    super(
      `a put to ${queue} found its unique keys taken and freed ${KEYED_PUT_ROUNDS} times over; ` +
        `try again`,
    );
    this.name = "KeyChurnError";
  }
}

/** Times a statement rolled back by a deadlock or a serialization failure is tried again. */
const RETRIES = 3;

/** Whether `error` is a deadlock or serialization failure: the statement was rolled back whole. */
function isRetryable(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return code === "40P01" || code === "40001";
}

/**
 * Runs `work`, again (up to {@link RETRIES} times) when the database rolled
 * it back for a deadlock or a serialization failure: nothing of it was kept,
 * so running it again is safe.
 */
async function retrying<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (attempt > RETRIES || !isRetryable(error)) throw error;
    }
  }
}

/** Whether `error` means the database could not be reached or went away. */
function isUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  if (typeof code !== "string") return false;
  return code.startsWith("CONNECT") || code === "ECONNREFUSED" || code === "ECONNRESET" ||
    code === "ENOTFOUND" || code === "EPIPE" || code === "ETIMEDOUT" ||
    code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03";
}

/** The error a call rejects with when the database failed under it. */
function databaseError(error: unknown, url: string): Error {
  if (error instanceof Error && !isUnavailable(error)) return error;
  return new DatabaseUnavailableError(url, error);
}

/**
 * A `bytea` the client returned, as a plain `Uint8Array` view (the client
 * returns a `Buffer`, which the codec would hand on as binary values).
 */
function plain(value: unknown): Uint8Array {
  const v = value as Uint8Array;
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** This machine's name, or "host" without the permission to read it. */
function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "host";
  }
}

/** A fresh counter delta. */
function delta(): CounterDelta {
  return { put: 0, removed: 0, acked: 0, nacked: 0, expired: 0, failed: 0, dead: 0, bytes: 0 };
}

/** The delta of `queue` in `deltas`, created on first use. */
function deltaOf(deltas: Map<string, CounterDelta>, queue: string): CounterDelta {
  let d = deltas.get(queue);
  if (d === undefined) deltas.set(queue, d = delta());
  return d;
}

/** A `limits` row as {@link QueueLimits}. */
function limitsOf(row: postgres.Row): QueueLimits {
  return {
    rateCount: Number(row.rate_count),
    ratePeriodMs: Number(row.rate_period_ms),
    concurrency: Number(row.concurrency),
    groupConcurrency: Number(row.group_concurrency),
  };
}

/** Whether a queue with these limits has any (a rate, a concurrency or a group concurrency). */
function hasAny(limits: QueueLimits): boolean {
  return limits.rateCount > 0 || limits.concurrency > 0 || limits.groupConcurrency > 0;
}

/** Sorts by name, as every stats listing is. */
function byName(a: QueueStats, b: QueueStats): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * Opens a PostgreSQL broker: connects, creates or migrates the schema,
 * registers this master and starts its heartbeat.
 * @throws {DatabaseUnavailableError} when the database cannot be reached.
 * @throws {StoreVersionError} when the database's schema is newer than this taskq.
 */
export async function openPostgresBroker(options: PostgresBrokerOptions): Promise<PostgresBroker> {
  const schema = options.schema ?? DEFAULT_PG_SCHEMA;
  quoteSchema(schema);
  const shown = redactUrl(options.url);
  const password = options.password ?? Deno.env.get("PGPASSWORD");
  const connect = (max: number, settings: Record<string, string>) =>
    postgres(options.url, {
      max,
      ...(password === undefined ? {} : { password }),
      connect_timeout: CONNECT_TIMEOUT_S,
      // Reconnect at once when a request needs the database: the client's own backoff grows to
      // 20 s and is shared by the pool, so after an outage a master would stall that long.
      // Requests (not a loop) drive reconnections, so this does not spin.
      backoff: () => 0,
      idle_timeout: 0,
      prepare: true,
      // Array parameters are literals built here (arrays.ts) and no statement returns an
      // array, so the client's lookup of array types (a catalog join, slow under the hot
      // pools' planner settings) is not needed.
      fetch_types: false,
      onnotice: () => {},
      connection: { application_name: "taskq", ...settings },
      types: {
        bigint: {
          to: 20,
          from: [20],
          serialize: (x: number) => String(x),
          parse: (x: string) => Number(x),
        },
      },
    });
  const sql = connect(ADMIN_POOL_SIZE, {});
  const hotSql = connect(options.poolSize ?? DEFAULT_POOL_SIZE, PINNED_PLANS);
  // Claims commit without waiting for the WAL flush: a claim lost in a database crash only
  // leaves its rows unleased, so they are served again (at least once, as always).
  const claimSql = connect(CLAIM_POOL_SIZE, { ...PINNED_PLANS, synchronous_commit: "off" });
  const end = () =>
    Promise.all([sql, hotSql, claimSql].map((pool) => pool.end({ timeout: 0 }))).catch(() => {});
  try {
    await Promise.all([sql, hotSql, claimSql].map((pool) => pool.unsafe("SELECT 1")));
  } catch (error) {
    await end();
    throw new DatabaseUnavailableError(shown, error);
  }
  try {
    await migrate(sql, schema);
    const broker = new PostgresBroker(
      { admin: sql, hot: hotSql, claims: claimSql },
      schema,
      shown,
      options,
    );
    await broker.start();
    return broker;
  } catch (error) {
    await end();
    throw databaseError(error, shown);
  }
}

/** The broker over one PostgreSQL database; see {@link openPostgresBroker}. */
export class PostgresBroker implements Broker {
  /** Its fixed settings. */
  readonly settings: BrokerSettings;
  /** What it counts about itself. */
  readonly telemetry: Telemetry = new Telemetry();
  /** Its id in the database's `masters` table (0 until started). */
  masterId = 0;
  /** The database, as messages show it (no password). */
  readonly url: string;
  /** The pool of the rare and admin statements (default planner settings). */
  readonly sql: postgres.Sql;
  /** The pool of puts, acks, nacks and extends (plans pinned to the indexes). */
  readonly #hotSql: postgres.Sql;
  /** The pool of claims (plans pinned; asynchronous commit). */
  readonly #claimSql: postgres.Sql;
  readonly retry: RetryPolicy;
  readonly maxStoredBytes: number;
  readonly #s: string;
  readonly #st: Statements;
  readonly #schema: string;
  readonly #log: Logger;
  readonly #options: PostgresBrokerOptions;
  readonly #sessions = new Map<string, PgSession>();
  readonly #getQueues = new Map<string, GetQueue>();
  readonly #putQueues = new Map<string, PutQueue>();
  readonly #known = new Set<string>();
  readonly #originals = new Map<number, unknown>();
  readonly #claims = new Set<Promise<void>>();
  readonly #putBatcher: Batcher<PutRequest, number[]>;
  readonly #ackBatcher: Batcher<AckRequest, Set<number>>;
  #channel = "";
  #prefix = "";
  #sessionCount = 0;
  /** The database's clock minus this process's, in ms. */
  #skew = 0;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #poll: ReturnType<typeof setInterval> | undefined;
  #sweepTimer: ReturnType<typeof setTimeout> | undefined;
  #sweepAt = Infinity;
  #sweeping = false;
  #listener: { unlisten(): Promise<void> } | undefined;
  #closing: Promise<void> | undefined;
  #down = false;
  /** Since when (this process's clock) heartbeats have succeeded without a gap; unset after a failure. */
  #aliveSince: number | undefined = Date.now();
  readonly #dirtySessions = new Set<PgSession>();
  /** Queues seen with limits or grouped items: their gets claim through `claim_special`. */
  readonly #special = new Set<string>();
  /**
   * Queues seen with a concurrency or group concurrency limit (a subset of
   * {@link #special}): the end of a lease of theirs is told to every master.
   */
  readonly #slotted = new Set<string>();
  /** Finished jobs whose records are kept (0: none written). */
  readonly #historyCount: number;
  /** How long a finished job's record is kept, in ms. */
  readonly #historyMs: number;
  /** When (this process's clock) the history was last pruned. */
  #prunedAt = 0;
  /** Queues whose change {@link #tell} is to tell the other masters, and its timer. */
  readonly #toTell = new Set<string>();
  #tellTimer: ReturnType<typeof setTimeout> | undefined;
  /**
   * When this master started (ms since the epoch). Counters live in the
   * database, shared by every master, so they outlive it.
   */
  readonly #startedAt = Date.now();
  /** The last control action sent to sessions, by id, as this master knows it. */
  readonly #controlled = new Map<string, ControlAction>();

  /** Wraps a connected, migrated database; use {@link openPostgresBroker}. */
  constructor(
    pools: { admin: postgres.Sql; hot: postgres.Sql; claims: postgres.Sql },
    schema: string,
    url: string,
    options: PostgresBrokerOptions,
  ) {
    this.sql = pools.admin;
    this.#hotSql = pools.hot;
    this.#claimSql = pools.claims;
    this.url = url;
    this.#schema = schema;
    this.#s = quoteSchema(schema);
    this.#st = statements(this.#s);
    this.#log = options.log ?? silentLogger;
    this.#options = options;
    const retry = options.retry ?? {};
    this.retry = {
      maxAttempts: retry.maxAttempts ?? DEFAULT_RETRY_POLICY.maxAttempts,
      backoffBaseMs: retry.backoffBaseMs ?? DEFAULT_RETRY_POLICY.backoffBaseMs,
      backoffMaxMs: retry.backoffMaxMs ?? DEFAULT_RETRY_POLICY.backoffMaxMs,
      maxAttemptsByQueue: retry.maxAttemptsByQueue,
    };
    this.maxStoredBytes = options.maxStoredBytes ?? Infinity;
    this.#historyCount = countOption(
      options.historyCount,
      DEFAULT_SHARED_HISTORY_COUNT,
      "historyCount",
    );
    this.#historyMs = countOption(options.historyMs, DEFAULT_HISTORY_MS, "historyMs");
    for (const changes of Object.values(options.limits ?? {})) checkLimits(changes);
    this.settings = {
      defaultLeaseMs: options.defaultLeaseMs ?? DEFAULT_LEASE_MS,
      maxQueueLength: options.maxQueueLength ?? 0,
      maxMemoryBytes: options.maxMemoryBytes ?? Infinity,
      maxQueues: options.maxQueues ?? DEFAULT_MAX_QUEUES,
    };
    const pool = options.poolSize ?? DEFAULT_POOL_SIZE;
    const inFlight = Math.max(1, Math.floor(pool / 3));
    this.#putBatcher = new Batcher((batch, lane) => this.#writePuts(batch, PUT_LANES + lane), {
      maxInFlight: inFlight,
      maxBatchWeight: MAX_BATCH_ITEMS,
      weigh: (r) => r.values.length,
    });
    this.#ackBatcher = new Batcher((batch, lane) => this.#writeAcks(batch, ACK_LANES + lane), {
      maxInFlight: inFlight,
      maxBatchWeight: MAX_BATCH_ITEMS,
      weigh: (r) => r.ids.length,
    });
  }

  /** The schema it keeps its tables in. */
  get schema(): string {
    return this.#schema;
  }

  /** Registers this master, listens for the others' hints, and starts the timers. */
  async start(): Promise<void> {
    const s = this.#s;
    const name = this.#options.masterName ?? `${hostname()}:${Deno.pid}`;
    const before = Date.now();
    const [row] = await this.sql.unsafe(
      `INSERT INTO ${s}.masters (name, started_at, seen_at)
       VALUES ($1, ${s}.now_ms(), ${s}.now_ms()) RETURNING id, seen_at`,
      [name],
    );
    this.#skew = Number(row.seen_at) - Math.round((before + Date.now()) / 2);
    this.masterId = Number(row.id);
    this.#channel = `${this.#schema}_items`;
    this.#prefix = `${this.masterId} `;
    // Called again on each reconnection of the listening connection: hints sent while it was
    // down are lost, so everything waiting looks for work at once.
    this.#listener = await this.sql.listen(
      this.#channel,
      (payload) => this.#hint(payload),
      () => this.#pollAll(),
    );
    const heartbeatMs = this.#options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.#heartbeat = setInterval(() => this.#beat(), heartbeatMs);
    const pollMs = this.#options.pollMs ?? DEFAULT_POLL_MS;
    this.#poll = setInterval(() => this.#pollAll(), pollMs);
    for (const [queue, changes] of Object.entries(this.#options.limits ?? {})) {
      await this.setLimits(queue, changes);
    }
    this.#armSweep(this.localNow() + SWEEP_MS);
  }

  /** This process's estimate of the database's clock. */
  localNow(): number {
    return Date.now() + this.#skew;
  }

  /** The database going away or coming back, logged once each way. */
  #health(error?: unknown): void {
    if (this.#closing) return; // its own pools ending
    if (error !== undefined && isUnavailable(error)) {
      if (!this.#down) {
        this.#down = true;
        this.#log.warn("the queue database is unreachable; requests fail until it returns", {
          database: this.url,
          error: (error as Error)?.message ?? String(error),
        });
      }
    } else if (error === undefined && this.#down) {
      this.#down = false;
      this.#log.info("the queue database is reachable again", { database: this.url });
    }
  }

  /** Runs `work` against the database, turning its failures into the broker's errors. */
  async #db<T>(work: () => Promise<T>): Promise<T> {
    try {
      const result = await work();
      this.#health();
      return result;
    } catch (error) {
      this.#health(error);
      throw databaseError(error, this.url);
    }
  }

  /** A hint from another master: queue `queue` changed, or items a session here held were cancelled. */
  #hint(payload: string): void {
    if (payload.startsWith(CONTROL_MARK)) {
      const space = payload.indexOf(" ");
      if (space < 0) return;
      const action = payload.slice(space + 1) as ControlAction;
      if (!CONTROL_ACTIONS.includes(action)) return;
      this.#sessions.get(payload.slice(CONTROL_MARK.length, space))?.control(action);
      return;
    }
    if (payload.startsWith(CANCEL_MARK)) {
      const space = payload.indexOf(" ");
      if (space < 0) return;
      const ids = payload.slice(space + 1).split(",").map(Number);
      this.#revoke(payload.slice(CANCEL_MARK.length, space), ids);
      return;
    }
    if (payload.startsWith(this.#prefix)) return;
    const space = payload.indexOf(" ");
    if (space < 0) return;
    this.#changed(payload.slice(space + 1));
  }

  /** Queue `queue` changed: serve its waiting gets and held puts. */
  #changed(queue: string): void {
    if (this.#getQueues.has(queue)) this.dispatch(queue);
    if (this.#putQueues.has(queue)) this.#admit(queue);
  }

  /** The poll: every waiting get and held put looks for work, whatever hints were lost. */
  #pollAll(): void {
    for (const name of this.#getQueues.keys()) this.dispatch(name);
    for (const name of this.#putQueues.keys()) this.#admit(name);
  }

  /** Records that this master lives, and what its sessions were doing. */
  async #beat(): Promise<void> {
    if (this.#closing) return;
    const s = this.#s;
    const waiting: Record<string, number> = {};
    for (const [name, q] of this.#getQueues) {
      const n = q.requests.filter((r) => r.waits && !r.done).length;
      if (n > 0) waiting[name] = n;
    }
    const dirty = [...this.#dirtySessions];
    this.#dirtySessions.clear();
    try {
      const before = Date.now();
      const rows = await this.sql.unsafe(
        `UPDATE ${s}.masters SET seen_at = ${s}.now_ms(), waiting = ($2::text)::jsonb WHERE id = $1
         RETURNING seen_at`,
        [this.masterId, JSON.stringify(waiting)],
      );
      if (rows.length === 0 && !this.#closing) {
        this.#log.warn(
          "the other masters took this master for dead (no heartbeat in time): its leases were " +
            "returned; registering again",
          { master: this.masterId },
        );
        await this.sql.unsafe(
          `INSERT INTO ${s}.masters (id, name, started_at, seen_at)
           VALUES ($1, $2, ${s}.now_ms(), ${s}.now_ms()) ON CONFLICT (id) DO NOTHING`,
          [this.masterId, this.#options.masterName ?? `master ${this.masterId}`],
        );
        for (const session of this.#sessions.values()) dirty.push(session);
      } else if (rows.length > 0) {
        this.#skew = Number(rows[0].seen_at) - Math.round((before + Date.now()) / 2);
      }
      if (dirty.length > 0 && !this.#closing) {
        const live = dirty.filter((session) => !session.closed);
        await this.sql.unsafe(
          `INSERT INTO ${s}.sessions AS t (id, master, name, address, connected_at, last_seen, waiting)
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[],
             $6::bigint[], $7::int[])
           ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, waiting = excluded.waiting`,
          [
            textArray(live.map((x) => x.id)),
            intArray(live.map(() => this.masterId)),
            textArray(live.map((x) => x.name)),
            textArray(live.map((x) => x.address)),
            intArray(live.map((x) => x.connectedAt)),
            intArray(live.map((x) => x.lastSeenAt + this.#skew)),
            intArray(live.map((x) => this.#waitingOf(x))),
          ],
        );
      }
      this.#aliveSince ??= Date.now();
      this.#health();
    } catch (error) {
      this.#aliveSince = undefined;
      for (const session of dirty) this.#dirtySessions.add(session);
      this.#health(error);
    }
  }

  /** Gets `session` waits on. */
  #waitingOf(session: PgSession): number {
    let n = 0;
    for (const q of this.#getQueues.values()) {
      for (const r of q.requests) if (r.session === session && r.waits && !r.done) n++;
    }
    return n;
  }

  /**
   * Keeps the front-end forms of items this master put (see
   * {@link Delivery.original}), in memory, for their deliveries through this
   * master; at most {@link ORIGINALS_KEPT}, the oldest forgotten first. An
   * item taken through another master arrives in its plain form.
   */
  keepOriginals(ids: PutIds, originals: readonly unknown[]): void {
    const existing = ids.existing === undefined ? undefined : new Set(ids.existing);
    for (let i = 0; i < ids.length; i++) {
      if (originals[i] === undefined || existing?.has(i)) continue;
      this.#originals.set(ids[i], originals[i]);
      if (this.#originals.size > ORIGINALS_KEPT) {
        this.#originals.delete(this.#originals.keys().next().value as number);
      }
    }
  }

  /** Forgets the front-end forms of items that are gone. */
  forgetOriginals(ids: Iterable<number>): void {
    if (this.#originals.size === 0) return;
    for (const id of ids) this.#originals.delete(id);
  }

  /** Marks a session's last-seen time or waiting count for the next heartbeat. */
  dirty(session: PgSession): void {
    this.#dirtySessions.add(session);
  }

  // ------------------------------------------------------------------ sessions

  async open(info: SessionInfo): Promise<BrokerSession> {
    if (this.#closing) throw new BrokerClosedError();
    const id = `${this.masterId}.${++this.#sessionCount}`;
    const connectedAt = this.localNow();
    await this.#db(() =>
      this.sql.unsafe(
        `INSERT INTO ${this.#s}.sessions (id, master, name, address, connected_at, last_seen)
         VALUES ($1, $2, $3, $4, $5, $5)`,
        [id, this.masterId, info.name, info.address, connectedAt],
      )
    );
    if (this.#closing) throw new BrokerClosedError();
    const session = new PgSession(this, id, info, connectedAt);
    this.#sessions.set(id, session);
    return session;
  }

  /** Forgets a closed session: its leases go back, its row goes. */
  async closeSession(session: PgSession): Promise<void> {
    for (const q of this.#getQueues.values()) {
      for (const r of q.requests) {
        if (r.session === session && !r.done && !r.claiming) this.#finish(q, r, []);
      }
    }
    for (const pq of this.#putQueues.values()) {
      for (const p of pq.puts) {
        if (p.session === session && !p.done) this.#reject(pq, p, new SessionClosedError());
      }
    }
    // A claim or an ack of this session in flight: let it land, then return what it leased.
    await Promise.allSettled([...session.pending]);
    for (const q of [...this.#getQueues.values()]) {
      for (const r of q.requests) if (r.session === session && !r.done) this.#finish(q, r, []);
    }
    this.#sessions.delete(session.id);
    this.#dirtySessions.delete(session);
    try {
      await this.#settle(
        `lease_owner = $1`,
        [session.id],
        { kind: "release", reason: CLOSED_REASON },
        false,
      );
      await this.sql.unsafe(`DELETE FROM ${this.#s}.sessions WHERE id = $1`, [session.id]);
      this.#health();
    } catch (error) {
      // The database is away: its leases run out, and the sessions row goes with this
      // master's when it stops (or is found dead).
      this.#health(error);
    }
  }

  // ------------------------------------------------------------------ puts

  /**
   * Checks a client's put against the queue cap and the stored-bytes budget.
   * @throws {TooManyQueuesError} when the queue would be one too many.
   * @throws {MemoryFullError} when the values would take the database past its budget.
   */
  async admit(queue: string, values: readonly Uint8Array[]): Promise<void> {
    await this.checkQueue(queue);
    if (this.maxStoredBytes === Infinity) return;
    let bytes = 0;
    for (const v of values) bytes += v.length;
    const [row] = await this.#db(() =>
      this.sql.unsafe(`SELECT coalesce(sum(bytes), 0) AS held FROM ${this.#s}.counters`)
    );
    const held = Number(row.held);
    if (held + bytes > this.maxStoredBytes) {
      throw new MemoryFullError(held, bytes, this.maxStoredBytes, "database");
    }
  }

  /**
   * Checks that `queue` exists or may be created under the queue cap
   * (forgetting empty, unused queues first if that makes room).
   * @throws {TooManyQueuesError} when it would be one too many.
   */
  async checkQueue(queue: string): Promise<void> {
    const limit = this.settings.maxQueues ?? 0;
    if (limit === 0 || this.#known.has(queue)) return;
    const s = this.#s;
    const count = async () => {
      const [row] = await this.sql.unsafe(
        `SELECT EXISTS (SELECT 1 FROM ${s}.queues WHERE name = $1) AS present,
                (SELECT count(*) FROM ${s}.queues) AS n`,
        [queue],
      );
      return row as unknown as { present: boolean; n: number };
    };
    await this.#db(async () => {
      let row = await count();
      if (!row.present && Number(row.n) >= limit) {
        await this.sql.unsafe(
          `DELETE FROM ${s}.queues q WHERE NOT EXISTS (SELECT 1 FROM ${s}.items WHERE queue = q.name)
             AND NOT EXISTS (SELECT 1 FROM ${s}.paused WHERE name = q.name)
             AND NOT (q.name = ANY($1::text[]))`,
          [textArray([...this.#getQueues.keys(), ...this.#putQueues.keys()])],
        );
        this.#known.clear();
        row = await count();
      }
      if (!row.present && Number(row.n) >= limit) throw new TooManyQueuesError(queue, limit);
    });
    if (this.#known.size >= KNOWN_QUEUES_LIMIT) this.#known.clear();
    this.#known.add(queue);
  }

  /** Writes a batch of puts in one statement; resolves with each put's ids. */
  async #writePuts(batch: PutRequest[], lane: number): Promise<number[][]> {
    const started = performance.now();
    const rows = await retrying(() =>
      this.#hotSql.unsafe(this.#st.put, this.#putParams(batch, lane))
    );
    this.telemetry.observeCommit(performance.now() - started);
    const out: number[][] = [];
    let k = 0;
    for (const put of batch) {
      const ids = new Array<number>(put.values.length);
      for (let i = 0; i < ids.length; i++) ids[i] = Number(rows[k++].id);
      out.push(ids);
    }
    return out;
  }

  /** The put statement's parameters for `puts`, counted in `lane`. */
  #putParams(puts: readonly PutRequest[], lane: number): never[] {
    const queues: string[] = [];
    const values: Uint8Array[] = [];
    const delays: number[] = [];
    const maxes: number[] = [];
    const priorities: number[] = [];
    const groups: (string | null)[] = [];
    let prioritized = false;
    let grouped = false;
    for (const put of puts) {
      if (put.priority !== 0) prioritized = true;
      if (put.group !== null) grouped = true;
      for (const value of put.values) {
        queues.push(put.queue);
        values.push(value);
        delays.push(put.delayMs);
        maxes.push(put.maxAttempts);
        priorities.push(put.priority);
        groups.push(put.group);
      }
    }
    // Puts with neither priority nor group (the plain workload) send no array for them.
    return [
      textArray(queues),
      byteaArray(values),
      intArray(delays),
      intArray(maxes),
      this.masterId,
      this.#channel,
      this.#prefix,
      lane,
      prioritized ? intArray(priorities) : null,
      grouped ? textArray(groups) : null,
    ] as never[];
  }

  /**
   * Writes a put with unique keys in transaction `tx`, counted in `lane`:
   * a value whose key an item of the queue has (ready, delayed or leased),
   * or held after its item finished, adds nothing and gets that item's id;
   * a later value with the key of an earlier one in the same put gets the
   * earlier one's. The unique index settles races between masters: a key's
   * insert that conflicts reads the item it conflicted with, and when that
   * went away meanwhile, tries again.
   */
  async #putKeyedIn(
    tx: postgres.TransactionSql,
    queue: string,
    values: readonly Uint8Array[],
    options: PutOptions,
    lane: number,
  ): Promise<PutIds> {
    const keys = options.keys ?? [];
    const ids: PutIds = new Array<number>(values.length).fill(0);
    const existing = new Set<number>();
    const first = new Map<string, number>();
    let todo: number[] = [];
    values.forEach((_, i) => {
      const key = keys[i];
      if (key === undefined) todo.push(i);
      else if (!first.has(key)) {
        first.set(key, i);
        todo.push(i);
      }
    });
    const inserted = new Map<string, number>();
    for (let round = 0; todo.length > 0; round++) {
      if (round >= KEYED_PUT_ROUNDS) {
        throw new KeyChurnError(queue);
      }
      const rows = await tx.unsafe(this.#st.putKeyed, [
        queue,
        byteaArray(todo.map((i) => values[i])),
        textArray(todo.map((i) => keys[i] ?? null)),
        Math.max(0, options.delayMs ?? 0),
        options.maxAttempts ?? 0,
        options.priority ?? 0,
        options.group ?? null,
        options.keyHoldMs !== undefined && options.keyHoldMs > 0 ? options.keyHoldMs : null,
        this.masterId,
        this.#channel,
        this.#prefix,
        lane,
      ] as never[]);
      const added = new Map<string, number>();
      const live = new Map<string, number>();
      const plainIds: number[] = [];
      for (const row of rows) {
        const id = Number(row.id);
        if (row.kind === "n") {
          if (row.ukey === null) plainIds.push(id);
          else added.set(row.ukey, id);
        } else live.set(row.ukey, id);
      }
      plainIds.sort((a, b) => a - b);
      let p = 0;
      const again: number[] = [];
      for (const i of todo) {
        const key = keys[i];
        if (key === undefined) ids[i] = plainIds[p++];
        else if (added.has(key)) {
          ids[i] = added.get(key)!;
          inserted.set(key, i);
        } else if (live.has(key)) {
          ids[i] = live.get(key)!;
          existing.add(i);
        } else again.push(i);
      }
      todo = again;
    }
    if (inserted.size > 0) {
      // A key held after its item finished: looked up after the insert, in a snapshot of its
      // own, so an ack with a hold that committed while the insert waited on its row is seen.
      const held = await tx.unsafe(
        `SELECT ukey, id FROM ${this.#s}.key_holds
         WHERE queue = $1 AND ukey = ANY($2::text[]) AND until > ${this.#s}.now_ms()`,
        [queue, textArray([...inserted.keys()])],
      );
      if (held.length > 0) {
        const undo: number[] = [];
        for (const row of held) {
          const i = inserted.get(row.ukey)!;
          undo.push(ids[i]);
          ids[i] = Number(row.id);
          existing.add(i);
        }
        const gone = await tx.unsafe(
          `DELETE FROM ${this.#s}.items WHERE id = ANY($1::bigint[])
           RETURNING octet_length(value) AS bytes`,
          [intArray(undo)],
        );
        const deltas = new Map<string, CounterDelta>();
        const d = deltaOf(deltas, queue);
        for (const row of gone) {
          d.put--;
          d.bytes -= Number(row.bytes);
        }
        await this.#count(tx, deltas);
      }
    }
    values.forEach((_, i) => {
      const key = keys[i];
      if (key === undefined) return;
      const at = first.get(key)!;
      if (at !== i) {
        ids[i] = ids[at];
        existing.add(i);
      }
    });
    if (existing.size > 0) ids.existing = [...existing].sort((a, b) => a - b);
    return ids;
  }

  /** Adds encoded `values` to `queue`: through the put batcher, or with unique keys on their own. */
  async putNow(queue: string, values: Uint8Array[], options: PutOptions): Promise<PutIds> {
    try {
      const ids: PutIds = keyed(options)
        ? await retrying(() =>
          this.#hotSql.begin((tx) => this.#putKeyedIn(tx, queue, values, options, KEYED_LANE))
        )
        : await this.#putBatcher.add(putRequest(queue, values, options));
      this.#health();
      this.#known.add(queue);
      this.#changed(queue);
      if ((options.delayMs ?? 0) > 0) this.#wakeAt(queue, this.localNow() + options.delayMs!);
      return ids;
    } catch (error) {
      this.#health(error);
      throw new NotSavedError(databaseError(error, this.url));
    }
  }

  /** Holds a put for room in a full queue (when queues have a length limit). */
  holdPut(
    session: PgSession,
    queue: string,
    values: Uint8Array[],
    options: PutOptions,
  ): Promise<PutIds> {
    return new Promise<PutIds>((resolve, reject) => {
      let pq = this.#putQueues.get(queue);
      if (pq === undefined) {
        pq = { name: queue, puts: [], admitting: false, again: false };
        this.#putQueues.set(queue, pq);
      }
      const held: HeldPut = { session, values, options, resolve, reject, done: false };
      pq.puts.push(held);
      const limit = this.settings.maxQueueLength;
      if (options.roomTimeoutMs !== undefined && options.roomTimeoutMs > 0) {
        const q = pq;
        held.timer = setTimeout(
          () => this.#reject(q, held, new QueueFullError(queue, limit)),
          Math.min(options.roomTimeoutMs, MAX_TIMER_MS),
        );
      }
      this.#admit(queue);
    });
  }

  #reject(pq: PutQueue, held: HeldPut, error: unknown): void {
    if (held.done) return;
    held.done = true;
    clearTimeout(held.timer);
    held.reject(error);
    this.#tidyPuts(pq);
  }

  #tidyPuts(pq: PutQueue): void {
    pq.puts = pq.puts.filter((p) => !p.done);
    if (pq.puts.length === 0 && !pq.admitting) this.#putQueues.delete(pq.name);
  }

  /**
   * Admits held puts into `queue`, first come first served, while it has
   * room: one round at a time per queue, under an advisory lock on the
   * queue's name, so masters sharing the queue never pass its limit.
   */
  #admit(queue: string): void {
    const pq = this.#putQueues.get(queue);
    if (pq === undefined) return;
    if (pq.admitting) {
      pq.again = true;
      return;
    }
    pq.admitting = true;
    pq.again = false;
    const limit = this.settings.maxQueueLength;
    const s = this.#s;
    (async () => {
      const waiting = pq.puts.filter((p) => !p.done);
      const admitted: HeldPut[] = [];
      let ids: PutIds[] = [];
      try {
        await this.sql.begin(async (tx) => {
          await tx.unsafe(`SELECT pg_advisory_xact_lock(hashtextextended($1, 7471))`, [queue]);
          const [row] = await tx.unsafe(`SELECT count(*) AS n FROM ${s}.items WHERE queue = $1`, [
            queue,
          ]);
          let length = Number(row.n);
          for (const held of waiting) {
            if (length >= limit) break;
            admitted.push(held);
            length += held.values.length;
          }
          if (admitted.length === 0) return;
          const plain = admitted.filter((held) => !keyed(held.options));
          const puts = plain.map((held) => putRequest(queue, held.values, held.options));
          const rows = puts.length === 0
            ? []
            : await tx.unsafe(this.#st.put, this.#putParams(puts, ADMIT_LANE));
          let k = 0;
          ids = [];
          for (const held of admitted) {
            ids.push(
              keyed(held.options)
                ? await this.#putKeyedIn(tx, queue, held.values, held.options, ADMIT_LANE)
                : held.values.map(() => Number(rows[k++].id)),
            );
          }
        });
        this.#health();
        admitted.forEach((held, i) => {
          if (held.done) return;
          held.done = true;
          clearTimeout(held.timer);
          held.resolve(ids[i]);
        });
        if (admitted.length > 0) this.#changed(queue);
      } catch (error) {
        this.#health(error);
        for (const held of admitted) {
          if (held.done) continue;
          held.done = true;
          clearTimeout(held.timer);
          held.reject(new NotSavedError(databaseError(error, this.url)));
        }
      } finally {
        for (const held of waiting) {
          if (!held.done && held.options.roomTimeoutMs === 0) {
            held.done = true;
            held.reject(new QueueFullError(queue, limit));
          }
        }
        pq.admitting = false;
        this.#tidyPuts(pq);
        if (pq.again && this.#putQueues.has(queue)) this.#admit(queue);
      }
    })();
  }

  // ------------------------------------------------------------------ gets

  /** Adds a get to its queue's line and serves the line. */
  get(session: PgSession, queue: string, options: GetOptions): Promise<readonly Delivery[]> {
    return new Promise<readonly Delivery[]>((resolve, reject) => {
      let q = this.#getQueues.get(queue);
      if (q === undefined) {
        q = {
          name: queue,
          requests: [],
          claims: 0,
          plentiful: false,
          again: false,
          special: this.#special.has(queue),
          blocked: false,
          timerAt: Infinity,
        };
        this.#getQueues.set(queue, q);
      }
      const request: GetRequest = {
        session,
        max: Math.max(1, Math.min(options.max, MAX_CLAIM_ROWS)),
        leaseMs: options.leaseMs ?? this.settings.defaultLeaseMs,
        waits: options.timeoutMs > 0,
        resolve,
        reject,
        timedOut: false,
        claiming: false,
        done: false,
      };
      q.requests.push(request);
      if (request.waits) {
        const line = q;
        request.timer = setTimeout(() => {
          request.timedOut = true;
          if (!request.claiming) this.#finish(line, request, []);
        }, Math.min(options.timeoutMs, MAX_TIMER_MS));
        this.dirty(session);
      }
      this.dispatch(queue);
    });
  }

  /** Ends a get with `items`. */
  #finish(q: GetQueue, request: GetRequest, items: readonly Delivery[]): void {
    if (request.done) return;
    request.done = true;
    clearTimeout(request.timer);
    if (request.waits) this.dirty(request.session);
    request.resolve(items);
    if (q.claims === 0) this.#tidyGets(q);
  }

  #tidyGets(q: GetQueue): void {
    q.requests = q.requests.filter((r) => !r.done);
    if (q.requests.length === 0 && q.claims === 0) {
      clearTimeout(q.timer);
      this.#getQueues.delete(q.name);
    }
  }

  /**
   * Serves the gets waiting on `queue`: one claim for all of them, first
   * come first served, each row leased to the getter it is meant for.
   */
  dispatch(queue: string): void {
    const q = this.#getQueues.get(queue);
    if (q === undefined || this.#closing) return;
    if (q.claims >= (q.plentiful && !q.special ? CLAIMS_PER_QUEUE : 1)) {
      q.again = true;
      return;
    }
    const batch: GetRequest[] = [];
    const owners: string[] = [];
    const leases: number[] = [];
    for (const r of q.requests) {
      if (r.done || r.claiming) continue;
      if (owners.length + r.max > MAX_CLAIM_ROWS && batch.length > 0) break;
      batch.push(r);
      r.claiming = true;
      for (let i = 0; i < r.max; i++) {
        owners.push(r.session.id);
        leases.push(r.leaseMs);
      }
    }
    if (batch.length === 0) {
      if (q.claims === 0) this.#tidyGets(q);
      return;
    }
    q.claims++;
    q.again = false;
    const claim = this.#claim(q, batch, owners, leases);
    this.#claims.add(claim);
    for (const r of batch) r.session.pending.add(claim);
    claim.finally(() => {
      this.#claims.delete(claim);
      for (const r of batch) r.session.pending.delete(claim);
    });
  }

  async #claim(q: GetQueue, batch: GetRequest[], owners: string[], leases: number[]) {
    let rows: postgres.Row[] = [];
    let failed: unknown;
    const special = q.special;
    try {
      rows = special
        // Its updates wait for rows a cancel or a drop has locked: a deadlock with one of
        // those rolls it back whole, and it runs again.
        ? await retrying(() =>
          this.#claimSql.unsafe(this.#st.claimSpecial, [
            q.name,
            textArray(owners),
            intArray(leases),
            this.masterId,
            MAX_CLAIM_BYTES,
            RATE_BURST_MS,
          ] as never[])
        )
        : await this.#claimSql.unsafe(this.#st.claim, [
          q.name,
          owners.length,
          textArray(owners),
          intArray(leases),
          this.masterId,
          MAX_CLAIM_BYTES,
        ] as never[]);
      if (!special && rows.length === 0) {
        // The plain claim leaves a queue with limits or grouped items alone: is this one?
        const [row] = await this.#claimSql.unsafe(this.#st.special, [q.name]);
        if (row.yes === true) rows = [{ id: null, special: true } as unknown as postgres.Row];
      }
      this.#health();
    } catch (error) {
      failed = error;
      this.#health(error);
    }
    // A row without an id says how the queue claims (limits or groups, or neither) and when
    // its rate limit allows the next delivery.
    let switched = false;
    let nextAt: number | undefined;
    const leased: postgres.Row[] = [];
    for (const row of rows) {
      if (row.id !== null) {
        leased.push(row);
        continue;
      }
      const isSpecial = row.special === true;
      if (isSpecial !== special) {
        switched = true;
        q.special = isSpecial;
        this.#markSpecial(q.name, isSpecial);
      }
      q.blocked = row.blocked === true;
      if (row.slots === true) this.#slotted.add(q.name);
      else if (special) this.#slotted.delete(q.name);
      if (row.next_at !== null && row.next_at !== undefined) nextAt = Number(row.next_at);
    }
    rows = leased;
    rows.sort((a, b) => Number(a.n) - Number(b.n));
    let next = 0;
    let start = 1;
    let earliest = Infinity;
    for (const r of batch) {
      const got: Delivery[] = [];
      const end = start + r.max;
      while (next < rows.length && Number(rows[next].n) < end) {
        const row = rows[next++];
        const id = Number(row.id);
        const attempts = Number(row.attempts);
        const value = decode(plain(row.value), "trusted");
        const original = this.#originals.get(id);
        got.push(
          original === undefined ? { id, attempts, value } : { id, attempts, value, original },
        );
        r.session.hold(id, attempts, Number(row.lease_until), row.hold === true);
        earliest = Math.min(earliest, Number(row.lease_until));
      }
      start = end;
      r.claiming = false;
      if (r.session.closed) this.#finish(q, r, []); // its rows go back with its other leases
      else if (got.length > 0) this.#finish(q, r, got);
      else if (switched && !r.timedOut) continue; // claimed again the other way at once
      else if (!r.waits || r.timedOut) {
        if (failed !== undefined && !r.waits) {
          // An immediate get must not look like "nothing ready" when the database failed.
          r.done = true;
          clearTimeout(r.timer);
          r.reject(databaseError(failed, this.url));
        } else this.#finish(q, r, []);
      }
    }
    if (earliest !== Infinity) this.#armSweep(earliest + EXPIRY_SLACK_MS);
    q.claims--;
    const full = rows.length === owners.length && rows.length > 0;
    q.plentiful = full;
    this.#tidyGets(q);
    if (!this.#getQueues.has(q.name)) return;
    if (q.again || full || switched) {
      setImmediate(() => this.dispatch(q.name));
    } else if (failed === undefined && q.requests.some((r) => r.waits && !r.done)) {
      // Some still wait with nothing: wake them when the next delayed item is due, or when
      // the queue's rate limit allows the next delivery.
      // No slack for the rate: a late claim is a delivery lost for good (the rate's clock
      // restarts from it), while an early one only finds the rate not ready and sets this again.
      if (nextAt !== undefined) this.#wakeAt(q.name, nextAt, 0);
      await this.#armNextReady(q);
    }
  }

  /** Records whether `queue` has limits or grouped items (so its gets claim through `claim_special`). */
  #markSpecial(queue: string, special: boolean): void {
    if (!special) {
      this.#special.delete(queue);
      this.#slotted.delete(queue);
      return;
    }
    if (this.#special.size >= SPECIAL_QUEUES_LIMIT) {
      this.#special.clear();
      this.#slotted.clear();
    }
    this.#special.add(queue);
  }

  /** Sets a timer at the time the next delayed item of `q` becomes ready. */
  async #armNextReady(q: GetQueue): Promise<void> {
    try {
      const [row] = await this.#hotSql.unsafe(
        `SELECT ${this.#s}.next_ready($1, ${this.#s}.now_ms()) AS at`,
        [q.name],
      );
      if (row?.at !== null && row?.at !== undefined) this.#wakeAt(q.name, Number(row.at));
    } catch (error) {
      this.#health(error);
    }
  }

  /** Serves `queue`'s waiting gets at database time `at` (and `slackMs` after). */
  #wakeAt(queue: string, at: number, slackMs = EXPIRY_SLACK_MS): void {
    const q = this.#getQueues.get(queue);
    if (q === undefined || at >= q.timerAt) return;
    clearTimeout(q.timer);
    q.timerAt = at;
    const wait = Math.min(Math.max(0, at - this.localNow()) + slackMs, MAX_TIMER_MS);
    q.timer = setTimeout(() => {
      q.timerAt = Infinity;
      this.dispatch(queue);
    }, wait);
  }

  // ------------------------------------------------------------------ acks

  /** Acks through the ack batcher; resolves with the ids acked. */
  async ackNow(request: AckRequest): Promise<Set<number>> {
    try {
      const done = await this.#ackBatcher.add(request);
      this.#health();
      if (request.results !== undefined && done.size > 0) this.#changed(request.results.queue);
      if (this.#putQueues.size > 0) {
        for (const name of this.#putQueues.keys()) this.#admit(name);
      }
      return done;
    } catch (error) {
      this.#health(error);
      throw new NotSavedError(databaseError(error, this.url));
    }
  }

  async #writeAcks(batch: AckRequest[], lane: number): Promise<Set<number>[]> {
    const ids: number[] = [];
    const attempts: number[] = [];
    const owners: string[] = [];
    const sources: number[] = [];
    const sourceAttempts: number[] = [];
    const sourceOwners: string[] = [];
    const queues: string[] = [];
    const values: Uint8Array[] = [];
    for (const ack of batch) {
      for (let i = 0; i < ack.ids.length; i++) {
        ids.push(ack.ids[i]);
        attempts.push(ack.attempts[i]);
        owners.push(ack.owner);
      }
      const results = ack.results;
      if (results !== undefined) {
        for (let i = 0; i < results.values.length; i++) {
          sources.push(results.sources[i]);
          sourceAttempts.push(results.attempts[i]);
          sourceOwners.push(ack.owner);
          queues.push(results.queue);
          values.push(results.values[i]);
        }
      }
    }
    const history = this.#historyCount > 0;
    const started = performance.now();
    const rows = await retrying(() =>
      this.#hotSql.unsafe(this.#st.acks[ackVariant(history, batch.some((ack) => ack.holds))], [
        intArray(ids),
        intArray(attempts),
        textArray(owners),
        intArray(sources),
        textArray(queues),
        byteaArray(values),
        this.masterId,
        this.#channel,
        this.#prefix,
        intArray(sourceAttempts),
        textArray(sourceOwners),
        lane,
      ] as never[])
    );
    this.telemetry.observeCommit(performance.now() - started);
    if (this.#slotted.size > 0) {
      // A lease ended: the gets waiting on a queue with a concurrency limit may go on, here
      // and on the other masters. (Its lease came from a claim of this master, which saw the
      // queue's limits then; the plain ack does not look them up.)
      const ended = new Set<string>();
      for (const row of rows) if (this.#slotted.has(row.queue)) ended.add(row.queue);
      for (const queue of ended) if (this.#getQueues.get(queue)?.blocked) this.#changed(queue);
      if (ended.size > 0) this.#tell(ended);
    }
    // Each ack is told only of its own leases: the same id may be in the batch twice, once
    // from a holder whose lease ran out (its attempt is older), and that one matched nothing.
    const leases = new Set<string>();
    const gone: number[] = [];
    for (const row of rows) {
      leases.add(`${row.id}:${row.attempts}:${row.lease_owner}`);
      gone.push(Number(row.id));
    }
    this.forgetOriginals(gone);
    return batch.map((ack) => {
      const done = new Set<number>();
      for (let i = 0; i < ack.ids.length; i++) {
        if (leases.has(`${ack.ids[i]}:${ack.attempts[i]}:${ack.owner}`)) done.add(ack.ids[i]);
      }
      return done;
    });
  }

  /** Nacks held items; resolves with the ids nacked. */
  async nackNow(
    owner: string,
    ids: number[],
    attempts: number[],
    delayMs: number,
  ): Promise<Set<number>> {
    const rows = await this.#db(() =>
      this.#hotSql.unsafe(this.#st.nack, [
        intArray(ids),
        intArray(attempts),
        owner,
        delayMs,
        this.masterId,
        this.#channel,
        this.#prefix,
        NACK_LANE,
      ] as never[])
    );
    const done = new Set<number>();
    const queues = new Set<string>();
    for (const row of rows) {
      done.add(Number(row.id));
      queues.add(row.queue as string);
    }
    for (const queue of queues) {
      if (delayMs > 0) {
        this.#wakeAt(queue, this.localNow() + delayMs);
        if (this.#slotted.has(queue)) this.#changed(queue); // a concurrency slot is free
      } else this.#changed(queue);
    }
    return done;
  }

  /** Extends held leases; resolves with the ids extended. */
  async extendNow(
    owner: string,
    ids: number[],
    attempts: number[],
    leaseMs: number,
  ): Promise<Set<number>> {
    const rows = await this.#db(() =>
      this.#hotSql.unsafe(this.#st.extend, [intArray(ids), intArray(attempts), owner, leaseMs])
    );
    const done = new Set<number>();
    let earliest = Infinity;
    for (const row of rows) {
      done.add(Number(row.id));
      earliest = Math.min(earliest, Number(row.lease_until));
    }
    if (earliest !== Infinity) this.#armSweep(earliest + EXPIRY_SLACK_MS);
    return done;
  }

  /** Fails held items; resolves with the ids failed. */
  failNow(owner: string, ids: number[], attempts: number[], error: string): Promise<Set<number>> {
    return this.#db(() =>
      this.#settle(
        `id = ANY($2::bigint[]) AND (id, attempts) IN (SELECT * FROM unnest($2::bigint[], $3::int[]))
           AND lease_owner = $1`,
        [owner, intArray(ids), intArray(attempts)],
        { kind: "fail", reason: error },
        false,
      )
    );
  }

  // ------------------------------------------------------------------ the slow path

  /** The most deliveries an item of `queue` may have. */
  #maxAttempts(queue: string, itemMax: number): number {
    if (itemMax > 0) return itemMax;
    return this.retry.maxAttemptsByQueue?.[queue] ?? this.retry.maxAttempts;
  }

  /**
   * Settles the leased rows matching `where` in one transaction: a fail
   * retries each after its backoff or dead-letters it after its last
   * attempt; a release (expiry, a closed session, a dead master) returns
   * each to the front of its queue, in the order taken, or dead-letters it.
   * Resolves with the ids settled.
   */
  async #settle(
    where: string,
    params: unknown[],
    how: { kind: "fail" | "release"; reason: string },
    skipLocked: boolean,
  ): Promise<Set<number>> {
    const s = this.#s;
    const touched = new Set<string>();
    const wakes: [string, number][] = [];
    const settled = new Set<number>();
    await retrying(() =>
      this.sql.begin(async (tx) => {
        touched.clear();
        wakes.length = 0;
        settled.clear();
        const rows = await tx.unsafe(
          `SELECT id, queue, attempts, max_attempts, last_error, value, ${s}.now_ms() AS now
         FROM ${s}.items WHERE lease_owner IS NOT NULL AND ${where}
         ORDER BY taken, id ${skipLocked ? `LIMIT ${SWEEP_ROWS} ` : ""}FOR UPDATE${
            skipLocked ? " SKIP LOCKED" : ""
          }`,
          params as never[],
        ) as unknown as SettleRow[];
        if (rows.length === 0) return;
        const deltas = new Map<string, CounterDelta>();
        const back: { id: number; readyAt: number; lastError: string | null }[] = [];
        const front: number[] = [];
        const buried: SettleRow[] = [];
        const reasons: string[] = [];
        for (const row of rows) {
          const id = Number(row.id);
          const attempts = Number(row.attempts);
          const now = Number(row.now);
          settled.add(id);
          // Its lease ended: waiting gets of a queue with a concurrency limit may go on.
          touched.add(row.queue);
          const d = deltaOf(deltas, row.queue);
          const last = attempts >= this.#maxAttempts(row.queue, Number(row.max_attempts));
          if (how.kind === "fail") {
            d.failed++;
            if (last) {
              buried.push(row);
              reasons.push(how.reason);
              continue;
            }
            const backoff = Math.min(
              this.retry.backoffBaseMs * 2 ** Math.max(0, attempts - 1),
              this.retry.backoffMaxMs,
            );
            back.push({ id, readyAt: now + backoff, lastError: how.reason });
            if (backoff > 0) wakes.push([row.queue, now + backoff]);
            else touched.add(row.queue);
          } else {
            d.expired++;
            if (last) {
              buried.push(row);
              reasons.push(
                row.last_error ? `${how.reason} (earlier: ${row.last_error})` : how.reason,
              );
              continue;
            }
            front.push(id);
            touched.add(row.queue);
          }
        }
        if (back.length > 0) {
          await tx.unsafe(
            `UPDATE ${s}.items i SET lease_owner = NULL, lease_master = NULL, lease_until = NULL,
             taken = NULL, ready_at = u.ready_at, seq = u.seq, last_error = u.last_error
           FROM (SELECT u.*, nextval('${s}.ids') AS seq FROM unnest($1::bigint[], $2::bigint[],
             $3::text[]) WITH ORDINALITY AS u(id, ready_at, last_error, ord) ORDER BY u.ord) u
           WHERE i.id = u.id`,
            [
              intArray(back.map((b) => b.id)),
              intArray(back.map((b) => b.readyAt)),
              textArray(back.map((b) => b.lastError)),
            ],
          );
        }
        if (front.length > 0) {
          await tx.unsafe(
            `UPDATE ${s}.items i SET lease_owner = NULL, lease_master = NULL, lease_until = NULL,
             taken = NULL, ready_at = -(f.base * ${FRONT_SPACING}) + u.ord
           FROM unnest($1::bigint[]) WITH ORDINALITY AS u(id, ord),
             (SELECT nextval('${s}.fronts') AS base) f
           WHERE i.id = u.id`,
            [intArray(front)],
          );
        }
        if (buried.length > 0) {
          const dq: string[] = [];
          const dv: Uint8Array[] = [];
          buried.forEach((row, i) => {
            const d = deltaOf(deltas, row.queue);
            d.dead++;
            d.bytes -= row.value.length;
            const now = Number(row.now);
            if (isDeadLetterQueue(row.queue)) {
              dq.push(row.queue);
              dv.push(row.value);
            } else {
              const letter: DeadLetter = {
                queue: row.queue,
                id: Number(row.id),
                value: decode(plain(row.value), "trusted"),
                attempts: Number(row.attempts),
                error: reasons[i],
                failedAt: now,
              };
              dq.push(deadLetterQueue(row.queue));
              dv.push(encode(letter));
            }
          });
          await this.#remove(tx, buried.map((r) => Number(r.id)), "dead", reasons);
          await this.#insert(tx, dq, dv, deltas);
          for (const q of dq) touched.add(q);
        }
        await this.#count(tx, deltas);
        if (touched.size > 0) await this.#notify(tx, [...touched]);
      })
    );
    for (const queue of touched) this.#changed(queue);
    for (const [queue, at] of wakes) this.#wakeAt(queue, at);
    if (this.#putQueues.size > 0) { for (const name of this.#putQueues.keys()) this.#admit(name); }
    return settled;
  }

  /**
   * Removes items that end for good in transaction `tx`: dead-lettered ones
   * (`dead`, with `errors` by index) or cancelled ones (`cancelled`, with
   * their last error), recording each in the history (unless it is off) and
   * holding its unique key for its key hold. Resolves with the rows removed.
   */
  async #remove(
    tx: postgres.TransactionSql,
    ids: readonly number[],
    state: "dead" | "cancelled",
    errors: readonly string[] | null,
  ): Promise<postgres.Row[]> {
    const s = this.#s;
    return await tx.unsafe(
      `WITH now AS MATERIALIZED (SELECT ${s}.now_ms() AS t),
       gone AS (DELETE FROM ${s}.items i WHERE i.id = ANY($1::bigint[]) RETURNING i.*),
       e AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS e(id, error)),
       h AS (
         INSERT INTO ${s}.finished (id, queue, state, attempts, priority, grp, ukey, error, value,
           progress_percent, progress_message, progress_at, created_at, finished_at)
         SELECT g.id, g.queue, $3::text, g.attempts, g.priority, g.grp, g.ukey,
           coalesce(e.error, g.last_error),
           CASE WHEN octet_length(g.value) <= ${MAX_HISTORY_VALUE_BYTES} THEN g.value END,
           ${currentProgress("g")}, g.created_at, (SELECT t FROM now)
         FROM gone g LEFT JOIN e ON e.id = g.id WHERE $4::boolean
         ON CONFLICT (id) DO NOTHING
       ),
       k AS (
         INSERT INTO ${s}.key_holds (queue, ukey, id, until)
         SELECT g.queue, g.ukey, g.id, (SELECT t FROM now) + g.key_hold FROM gone g
         WHERE g.ukey IS NOT NULL AND g.key_hold > 0 ORDER BY 1, 2
         ON CONFLICT (queue, ukey) DO UPDATE SET id = excluded.id, until = excluded.until
       )
       SELECT g.id, g.queue, g.lease_owner, g.lease_master, octet_length(g.value) AS bytes
       FROM gone g`,
      [
        intArray(ids),
        errors === null ? null : textArray(errors as string[]),
        state,
        this.#historyCount > 0,
      ] as never[],
    );
  }

  /** Inserts new ready items (dead letters, requeued ones) in a transaction; returns their ids. */
  async #insert(
    tx: postgres.TransactionSql,
    queues: string[],
    values: Uint8Array[],
    deltas: Map<string, CounterDelta>,
  ): Promise<number[]> {
    if (queues.length === 0) return [];
    const s = this.#s;
    const rows = await tx.unsafe(
      `INSERT INTO ${s}.items (id, queue, ready_at, seq, value, created_at)
       SELECT n.id, n.queue, ${s}.now_ms(), n.id, n.value, ${s}.now_ms()
       FROM (SELECT nextval('${s}.ids') AS id, u.queue, u.value
             FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS u(queue, value, ord)
             ORDER BY u.ord) n
       RETURNING id`,
      [textArray(queues), byteaArray(values)],
    );
    await tx.unsafe(
      `INSERT INTO ${s}.queues (name) SELECT DISTINCT unnest($1::text[]) ON CONFLICT DO NOTHING`,
      [textArray(queues)],
    );
    queues.forEach((queue, i) => {
      const d = deltaOf(deltas, queue);
      d.put++;
      d.bytes += values[i].length;
    });
    return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
  }

  /** Adds counter deltas in a transaction. */
  async #count(tx: postgres.TransactionSql, deltas: Map<string, CounterDelta>): Promise<void> {
    if (deltas.size === 0) return;
    const s = this.#s;
    const names = [...deltas.keys()].sort();
    const col = (k: keyof CounterDelta) => names.map((n) => deltas.get(n)![k]);
    await tx.unsafe(
      `INSERT INTO ${s}.counters AS c
         (queue, master, lane, put, acked, nacked, expired, failed, dead, bytes, removed)
       SELECT u.queue, $1::bigint, ${SLOW_LANE}, u.put, u.acked, u.nacked, u.expired, u.failed,
         u.dead, u.bytes, u.removed
       FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
         $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])
         AS u(queue, put, acked, nacked, expired, failed, dead, bytes, removed)
       ON CONFLICT (queue, master, lane) DO UPDATE SET put = c.put + excluded.put,
         acked = c.acked + excluded.acked, nacked = c.nacked + excluded.nacked,
         expired = c.expired + excluded.expired, failed = c.failed + excluded.failed,
         dead = c.dead + excluded.dead, bytes = c.bytes + excluded.bytes,
         removed = c.removed + excluded.removed`,
      [
        this.masterId,
        textArray(names),
        intArray(col("put")),
        intArray(col("acked")),
        intArray(col("nacked")),
        intArray(col("expired")),
        intArray(col("failed")),
        intArray(col("dead")),
        intArray(col("bytes")),
        intArray(col("removed")),
      ],
    );
  }

  /**
   * Tells the other masters that `queues` changed, within {@link TELL_MS}:
   * what is told meanwhile goes in one notification per queue (a hint: lost
   * if the database is away, and the poll finds it then).
   */
  #tell(queues: Iterable<string>): void {
    for (const queue of queues) this.#toTell.add(queue);
    if (this.#tellTimer !== undefined || this.#toTell.size === 0) return;
    this.#tellTimer = setTimeout(() => {
      this.#tellTimer = undefined;
      const told = [...this.#toTell];
      this.#toTell.clear();
      if (this.#closing) return;
      this.sql.unsafe(`SELECT pg_notify($1, $2 || q) FROM unnest($3::text[]) AS q`, [
        this.#channel,
        this.#prefix,
        textArray(told),
      ]).catch((error) => this.#health(error));
    }, TELL_MS);
  }

  /** Tells the other masters, at commit, that `queues` changed. */
  async #notify(tx: postgres.TransactionSql, queues: string[]): Promise<void> {
    await tx.unsafe(
      `SELECT pg_notify($1, $2 || q) FROM unnest($3::text[]) AS q`,
      [this.#channel, this.#prefix, textArray(queues)],
    );
  }

  // ------------------------------------------------------------------ expiry and dead masters

  /** Sets the sweep timer for database time `at`, if that is sooner. */
  #armSweep(at: number): void {
    if (this.#closing || at >= this.#sweepAt) return;
    clearTimeout(this.#sweepTimer);
    this.#sweepAt = at;
    const wait = Math.min(Math.max(0, at - this.localNow()), MAX_TIMER_MS);
    this.#sweepTimer = setTimeout(() => {
      this.#sweepAt = Infinity;
      this.#sweep();
    }, wait);
  }

  /**
   * Returns expired leases (of any master) and the leases of masters that
   * stopped heartbeating, then sets the next sweep at the next lease's
   * expiry (at the latest {@link SWEEP_MS} from now).
   */
  async #sweep(): Promise<void> {
    if (this.#sweeping || this.#closing) return;
    this.#sweeping = true;
    const s = this.#s;
    let next = this.localNow() + SWEEP_MS;
    try {
      const timeout = this.#options.masterTimeoutMs ?? DEFAULT_MASTER_TIMEOUT_MS;
      // Judge the others only after heartbeating for a whole timeout ourselves: after the
      // database was away, every master's heartbeat is old, and none of them is dead.
      if (this.#aliveSince !== undefined && Date.now() - this.#aliveSince >= timeout) {
        const dead = await this.sql.unsafe(
          `SELECT id FROM ${s}.masters WHERE seen_at < ${s}.now_ms() - $1 AND id <> $2`,
          [timeout, this.masterId],
        );
        for (const row of dead) await this.#bury(Number(row.id));
      }
      for (;;) {
        const settled = await this.#settle(
          `lease_until <= ${s}.now_ms()`,
          [],
          { kind: "release", reason: EXPIRED_REASON },
          true,
        );
        if (settled.size < SWEEP_ROWS) break;
      }
      if (Date.now() - this.#prunedAt >= PRUNE_MS) {
        this.#prunedAt = Date.now();
        await this.#prune();
      }
      const [row] = await this.sql.unsafe(
        `SELECT min(lease_until) AS at FROM ${s}.items WHERE lease_owner IS NOT NULL`,
      );
      if (row?.at !== null && row?.at !== undefined) {
        next = Math.min(next, Number(row.at) + EXPIRY_SLACK_MS);
      }
      this.#health();
    } catch (error) {
      this.#health(error);
    } finally {
      this.#sweeping = false;
    }
    this.#armSweep(next);
  }

  /**
   * Forgets what is kept no longer: history records past the count or the
   * age kept, key holds that ran out, and the rotation records of groups
   * that have no items left. One master at a time (the others skip it).
   */
  async #prune(): Promise<void> {
    const s = this.#s;
    await this.sql.begin(async (tx) => {
      const [lock] = await tx.unsafe(
        `SELECT pg_try_advisory_xact_lock(${PRUNE_LOCK[0]}, ${PRUNE_LOCK[1]}) AS got`,
      );
      if (!lock.got) return;
      await tx.unsafe(`DELETE FROM ${s}.finished WHERE finished_at < ${s}.now_ms() - $1::bigint`, [
        this.#historyMs,
      ]);
      if (this.#historyCount > 0) {
        await tx.unsafe(
          `DELETE FROM ${s}.finished WHERE (finished_at, id) <= (
             SELECT finished_at, id FROM ${s}.finished
             ORDER BY finished_at DESC, id DESC OFFSET $1 LIMIT 1)`,
          [this.#historyCount],
        );
      }
      await tx.unsafe(`DELETE FROM ${s}.key_holds WHERE until <= ${s}.now_ms()`);
      await tx.unsafe(
        `DELETE FROM ${s}.groups WHERE (queue, grp) IN (
           SELECT g.queue, g.grp FROM ${s}.groups g
           WHERE NOT EXISTS (
             SELECT 1 FROM ${s}.items i
             WHERE i.queue = g.queue AND i.grp = g.grp AND i.lease_owner IS NULL)
           AND (g.grp <> '' OR NOT EXISTS (
             SELECT 1 FROM ${s}.items i
             WHERE i.queue = g.queue AND i.grp IS NULL AND i.lease_owner IS NULL))
           FOR UPDATE SKIP LOCKED)`,
      );
    });
  }

  /**
   * A master stopped heartbeating: returns its leases (as a closed
   * connection's), forgets its sessions, folds its counters into the
   * shared row (master 0) and removes it, in one transaction.
   */
  async #bury(master: number): Promise<void> {
    const s = this.#s;
    this.#log.warn("a master stopped heartbeating; returning its leases", { master });
    await this.#settle(
      `lease_master = $1`,
      [master],
      { kind: "release", reason: CLOSED_REASON },
      false,
    );
    await this.sql.begin(async (tx) => {
      const gone = await tx.unsafe(`DELETE FROM ${s}.masters WHERE id = $1 RETURNING id`, [master]);
      if (gone.length === 0) return;
      await tx.unsafe(`DELETE FROM ${s}.sessions WHERE master = $1`, [master]);
      await tx.unsafe(
        `INSERT INTO ${s}.counters AS c (queue, master, lane, put, acked, nacked, expired, failed, dead,
           bytes, removed)
         SELECT queue, 0, 0, sum(put), sum(acked), sum(nacked), sum(expired), sum(failed), sum(dead),
           sum(bytes), sum(removed)
         FROM ${s}.counters WHERE master = $1 GROUP BY queue
         ON CONFLICT (queue, master, lane) DO UPDATE SET put = c.put + excluded.put,
           acked = c.acked + excluded.acked, nacked = c.nacked + excluded.nacked,
           expired = c.expired + excluded.expired, failed = c.failed + excluded.failed,
           dead = c.dead + excluded.dead, bytes = c.bytes + excluded.bytes,
           removed = c.removed + excluded.removed`,
        [master],
      );
      await tx.unsafe(`DELETE FROM ${s}.counters WHERE master = $1`, [master]);
    });
  }

  // ------------------------------------------------------------------ admin

  async stats(queue?: string, limit: number = STATS_QUEUE_LIMIT): Promise<BrokerStats> {
    const s = this.#s;
    return await this.#db(async () => {
      const nameFilter = queue === undefined ? "" : "AND queue = $1";
      const params = queue === undefined ? [] : [queue];
      // One statement, one snapshot: the items a queue holds come from its counters (every
      // change to them counts in the same transaction), the leased ones from the small
      // items_leased index, the delayed ones from the end of the queue's range of
      // items_claimable, priority by priority. No scan of all items, however deep the queues.
      const [counts, paused, registry, clients, remote] = await Promise.all([
        this.#hotSql.unsafe(
          `WITH now AS MATERIALIZED (SELECT ${s}.now_ms() AS t),
           c AS (
             SELECT queue, sum(put) AS put, sum(acked) AS acked, sum(nacked) AS nacked,
               sum(expired) AS expired, sum(failed) AS failed, sum(dead) AS dead,
               sum(bytes) AS bytes, sum(put) - sum(acked) - sum(dead) - sum(removed) AS held
             FROM ${s}.counters WHERE true ${nameFilter} GROUP BY queue
           ),
           l AS (
             SELECT queue, count(*) AS leased FROM ${s}.items
             WHERE lease_owner IS NOT NULL ${nameFilter} GROUP BY queue
           )
           SELECT c.*, coalesce(l.leased, 0) AS leased,
             CASE WHEN c.held > 0 THEN ${s}.queue_delayed(c.queue, (SELECT t FROM now))
               ELSE 0 END AS delayed
           FROM c LEFT JOIN l USING (queue)`,
          params,
        ),
        this.sql.unsafe(`SELECT name FROM ${s}.paused ORDER BY name`),
        queue === undefined
          ? this.sql.unsafe(`SELECT name FROM ${s}.queues`)
          : Promise.resolve([] as unknown as postgres.RowList<postgres.Row[]>),
        this.sql.unsafe(`SELECT count(*) AS n FROM ${s}.sessions`),
        this.sql.unsafe(
          `SELECT w.key AS queue, sum(w.value::int) AS n
           FROM ${s}.masters m, jsonb_each_text(m.waiting) w
           WHERE m.id <> $1 AND jsonb_typeof(m.waiting) = 'object' GROUP BY w.key`,
          [this.masterId],
        ),
      ]);
      const rows = new Map<string, QueueStats>();
      const row = (name: string) => {
        let r = rows.get(name);
        if (r === undefined) rows.set(name, r = emptyQueueStats(name));
        return r;
      };
      const listed = new Set<string>();
      let heldBytes = 0;
      for (const r of counts) {
        heldBytes += Number(r.bytes);
        const x = row(r.queue);
        const held = Number(r.held);
        x.leased = Number(r.leased);
        x.delayed = Number(r.delayed);
        x.ready = Math.max(0, held - x.leased - x.delayed);
        x.put = Number(r.put);
        x.acked = Number(r.acked);
        x.nacked = Number(r.nacked);
        x.expired = Number(r.expired);
        x.failed = Number(r.failed);
        x.dead = Number(r.dead);
        if (held > 0) listed.add(r.queue);
      }
      for (const r of registry) listed.add(r.name);
      for (const r of remote) {
        if (queue !== undefined && r.queue !== queue) continue;
        row(r.queue).waiting += Number(r.n);
        listed.add(r.queue);
      }
      for (const [name, q] of this.#getQueues) {
        if (queue !== undefined && name !== queue) continue;
        const n = q.requests.filter((r) => r.waits && !r.done).length;
        if (n === 0) continue;
        row(name).waiting += n;
        listed.add(name);
      }
      const pausedNames = paused.map((r) => r.name as string);
      for (const name of pausedNames) listed.add(name);
      let all: QueueStats[];
      if (queue !== undefined) all = [rows.get(queue) ?? emptyQueueStats(queue)];
      else all = [...listed].map((name) => rows.get(name) ?? emptyQueueStats(name));
      const stats: BrokerStats = {
        queues: all,
        clients: Number(clients[0].n),
        paused: queue === undefined ? pausedNames : pausedNames.filter((n) => n === queue),
        queueCount: queue === undefined ? all.length : undefined,
        memory: {
          heldBytes,
          itemLimitBytes: this.maxStoredBytes,
          limitBytes: this.settings.maxMemoryBytes ?? Infinity,
        },
        startedAt: this.#startedAt,
      };
      if (queue === undefined && all.length > limit) {
        const depth = (x: QueueStats) => x.ready + x.leased + x.delayed;
        all.sort((a, b) => depth(b) - depth(a) || byName(a, b));
        const rest = emptyQueueStats("");
        for (const x of all.slice(limit)) {
          for (const k of Object.keys(rest) as (keyof QueueStats)[]) {
            if (k !== "name") (rest[k] as number) += x[k] as number;
          }
        }
        stats.queues = all.slice(0, limit);
        stats.rest = rest;
      }
      stats.queues.sort(byName);
      return stats;
    });
  }

  async sessions(): Promise<SessionView[]> {
    const s = this.#s;
    return await this.#db(async () => {
      const [rows, leased, oldest] = await Promise.all([
        this.sql.unsafe(`SELECT * FROM ${s}.sessions ORDER BY connected_at, id`),
        this.sql.unsafe(
          `SELECT lease_owner, count(*) AS n FROM ${s}.items WHERE lease_owner IS NOT NULL
           GROUP BY lease_owner`,
        ),
        this.sql.unsafe(
          `SELECT lease_owner, id, queue, leased_at, lease_until FROM (
             SELECT lease_owner, id, queue, coalesce(leased_at, lease_until) AS leased_at,
               lease_until,
               row_number() OVER (PARTITION BY lease_owner
                 ORDER BY coalesce(leased_at, lease_until), id) AS n
             FROM ${s}.items WHERE lease_owner IS NOT NULL
           ) x WHERE n <= $1 ORDER BY lease_owner, n`,
          [MAX_HELD_LISTED],
        ),
      ]);
      const held = new Map<string, number>();
      for (const r of leased) held.set(r.lease_owner, Number(r.n));
      const holding = new Map<string, HeldItem[]>();
      for (const r of oldest) {
        let list = holding.get(r.lease_owner);
        if (list === undefined) holding.set(r.lease_owner, list = []);
        list.push({
          id: Number(r.id),
          queue: r.queue,
          leasedAt: Number(r.leased_at),
          leaseExpiresAt: Number(r.lease_until),
        });
      }
      const out: SessionView[] = [];
      const seen = new Set<string>();
      for (const r of rows) {
        const local = this.#sessions.get(r.id);
        if (Number(r.master) === this.masterId && local === undefined) continue;
        seen.add(r.id);
        const view: SessionView = {
          id: r.id,
          name: r.name,
          address: r.address,
          connectedAt: Number(r.connected_at),
          lastSeenAt: local === undefined ? Number(r.last_seen) : local.lastSeenAt + this.#skew,
          leased: held.get(r.id) ?? 0,
          waiting: local === undefined ? Number(r.waiting) : this.#waitingOf(local),
          holding: holding.get(r.id) ?? [],
        };
        const controlled = local?.controlled ?? this.#controlled.get(r.id);
        if (controlled !== undefined) view.controlled = controlled;
        out.push(view);
      }
      for (const id of this.#controlled.keys()) if (!seen.has(id)) this.#controlled.delete(id);
      return out;
    });
  }

  /**
   * Sends `action` to a session: one of this master's at once; another
   * master's through a notice on the channel every master listens to (as a
   * cancellation reaches a holder), which that master passes on when it
   * hears it. Resolves with false when no master has such a session.
   */
  async control(sessionId: string, action: ControlAction): Promise<boolean> {
    if (!CONTROL_ACTIONS.includes(action)) {
      throw new RangeError(`a control action is one of ${CONTROL_ACTIONS.join(", ")}`);
    }
    const local = this.#sessions.get(sessionId);
    if (local !== undefined && !local.closed) {
      local.control(action);
      return true;
    }
    const found = await this.#db(async () => {
      const rows = await this.sql.unsafe(
        `SELECT pg_notify($1, $2) FROM ${this.#s}.sessions WHERE id = $3`,
        [this.#channel, `${CONTROL_MARK}${sessionId} ${action}`, sessionId],
      );
      return rows.length > 0;
    });
    if (found) this.#remember(sessionId, action);
    return found;
  }

  /** Remembers the last action sent to session `id` (bounded: the oldest are forgotten). */
  #remember(id: string, action: ControlAction): void {
    this.#controlled.delete(id);
    this.#controlled.set(id, action);
    if (this.#controlled.size > CONTROLLED_KEPT) {
      const oldest = this.#controlled.keys().next().value;
      if (oldest !== undefined) this.#controlled.delete(oldest);
    }
  }

  async items(queue: string, query: ItemsQuery): Promise<ItemPage> {
    const { state, offset, limit } = checkItemsQuery(query);
    const s = this.#s;
    const columns = `i.id, i.queue, i.attempts, i.priority, i.grp, i.ukey, i.value, i.last_error,
      i.created_at, i.ready_at, i.lease_owner, i.leased_at, i.lease_until,
      i.progress_percent, i.progress_message, i.progress_at`;
    const end = offset + limit;
    let text: string;
    if (state === "ready") {
      // As peek: the rows without a group and those with one, each from its own index.
      text = `WITH now AS MATERIALIZED (SELECT ${s}.now_ms() AS t)
        SELECT * FROM (
          (SELECT ${columns}, i.seq FROM ${s}.items i
           WHERE i.queue = $1 AND i.lease_owner IS NULL AND i.grp IS NULL
             AND i.ready_at <= (SELECT t FROM now)
           ORDER BY i.priority DESC, i.ready_at, i.seq LIMIT $4)
          UNION ALL
          (SELECT ${columns}, i.seq FROM ${s}.items i
           WHERE i.queue = $1 AND i.lease_owner IS NULL AND i.grp IS NOT NULL
             AND i.ready_at <= (SELECT t FROM now)
           ORDER BY i.priority DESC, i.ready_at, i.seq LIMIT $4)
        ) x ORDER BY priority DESC, ready_at, seq OFFSET $2 LIMIT $3`;
    } else if (state === "delayed") {
      text = `SELECT ${columns} FROM ${s}.items i
        WHERE i.queue = $1 AND i.lease_owner IS NULL AND i.ready_at > ${s}.now_ms()
        ORDER BY i.ready_at, i.seq OFFSET $2 LIMIT $3`;
    } else {
      text = `SELECT ${columns}, x.name AS holder_name, x.address AS holder_address
        FROM ${s}.items i LEFT JOIN ${s}.sessions x ON x.id = i.lease_owner
        WHERE i.queue = $1 AND i.lease_owner IS NOT NULL
        ORDER BY coalesce(i.leased_at, i.lease_until), i.id OFFSET $2 LIMIT $3`;
    }
    const [rows, stats] = await Promise.all([
      this.#db(() =>
        this.sql.unsafe(
          text,
          state === "ready" ? [queue, offset, limit, end] : [queue, offset, limit],
        )
      ),
      this.stats(queue),
    ]);
    const row = stats.queues[0];
    const items = rows.map((r) => {
      const info = this.#jobInfo(r, state);
      info.value = decode(plain(r.value), "trusted");
      if (state === "delayed") info.readyAt = Number(r.ready_at);
      if (state === "leased") {
        const current = r.leased_at !== null && Number(r.progress_at) >= Number(r.leased_at);
        if (!current) delete info.progress;
        if (r.leased_at !== null) info.leasedAt = Number(r.leased_at);
        info.leaseExpiresAt = Number(r.lease_until);
        info.holder = {
          session: r.lease_owner,
          name: r.holder_name ?? "",
          address: r.holder_address ?? "",
        };
      }
      return info;
    });
    return { items, total: row === undefined ? 0 : row[state] };
  }

  async purge(queue: string): Promise<number> {
    return await this.#removeWaiting(queue, undefined, false);
  }

  /**
   * Removes items of `queue` that are not leased: those with the given ids
   * (all when `undefined`), only ready ones unless `delayed`; counts them
   * and tells every master. Resolves with how many went.
   */
  async #removeWaiting(
    queue: string,
    ids: readonly number[] | undefined,
    readyOnly: boolean,
  ): Promise<number> {
    const s = this.#s;
    const params: unknown[] = [queue];
    let filter = "";
    if (ids !== undefined) {
      params.push(intArray(ids));
      filter += ` AND id = ANY($${params.length}::bigint[])`;
    }
    if (readyOnly) filter += ` AND ready_at <= ${s}.now_ms()`;
    let gone: number[] = [];
    await this.#db(() =>
      this.sql.begin(async (tx) => {
        const rows = await tx.unsafe(
          `DELETE FROM ${s}.items WHERE queue = $1 AND lease_owner IS NULL${filter}
           RETURNING id, octet_length(value) AS bytes`,
          params as never[],
        );
        gone = rows.map((r) => Number(r.id));
        if (rows.length === 0) return;
        const deltas = new Map<string, CounterDelta>();
        const d = deltaOf(deltas, queue);
        d.removed += rows.length;
        for (const r of rows) d.bytes -= Number(r.bytes);
        await this.#count(tx, deltas);
        await this.#notify(tx, [queue]);
      })
    );
    if (gone.length > 0) {
      this.forgetOriginals(gone);
      this.#changed(queue);
    }
    return gone.length;
  }

  async pause(queue: string): Promise<void> {
    await this.checkQueue(queue);
    await this.#db(() =>
      this.sql.unsafe(`INSERT INTO ${this.#s}.paused (name) VALUES ($1) ON CONFLICT DO NOTHING`, [
        queue,
      ])
    );
  }

  async resume(queue: string): Promise<void> {
    await this.#db(() =>
      this.sql.begin(async (tx) => {
        await tx.unsafe(`DELETE FROM ${this.#s}.paused WHERE name = $1`, [queue]);
        await this.#notify(tx, [queue]);
      })
    );
    this.#changed(queue);
  }

  async cancel(ids: readonly number[]): Promise<CancelOutcome> {
    const wanted = [...new Set(ids)].filter((id) => Number.isSafeInteger(id) && id > 0);
    let gone: postgres.Row[] = [];
    await this.#db(() =>
      retrying(() =>
        this.sql.begin(async (tx) => {
          gone = wanted.length === 0 ? [] : await this.#remove(tx, wanted, "cancelled", null);
          if (gone.length === 0) return;
          const deltas = new Map<string, CounterDelta>();
          const byOwner = new Map<string, number[]>();
          for (const row of gone) {
            const d = deltaOf(deltas, row.queue);
            d.removed++;
            d.bytes -= Number(row.bytes);
            if (row.lease_owner !== null) {
              const list = byOwner.get(row.lease_owner) ?? [];
              list.push(Number(row.id));
              byOwner.set(row.lease_owner, list);
            }
          }
          await this.#count(tx, deltas);
          await this.#notify(tx, [...deltas.keys()]);
          // The holders' masters hear of it at commit (this one too, and finds it done).
          const notices: string[] = [];
          for (const [owner, list] of byOwner) {
            let chunk: number[] = [];
            let length = 0;
            for (const id of list) {
              const text = String(id);
              if (chunk.length > 0 && length + text.length + 1 > NOTICE_IDS_CHARS) {
                notices.push(`${CANCEL_MARK}${owner} ${chunk.join(",")}`);
                chunk = [];
                length = 0;
              }
              chunk.push(id);
              length += text.length + 1;
            }
            notices.push(`${CANCEL_MARK}${owner} ${chunk.join(",")}`);
          }
          if (notices.length > 0) {
            await tx.unsafe(`SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n`, [
              this.#channel,
              textArray(notices),
            ]);
          }
        })
      )
    );
    const found = new Set<number>();
    const queues = new Set<string>();
    const byOwner = new Map<string, number[]>();
    for (const row of gone) {
      found.add(Number(row.id));
      queues.add(row.queue);
      if (row.lease_owner !== null && this.#sessions.has(row.lease_owner)) {
        const list = byOwner.get(row.lease_owner) ?? [];
        list.push(Number(row.id));
        byOwner.set(row.lease_owner, list);
      }
    }
    this.forgetOriginals(found);
    for (const [owner, list] of byOwner) this.#revoke(owner, list);
    for (const queue of queues) this.#changed(queue);
    if (this.#putQueues.size > 0) { for (const name of this.#putQueues.keys()) this.#admit(name); }
    return {
      cancelled: wanted.filter((id) => found.has(id)),
      missing: [...new Set(ids)].filter((id) => !found.has(id)),
    };
  }

  /**
   * Items session `owner` held were cancelled: it forgets their leases and
   * is told of those it still held (when it is a session of this master).
   */
  #revoke(owner: string, ids: readonly number[]): void {
    const session = this.#sessions.get(owner);
    if (session === undefined) return;
    const held = ids.filter((id) => session.leases.delete(id));
    if (held.length === 0 || session.closed) return;
    try {
      session.onCancel?.(held);
    } catch (error) {
      this.#log.warn("a session's cancel handler failed", {
        session: owner,
        error: (error as Error)?.message ?? String(error),
      });
    }
  }

  async job(id: number): Promise<JobInfo | undefined> {
    if (!Number.isSafeInteger(id) || id <= 0) return undefined;
    const s = this.#s;
    return await this.#db(async () => {
      const [live] = await this.sql.unsafe(
        `SELECT i.id, i.queue, i.attempts, i.priority, i.grp, i.ukey, i.value, i.last_error,
           i.created_at, i.ready_at, i.lease_owner, i.leased_at, i.lease_until,
           i.progress_percent, i.progress_message, i.progress_at,
           x.name AS holder_name, x.address AS holder_address, ${s}.now_ms() AS now
         FROM ${s}.items i LEFT JOIN ${s}.sessions x ON x.id = i.lease_owner
         WHERE i.id = $1`,
        [id],
      );
      if (live !== undefined) {
        const now = Number(live.now);
        const readyAt = Number(live.ready_at);
        const state: JobState = live.lease_owner !== null
          ? "leased"
          : readyAt > now
          ? "delayed"
          : "ready";
        const info = this.#jobInfo(live, state);
        info.value = decode(plain(live.value), "trusted");
        // Under a lease, only what this lease reported: an earlier one's progress is stale.
        const current = state !== "leased" ||
          (live.leased_at !== null && Number(live.progress_at) >= Number(live.leased_at));
        if (!current) delete info.progress;
        if (state === "delayed") info.readyAt = readyAt;
        if (state === "leased") {
          if (live.leased_at !== null) info.leasedAt = Number(live.leased_at);
          info.leaseExpiresAt = Number(live.lease_until);
          info.holder = {
            session: live.lease_owner,
            name: live.holder_name ?? "",
            address: live.holder_address ?? "",
          };
        }
        return info;
      }
      if (this.#historyCount === 0) return undefined;
      // Only within the history kept, whether or not the prune has run since.
      const [done] = await this.sql.unsafe(
        `SELECT f.* FROM ${s}.finished f
         WHERE f.id = $1 AND f.finished_at >= ${s}.now_ms() - $2::bigint
           AND (SELECT count(*) FROM (
             SELECT 1 FROM ${s}.finished n WHERE (n.finished_at, n.id) > (f.finished_at, f.id)
             LIMIT $3) newer) < $3`,
        [id, this.#historyMs, this.#historyCount],
      );
      if (done === undefined) return undefined;
      const info = this.#jobInfo(done, done.state as JobState);
      if (done.value !== null) info.value = decode(plain(done.value), "trusted");
      if (done.result !== null) info.result = decode(plain(done.result), "trusted");
      if (done.error !== null) info.error = done.error;
      info.finishedAt = Number(done.finished_at);
      return info;
    });
  }

  /** The fields a live item's row and a history record share, as a {@link JobInfo}. */
  #jobInfo(row: postgres.Row, state: JobState): JobInfo {
    const info: JobInfo = {
      id: Number(row.id),
      queue: row.queue,
      state,
      attempts: Number(row.attempts),
      priority: Number(row.priority),
      createdAt: Number(row.created_at),
    };
    if (row.grp !== null) info.group = row.grp;
    if (row.ukey !== null) info.key = row.ukey;
    if (row.last_error !== null && row.last_error !== undefined) info.error = row.last_error;
    if (row.progress_at !== null && row.progress_at !== undefined) {
      info.progress = { at: Number(row.progress_at) };
      if (row.progress_percent !== null) info.progress.percent = Number(row.progress_percent);
      if (row.progress_message !== null) info.progress.message = row.progress_message;
    }
    return info;
  }

  async setLimits(queue: string, changes: LimitChanges): Promise<QueueLimits> {
    const checked = checkLimits(changes);
    const s = this.#s;
    let limits: QueueLimits = { ...NO_LIMITS };
    await this.#db(() =>
      retrying(() =>
        this.sql.begin(async (tx) => {
          await tx.unsafe(
            `INSERT INTO ${s}.limits (queue) VALUES ($1) ON CONFLICT (queue) DO NOTHING`,
            [queue],
          );
          const [row] = await tx.unsafe(`SELECT * FROM ${s}.limits WHERE queue = $1 FOR UPDATE`, [
            queue,
          ]);
          const before = limitsOf(row);
          limits = { ...before, ...checked };
          if (!hasAny(limits)) {
            await tx.unsafe(`DELETE FROM ${s}.limits WHERE queue = $1`, [queue]);
            limits = { ...NO_LIMITS };
          } else {
            // A new rate starts afresh: what the old one had let through does not hold it back.
            const rateChanged = limits.rateCount !== before.rateCount ||
              limits.ratePeriodMs !== before.ratePeriodMs;
            await tx.unsafe(
              `UPDATE ${s}.limits SET rate_count = $2, rate_period_ms = $3, concurrency = $4,
                 group_concurrency = $5, tat = CASE WHEN $6::boolean THEN 0 ELSE tat END
               WHERE queue = $1`,
              [
                queue,
                limits.rateCount,
                limits.ratePeriodMs,
                limits.concurrency,
                limits.groupConcurrency,
                rateChanged,
              ],
            );
          }
          await this.#notify(tx, [queue]);
        })
      )
    );
    if (hasAny(limits)) this.#markSpecial(queue, true);
    if (limits.concurrency > 0 || limits.groupConcurrency > 0) this.#slotted.add(queue);
    else this.#slotted.delete(queue);
    const q = this.#getQueues.get(queue);
    if (q !== undefined && hasAny(limits)) q.special = true;
    this.#changed(queue);
    return limits;
  }

  async limits(queue?: string): Promise<NamedQueueLimits[]> {
    const s = this.#s;
    return await this.#db(async () => {
      if (queue !== undefined) {
        const [row] = await this.sql.unsafe(`SELECT * FROM ${s}.limits WHERE queue = $1`, [queue]);
        return [{ queue, ...(row === undefined ? { ...NO_LIMITS } : limitsOf(row)) }];
      }
      const rows = await this.sql.unsafe(`SELECT * FROM ${s}.limits ORDER BY queue`);
      return rows.map((row) => ({ queue: row.queue as string, ...limitsOf(row) }))
        .filter((row) => hasAny(row));
    });
  }

  /** Records a held item's progress and renews its lease; resolves with its new expiry, if held. */
  async progressNow(
    owner: string,
    id: number,
    attempt: number,
    report: ProgressReport,
    leaseMs: number,
  ): Promise<number | undefined> {
    const rows = await this.#db(() =>
      this.#hotSql.unsafe(this.#st.progress, [
        id,
        attempt,
        owner,
        report.percent ?? null,
        report.message ?? null,
        leaseMs,
      ] as never[])
    );
    if (rows.length === 0) return undefined;
    const until = Number(rows[0].lease_until);
    this.#armSweep(until + EXPIRY_SLACK_MS);
    return until;
  }

  async peek(queue: string, limit: number): Promise<PeekedItem[]> {
    const s = this.#s;
    const rows = await this.#db(() =>
      this.sql.unsafe(
        `WITH now AS MATERIALIZED (SELECT ${s}.now_ms() AS t)
         SELECT id, attempts, value FROM (
           (SELECT id, attempts, value, priority, ready_at, seq FROM ${s}.items
            WHERE queue = $1 AND lease_owner IS NULL AND grp IS NULL
              AND ready_at <= (SELECT t FROM now)
            ORDER BY priority DESC, ready_at, seq LIMIT $2)
           UNION ALL
           (SELECT id, attempts, value, priority, ready_at, seq FROM ${s}.items
            WHERE queue = $1 AND lease_owner IS NULL AND grp IS NOT NULL
              AND ready_at <= (SELECT t FROM now)
            ORDER BY priority DESC, ready_at, seq LIMIT $2)
         ) x ORDER BY priority DESC, ready_at, seq LIMIT $2`,
        [queue, Math.max(0, Math.floor(limit))],
      )
    );
    return rows.map((r) => ({
      id: Number(r.id),
      attempts: Number(r.attempts),
      value: decode(plain(r.value), "trusted"),
    }));
  }

  async drop(queue: string, ids: readonly number[] | "all"): Promise<number> {
    return await this.#removeWaiting(queue, ids === "all" ? undefined : ids, true);
  }

  async requeueDead(deadQueue: string, ids: readonly number[] | "all"): Promise<number[]> {
    if (ids !== "all") return (await this.#requeueSome(deadQueue, ids)).added;
    // In transactions of REQUEUE_CHUNK letters, by id; the items they become have ids above
    // every letter's there was, so the walk stops before them.
    const added: number[] = [];
    let after = 0;
    let below = Number.MAX_SAFE_INTEGER;
    for (;;) {
      const chunk = await this.#requeueSome(deadQueue, { after, below });
      added.push(...chunk.added);
      for (const id of chunk.added) below = Math.min(below, id);
      if (chunk.scanned < REQUEUE_CHUNK) return added;
      after = chunk.last;
    }
  }

  /**
   * Moves dead letters of `deadQueue` back, in one transaction: those with
   * the given ids, or the next {@link REQUEUE_CHUNK} ready rows with ids
   * between `after` and `below`. Resolves with the new ids, how many rows
   * were looked at and the last one's id.
   */
  async #requeueSome(
    deadQueue: string,
    which: readonly number[] | { after: number; below: number },
  ): Promise<{ added: number[]; scanned: number; last: number }> {
    const s = this.#s;
    let added: number[] = [];
    let scanned = 0;
    let last = 0;
    const touched = new Set<string>();
    await this.#db(() =>
      this.sql.begin(async (tx) => {
        const rows = Array.isArray(which)
          ? await tx.unsafe(
            `SELECT id, value FROM ${s}.items WHERE queue = $1 AND id = ANY($2::bigint[])
               AND lease_owner IS NULL AND ready_at <= ${s}.now_ms()
             ORDER BY ready_at, seq FOR UPDATE`,
            [deadQueue, intArray(which as readonly number[])],
          )
          : await tx.unsafe(
            `SELECT id, value FROM ${s}.items WHERE queue = $1 AND id > $2 AND id < $3
               AND lease_owner IS NULL AND ready_at <= ${s}.now_ms()
             ORDER BY id LIMIT $4 FOR UPDATE`,
            [
              deadQueue,
              (which as { after: number }).after,
              (which as { below: number }).below,
              REQUEUE_CHUNK,
            ],
          );
        scanned = rows.length;
        if (rows.length > 0) last = Number(rows[rows.length - 1].id);
        const taken: number[] = [];
        const queues: string[] = [];
        const values: Uint8Array[] = [];
        const deltas = new Map<string, CounterDelta>();
        for (const r of rows) {
          const letter = decode(plain(r.value), "trusted");
          if (!isDeadLetterOf(letter, deadQueue)) continue;
          taken.push(Number(r.id));
          const d = deltaOf(deltas, deadQueue);
          d.removed++;
          d.bytes -= (r.value as Uint8Array).length;
          queues.push((letter as DeadLetter).queue);
          values.push(encode((letter as DeadLetter).value));
        }
        if (taken.length === 0) return;
        await tx.unsafe(`DELETE FROM ${s}.items WHERE id = ANY($1::bigint[])`, [intArray(taken)]);
        added = await this.#insert(tx, queues, values, deltas);
        await this.#count(tx, deltas);
        for (const q of queues) touched.add(q);
        touched.add(deadQueue);
        await this.#notify(tx, [...touched]);
      })
    );
    for (const q of touched) this.#changed(q);
    return { added, scanned, last };
  }

  async waitEmpty(queue: string, signal?: AbortSignal): Promise<void> {
    const pollMs = Math.min(this.#options.pollMs ?? DEFAULT_POLL_MS, 100);
    while (!signal?.aborted && !this.#closing) {
      const [row] = await this.#db(() =>
        this.sql.unsafe(
          `SELECT EXISTS (SELECT 1 FROM ${this.#s}.items WHERE queue = $1) AS busy`,
          [queue],
        )
      );
      if (!row.busy) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, pollMs);
        function done() {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          resolve();
        }
        signal?.addEventListener("abort", done, { once: true });
      });
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#heartbeat);
      clearInterval(this.#poll);
      clearTimeout(this.#sweepTimer);
      clearTimeout(this.#tellTimer);
      for (const q of this.#getQueues.values()) clearTimeout(q.timer);
      for (const session of [...this.#sessions.values()]) await session.close();
      for (const q of [...this.#getQueues.values()]) {
        for (const r of q.requests) if (!r.done) this.#finish(q, r, []);
      }
      while (this.#claims.size > 0) await Promise.all([...this.#claims]);
      await this.#putBatcher.settled();
      await this.#ackBatcher.settled();
      try {
        await this.#listener?.unlisten();
        await this.sql.unsafe(`DELETE FROM ${this.#s}.sessions WHERE master = $1`, [this.masterId]);
        await this.sql.unsafe(`DELETE FROM ${this.#s}.masters WHERE id = $1`, [this.masterId]);
      } catch {
        // The database is away: the others find this master dead by its heartbeat.
      }
      await Promise.all(
        [this.sql, this.#hotSql, this.#claimSql].map((pool) => pool.end({ timeout: 5 })),
      ).catch(() => {});
    })();
    return this.#closing;
  }

  /** Whether it is closing or closed. */
  get closing(): boolean {
    return this.#closing !== undefined;
  }
}

/** A lease as its session records it. */
interface HeldLease {
  /** The item's attempt when it was handed out: the lease's fencing token. */
  readonly attempt: number;
  /** When the lease runs out, in the database's time (ms). */
  until: number;
  /** The item's unique key stays taken after it finishes (a key hold): its ack records that. */
  readonly hold: boolean;
  /** When this master handed it out (`performance.now()`): its run time ends at the ack. */
  readonly since: number;
}

/** Leases a session records before it first forgets those long run out. */
const LEASES_PRUNE_AT = 4_096;

/** How long after a lease ran out its record may go, in ms (clock skew, a sweep's delay). */
const FORGET_LEASE_MS = 5_000;

/** A session of a {@link PostgresBroker}. */
class PgSession implements BrokerSession {
  readonly id: string;
  readonly name: string;
  readonly address: string;
  readonly connectedAt: number;
  lastSeenAt: number;
  /**
   * The leases handed to it, by id: the attempt (the fencing token its
   * settlements carry) and when the lease runs out. Kept bounded: once it
   * grows past {@link #pruneAt}, leases that ran out more than
   * {@link FORGET_LEASE_MS} ago are forgotten (an ack of theirs would be
   * refused by the database anyway), so a client that takes and never
   * settles does not grow the master.
   */
  readonly leases = new Map<number, HeldLease>();
  #pruneAt = LEASES_PRUNE_AT;
  /** Its claims and acks in flight, which its close waits for. */
  readonly pending = new Set<Promise<unknown>>();
  closed = false;
  /** The last action {@link PostgresBroker.control} passed it, if any. */
  controlled: ControlAction | undefined = undefined;
  #onControl: ((action: ControlAction) => void) | undefined = undefined;
  readonly #broker: PostgresBroker;
  #closing: Promise<void> | undefined;

  constructor(broker: PostgresBroker, id: string, info: SessionInfo, connectedAt: number) {
    this.#broker = broker;
    this.id = id;
    this.name = info.name;
    this.address = info.address;
    this.connectedAt = connectedAt;
    this.lastSeenAt = Date.now();
  }

  touch(): void {
    this.lastSeenAt = Date.now();
    this.#broker.dirty(this);
  }

  onControl(handler: (action: ControlAction) => void): void {
    this.#onControl = handler;
  }

  /** Called by the broker: passes `action` to the front-end's handler, if it set one. */
  control(action: ControlAction): void {
    this.controlled = action;
    if (this.closed) return;
    try {
      this.#onControl?.(action);
    } catch {
      // The front-end's handler failing must not fail the admin's call; the session lives on.
    }
  }

  async put(
    queue: string,
    values: readonly unknown[],
    options: PutOptions = {},
  ): Promise<PutIds> {
    if (this.closed) throw new SessionClosedError();
    if (this.#broker.closing) throw new BrokerClosedError();
    checkPutOptions(options, values.length);
    const encoded = values.map((v) => encode(v));
    await this.#broker.admit(queue, encoded);
    const ids = this.#broker.settings.maxQueueLength > 0
      ? await this.#broker.holdPut(this, queue, encoded, options)
      : await this.#broker.putNow(queue, encoded, options);
    if (options.originals !== undefined) this.#broker.keepOriginals(ids, options.originals);
    return ids;
  }

  async get(queue: string, options: GetOptions): Promise<readonly Delivery[]> {
    if (this.closed) return [];
    if (options.timeoutMs > 0) await this.#broker.checkQueue(queue);
    return await this.#broker.get(this, queue, options);
  }

  /**
   * Splits `ids` into the leases this session holds (taken out of its
   * record, with their attempts) and the ids refused at once.
   */
  #take(ids: readonly number[]): {
    held: number[];
    attempts: number[];
    leases: HeldLease[];
    refused: number[];
  } {
    const held: number[] = [];
    const attempts: number[] = [];
    const leases: HeldLease[] = [];
    const refused: number[] = [];
    for (const id of ids) {
      const lease = this.leases.get(id);
      if (lease === undefined || this.closed) refused.push(id);
      else {
        this.leases.delete(id);
        held.push(id);
        attempts.push(lease.attempt);
        leases.push(lease);
      }
    }
    return { held, attempts, leases, refused };
  }

  /** Puts back into the record the leases a call did not settle. */
  #restore(held: number[], leases: HeldLease[]): void {
    // A newer lease of the same id, handed out meanwhile, stays.
    held.forEach((id, i) => {
      if (!this.leases.has(id)) this.leases.set(id, leases[i]);
    });
  }

  /** Records a lease handed to this session, forgetting long-expired ones now and then. */
  hold(id: number, attempt: number, until: number, keyHold: boolean): void {
    this.leases.set(id, { attempt, until, hold: keyHold, since: performance.now() });
    if (this.leases.size <= this.#pruneAt) return;
    const before = this.#broker.localNow() - FORGET_LEASE_MS;
    for (const [held, lease] of this.leases) if (lease.until < before) this.leases.delete(held);
    this.#pruneAt = Math.max(LEASES_PRUNE_AT, 2 * this.leases.size);
  }

  async ack(ids: readonly number[], results?: AckResults): Promise<number[]> {
    const { held, attempts, leases, refused } = this.#take(ids);
    if (held.length === 0) return refused;
    let request: AckRequest = {
      owner: this.id,
      ids: held,
      attempts,
      holds: leases.some((lease) => lease.hold),
    };
    if (results !== undefined) {
      const values: Uint8Array[] = [];
      const sources: number[] = [];
      const sourceAttempts: number[] = [];
      const index = new Map<number, number>();
      ids.forEach((id, i) => {
        if (!index.has(id)) index.set(id, i);
      });
      held.forEach((id, k) => {
        const i = index.get(id)!;
        if (i < results.values.length) {
          sources.push(id);
          sourceAttempts.push(attempts[k]);
          values.push(encode(results.values[i]));
        }
      });
      request = {
        ...request,
        results: { queue: results.queue, values, sources, attempts: sourceAttempts },
      };
    }
    let done: Set<number>;
    try {
      const acking = this.#broker.ackNow(request);
      this.pending.add(acking);
      try {
        done = await acking;
      } finally {
        this.pending.delete(acking);
      }
    } catch (error) {
      this.#restore(held, leases);
      throw error;
    }
    const now = performance.now();
    held.forEach((id, i) => {
      if (done.has(id)) this.#broker.telemetry.observeJob(now - leases[i].since);
      else refused.push(id);
    });
    return refused;
  }

  async nack(ids: readonly number[], delayMs = 0): Promise<number[]> {
    return await this.#settle(
      ids,
      (held, attempts) => this.#broker.nackNow(this.id, held, attempts, Math.max(0, delayMs)),
    );
  }

  async fail(ids: readonly number[], error: string): Promise<number[]> {
    return await this.#settle(
      ids,
      (held, attempts) => this.#broker.failNow(this.id, held, attempts, error),
    );
  }

  onCancel: ((ids: number[]) => void) | undefined = undefined;

  async progress(id: number, report: ProgressReport, leaseMs: number): Promise<boolean> {
    checkProgress(report);
    const lease = this.leases.get(id);
    if (lease === undefined || this.closed) return false;
    const until = await this.#broker.progressNow(
      this.id,
      id,
      lease.attempt,
      report,
      Math.max(0, leaseMs),
    );
    if (until === undefined) {
      if (this.leases.get(id) === lease) this.leases.delete(id);
      return false;
    }
    lease.until = this.#broker.localNow() + leaseMs;
    return true;
  }

  async extend(ids: readonly number[], leaseMs: number): Promise<number[]> {
    const { held, attempts, leases, refused } = this.#take(ids);
    if (held.length === 0) return refused;
    let done: Set<number>;
    try {
      done = await this.#broker.extendNow(this.id, held, attempts, Math.max(0, leaseMs));
    } finally {
      this.#restore(held, leases);
    }
    const until = this.#broker.localNow() + leaseMs;
    held.forEach((id, i) => {
      if (done.has(id)) leases[i].until = until;
      else {
        refused.push(id);
        if (this.leases.get(id) === leases[i]) this.leases.delete(id);
      }
    });
    return refused;
  }

  async #settle(
    ids: readonly number[],
    write: (held: number[], attempts: number[]) => Promise<Set<number>>,
  ): Promise<number[]> {
    const { held, attempts, leases, refused } = this.#take(ids);
    if (held.length === 0) return refused;
    let done: Set<number>;
    try {
      done = await write(held, attempts);
    } catch (error) {
      this.#restore(held, leases);
      throw error;
    }
    for (const id of held) if (!done.has(id)) refused.push(id);
    return refused;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.closed = true;
      await this.#broker.closeSession(this);
      this.leases.clear();
    })();
    return this.#closing;
  }
}
