/**
 * The queue engine: named queues, leases, delays and waiting getters, as pure
 * logic with no I/O.
 *
 * Front-ends (one per wire protocol) call these operations on behalf of their
 * connections, each of which is a {@link Consumer}. Time enters only through
 * the injected clock and {@link Engine.tick}, which the master calls at
 * {@link Engine.nextDeadline}; tests drive the engine without sockets or real
 * time.
 *
 * Life of an item: `put` makes it *ready* (or *delayed*); a get *leases* it to
 * one consumer for a limited time and counts an attempt; `ack` removes it;
 * `nack`, an expired lease or the consumer's disconnect make it ready again.
 *
 * Memory: every item carries an estimate of the bytes it takes
 * ({@link itemCost}); the engine keeps their sum ({@link Engine.heldBytes}) so
 * that its host can refuse puts before memory runs out. Queues are created on
 * first use and forgotten again once empty and unused: not at once (so that
 * `taskq status` after a run still shows its counts), but when more than
 * {@link IDLE_QUEUE_SWEEP_THRESHOLD} queues exist, or when
 * {@link EngineOptions.maxQueues} is reached, at a cost spread over the
 * queues created meanwhile.
 *
 * @module
 */

import { Deque } from "../util/deque.ts";
import { ReadySet } from "./ready_set.ts";
import { ChunkPool, type MakeItem } from "./compact_lane.ts";
import { History } from "./history.ts";
import {
  DEFAULT_HISTORY_COUNT,
  DEFAULT_HISTORY_MS,
  hasLimits,
  type JobInfo,
  type JobProgress,
  type JobState,
  type LimitChanges,
  MAX_HISTORY_VALUE_BYTES,
  NO_LIMITS,
  type PutIds,
  type QueueLimits,
  RATE_BURST_MS,
} from "../model/jobs.ts";
import { NOT_SCHEDULED, type Timed, TimerHeap } from "./timer_heap.ts";
import {
  type ItemBatch,
  type LoadedState,
  MemoryStore,
  type Store,
  type StoredItem,
} from "../store/store.ts";
import {
  DEAD_LETTER_SUFFIX,
  deadLetterQueue,
  isDeadLetterOf,
  isDeadLetterQueue,
} from "../model/queue_names.ts";
import { itemCost } from "./item_cost.ts";
import { decode } from "../model/codec.ts";
import {
  type DeadLetter,
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_RETRY_POLICY,
  type QueueStats,
  type RetryPolicy,
} from "../model/types.ts";

export {
  type DeadLetter,
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_RETRY_POLICY,
  type RetryPolicy,
};

/** How many dead waiters a queue tolerates before compacting its waiter list. */
const WAITER_COMPACT_THRESHOLD = 64;

/**
 * Queues kept before empty, unused ones are forgotten (their counters with
 * them): below this many, every queue used since the start stays listed.
 */
export const IDLE_QUEUE_SWEEP_THRESHOLD = 1_000;

/** Most queues by default (0 would mean no limit). */
export const DEFAULT_MAX_QUEUES = 100_000;

/**
 * Estimated bytes of items one get takes at most (but always one item, if
 * any is ready): bounds the reply that carries them, whatever `max` asked.
 */
export const MAX_TAKE_BYTES = 16 * 1024 * 1024;

/** Where an item is in its life: live, or finished and kept in the history. */
export type ItemState = JobState;

/**
 * Most estimated bytes the history of finished items keeps (values and
 * results): past this, the oldest records go first, whatever their count.
 */
export const MAX_HISTORY_BYTES = 64 * 1024 * 1024;

/** A unique key kept taken after its item finished (`keyHoldMs`). */
interface KeyHold {
  /** The finished item's id. */
  readonly id: number;
  /** Until when the key stays taken (engine clock). */
  readonly until: number;
}

/** Options of a put beyond its delay and attempts (see {@link Engine.put}). */
export interface PutExtras {
  /** Priority of every value (higher served first). */
  priority?: number;
  /** Group of every value ("" or absent: none). */
  group?: string;
  /** Unique key per value, by index. */
  keys?: readonly (string | undefined)[];
  /** How long a value's key stays taken after it finished, in ms. */
  keyHoldMs?: number;
}

/** An item held by the engine. Read-only outside the engine. */
export class Item implements StoredItem, Timed {
  /** Unique id. */
  readonly id: number;
  /** Name of its queue. */
  readonly queue: string;
  /** The item itself. */
  readonly value: unknown;
  /**
   * The item as the front-end that put it holds it, when its plain `value`
   * loses detail that front-end's protocol keeps (e.g. a Python tuple); opaque
   * to the engine, kept in memory only.
   */
  original: unknown = undefined;
  /** Deliveries so far (the current attempt number while leased). */
  attempts = 0;
  /** Deliveries allowed before dead-lettering; 0 for the queue's policy. */
  maxAttempts = 0;
  /** Description of the last failure, if any. */
  lastError: string | undefined = undefined;
  /** Where the item is in its life. */
  state: ItemState = "ready";
  /** The consumer holding the lease, while leased. */
  owner: Consumer | undefined = undefined;
  /** Lease expiry or delay end, while scheduled. */
  deadline = 0;
  /** Timer heap position. */
  heapIndex: number = NOT_SCHEDULED;
  /** Estimated bytes of memory it takes ({@link itemCost}). */
  cost = 0;
  /** {@link createdAt} after {@link TIME_BASE}: a small integer, kept in the object unboxed. */
  #created = 0;
  /** {@link leasedAt} after {@link TIME_BASE}. */
  #leased = 0;
  /**
   * What few items have (priority, group, key, progress), kept aside so a
   * plain item stays small.
   */
  extra: ItemExtra | undefined = undefined;

  /** When it was put (engine clock). */
  get createdAt(): number {
    return TIME_BASE + this.#created;
  }

  set createdAt(at: number) {
    this.#created = at - TIME_BASE;
  }

  /** When its current (or last) lease began (engine clock). */
  get leasedAt(): number {
    return TIME_BASE + this.#leased;
  }

  set leasedAt(at: number) {
    this.#leased = at - TIME_BASE;
  }

  /** Served before items of lower priority. */
  get priority(): number {
    return this.extra === undefined ? 0 : this.extra.priority;
  }

  /** Its group ("" for none): deliveries go round-robin across groups. */
  get group(): string {
    return this.extra === undefined ? "" : this.extra.group;
  }

  /** Its unique key within its queue, if any. */
  get key(): string | undefined {
    return this.extra?.key;
  }

  /** How long its key stays taken after it finished, in ms. */
  get keyHoldMs(): number {
    return this.extra === undefined ? 0 : this.extra.keyHoldMs;
  }

  /** The progress it last reported while leased (kept once it finished). */
  get progress(): JobProgress | undefined {
    return this.extra?.progress;
  }

  /** The item's rare fields, created on first use. */
  extras(): ItemExtra {
    return this.extra ??= {
      priority: 0,
      group: "",
      key: undefined,
      keyHoldMs: 0,
      progress: undefined,
    };
  }

  /** Creates an item. */
  constructor(id: number, queue: string, value: unknown) {
    this.id = id;
    this.queue = queue;
    this.value = value;
  }

  /** When a delayed item becomes ready (0 otherwise); derived, to keep items small. */
  get readyAt(): number {
    return this.state === "delayed" ? this.deadline : 0;
  }
}

/**
 * Item times are kept as ms after this (the process's start), so that for
 * about 24 days they are small integers stored in the item itself rather
 * than numbers allocated beside it (40 bytes an item fewer).
 */
const TIME_BASE = Date.now();

/** An item's rare fields (see {@link Item.extra}). */
export interface ItemExtra {
  /** Its priority. */
  priority: number;
  /** Its group ("" for none). */
  group: string;
  /** Its unique key, if any. */
  key: string | undefined;
  /** How long its key stays taken after it finished, in ms. */
  keyHoldMs: number;
  /** Its last progress report, if any. */
  progress: JobProgress | undefined;
}

/** Receives the items of a get: called exactly once, possibly with none (timeout). */
export type Deliver = (items: readonly Item[]) => void;

class Waiter implements Timed {
  deadline = 0;
  heapIndex: number = NOT_SCHEDULED;
  done = false;
  constructor(
    readonly consumer: Consumer,
    readonly queue: QueueState,
    readonly max: number,
    readonly leaseMs: number,
    readonly deliver: Deliver,
  ) {}
}

/** One connection's view of the engine: what it holds and what it waits for. */
export class Consumer {
  /** Engine-wide unique number. */
  readonly id: number;
  /** Name the client gave (e.g. host and pid), or its address. */
  readonly name: string;
  /** When it connected (engine clock). */
  readonly connectedAt: number;
  /** Items it holds leases on, in the order taken. */
  readonly leases: Set<Item> = new Set();
  /** Gets it is waiting on. */
  readonly waiters: Set<Waiter> = new Set();
  /** Whether {@link Engine.disconnect} was called. */
  gone = false;
  /** The peer's network address (`HOST:PORT`), or empty when unknown. */
  readonly address: string;
  /** When it last sent anything (ms since the epoch); front-ends keep it current. */
  lastSeenAt: number;

  /** Creates a consumer; use {@link Engine.connect}. */
  constructor(id: number, name: string, connectedAt: number, address = "") {
    this.id = id;
    this.name = name;
    this.connectedAt = connectedAt;
    this.address = address;
    this.lastSeenAt = connectedAt;
  }
}

/** Counters and contents of one named queue. */
class QueueState implements Timed {
  /** Its ready items; plain ones as compact entries (see compact_lane.ts). */
  readonly ready: ReadySet<Item>;
  readonly waiters: Deque<Waiter> = new Deque();
  liveWaiters = 0;
  leased = 0;
  delayed = 0;
  put = 0;
  acked = 0;
  nacked = 0;
  expired = 0;
  failed = 0;
  dead = 0;
  /** Whether gets are held back ({@link Engine.pause}). */
  paused = false;
  /** Callbacks waiting for the queue to drop below its maximum length. */
  readonly roomWaiters: Deque<() => void> = new Deque();
  /** Live items by unique key (created with the first key). */
  keys: Map<string, Item> | undefined = undefined;
  /** Keys kept taken after their item finished, oldest first (created with the first). */
  holds: Map<string, KeyHold> | undefined = undefined;
  /** Its delivery limits, when it has any. */
  limits: QueueLimits | undefined = undefined;
  /** The rate limit's theoretical arrival time (GCRA), engine clock. */
  tat = 0;
  /** Leased items per group, kept while a per-group limit is set. */
  groupLeased: Map<string, number> | undefined = undefined;
  /** When waiting gets may next be served under the rate limit (as a timer). */
  deadline = 0;
  /** Timer heap position of the rate limit's wake-up. */
  heapIndex: number = NOT_SCHEDULED;
  /** A queue; its ready items' first words come from `chunks` (the engine's pool), if given. */
  constructor(readonly name: string, readonly maxAttempts: number, chunks?: ChunkPool) {
    this.ready = new ReadySet(makeItem, name, chunks);
  }

  /** Items in the queue: ready, delayed and leased. */
  get length(): number {
    return this.ready.length + this.delayed + this.leased;
  }
}

/**
 * How the ready items of queue `queue` kept as compact entries become items
 * again: a plain item is a fresh put (no attempts, priority, group, key,
 * original, own maximum of attempts or error), so its id, creation time,
 * value and cost are all it has. One function for every queue (its lanes
 * are tagged with its name): a queue costs no closure.
 */
const makeItem: MakeItem<Item> = (id, createdAt, value, cost, queue) => {
  const item = new Item(id, queue, value);
  item.createdAt = createdAt;
  item.cost = cost;
  return item;
};

/** Statistics of one queue, as {@link Engine.stats} reports them. */
export type QueueSnapshot = QueueStats;

/** Options of an {@link Engine}. */
export interface EngineOptions {
  /** Where items are kept; in memory only by default. */
  store?: Store;
  /** Clock in milliseconds; `Date.now` by default. */
  clock?: () => number;
  /** Lease length for gets that name none. */
  defaultLeaseMs?: number;
  /** How failed items are retried and when they are dead-lettered. */
  retry?: Partial<RetryPolicy>;
  /** Items a queue may hold before puts to it wait (0: no limit). */
  maxQueueLength?: number;
  /**
   * Most queues at once ({@link DEFAULT_MAX_QUEUES} by default; 0: no limit):
   * see {@link Engine.canCreate}.
   */
  maxQueues?: number;
  /** Finished items whose records are kept for {@link Engine.job} (0: none). */
  historyCount?: number;
  /** How long a finished item's record is kept, in ms. */
  historyMs?: number;
}

/** Statistics of the deepest queues, and the others added up; see {@link Engine.statsTop}. */
export interface TopStats {
  /** The deepest queues (ready, leased and delayed items), by name. */
  queues: QueueSnapshot[];
  /** The other queues' counts added up, with an empty name; absent when none was left out. */
  rest?: QueueSnapshot;
  /** How many queues there are in all. */
  count: number;
}

/** The queue engine. */
export class Engine {
  /** Where items are kept. */
  readonly store: Store;
  /** If set, told each acked item's run time: from its lease's start to its ack, in ms. */
  onAcked: ((runMs: number) => void) | undefined;
  /** Lease length for gets that name none. */
  readonly defaultLeaseMs: number;
  /** How failed items are retried. */
  readonly retry: RetryPolicy;
  /** Items a queue may hold before puts to it wait (0: no limit). */
  readonly maxQueueLength: number;
  /** Most queues at once (0: no limit). */
  readonly maxQueues: number;
  readonly #clock: () => number;
  /** Whether the store records anything (not a {@link MemoryStore}): puts then make its items. */
  readonly #storeKeeps: boolean;
  #heldBytes = 0;
  /** Queue count at which empty, unused queues are next swept away. */
  #sweepAt = IDLE_QUEUE_SWEEP_THRESHOLD;
  readonly #queues = new Map<string, QueueState>();
  /** Where the queues' small lanes take their words (see compact_lane.ts). */
  readonly #chunks = new ChunkPool();
  /** Leased items by id: the only ones an ack, nack, fail or extend can name. */
  readonly #leased = new Map<number, Item>();
  readonly #timers = new TimerHeap<Item | Waiter | QueueState>();
  /** Records of finished items, for {@link job}. */
  readonly #history: History;
  /** Limited queues where a lease ended, to serve waiting gets once the call is done. */
  readonly #freed = new Set<QueueState>();
  readonly #consumers = new Set<Consumer>();
  #nextId = 1;
  #nextConsumerId = 1;

  /** Creates an empty engine; call {@link restore} to load a store's items. */
  constructor(options: EngineOptions = {}) {
    this.store = options.store ?? new MemoryStore();
    this.#storeKeeps = !(this.store instanceof MemoryStore);
    this.#clock = options.clock ?? Date.now;
    this.defaultLeaseMs = options.defaultLeaseMs ?? DEFAULT_LEASE_MS;
    // Fields given as undefined take their defaults too (a spread would copy the undefined).
    const retry = options.retry ?? {};
    this.retry = {
      maxAttempts: retry.maxAttempts ?? DEFAULT_RETRY_POLICY.maxAttempts,
      backoffBaseMs: retry.backoffBaseMs ?? DEFAULT_RETRY_POLICY.backoffBaseMs,
      backoffMaxMs: retry.backoffMaxMs ?? DEFAULT_RETRY_POLICY.backoffMaxMs,
      maxAttemptsByQueue: retry.maxAttemptsByQueue,
    };
    this.maxQueueLength = options.maxQueueLength ?? 0;
    this.maxQueues = options.maxQueues ?? DEFAULT_MAX_QUEUES;
    this.#history = new History(
      options.historyCount ?? DEFAULT_HISTORY_COUNT,
      options.historyMs ?? DEFAULT_HISTORY_MS,
      MAX_HISTORY_BYTES,
    );
    this.store.readCounters = (name) => {
      const queue = this.#queues.get(name);
      return queue === undefined ? undefined : {
        queue: name,
        put: queue.put,
        acked: queue.acked,
        nacked: queue.nacked,
        expired: queue.expired,
        failed: queue.failed,
        dead: queue.dead,
      };
    };
  }

  /** Estimated bytes of memory the items held take ({@link itemCost}, summed). */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** How many queues the engine knows (empty, unused ones included until swept). */
  get queueCount(): number {
    return this.#queues.size;
  }

  /**
   * Whether queue `name` exists or may be created under {@link maxQueues}
   * (forgetting empty, unused queues first if that makes room). The engine
   * itself always creates the queues it puts to (dead letters, results).
   */
  canCreate(name: string): boolean {
    if (this.maxQueues === 0 || this.#queues.has(name)) return true;
    if (this.#queues.size >= this.maxQueues) this.#sweep();
    return this.#queues.size < this.maxQueues;
  }

  /**
   * Loads what an earlier run left in the store: its items (all of them
   * ready or delayed) and, from a store that keeps them, its queues'
   * counters. The queue a loaded dead-letter queue belongs to is known
   * again too (empty if nothing else brings it back), as it was before.
   */
  restore(state: LoadedState): void {
    this.#nextId = Math.max(this.#nextId, state.nextId);
    const now = this.#clock();
    for (const counted of state.counters ?? []) {
      const queue = this.#queue(counted.queue);
      queue.put = counted.put;
      queue.acked = counted.acked;
      queue.nacked = counted.nacked;
      queue.expired = counted.expired;
      queue.failed = counted.failed;
      queue.dead = counted.dead;
    }
    for (const batch of state.batches) this.#restoreBatch(batch, now);
  }

  /**
   * Loads one page of stored items: plain ready ones (no attempts, rare
   * fields, own maximum of attempts or delay) straight into their queue's
   * compact entries, the others as items.
   */
  #restoreBatch(batch: ItemBatch, now: number): void {
    for (const name of batch.queues) {
      if (isDeadLetterQueue(name)) this.#queue(name.slice(0, -DEAD_LETTER_SUFFIX.length));
    }
    const queues = batch.queues.map((name) => this.#queue(name));
    const { ids, queueOf, values, valueEnds, attempts, maxAttempts, readyAt, createdAt, rare } =
      batch;
    let start = 0;
    for (let i = 0; i < batch.length; i++) {
      const end = valueEnds[i];
      const value = decodeStored(values, start, end);
      start = end;
      const queue = queues[queueOf[i]];
      const id = ids[i];
      const created = Number.isNaN(createdAt[i]) ? now : createdAt[i];
      const cost = itemCost(value);
      this.#heldBytes += cost;
      const fields = rare?.get(i);
      const at = readyAt[i];
      if (fields === undefined && attempts[i] === 0 && maxAttempts[i] === 0 && !(at > now)) {
        queue.ready.pushPlain(id, created, value, cost);
        continue;
      }
      const item = new Item(id, queue.name, value);
      item.attempts = attempts[i];
      item.maxAttempts = maxAttempts[i];
      item.createdAt = created;
      item.cost = cost;
      if (fields !== undefined) {
        item.lastError = fields.lastError;
        if (
          fields.priority !== undefined || fields.group !== undefined || fields.key !== undefined
        ) {
          const extra = item.extras();
          extra.priority = fields.priority ?? 0;
          extra.group = fields.group ?? "";
          extra.keyHoldMs = fields.keyHoldMs ?? 0;
          extra.key = fields.key;
          if (fields.key !== undefined) (queue.keys ??= new Map()).set(fields.key, item);
        }
      }
      if (at > now) this.#delay(queue, item, at);
      else queue.ready.push(item);
    }
  }

  /** Number of connected consumers. */
  get consumerCount(): number {
    return this.#consumers.size;
  }

  /** The connected consumers. */
  consumers(): Iterable<Consumer> {
    return this.#consumers;
  }

  /** Registers a connection, from network `address` when known. */
  connect(name: string, address = ""): Consumer {
    const consumer = new Consumer(this.#nextConsumerId++, name, this.#clock(), address);
    this.#consumers.add(consumer);
    return consumer;
  }

  /**
   * Unregisters a connection: its waiting gets are dropped (never delivered)
   * and every item it held goes back to the front of its queue at once.
   */
  disconnect(consumer: Consumer): void {
    if (consumer.gone) return;
    consumer.gone = true;
    this.#consumers.delete(consumer);
    for (const waiter of consumer.waiters) this.#dropWaiter(waiter);
    consumer.waiters.clear();
    const held = [...consumer.leases];
    consumer.leases.clear();
    const touched = new Set<QueueState>();
    for (let i = held.length - 1; i >= 0; i--) {
      const item = held[i];
      const queue = this.#queue(item.queue);
      this.#unlease(queue, item);
      this.#abandoned(queue, item, "its connection closed before it was acked", touched);
    }
    for (const queue of touched) this.#dispatch(queue);
    this.#serveFreed();
  }

  /**
   * Adds `values` to the queue `name` (created on first use), ready after
   * `delayMs`, each allowed `maxAttempts` deliveries (0: the queue's policy).
   * `originals[i]`, when given, becomes the {@link Item.original} of `values[i]`.
   * `costs[i]`, when given, is the estimated memory of `values[i]` (as
   * {@link costs} measures it); else it is measured here.
   * Returns their ids in order.
   */
  put(
    name: string,
    values: readonly unknown[],
    delayMs = 0,
    maxAttempts = 0,
    originals?: readonly unknown[],
    costs?: readonly number[],
    extras?: PutExtras,
  ): PutIds {
    const queue = this.#queue(name);
    const ids: PutIds = new Array<number>(values.length);
    const now = this.#clock();
    const readyAt = delayMs > 0 ? now + delayMs : 0;
    const keys = extras?.keys;
    // Items that are only an id, a time, a value and a cost: kept compact while ready.
    const plain = readyAt === 0 && maxAttempts === 0 &&
      (extras === undefined || ((extras.priority ?? 0) === 0 && (extras.group ?? "") === ""));
    let added = 0;
    for (let i = 0; i < values.length; i++) {
      const key = keys?.[i];
      if (plain && key === undefined && (originals === undefined || originals[i] === undefined)) {
        const id = this.#nextId++;
        const value = values[i];
        const cost = costs !== undefined ? costs[i] : itemCost(value);
        this.#heldBytes += cost;
        ids[i] = id;
        queue.ready.pushPlain(id, now, value, cost);
        added++;
        if (this.#storeKeeps) {
          const item = new Item(id, name, value);
          item.createdAt = now;
          item.cost = cost;
          this.store.insert(item);
        }
        continue;
      }
      if (key !== undefined) {
        const taken = this.#keyTaken(queue, key, now);
        if (taken !== undefined) {
          ids[i] = taken;
          (ids.existing ??= []).push(i);
          continue;
        }
      }
      const item = new Item(this.#nextId++, name, values[i]);
      item.maxAttempts = maxAttempts;
      item.createdAt = now;
      if (extras !== undefined) {
        item.extra = {
          priority: extras.priority ?? 0,
          group: extras.group ?? "",
          key,
          keyHoldMs: key === undefined ? 0 : extras.keyHoldMs ?? 0,
          progress: undefined,
        };
        if (key !== undefined) (queue.keys ??= new Map()).set(key, item);
      }
      added++;
      if (originals !== undefined) item.original = originals[i];
      const cost = costs !== undefined
        ? costs[i]
        : itemCost(values[i], originals !== undefined && originals[i] !== undefined);
      item.cost = cost;
      this.#heldBytes += cost;
      ids[i] = item.id;
      if (readyAt > 0) {
        this.#delay(queue, item, readyAt);
      } else {
        queue.ready.push(item);
      }
      this.store.insert(item);
    }
    queue.put += added;
    if (readyAt === 0 && added > 0) this.#dispatch(queue);
    return ids;
  }

  /** The id holding `key` in `queue` (a live item, or a finished one whose hold runs), if any. */
  #keyTaken(queue: QueueState, key: string, now: number): number | undefined {
    const live = queue.keys?.get(key);
    if (live !== undefined) return live.id;
    const hold = queue.holds?.get(key);
    if (hold === undefined) return undefined;
    if (hold.until > now) return hold.id;
    queue.holds?.delete(key);
    return undefined;
  }

  /** An item left its queue for good: its key is freed, or held for its `keyHoldMs`. */
  #releaseKey(queue: QueueState, item: Item, hold: boolean): void {
    const key = item.key;
    if (key === undefined || queue.keys?.get(key) !== item) return;
    queue.keys.delete(key);
    if (!hold || item.keyHoldMs <= 0) return;
    const now = this.#clock();
    const holds = queue.holds ??= new Map();
    // Oldest first: forget holds that ran out, so the map stays as small as the live holds.
    for (const [old, entry] of holds) {
      if (entry.until > now) break;
      holds.delete(old);
    }
    holds.delete(key);
    holds.set(key, { id: item.id, until: now + item.keyHoldMs });
  }

  /**
   * The estimated memory of each of `values` (with `originals`, as
   * {@link put} would hold them), to check against a budget before a put.
   */
  costs(values: readonly unknown[], originals?: readonly unknown[]): number[] {
    const out = new Array<number>(values.length);
    for (let i = 0; i < values.length; i++) {
      out[i] = itemCost(values[i], originals !== undefined && originals[i] !== undefined);
    }
    return out;
  }

  /**
   * Whether queue `name` is at its maximum length, so puts to it should wait;
   * if so, `onRoom` is called once, first come first served, when there is room:
   * a caller that still wants to put must do so inside that call (waiters are
   * called one at a time while there is room, so the limit holds).
   */
  isFull(name: string, onRoom: () => void): boolean {
    if (this.maxQueueLength === 0) return false;
    const queue = this.#queue(name);
    if (queue.length < this.maxQueueLength && queue.roomWaiters.length === 0) return false;
    queue.roomWaiters.push(onRoom);
    return true;
  }

  /** Wakes puts waiting for room in `queue`, while there is room. */
  #wakeRoomWaiters(queue: QueueState): void {
    while (queue.roomWaiters.length > 0 && queue.length < this.maxQueueLength) {
      (queue.roomWaiters.shift() as () => void)();
    }
  }

  /**
   * Leases up to `max` items of queue `name` to `consumer`. If none is ready,
   * waits up to `timeoutMs` (first come, first served among waiting gets).
   * `deliver` is called exactly once: with the items, or with none on timeout;
   * never if the consumer disconnects first.
   */
  get(
    consumer: Consumer,
    name: string,
    max: number,
    timeoutMs: number,
    leaseMs: number | undefined,
    deliver: Deliver,
  ): void {
    if (timeoutMs <= 0 && !this.#queues.has(name)) {
      deliver([]); // nothing to take, nothing to wait for: no queue is created
      return;
    }
    const queue = this.#queue(name);
    const lease = leaseMs ?? this.defaultLeaseMs;
    if (queue.ready.length > 0 && queue.liveWaiters === 0 && !queue.paused) {
      const items = this.#take(queue, consumer, max, lease);
      if (items.length > 0 || timeoutMs <= 0) {
        deliver(items);
        return;
      }
      // Held back by the queue's limits: wait like any other get.
    }
    if (timeoutMs <= 0) {
      deliver([]);
      return;
    }
    const waiter = new Waiter(consumer, queue, max, lease, deliver);
    queue.waiters.push(waiter);
    queue.liveWaiters++;
    consumer.waiters.add(waiter);
    this.#timers.schedule(waiter, this.#clock() + timeoutMs);
    // Held back by a rate limit: this sets the wake-up for when it allows one.
    if (queue.limits !== undefined && queue.ready.length > 0) this.#dispatch(queue);
  }

  /**
   * Settles leased items as done, and puts `results.values[i]` for each
   * `ids[i]` that was held on `results.queue`, in the same step (so a result
   * and its ack are committed together). Returns the ids `consumer` did not
   * hold a lease on; their results are dropped.
   */
  ack(
    consumer: Consumer,
    ids: readonly number[],
    results?: { queue: string; values: readonly unknown[] },
  ): number[] {
    const kept: unknown[] = [];
    const touched = new Set<QueueState>();
    const now = this.#clock();
    const failed = this.#settle(consumer, ids, (queue, item, index) => {
      queue.acked++;
      this.onAcked?.(now - item.leasedAt);
      this.#heldBytes -= item.cost;
      this.store.remove(item.id, item.queue);
      let result: unknown = undefined;
      if (results !== undefined) {
        result = results.values[index];
        kept.push(result);
      }
      this.#finish(queue, item, "done", now, result);
      if (queue.roomWaiters.length > 0) touched.add(queue);
    });
    for (const queue of touched) this.#wakeRoomWaiters(queue);
    if (kept.length > 0) this.put((results as { queue: string }).queue, kept);
    this.#serveFreed();
    return failed;
  }

  /**
   * Returns leased items to the back of their queue, or after `delayMs`.
   * Returns the ids `consumer` did not hold a lease on.
   */
  nack(consumer: Consumer, ids: readonly number[], delayMs = 0): number[] {
    const touched = new Set<QueueState>();
    const failed = this.#settle(consumer, ids, (queue, item) => {
      queue.nacked++;
      if (delayMs > 0) {
        this.#delay(queue, item, this.#clock() + delayMs);
        this.store.update(item);
      } else {
        queue.ready.push(item);
        this.store.update(item);
        touched.add(queue);
      }
    });
    for (const queue of touched) this.#dispatch(queue);
    this.#serveFreed();
    return failed;
  }

  /**
   * Records that work on leased items failed with `error`. Each is retried
   * after an exponential backoff, or moved to its queue's dead-letter queue
   * once it has had its maximum attempts. Returns the ids `consumer` did not hold.
   */
  fail(consumer: Consumer, ids: readonly number[], error: string): number[] {
    const touched = new Set<QueueState>();
    const failed = this.#settle(consumer, ids, (queue, item) => {
      queue.failed++;
      item.lastError = error;
      if (item.attempts >= this.#maxAttempts(queue, item)) {
        this.#bury(queue, item, error, touched);
        return;
      }
      const backoff = Math.min(
        this.retry.backoffBaseMs * 2 ** Math.max(0, item.attempts - 1),
        this.retry.backoffMaxMs,
      );
      if (backoff > 0) {
        this.#delay(queue, item, this.#clock() + backoff);
      } else {
        queue.ready.push(item);
        touched.add(queue);
      }
      this.store.update(item);
    });
    for (const queue of touched) this.#dispatch(queue);
    this.#serveFreed();
    return failed;
  }

  /** Renews leases to run `leaseMs` from now. Returns the ids `consumer` did not hold. */
  extend(consumer: Consumer, ids: readonly number[], leaseMs: number): number[] {
    const failed: number[] = [];
    const deadline = this.#clock() + leaseMs;
    for (const id of ids) {
      const item = this.#leased.get(id);
      if (item === undefined || item.owner !== consumer) failed.push(id);
      else this.#timers.schedule(item, deadline);
    }
    return failed;
  }

  /**
   * Records the progress of an item `consumer` holds and renews its lease to
   * run `leaseMs` from now; false when it does not hold it.
   */
  progress(
    consumer: Consumer,
    id: number,
    report: { percent?: number; message?: string },
    leaseMs: number,
  ): boolean {
    const item = this.#leased.get(id);
    if (item === undefined || item.owner !== consumer) return false;
    const now = this.#clock();
    const progress: JobProgress = { at: now };
    if (report.percent !== undefined) progress.percent = report.percent;
    if (report.message !== undefined) progress.message = report.message;
    item.extras().progress = progress;
    this.#timers.schedule(item, now + leaseMs);
    return true;
  }

  /**
   * Cancels items by id: a ready or delayed one is removed, a leased one's
   * lease is revoked (its holder's settling calls are refused from now on);
   * each ends in the history as `cancelled`, never retried. Returns the ids
   * cancelled, those not found (unknown or finished), and for each consumer
   * that held some, the ids it held, to be told.
   *
   * Finding ready and delayed items walks the queues: O(items held), as
   * every admin call that names items by id.
   */
  cancel(ids: readonly number[]): {
    cancelled: number[];
    missing: number[];
    holders: Map<Consumer, number[]>;
  } {
    const cancelled: number[] = [];
    const holders = new Map<Consumer, number[]>();
    const wanted = new Set<number>();
    for (const id of ids) {
      const item = this.#leased.get(id);
      if (item === undefined) {
        wanted.add(id);
        continue;
      }
      const owner = item.owner as Consumer;
      owner.leases.delete(item);
      const queue = this.#queue(item.queue);
      this.#unlease(queue, item);
      this.#heldBytes -= item.cost;
      this.store.remove(item.id, item.queue);
      this.#finish(queue, item, "cancelled", this.#clock());
      if (queue.roomWaiters.length > 0) this.#wakeRoomWaiters(queue);
      cancelled.push(id);
      const list = holders.get(owner);
      if (list === undefined) holders.set(owner, [id]);
      else list.push(id);
    }
    if (wanted.size > 0) {
      const cancel = (queue: QueueState, item: Item) => {
        wanted.delete(item.id);
        this.#heldBytes -= item.cost;
        this.store.remove(item.id, item.queue);
        this.#finish(queue, item, "cancelled", this.#clock());
        cancelled.push(item.id);
      };
      for (const entry of [...this.#timers.entries()]) {
        if (!(entry instanceof Item) || entry.state !== "delayed" || !wanted.has(entry.id)) {
          continue;
        }
        const queue = this.#queue(entry.queue);
        this.#timers.cancel(entry);
        queue.delayed--;
        cancel(queue, entry);
        if (queue.roomWaiters.length > 0) this.#wakeRoomWaiters(queue);
      }
      for (const queue of this.#queues.values()) {
        if (wanted.size === 0) break;
        if (queue.ready.length === 0) continue;
        const gone: Item[] = [];
        queue.ready.removeWhere((item) => {
          if (!wanted.has(item.id)) return false;
          gone.push(item);
          return true;
        });
        for (const item of gone) cancel(queue, item);
        if (gone.length > 0 && queue.roomWaiters.length > 0) this.#wakeRoomWaiters(queue);
      }
    }
    const found = new Set(cancelled);
    const missing = ids.filter((id) => !found.has(id));
    this.#serveFreed();
    return { cancelled, missing, holders };
  }

  /**
   * What is known of item `id`: live (walks the queues for a ready or
   * delayed one: O(items held)) or finished within the history.
   */
  job(id: number): JobInfo | undefined {
    const finished = this.#history.get(id, this.#clock());
    if (finished !== undefined) return finished;
    const leased = this.#leased.get(id);
    if (leased !== undefined) return jobInfo(leased);
    for (const entry of this.#timers.entries()) {
      if (entry instanceof Item && entry.id === id && entry.state === "delayed") {
        return jobInfo(entry);
      }
    }
    for (const queue of this.#queues.values()) {
      for (const item of queue.ready) if (item.id === id) return jobInfo(item);
    }
    return undefined;
  }

  /**
   * Changes queue `name`'s delivery limits (absent fields stay; zero lifts a
   * limit) and serves waiting gets the new limits allow. Returns the limits
   * now in force.
   */
  setLimits(name: string, changes: LimitChanges): QueueLimits {
    const queue = this.#queue(name);
    const before = queue.limits ?? NO_LIMITS;
    const limits: QueueLimits = { ...before, ...changes };
    if (limits.rateCount !== before.rateCount || limits.ratePeriodMs !== before.ratePeriodMs) {
      queue.tat = 0;
      this.#timers.cancel(queue);
    }
    queue.limits = hasLimits(limits) ? limits : undefined;
    if (limits.groupConcurrency > 0 && queue.groupLeased === undefined) {
      const counts = new Map<string, number>();
      for (const item of this.#leased.values()) {
        if (item.queue === name) counts.set(item.group, (counts.get(item.group) ?? 0) + 1);
      }
      queue.groupLeased = counts;
    } else if (limits.groupConcurrency === 0) {
      queue.groupLeased = undefined;
    }
    this.#dispatch(queue);
    return { ...limits };
  }

  /** The limits of queue `name` (all zero when it has none). */
  limitsOf(name: string): QueueLimits {
    return { ...(this.#queues.get(name)?.limits ?? NO_LIMITS) };
  }

  /** Every queue that has limits, with them, by name. */
  allLimits(): { queue: string; limits: QueueLimits }[] {
    const out: { queue: string; limits: QueueLimits }[] = [];
    for (const queue of this.#queues.values()) {
      if (queue.limits !== undefined) out.push({ queue: queue.name, limits: { ...queue.limits } });
    }
    return out.sort((a, b) => a.queue < b.queue ? -1 : a.queue > b.queue ? 1 : 0);
  }

  /** Statistics of one queue (zeros if it was never used), or of every queue by name. */
  stats(name?: string): QueueSnapshot[] {
    if (name !== undefined) {
      return [snapshot(this.#queues.get(name) ?? new QueueState(name, this.retry.maxAttempts))];
    }
    return [...this.#queues.values()].map(snapshot).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0
    );
  }

  /**
   * Statistics of the `limit` deepest queues (most ready, leased and delayed
   * items; ties by name), by name, and of all the others added up: bounded
   * in size whatever the number of queues, and in time to a sort of the
   * queues' depths.
   */
  statsTop(limit: number): TopStats {
    const count = this.#queues.size;
    if (count <= limit) return { queues: this.stats(), count };
    const all = [...this.#queues.values()];
    all.sort((a, b) => b.length - a.length || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const queues = all.slice(0, limit).map(snapshot).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0
    );
    const rest = snapshot(new QueueState("", 0));
    for (let i = limit; i < all.length; i++) {
      const q = all[i];
      rest.ready += q.ready.length;
      rest.leased += q.leased;
      rest.delayed += q.delayed;
      rest.waiting += q.liveWaiters;
      rest.put += q.put;
      rest.acked += q.acked;
      rest.nacked += q.nacked;
      rest.expired += q.expired;
      rest.failed += q.failed;
      rest.dead += q.dead;
    }
    return { queues, rest, count };
  }

  /** When {@link tick} next has work to do (engine clock), or `undefined` if never. */
  nextDeadline(): number | undefined {
    return this.#timers.peek()?.deadline;
  }

  /** Expires leases, readies delayed items and times out gets that are due by `now`. */
  tick(now: number = this.#clock()): void {
    const touched = new Set<QueueState>();
    const expired: Item[] = [];
    for (let due = this.#timers.popDue(now); due !== undefined; due = this.#timers.popDue(now)) {
      if (due instanceof Waiter) {
        this.#dropWaiter(due);
        due.consumer.waiters.delete(due);
        due.deliver([]);
        continue;
      }
      if (due instanceof QueueState) {
        // The rate limit allows a delivery again.
        touched.add(due);
        continue;
      }
      const queue = this.#queue(due.queue);
      if (due.state === "leased") {
        due.owner?.leases.delete(due);
        this.#unlease(queue, due);
        expired.push(due);
      } else {
        queue.delayed--;
        due.state = "ready";
        queue.ready.push(due);
        touched.add(queue);
      }
    }
    // Each goes back to the front: highest id first, so they line up in put order.
    expired.sort((a, b) => b.id - a.id);
    for (const item of expired) {
      this.#abandoned(
        this.#queue(item.queue),
        item,
        "its lease expired before it was acked",
        touched,
      );
    }
    for (const queue of touched) this.#dispatch(queue);
    this.#serveFreed();
  }

  /**
   * Holds back queue `name`'s items: its gets wait (or time out) as if it were
   * empty, while puts, acks and everything else go on. Kept in memory only.
   */
  pause(name: string): void {
    this.#queue(name).paused = true;
  }

  /** Lets queue `name` serve gets again, starting with those waiting. */
  resume(name: string): void {
    const queue = this.#queue(name);
    queue.paused = false;
    this.#dispatch(queue);
  }

  /** Whether queue `name` is paused (a queue never used is not). */
  isPaused(name: string): boolean {
    return this.#queues.get(name)?.paused ?? false;
  }

  /** Up to `limit` of queue `name`'s ready items, front first, without taking them. */
  peek(name: string, limit: number): Item[] {
    const out: Item[] = [];
    const queue = this.#queues.get(name);
    if (queue === undefined) return out;
    for (const item of queue.ready) {
      if (out.length >= limit) break;
      out.push(item);
    }
    return out;
  }

  /**
   * Removes for good the ready items of queue `name` with the given ids, or
   * `"all"` of them (leased and delayed ones are left alone). Returns the
   * items removed.
   */
  drop(name: string, ids: readonly number[] | "all"): Item[] {
    if (ids === "all") return this.#removeReady(name, () => true);
    const wanted = new Set(ids);
    return this.#removeReady(name, (item) => wanted.has(item.id));
  }

  /**
   * Removes for good every ready and delayed item of queue `name` (leased
   * ones finish as usual). Returns how many went. Finding the delayed ones
   * walks the timers: O(leases, delays and waiting gets), as {@link cancel}.
   */
  purge(name: string): number {
    const queue = this.#queues.get(name);
    if (queue === undefined) return 0;
    let removed = this.#removeReady(name, () => true).length;
    if (queue.delayed > 0) {
      const delayed: Item[] = [];
      for (const entry of this.#timers.entries()) {
        if (entry instanceof Item && entry.state === "delayed" && entry.queue === name) {
          delayed.push(entry);
        }
      }
      for (const item of delayed) {
        this.#timers.cancel(item);
        queue.delayed--;
        item.state = "ready";
        this.#heldBytes -= item.cost;
        this.store.remove(item.id, name);
        this.#releaseKey(queue, item, false);
      }
      removed += delayed.length;
      if (delayed.length > 0 && queue.roomWaiters.length > 0) this.#wakeRoomWaiters(queue);
    }
    return removed;
  }

  /**
   * A page of queue `name`'s live items of one state: `ready` in serve
   * order, `delayed` by when they become ready, `leased` by when their lease
   * began; and how many of that state it holds. Work: O(offset + limit) for
   * ready items; for the others a walk of the leased items (stopping after
   * the page) or of the timers, keeping only offset + limit of them.
   */
  items(
    name: string,
    state: "ready" | "delayed" | "leased",
    offset: number,
    limit: number,
  ): { items: JobInfo[]; total: number } {
    const queue = this.#queues.get(name);
    const out: JobInfo[] = [];
    if (queue === undefined) return { items: out, total: 0 };
    const end = offset + limit;
    if (state === "ready") {
      let at = 0;
      for (const item of queue.ready) {
        if (at >= end) break;
        if (at >= offset) out.push(jobInfo(item));
        at++;
      }
      return { items: out, total: queue.ready.length };
    }
    if (state === "leased") {
      let at = 0;
      if (queue.leased > offset) {
        // Leased items by id in the order they were leased (a Map keeps insertion order).
        for (const item of this.#leased.values()) {
          if (item.queue !== name) continue;
          if (at >= end) break;
          if (at >= offset) out.push(jobInfo(item));
          at++;
        }
      }
      return { items: out, total: queue.leased };
    }
    if (queue.delayed > offset) {
      const page = smallest(
        this.#delayedOf(name),
        end,
        (a, b) => a.deadline - b.deadline || a.id - b.id,
      );
      for (let i = offset; i < page.length; i++) out.push(jobInfo(page[i]));
    }
    return { items: out, total: queue.delayed };
  }

  /** The delayed items of queue `name`, in no order (from the timers). */
  *#delayedOf(name: string): Iterable<Item> {
    for (const entry of this.#timers.entries()) {
      if (entry instanceof Item && entry.state === "delayed" && entry.queue === name) yield entry;
    }
  }

  /**
   * Up to `max` of the items `consumer` holds, oldest lease first: their
   * ids, queues, and when their leases began and run out.
   */
  held(
    consumer: Consumer,
    max: number,
  ): { id: number; queue: string; leasedAt: number; leaseExpiresAt: number }[] {
    const out: { id: number; queue: string; leasedAt: number; leaseExpiresAt: number }[] = [];
    for (const item of consumer.leases) {
      if (out.length >= max) break;
      out.push({
        id: item.id,
        queue: item.queue,
        leasedAt: item.leasedAt,
        leaseExpiresAt: item.deadline,
      });
    }
    return out;
  }

  /**
   * Moves dead letters (ready items of the dead-letter queue `name`), by id
   * or `"all"` of them, back to the queue they failed in, as new items with
   * fresh attempts. Items of `name` that are not dead letters of it are left
   * alone. Returns the new ids.
   */
  requeueDead(name: string, ids: readonly number[] | "all"): number[] {
    const wanted = ids === "all" ? undefined : new Set(ids);
    const letters = this.#removeReady(
      name,
      (item) => (wanted === undefined || wanted.has(item.id)) && isDeadLetterOf(item.value, name),
    );
    const out: number[] = [];
    for (const item of letters) {
      const letter = item.value as DeadLetter;
      out.push(...this.put(letter.queue, [letter.value]));
    }
    return out;
  }

  /**
   * Takes back out of memory items whose puts were not stored (the store
   * discarded the commit that carried their inserts, see
   * {@link Store.onDiscard}), wherever they are now: ready, delayed, or
   * leased (the lease is cancelled, so its holder's ack, nack, fail or extend
   * is refused). Items already settled are left alone. Nothing is recorded in
   * the store: it never held them. `items` are the engine's own items, as the
   * store was given them; anything else is ignored. Returns how many were
   * removed.
   */
  discard(items: Iterable<StoredItem>): number {
    // By id: a plain put's item was given to the store, but what is live now
    // may be another object for it (its queue keeps plain ready items compact).
    const wanted = new Map<QueueState, Set<number>>();
    const touched = new Set<QueueState>();
    let removed = 0;
    let left = 0;
    const forget = (queue: QueueState, item: Item) => {
      this.#heldBytes -= item.cost;
      this.#releaseKey(queue, item, false);
      queue.put--;
      removed++;
      touched.add(queue);
    };
    for (const stored of items) {
      if (!(stored instanceof Item)) continue;
      const queue = this.#queues.get(stored.queue);
      if (queue === undefined) continue;
      const leased = this.#leased.get(stored.id);
      if (leased !== undefined && leased.queue === stored.queue) {
        leased.owner?.leases.delete(leased);
        this.#unlease(queue, leased);
        forget(queue, leased);
      } else if (stored.state === "delayed" && stored.heapIndex !== NOT_SCHEDULED) {
        this.#timers.cancel(stored);
        queue.delayed--;
        stored.state = "ready";
        forget(queue, stored);
      } else if (stored.state === "ready") {
        let set = wanted.get(queue);
        if (set === undefined) wanted.set(queue, set = new Set());
        set.add(stored.id);
        left++;
      }
    }
    for (const [queue, set] of wanted) {
      queue.ready.removeWhere((item) => {
        if (!set.has(item.id)) return false;
        set.delete(item.id);
        left--;
        forget(queue, item);
        return true;
      });
    }
    if (left > 0) {
      // Not ready any more: delayed since (a nack or a failure with a delay), if live at all.
      for (const entry of [...this.#timers.entries()]) {
        if (!(entry instanceof Item) || entry.state !== "delayed") continue;
        const queue = this.#queues.get(entry.queue);
        if (queue === undefined || wanted.get(queue)?.has(entry.id) !== true) continue;
        this.#timers.cancel(entry);
        queue.delayed--;
        entry.state = "ready";
        forget(queue, entry);
      }
    }
    for (const queue of touched) {
      if (queue.roomWaiters.length > 0) this.#wakeRoomWaiters(queue);
    }
    return removed;
  }

  #removeReady(name: string, match: (item: Item) => boolean): Item[] {
    const queue = this.#queues.get(name);
    const removed: Item[] = [];
    if (queue === undefined) return removed;
    queue.ready.removeWhere((item) => {
      if (!match(item)) return false;
      removed.push(item);
      this.#heldBytes -= item.cost;
      this.store.remove(item.id, name);
      this.#releaseKey(queue, item, false);
      return true;
    });
    if (removed.length > 0 && queue.roomWaiters.length > 0) this.#wakeRoomWaiters(queue);
    return removed;
  }

  #queue(name: string): QueueState {
    let queue = this.#queues.get(name);
    if (queue === undefined) {
      if (this.#queues.size >= this.#sweepAt) this.#sweep();
      queue = new QueueState(
        name,
        this.retry.maxAttemptsByQueue?.[name] ?? this.retry.maxAttempts,
        this.#chunks,
      );
      this.#queues.set(name, queue);
    }
    return queue;
  }

  /**
   * Forgets every queue that is empty and unused (no items, no waiting gets
   * or puts, not paused), then sets the next sweep at twice what is left
   * (at least {@link IDLE_QUEUE_SWEEP_THRESHOLD}), so sweeping costs O(1) per
   * queue created.
   */
  #sweep(): void {
    for (const [name, queue] of this.#queues) {
      if (
        queue.ready.length === 0 && queue.leased === 0 && queue.delayed === 0 &&
        queue.liveWaiters === 0 && queue.roomWaiters.length === 0 && !queue.paused &&
        queue.limits === undefined && (queue.holds === undefined || queue.holds.size === 0)
      ) {
        this.#queues.delete(name);
        this.store.countersChanged?.(name);
      }
    }
    this.#sweepAt = Math.max(IDLE_QUEUE_SWEEP_THRESHOLD, 2 * this.#queues.size);
  }

  #maxAttempts(queue: QueueState, item: Item): number {
    return item.maxAttempts > 0 ? item.maxAttempts : queue.maxAttempts;
  }

  /**
   * An unsettled lease ended (expiry or disconnect): the item goes back to the
   * front of its queue, or to the dead-letter queue if that was its last attempt.
   */
  #abandoned(queue: QueueState, item: Item, reason: string, touched: Set<QueueState>): void {
    queue.expired++;
    if (item.attempts >= this.#maxAttempts(queue, item)) {
      this.#bury(
        queue,
        item,
        item.lastError ? `${reason} (earlier: ${item.lastError})` : reason,
        touched,
      );
      return;
    }
    queue.ready.unshift(item);
    this.store.update(item);
    touched.add(queue);
  }

  /** Moves an item out of its queue into the queue's dead-letter queue. */
  #bury(queue: QueueState, item: Item, error: string, touched: Set<QueueState>): void {
    queue.dead++;
    this.#heldBytes -= item.cost;
    this.store.remove(item.id, item.queue);
    item.lastError = error;
    this.#finish(queue, item, "dead", this.#clock());
    if (queue.roomWaiters.length > 0) queueMicrotask(() => this.#wakeRoomWaiters(queue));
    if (isDeadLetterQueue(item.queue)) {
      // Already a dead letter: it goes to the back of its queue as it is (wrapping
      // it again would nest it deeper with every round).
      this.put(item.queue, [item.value]);
      touched.add(queue);
      return;
    }
    const letter: DeadLetter = {
      queue: item.queue,
      id: item.id,
      value: item.value,
      attempts: item.attempts,
      error,
      failedAt: this.#clock(),
    };
    const deadName = deadLetterQueue(item.queue);
    this.put(deadName, [letter]);
    touched.add(this.#queue(deadName));
  }

  #delay(queue: QueueState, item: Item, readyAt: number): void {
    item.state = "delayed";
    queue.delayed++;
    this.#timers.schedule(item, readyAt);
  }

  #take(queue: QueueState, consumer: Consumer, max: number, leaseMs: number): Item[] {
    const limits = queue.limits;
    let n = Math.min(max, queue.ready.length);
    const now = this.#clock();
    let allowed: ((group: string) => boolean) | undefined;
    if (limits !== undefined) {
      n = Math.min(n, this.#allowance(queue, limits, now));
      const perGroup = limits.groupConcurrency;
      const counts = queue.groupLeased;
      if (perGroup > 0 && counts !== undefined) {
        allowed = (group) => (counts.get(group) ?? 0) < perGroup;
      }
    }
    const items = new Array<Item>(n);
    const deadline = now + leaseMs;
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const item = queue.ready.shift(allowed);
      if (item === undefined) {
        // Every group with ready items is at its limit.
        n = i;
        items.length = n;
        break;
      }
      bytes += item.cost;
      if (bytes > MAX_TAKE_BYTES && i > 0) {
        // The reply would grow too large: the rest stay for the next get.
        queue.ready.unshift(item);
        n = i;
        items.length = n;
        break;
      }
      if (queue.groupLeased !== undefined) {
        queue.groupLeased.set(item.group, (queue.groupLeased.get(item.group) ?? 0) + 1);
      }
      item.state = "leased";
      item.owner = consumer;
      item.leasedAt = now;
      // A new lease reports its own progress; a finished item keeps its last.
      if (item.extra !== undefined) item.extra.progress = undefined;
      // Counted in memory; saved with the item's next change (fail, nack, lease
      // end), so a delivery the master crashed during is not counted.
      item.attempts++;
      consumer.leases.add(item);
      this.#leased.set(item.id, item);
      this.#timers.schedule(item, deadline);
      items[i] = item;
    }
    queue.leased += n;
    if (limits !== undefined && limits.rateCount > 0 && n > 0) {
      queue.tat += n * (limits.ratePeriodMs / limits.rateCount);
    }
    return items;
  }

  /**
   * How many items the limits of `queue` let it deliver now (its concurrency
   * left, and what the rate allows: GCRA, see model/jobs.ts); when the rate
   * allows none, a wake-up is set for when it will.
   */
  #allowance(queue: QueueState, limits: QueueLimits, now: number): number {
    let n = Infinity;
    if (limits.concurrency > 0) n = Math.max(0, limits.concurrency - queue.leased);
    if (limits.rateCount > 0 && n > 0) {
      const interval = limits.ratePeriodMs / limits.rateCount;
      const burst = Math.max(
        1,
        Math.floor((limits.rateCount * RATE_BURST_MS) / limits.ratePeriodMs),
      );
      const slack = (burst - 1) * interval;
      // A delivery served late (a timer fires after its time) does not push the next ones
      // back: the schedule may lag `now` by up to one interval (at most RATE_BURST_MS).
      // After a lull the schedule starts again from now.
      if (queue.tat < now - Math.min(interval, RATE_BURST_MS)) queue.tat = now;
      const start = queue.tat;
      if (start - now > slack) {
        if (queue.liveWaiters > 0) this.#timers.schedule(queue, Math.ceil(queue.tat - slack));
        return 0;
      }
      n = Math.min(n, burst, Math.floor((now + slack - start) / interval) + 1);
    }
    return n;
  }

  /** A settled item leaves for good: its key is released (or held) and its record kept. */
  #finish(
    queue: QueueState,
    item: Item,
    state: "done" | "dead" | "cancelled",
    now: number,
    result: unknown = undefined,
  ): void {
    item.state = state;
    item.owner = undefined;
    if (item.extra !== undefined) this.#releaseKey(queue, item, true);
    let cost = item.cost;
    let value = item.value;
    if (result !== undefined) cost += itemCost(result);
    if (cost > MAX_HISTORY_VALUE_BYTES) {
      // Kept without its value and result: their absence is what a lookup reports.
      value = undefined;
      result = undefined;
      cost = 0;
    }
    this.#history.record(item, state, now, value, result, cost);
  }

  /** Serves waiting gets of limited queues where leases ended during this call. */
  #serveFreed(): void {
    if (this.#freed.size === 0) return;
    const queues = [...this.#freed];
    this.#freed.clear();
    for (const queue of queues) this.#dispatch(queue);
  }

  #unlease(queue: QueueState, item: Item): void {
    this.#leased.delete(item.id);
    this.#timers.cancel(item);
    item.state = "ready";
    item.owner = undefined;
    queue.leased--;
    const counts = queue.groupLeased;
    if (counts !== undefined) {
      const left = (counts.get(item.group) ?? 1) - 1;
      if (left > 0) counts.set(item.group, left);
      else counts.delete(item.group);
    }
    if (queue.limits !== undefined && queue.liveWaiters > 0) this.#freed.add(queue);
  }

  #settle(
    consumer: Consumer,
    ids: readonly number[],
    then: (queue: QueueState, item: Item, index: number) => void,
  ): number[] {
    const failed: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      const item = this.#leased.get(id);
      if (item === undefined || item.owner !== consumer) {
        failed.push(id);
        continue;
      }
      const queue = this.#queue(item.queue);
      consumer.leases.delete(item);
      this.#unlease(queue, item);
      then(queue, item, i);
    }
    return failed;
  }

  /** Serves waiting gets, oldest first, while items are ready and the queue's limits allow. */
  #dispatch(queue: QueueState): void {
    if (queue.paused) return;
    while (queue.ready.length > 0 && queue.liveWaiters > 0) {
      const waiter = queue.waiters.shift() as Waiter;
      if (waiter.done) continue;
      const items = this.#take(queue, waiter.consumer, waiter.max, waiter.leaseMs);
      if (items.length === 0) {
        // Held back by the limits: it stays first in line.
        queue.waiters.unshift(waiter);
        return;
      }
      waiter.done = true;
      queue.liveWaiters--;
      this.#timers.cancel(waiter);
      waiter.consumer.waiters.delete(waiter);
      waiter.deliver(items);
    }
  }

  #dropWaiter(waiter: Waiter): void {
    if (waiter.done) return;
    waiter.done = true;
    this.#timers.cancel(waiter);
    const queue = waiter.queue;
    queue.liveWaiters--;
    const dead = queue.waiters.length - queue.liveWaiters;
    if (dead > WAITER_COMPACT_THRESHOLD && dead > queue.liveWaiters) {
      queue.waiters.removeWhere((w) => w.done);
    }
  }
}

/** msgpack's first byte of an unsigned integer of 1, 2 and 4 bytes. */
const MSGPACK_UINT8 = 0xcc;
const MSGPACK_UINT16 = 0xcd;
const MSGPACK_UINT32 = 0xce;
/** msgpack's first byte of the negative fixints (-32 to -1). */
const MSGPACK_NEGATIVE_FIXINT = 0xe0;
/** msgpack's largest positive fixint (a one-byte value, 0 to 127). */
const MSGPACK_POSITIVE_FIXINT_MAX = 0x7f;

/**
 * The value stored as `bytes[start..end)` (one msgpack value, checked by
 * the store): small unsigned and fixint integers read here, anything else
 * through the codec.
 */
function decodeStored(bytes: Uint8Array, start: number, end: number): unknown {
  const first = bytes[start];
  switch (end - start) {
    case 1:
      if (first <= MSGPACK_POSITIVE_FIXINT_MAX) return first;
      if (first >= MSGPACK_NEGATIVE_FIXINT) return first - 0x100;
      break;
    case 2:
      if (first === MSGPACK_UINT8) return bytes[start + 1];
      break;
    case 3:
      if (first === MSGPACK_UINT16) return (bytes[start + 1] << 8) | bytes[start + 2];
      break;
    case 5:
      if (first === MSGPACK_UINT32) {
        return ((bytes[start + 1] << 24) >>> 0) +
          ((bytes[start + 2] << 16) | (bytes[start + 3] << 8) | bytes[start + 4]);
      }
      break;
  }
  return decode(bytes.subarray(start, end), "trusted");
}

/** What a lookup tells of `item`, live or finished. */
function jobInfo(item: Item): JobInfo {
  const info: JobInfo = {
    id: item.id,
    queue: item.queue,
    state: item.state,
    attempts: item.attempts,
    priority: item.priority,
    createdAt: item.createdAt,
  };
  if (item.group !== "") info.group = item.group;
  if (item.key !== undefined) info.key = item.key;
  info.value = item.value;
  if (item.lastError !== undefined) info.error = item.lastError;
  if (item.progress !== undefined) info.progress = { ...item.progress };
  switch (item.state) {
    case "delayed":
      info.readyAt = item.deadline;
      break;
    case "leased": {
      info.leasedAt = item.leasedAt;
      info.leaseExpiresAt = item.deadline;
      const owner = item.owner;
      if (owner !== undefined) {
        info.holder = { session: String(owner.id), name: owner.name, address: owner.address };
      }
      break;
    }
  }
  return info;
}

function snapshot(queue: QueueState): QueueSnapshot {
  return {
    name: queue.name,
    ready: queue.ready.length,
    leased: queue.leased,
    delayed: queue.delayed,
    waiting: queue.liveWaiters,
    put: queue.put,
    acked: queue.acked,
    nacked: queue.nacked,
    expired: queue.expired,
    failed: queue.failed,
    dead: queue.dead,
  };
}

/**
 * The `k` smallest of `items` by `compare`, in order: a bounded max-heap, so
 * memory stays O(k) and time O(n log k) however many items there are.
 */
function smallest<T>(items: Iterable<T>, k: number, compare: (a: T, b: T) => number): T[] {
  const heap: T[] = [];
  if (k <= 0) return heap;
  const up = (i: number) => {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (compare(heap[parent], heap[i]) >= 0) return;
      [heap[parent], heap[i]] = [heap[i], heap[parent]];
      i = parent;
    }
  };
  const down = (i: number) => {
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let top = i;
      if (left < heap.length && compare(heap[left], heap[top]) > 0) top = left;
      if (right < heap.length && compare(heap[right], heap[top]) > 0) top = right;
      if (top === i) return;
      [heap[top], heap[i]] = [heap[i], heap[top]];
      i = top;
    }
  };
  for (const item of items) {
    if (heap.length < k) {
      heap.push(item);
      up(heap.length - 1);
    } else if (compare(item, heap[0]) < 0) {
      heap[0] = item;
      down(0);
    }
  }
  return heap.sort(compare);
}
