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
import type {
  JobInfo,
  LimitChanges,
  NamedQueueLimits,
  QueueLimits,
} from "../../model/jobs.ts";
import type {
  AckResults,
  Broker,
  BrokerSession,
  CancelOutcome,
  JobOptions,
  ProgressReport,
  BrokerSettings,
  BrokerStats,
  Delivery,
  GetOptions,
  PeekedItem,
  PutOptions,
  SessionInfo,
  SessionView,
} from "../broker.ts";
import { STATS_QUEUE_LIMIT } from "../broker.ts";
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
import { DEFAULT_PG_SCHEMA, migrate, quoteSchema } from "./schema.ts";
import { FRONT_SPACING, type Statements, statements } from "./statements.ts";

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
  /** Timer for the next delayed item's time. */
  timer?: ReturnType<typeof setTimeout>;
  timerAt: number;
}

/** A put waiting for room in a full queue. */
interface HeldPut {
  readonly session: PgSession;
  readonly values: Uint8Array[];
  readonly options: PutOptions;
  readonly resolve: (ids: number[]) => void;
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
}

/** One ack in an ack batch. */
interface AckRequest {
  readonly owner: string;
  readonly ids: readonly number[];
  readonly attempts: readonly number[];
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
  };
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

  // TEMPORARY (#13 in progress): replaced before commit.
  cancel(_ids: readonly number[]): Promise<CancelOutcome> {
    return Promise.reject(new Error("cancel: not implemented yet"));
  }
  job(_id: number): Promise<JobInfo | undefined> {
    return Promise.reject(new Error("job: not implemented yet"));
  }
  setLimits(_queue: string, _changes: LimitChanges): Promise<QueueLimits> {
    return Promise.reject(new Error("setLimits: not implemented yet"));
  }
  limits(_queue?: string): Promise<NamedQueueLimits[]> {
    return Promise.reject(new Error("limits: not implemented yet"));
  }
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

  /** A hint from another master: queue `queue` changed. */
  #hint(payload: string): void {
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
  keepOriginals(ids: readonly number[], originals: readonly unknown[]): void {
    for (let i = 0; i < ids.length; i++) {
      if (originals[i] === undefined) continue;
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
    for (const put of puts) {
      for (const value of put.values) {
        queues.push(put.queue);
        values.push(value);
        delays.push(put.delayMs);
        maxes.push(put.maxAttempts);
      }
    }
    return [
      textArray(queues),
      byteaArray(values),
      intArray(delays),
      intArray(maxes),
      this.masterId,
      this.#channel,
      this.#prefix,
      lane,
    ] as never[];
  }

  /** Adds encoded `values` to `queue` through the put batcher. */
  async putNow(queue: string, values: Uint8Array[], options: PutOptions): Promise<number[]> {
    try {
      const ids = await this.#putBatcher.add(putRequest(queue, values, options));
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
  ): Promise<number[]> {
    return new Promise<number[]>((resolve, reject) => {
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
      let ids: number[][] = [];
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
          const puts = admitted.map((held) => putRequest(queue, held.values, held.options));
          const rows = await tx.unsafe(this.#st.put, this.#putParams(puts, ADMIT_LANE));
          let k = 0;
          ids = admitted.map((held) => held.values.map(() => Number(rows[k++].id)));
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
    if (q.claims >= (q.plentiful ? CLAIMS_PER_QUEUE : 1)) {
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
    try {
      rows = await this.#claimSql.unsafe(this.#st.claim, [
        q.name,
        owners.length,
        textArray(owners),
        intArray(leases),
        this.masterId,
        MAX_CLAIM_BYTES,
      ] as never[]);
      this.#health();
    } catch (error) {
      failed = error;
      this.#health(error);
    }
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
        r.session.hold(id, attempts, Number(row.lease_until));
        earliest = Math.min(earliest, Number(row.lease_until));
      }
      start = end;
      r.claiming = false;
      if (r.session.closed) this.#finish(q, r, []); // its rows go back with its other leases
      else if (got.length > 0) this.#finish(q, r, got);
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
    if (q.again || full) {
      setImmediate(() => this.dispatch(q.name));
    } else if (failed === undefined && q.requests.some((r) => r.waits && !r.done)) {
      // Some still wait with nothing: wake them when the next delayed item is due.
      await this.#armNextReady(q);
    }
  }

  /** Sets a timer at the time the next delayed item of `q` becomes ready. */
  async #armNextReady(q: GetQueue): Promise<void> {
    try {
      const [row] = await this.sql.unsafe(
        `SELECT min(ready_at) AS at FROM ${this.#s}.items
         WHERE queue = $1 AND lease_owner IS NULL AND ready_at > ${this.#s}.now_ms()`,
        [q.name],
      );
      if (row?.at !== null && row?.at !== undefined) this.#wakeAt(q.name, Number(row.at));
    } catch (error) {
      this.#health(error);
    }
  }

  /** Serves `queue`'s waiting gets at database time `at`. */
  #wakeAt(queue: string, at: number): void {
    const q = this.#getQueues.get(queue);
    if (q === undefined || at >= q.timerAt) return;
    clearTimeout(q.timer);
    q.timerAt = at;
    const wait = Math.min(Math.max(0, at - this.localNow()) + EXPIRY_SLACK_MS, MAX_TIMER_MS);
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
    const started = performance.now();
    const rows = await retrying(() =>
      this.#hotSql.unsafe(this.#st.ack, [
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
      if (delayMs > 0) this.#wakeAt(queue, this.localNow() + delayMs);
      else this.#changed(queue);
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
          await tx.unsafe(`DELETE FROM ${s}.items WHERE id = ANY($1::bigint[])`, [
            intArray(buried.map((r) => Number(r.id))),
          ]);
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
      `INSERT INTO ${s}.items (id, queue, ready_at, seq, value)
       SELECT n.id, n.queue, ${s}.now_ms(), n.id, n.value
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
      // items_claimable. No scan of all items, however deep the queues.
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
             CASE WHEN c.held > 0 THEN (
               SELECT count(*) FROM ${s}.items i
               WHERE i.queue = c.queue AND i.lease_owner IS NULL AND i.ready_at > (SELECT t FROM now)
             ) ELSE 0 END AS delayed
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
      const [rows, leased] = await Promise.all([
        this.sql.unsafe(`SELECT * FROM ${s}.sessions ORDER BY connected_at, id`),
        this.sql.unsafe(
          `SELECT lease_owner, count(*) AS n FROM ${s}.items WHERE lease_owner IS NOT NULL
           GROUP BY lease_owner`,
        ),
      ]);
      const held = new Map<string, number>();
      for (const r of leased) held.set(r.lease_owner, Number(r.n));
      const out: SessionView[] = [];
      for (const r of rows) {
        const local = this.#sessions.get(r.id);
        if (Number(r.master) === this.masterId && local === undefined) continue;
        out.push({
          id: r.id,
          name: r.name,
          address: r.address,
          connectedAt: Number(r.connected_at),
          lastSeenAt: local === undefined ? Number(r.last_seen) : local.lastSeenAt + this.#skew,
          leased: held.get(r.id) ?? 0,
          waiting: local === undefined ? Number(r.waiting) : this.#waitingOf(local),
        });
      }
      return out;
    });
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

  async peek(queue: string, limit: number): Promise<PeekedItem[]> {
    const s = this.#s;
    const rows = await this.#db(() =>
      this.sql.unsafe(
        `SELECT id, attempts, value FROM ${s}.items
         WHERE queue = $1 AND lease_owner IS NULL AND ready_at <= ${s}.now_ms()
         ORDER BY ready_at, seq LIMIT $2`,
        [queue, Math.max(0, Math.floor(limit))],
      )
    );
    return rows.map((r) => ({
      id: Number(r.id),
      attempts: Number(r.attempts),
      value: decode(plain(r.value), "trusted"),
    }));
  }

  async drop(queue: string, ids: readonly number[]): Promise<number> {
    const s = this.#s;
    let dropped = 0;
    await this.#db(() =>
      this.sql.begin(async (tx) => {
        const rows = await tx.unsafe(
          `DELETE FROM ${s}.items WHERE queue = $1 AND id = ANY($2::bigint[])
             AND lease_owner IS NULL AND ready_at <= ${s}.now_ms()
           RETURNING octet_length(value) AS bytes`,
          [queue, intArray(ids)],
        );
        dropped = rows.length;
        if (dropped === 0) return;
        const deltas = new Map<string, CounterDelta>();
        const d = deltaOf(deltas, queue);
        d.removed += dropped;
        for (const r of rows) d.bytes -= Number(r.bytes);
        await this.#count(tx, deltas);
        await this.#notify(tx, [queue]);
      })
    );
    if (dropped > 0) this.#changed(queue);
    return dropped;
  }

  async requeueDead(deadQueue: string, ids: readonly number[]): Promise<number[]> {
    const s = this.#s;
    let added: number[] = [];
    const touched = new Set<string>();
    await this.#db(() =>
      this.sql.begin(async (tx) => {
        const rows = await tx.unsafe(
          `SELECT id, value FROM ${s}.items WHERE queue = $1 AND id = ANY($2::bigint[])
             AND lease_owner IS NULL AND ready_at <= ${s}.now_ms()
           ORDER BY ready_at, seq FOR UPDATE`,
          [deadQueue, intArray(ids)],
        );
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
    return added;
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
}

/** Leases a session records before it first forgets those long run out. */
const LEASES_PRUNE_AT = 4_096;

/** How long after a lease ran out its record may go, in ms (clock skew, a sweep's delay). */
const FORGET_LEASE_MS = 5_000;

/** A session of a {@link PostgresBroker}. */
class PgSession implements BrokerSession {

  // TEMPORARY (#13 in progress): replaced before commit.
  onCancel: ((ids: number[]) => void) | undefined = undefined;
  progress(_id: number, _report: ProgressReport, _leaseMs: number): Promise<boolean> {
    return Promise.reject(new Error("progress: not implemented yet"));
  }
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

  async put(
    queue: string,
    values: readonly unknown[],
    options: PutOptions = {},
  ): Promise<number[]> {
    if (this.closed) throw new SessionClosedError();
    if (this.#broker.closing) throw new BrokerClosedError();
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
  hold(id: number, attempt: number, until: number): void {
    this.leases.set(id, { attempt, until });
    if (this.leases.size <= this.#pruneAt) return;
    const before = this.#broker.localNow() - FORGET_LEASE_MS;
    for (const [held, lease] of this.leases) if (lease.until < before) this.leases.delete(held);
    this.#pruneAt = Math.max(LEASES_PRUNE_AT, 2 * this.leases.size);
  }

  async ack(ids: readonly number[], results?: AckResults): Promise<number[]> {
    const { held, attempts, leases, refused } = this.#take(ids);
    if (held.length === 0) return refused;
    let request: AckRequest = { owner: this.id, ids: held, attempts };
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
    for (const id of held) if (!done.has(id)) refused.push(id);
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
