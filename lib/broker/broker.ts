/**
 * The broker: the application service every front-end calls.
 *
 * A front-end (the native protocol, Python's managers protocol, the HTTP
 * side, the CLI's admin commands) turns what its peer sent into calls on a
 * {@link Broker}, and what those calls resolve with into replies. It never
 * touches the queue engine or a store: the broker owns durability (a call
 * that changes something resolves only once the change is durable), the one
 * deadline timer (lease expiry, delays, get timeouts) and telemetry.
 *
 * The interface is shaped for more than one implementation: every call is
 * async, and a lease is held by a {@link BrokerSession} named by an id that
 * any master sharing a database could check (not by object identity in one
 * process), with the item's attempt number as its fencing token. An
 * implementation proves itself by passing the shared conformance suite
 * (`tests/broker_conformance.ts`) unchanged.
 *
 * Besides the queue operations, the admin side browses a queue's items
 * ({@link Broker.items}), empties it ({@link Broker.purge}), handles dead
 * letters in bulk ({@link Broker.requeueDead}, {@link Broker.drop} with
 * `"all"`), and asks a session's client to go quiet or stop
 * ({@link Broker.control}, heard through {@link BrokerSession.onControl}).
 *
 * @example
 * ```ts
 * import { openLocalBroker } from "./local.ts";
 * const broker = await openLocalBroker({ store: "memory" });
 * const session = await broker.open({ name: "example", address: "" });
 * await session.put("tasks", [1, 2, 3]);
 * const [job] = await session.get("tasks", { max: 1, timeoutMs: 0 });
 * await session.ack([job.id]);
 * console.log((await broker.stats("tasks")).queues[0].acked); // 1
 * const page = await broker.items("tasks", { state: "ready", limit: 10 });
 * console.log(page.total, page.items.map((item) => item.value)); // 2 [ 2, 3 ]
 * console.log(await broker.purge("tasks")); // 2
 * session.onControl((action) => console.log("asked to", action));
 * await broker.control(session.id, "quiet"); // asked to quiet
 * await session.close();
 * await broker.close();
 * ```
 *
 * @module
 */

import type { QueueStats } from "../model/types.ts";
import {
  CONTROL_ACTIONS,
  type ControlAction,
  DEFAULT_ITEMS_PAGE,
  type HeldItem,
  type ItemPage,
  type ItemsQuery,
  LISTED_STATES,
  type ListedState,
  MAX_HELD_LISTED,
  MAX_ITEMS_PAGE,
  type SessionView,
} from "../model/admin.ts";
import type {
  JobInfo,
  LimitChanges,
  NamedQueueLimits,
  PutIds,
  QueueLimits,
} from "../model/jobs.ts";

export type { PutIds };
export type { ControlAction, HeldItem, ItemPage, ItemsQuery, ListedState, SessionView };
export { CONTROL_ACTIONS, DEFAULT_ITEMS_PAGE, LISTED_STATES, MAX_HELD_LISTED, MAX_ITEMS_PAGE };
import type { Telemetry } from "./telemetry.ts";

/** Who opens a session: a connection, named by its peer. */
export interface SessionInfo {
  /** Name the client gave (e.g. host and pid), or a description of it. */
  name: string;
  /** The peer's network address (`HOST:PORT`), or empty when unknown. */
  address: string;
}

/** One leased item, as a get delivers it. */
export interface Delivery {
  /** The item's id, unique within the broker and never reused. */
  readonly id: number;
  /**
   * 1 on first delivery, +1 on each redelivery: the lease's fencing number
   * (a lease is the pair of id and attempt, held by one session).
   */
  readonly attempts: number;
  /** The item itself. */
  readonly value: unknown;
  /**
   * The item as the front-end that put it holds it, when the plain value
   * loses detail that front-end's protocol keeps (e.g. a Python tuple);
   * opaque to the broker and kept in memory only.
   */
  readonly original?: unknown;
}

/** Options of {@link BrokerSession.put}. */
export interface PutOptions {
  /** Milliseconds before the items become ready (0: at once). */
  delayMs?: number;
  /** Deliveries allowed before dead-lettering (0: the queue's policy). */
  maxAttempts?: number;
  /** Front-end forms of the values, by index (see {@link Delivery.original}). */
  originals?: readonly unknown[];
  /**
   * Priority of the items, from `MIN_PRIORITY` to `MAX_PRIORITY` (model/jobs.ts):
   * within a queue a higher priority is served first, first in first out
   * within one priority; a retry keeps it. `DEFAULT_PRIORITY` (0) when absent.
   */
  priority?: number;
  /**
   * The items' group (a tenant, a customer): deliveries within a queue go
   * round-robin across the groups that have ready items (within the highest
   * priority that has any); items without one form a group of their own.
   */
  group?: string;
  /**
   * Unique keys, by index (`undefined` for an item without one): while an
   * item with the same key in the same queue is ready, delayed or leased
   * (or, with {@link keyHoldMs}, finished less than that long ago), a value
   * with that key adds nothing and its id is the existing item's (listed in
   * {@link PutIds.existing}). Within one put, a later value with the key of
   * an earlier one gets the earlier one's id.
   */
  keys?: readonly (string | undefined)[];
  /** How long a key stays taken after its item finished (done, dead or cancelled), in ms. */
  keyHoldMs?: number;
  /**
   * How long to wait for room in a full queue: `undefined` waits as long as
   * the session lives; 0 does not wait. When the time passes the put adds
   * nothing and rejects with {@link QueueFullError}.
   */
  roomTimeoutMs?: number;
}

/** What a running job reports of its progress (see {@link BrokerSession.progress}). */
export interface ProgressReport {
  /** How far along, 0–100. */
  percent?: number;
  /** What it is doing now (at most `MAX_PROGRESS_MESSAGE` characters). */
  message?: string;
}

/** What {@link Broker.cancel} did. */
export interface CancelOutcome {
  /** Ids cancelled now: ready or delayed ones removed, leased ones revoked (their holder told). */
  cancelled: number[];
  /** Ids not cancelled: unknown, or already finished. */
  missing: number[];
}

/** Options of {@link BrokerSession.get}. */
export interface GetOptions {
  /** Most items to lease (at least 1). */
  max: number;
  /** How long to wait when none is ready (0: do not wait). */
  timeoutMs: number;
  /** Lease length; the broker's default when omitted. */
  leaseMs?: number;
}

/** Results put together with an ack, in the same durable step. */
export interface AckResults {
  /** The queue the results go to. */
  queue: string;
  /** One result per acked id, by index; results of ids not held are dropped. */
  values: readonly unknown[];
}

/**
 * One connection's handle on the broker: the leases it holds and the gets it
 * waits on are its own, and end with it.
 */
export interface BrokerSession {
  /** Broker-wide unique id of this session (a lease's holder). */
  readonly id: string;
  /** Name the client gave. */
  readonly name: string;
  /** The peer's address, or empty. */
  readonly address: string;
  /** Records that the peer was heard from just now (its last-seen time). */
  touch(): void;
  /**
   * Adds `values` to `queue` (created on first use); resolves with their ids
   * once they are durable. Waits for room in a full queue as
   * {@link PutOptions.roomTimeoutMs} allows.
   * @throws {QueueFullError} when the queue stayed full.
   * @throws {MemoryFullError} when the items held are near the memory budget.
   * @throws {TooManyQueuesError} when the queue would be one too many.
   * @throws {SessionClosedError} when the session closed while waiting.
   */
  put(queue: string, values: readonly unknown[], options?: PutOptions): Promise<PutIds>;
  /**
   * Leases up to `max` items of `queue`, first come first served among
   * waiting gets; resolves with none when the timeout passes or the session
   * closes. A get that does not wait never creates its queue.
   * @throws {TooManyQueuesError} when a waiting get would create one queue too many.
   */
  get(queue: string, options: GetOptions): Promise<readonly Delivery[]>;
  /**
   * Settles held items as done, with their results put in the same durable
   * step; resolves with the ids this session held no lease on.
   */
  ack(ids: readonly number[], results?: AckResults): Promise<number[]>;
  /** Returns held items to their queue, now or after `delayMs`; resolves with ids not held. */
  nack(ids: readonly number[], delayMs?: number): Promise<number[]>;
  /**
   * Records that work on held items failed with `error`: each is retried
   * after a backoff, or dead-lettered after its last attempt. Resolves with
   * ids not held.
   */
  fail(ids: readonly number[], error: string): Promise<number[]>;
  /** Renews held leases to run `leaseMs` from now; resolves with ids not held. */
  extend(ids: readonly number[], leaseMs: number): Promise<number[]>;
  /**
   * Records the progress of a held item (shown by job lookup) and renews its
   * lease to run `leaseMs` from now; resolves with false when this session
   * does not hold it.
   */
  progress(id: number, report: ProgressReport, leaseMs: number): Promise<boolean>;
  /**
   * Called with the ids of held items that were cancelled (by
   * {@link Broker.cancel}, from any master): their leases are already
   * revoked, so the work on them should stop. Set by the front-end.
   */
  onCancel: ((ids: number[]) => void) | undefined;
  /**
   * Registers the handler {@link Broker.control} calls with an action for
   * this session's client (as with {@link onCancel}, set by the front-end;
   * a later call replaces the handler).
   */
  onControl(handler: (action: ControlAction) => void): void;
  /**
   * Ends the session: its waiting gets resolve with none, its waiting puts
   * reject, and every item it held goes back to the front of its queue.
   * Safe to call twice.
   */
  close(): Promise<void>;
}

/**
 * Checks an {@link ItemsQuery} (what a front-end validated already; a
 * program calling the broker directly may not have) and fills in its
 * defaults.
 * @throws {RangeError} naming the field out of range.
 *
 * @example
 * ```ts
 * import { checkItemsQuery } from "./broker.ts";
 * console.log(checkItemsQuery({ state: "ready" })); // { state: "ready", offset: 0, limit: 50 }
 * ```
 */
export function checkItemsQuery(query: ItemsQuery): Required<ItemsQuery> {
  const { state, offset = 0, limit = DEFAULT_ITEMS_PAGE } = query;
  if (!LISTED_STATES.includes(state)) {
    throw new RangeError(
      `an items query's state must be one of ${LISTED_STATES.join(", ")}, got ${
        JSON.stringify(String(state).slice(0, 40))
      }`,
    );
  }
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`an items query's offset must be a whole number, got ${offset}`);
  }
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_ITEMS_PAGE) {
    throw new RangeError(
      `an items query's limit must be an integer from 1 to ${MAX_ITEMS_PAGE}, got ${limit}`,
    );
  }
  return { state, offset, limit };
}

/**
 * Most queues {@link Broker.stats} lists one by one: the deepest this many;
 * the others are added up in {@link BrokerStats.rest}.
 */
export const STATS_QUEUE_LIMIT = 1_000;

/** What the broker's items take of its memory budget. */
export interface MemoryStats {
  /** Estimated bytes the items held take. */
  heldBytes: number;
  /** Estimated bytes they may take before puts are refused. */
  itemLimitBytes: number;
  /** The whole budget (`--max-memory`), in bytes. */
  limitBytes: number;
}

/** What {@link Broker.stats} reports. */
export interface BrokerStats {
  /**
   * Per-queue statistics, by name: at most {@link STATS_QUEUE_LIMIT} (the
   * deepest); one queue's (zeros if never used) when one was named.
   */
  queues: QueueStats[];
  /** The queues not listed, added up (name empty); absent when all are listed. */
  rest?: QueueStats;
  /** How many queues there are in all (listed or not). */
  queueCount?: number;
  /** The memory budget and what items take of it. */
  memory?: MemoryStats;
  /** Open sessions. */
  clients: number;
  /** Names of the queues that are paused. */
  paused: string[];
  /**
   * When this master started (ms since the epoch). The counters of a memory
   * or PostgreSQL broker count since then; a durable SQLite store keeps its
   * counters across restarts.
   */
  startedAt?: number;
}

/** A ready item seen without taking it. */
export interface PeekedItem {
  /** Its id. */
  id: number;
  /** Deliveries so far. */
  attempts: number;
  /** The item itself. */
  value: unknown;
}

/** The broker's fixed settings, as front-ends announce them. */
export interface BrokerSettings {
  /** Lease length for gets that name none, in ms. */
  readonly defaultLeaseMs: number;
  /** Items a queue may hold before puts to it wait (0: no limit). */
  readonly maxQueueLength: number;
  /** The memory budget, in bytes (`Infinity` when none). */
  readonly maxMemoryBytes?: number;
  /** Most queues at once (0: no limit). */
  readonly maxQueues?: number;
}

/** Options every broker takes about job history and queue limits. */
export interface JobOptions {
  /** Finished jobs whose records are kept for lookup (`DEFAULT_HISTORY_COUNT`; 0: none). */
  historyCount?: number;
  /** How long a finished job's record is kept, in ms (`DEFAULT_HISTORY_MS`). */
  historyMs?: number;
  /** Limits set at start, by queue name (`--queue-rate`, `--queue-concurrency`). */
  limits?: Readonly<Record<string, LimitChanges>>;
}

/** The application service under every front-end. */
export interface Broker {
  /** Its fixed settings. */
  readonly settings: BrokerSettings;
  /** What it counts about itself; front-ends report their error replies and connections here. */
  readonly telemetry: Telemetry;
  /** Opens a session for a connection. */
  open(info: SessionInfo): Promise<BrokerSession>;
  /**
   * Statistics of one queue, or of every queue: the deepest `limit` of them
   * ({@link STATS_QUEUE_LIMIT} by default) and the rest added up.
   */
  stats(queue?: string, limit?: number): Promise<BrokerStats>;
  /** The open sessions. */
  sessions(): Promise<SessionView[]>;
  /** Holds back a queue: its gets wait as if it were empty; everything else goes on. */
  pause(queue: string): Promise<void>;
  /** Lets a paused queue serve gets again, those waiting first. */
  resume(queue: string): Promise<void>;
  /**
   * Cancels items by id: a ready or delayed one is removed, a leased one's
   * lease is revoked and its holder told ({@link BrokerSession.onCancel});
   * either way it ends in the `cancelled` state, never retried nor
   * dead-lettered.
   */
  cancel(ids: readonly number[]): Promise<CancelOutcome>;
  /**
   * What is known of the item with id `id`: live, or finished within the
   * kept history; `undefined` when neither.
   */
  job(id: number): Promise<JobInfo | undefined>;
  /**
   * Changes a queue's delivery limits (fields absent stay as they are;
   * a zero lifts a limit); resolves with the limits now in force.
   */
  setLimits(queue: string, changes: LimitChanges): Promise<QueueLimits>;
  /** The limits of one queue (none set: all zero), or of every queue that has any. */
  limits(queue?: string): Promise<NamedQueueLimits[]>;
  /** Up to `limit` of a queue's ready items, front first, without taking them. */
  peek(queue: string, limit: number): Promise<PeekedItem[]>;
  /**
   * Removes ready items of `queue` for good, by id or `"all"` of them;
   * resolves with how many went.
   */
  drop(queue: string, ids: readonly number[] | "all"): Promise<number>;
  /**
   * Moves dead letters (ready items of the dead-letter queue `deadQueue`), by
   * id or `"all"` of them, back to the queue they failed in as new items;
   * resolves with the new ids.
   */
  requeueDead(deadQueue: string, ids: readonly number[] | "all"): Promise<number[]>;
  /**
   * A page of `queue`'s live items of one state (see {@link ItemsQuery}),
   * without taking them.
   * @throws {RangeError} when the offset or limit is out of range.
   */
  items(queue: string, query: ItemsQuery): Promise<ItemPage>;
  /**
   * Removes every ready and delayed item of `queue` for good (leased ones
   * finish as usual); resolves with how many went.
   */
  purge(queue: string): Promise<number>;
  /**
   * Sends `action` to the session `sessionId`'s client (through
   * {@link BrokerSession.onControl}); resolves with false when there is no
   * such session.
   */
  control(sessionId: string, action: ControlAction): Promise<boolean>;
  /**
   * Resolves once `queue` holds nothing (ready, delayed or leased), or when
   * `signal` aborts; Python's `Queue.join()`.
   */
  waitEmpty(queue: string, signal?: AbortSignal): Promise<void>;
  /** Makes what is pending durable and releases the store; sessions end. Safe to call twice. */
  close(): Promise<void>;
}
