/**
 * The local broker: one process's queue engine over a memory or SQLite
 * store, behind the {@link Broker} interface.
 *
 * It turns each call into engine operations, then does what every front-end
 * used to do by hand: re-arms the one deadline timer, commits the store
 * before a call that changed something resolves (everything changed in one
 * turn of the event loop is committed together), and counts commits in its
 * {@link Telemetry}.
 *
 * It also keeps the master within its memory budget (`maxMemoryBytes`): the
 * engine estimates what every item held takes, and a put that would take the
 * items past {@link ITEMS_SHARE} of the budget is refused with
 * {@link MemoryFullError} (nothing of it stored), while gets, acks and the
 * items the broker puts itself (ack results, dead letters) go on. So a
 * durable store never holds more than a master with that budget can load
 * again; a data directory larger on disk than the whole budget is refused
 * before loading, with a {@link ConfigError} naming `--max-memory`.
 *
 * A call answered with {@link NotSavedError} (the store could not commit,
 * e.g. the disk is full) was not stored, and the store never writes that
 * commit's changes later. The items the failed commit's client puts added
 * are taken back out of memory, wherever they are: one already delivered
 * to a waiting getter loses its lease, so its holder's ack is refused (a
 * worker may have started on it: at-least-once). Acks, nacks, fails and the
 * admin calls in a failed commit are answered with the error too, but their
 * effect in memory stands (an acked item stays gone until the master
 * restarts, when it comes back from the disk and is served again, which
 * at-least-once allows), and so do the items the broker put itself in it
 * (ack results, dead letters, requeued items), kept in memory only.
 *
 * @example
 * ```ts
 * import { openLocalBroker } from "./local.ts";
 * const broker = await openLocalBroker({ store: "memory", maxQueueLength: 100 });
 * const producer = await broker.open({ name: "producer", address: "" });
 * const ids = await producer.put("tasks", ["a", "b"]);
 * console.log(ids.length); // 2
 * await broker.close();
 * ```
 *
 * @module
 */

import v8 from "node:v8";
import { type Consumer, Engine, type Item } from "../engine/engine.ts";
import { ConfigError } from "../errors.ts";
import { defaultMaxMemoryBytes, ITEMS_SHARE, MIB, shareOf } from "../util/memory.ts";
import { MemoryStore, type Store, type StoredItem } from "../store/store.ts";

export type {
  ItemBatch,
  LoadedState,
  RareFields,
  Store,
  StoredCounters,
  StoredItem,
} from "../store/store.ts";
import { DATABASE_FILE, SqliteStore } from "../store/sqlite.ts";
import type { RetryPolicy } from "../model/types.ts";
import {
  checkLabel,
  checkLimits,
  checkPriority,
  type JobInfo,
  type LimitChanges,
  MAX_GROUP_LENGTH,
  MAX_KEY_LENGTH,
  type NamedQueueLimits,
  type QueueLimits,
} from "../model/jobs.ts";
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
  ItemPage,
  ItemsQuery,
  JobOptions,
  PeekedItem,
  ProgressReport,
  PutIds,
  PutOptions,
  SessionInfo,
  SessionView,
} from "./broker.ts";
import { checkItemsQuery, MAX_HELD_LISTED, STATS_QUEUE_LIMIT } from "./broker.ts";
import {
  BrokerClosedError,
  MemoryFullError,
  NotSavedError,
  QueueFullError,
  SessionClosedError,
  TooManyQueuesError,
} from "./errors.ts";
import { Telemetry } from "./telemetry.ts";

/** Longest single wait `setTimeout` supports, in ms. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Where a local broker keeps its items: `"memory"` (lost when the process
 * ends), `{ sqlite: DIR }` (durable, in a data directory), or a {@link Store}.
 */
export type StoreChoice = "memory" | { sqlite: string } | Store;

/** Options of {@link openLocalBroker}. */
export interface LocalBrokerOptions extends JobOptions {
  /** Where items are kept; in memory by default. */
  store?: StoreChoice;
  /** Lease length for gets that name none, in ms. */
  defaultLeaseMs?: number;
  /** How failed items are retried and when they are dead-lettered. */
  retry?: Partial<RetryPolicy>;
  /** Items a queue may hold before puts to it wait (0, the default: no limit). */
  maxQueueLength?: number;
  /** Clock in ms since the epoch; `Date.now` by default (tests inject their own). */
  clock?: () => number;
  /**
   * The memory budget in bytes ({@link defaultMaxMemoryBytes} by default):
   * puts are refused once items would take more than {@link ITEMS_SHARE} of it.
   */
  maxMemoryBytes?: number;
  /** Most queues at once (100 000 by default; 0: no limit). */
  maxQueues?: number;
}

/** The default memory budget of this process: from the machine and the heap's limit. */
export function processMaxMemoryBytes(): number {
  let heapLimit: number | undefined;
  try {
    heapLimit = v8.getHeapStatistics().heap_size_limit;
  } catch {
    heapLimit = undefined;
  }
  return defaultMaxMemoryBytes(heapLimit);
}

/** Bytes the files of data directory `dir` take on disk (0 if it does not exist yet). */
function dataDirBytes(dir: string): number {
  let bytes = 0;
  for (const suffix of ["", "-wal"]) {
    try {
      bytes += Deno.statSync(`${dir}/${DATABASE_FILE}${suffix}`).size;
    } catch {
      // absent: nothing to load
    }
  }
  return bytes;
}

/** Opens the store a {@link StoreChoice} names. */
function openStore(choice: StoreChoice | undefined): Store {
  if (choice === undefined || choice === "memory") return new MemoryStore();
  if ("sqlite" in choice && typeof choice.sqlite === "string") {
    return new SqliteStore(choice.sqlite);
  }
  return choice as Store;
}

/**
 * Opens a local broker: loads what the store kept from an earlier run.
 * @throws {StoreError} when the store cannot be used (damaged, newer, locked).
 */
export async function openLocalBroker(options: LocalBrokerOptions = {}): Promise<LocalBroker> {
  const maxMemoryBytes = options.maxMemoryBytes ?? processMaxMemoryBytes();
  const choice = options.store;
  if (typeof choice === "object" && "sqlite" in choice && typeof choice.sqlite === "string") {
    const onDisk = dataDirBytes(choice.sqlite);
    if (onDisk > maxMemoryBytes) {
      throw new ConfigError(
        `the data directory ${choice.sqlite} holds ${(onDisk / MIB).toFixed(1)} MiB on disk, ` +
          `more than the memory budget (--max-memory ${(maxMemoryBytes / MIB).toFixed(1)} MiB) ` +
          `lets the master load; start it with --max-memory of at least ` +
          `${Math.ceil((onDisk * 2) / MIB)}MiB`,
      );
    }
  }
  const store = openStore(options.store);
  const engine = new Engine({
    store,
    clock: options.clock,
    defaultLeaseMs: options.defaultLeaseMs,
    retry: options.retry,
    maxQueueLength: options.maxQueueLength,
    maxQueues: options.maxQueues,
    historyCount: options.historyCount,
    historyMs: options.historyMs,
  });
  try {
    engine.restore(await store.load());
  } catch (error) {
    await store.close().catch(() => {});
    throw error;
  }
  for (const [queue, changes] of Object.entries(options.limits ?? {})) {
    engine.setLimits(queue, checkLimits(changes));
  }
  return new LocalBroker(engine, options.clock ?? Date.now, maxMemoryBytes);
}

/** A waiter of {@link LocalBroker.waitEmpty}. */
interface EmptyWaiter {
  readonly queue: string;
  readonly resolve: () => void;
}

/** The broker over one process's engine; see {@link openLocalBroker}. */
export class LocalBroker implements Broker {
  /** Its fixed settings. */
  readonly settings: BrokerSettings;
  /** What it counts about itself. */
  readonly telemetry: Telemetry = new Telemetry();
  readonly #engine: Engine;
  readonly #store: Store;
  readonly #clock: () => number;
  readonly #sessions = new Map<string, LocalSession>();
  readonly #emptyWaiters = new Set<EmptyWaiter>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedAt = Infinity;
  #closing: Promise<void> | undefined;
  /** Estimated bytes items may take before puts are refused. */
  readonly #itemLimitBytes: number;
  /** Ids of items client puts added whose commit has not settled yet. */
  readonly #unsavedPuts = new Set<number>();
  /** When this broker was opened (ms since the epoch): what counters in memory count since. */
  readonly #startedAt: number;

  /** Wraps a restored engine; use {@link openLocalBroker}. */
  constructor(engine: Engine, clock: () => number = Date.now, maxMemoryBytes = Infinity) {
    this.#engine = engine;
    this.#store = engine.store;
    this.#clock = clock;
    this.#startedAt = clock();
    this.#itemLimitBytes = shareOf(maxMemoryBytes, ITEMS_SHARE);
    this.settings = {
      defaultLeaseMs: engine.defaultLeaseMs,
      maxQueueLength: engine.maxQueueLength,
      maxMemoryBytes,
      maxQueues: engine.maxQueues,
    };
    this.#store.onCommit = (ms) => this.telemetry.observeCommit(ms);
    engine.onAcked = (runMs) => this.telemetry.observeJob(runMs);
    this.#store.onDiscard = (inserted) => this.#discard(inserted);
  }

  /** A commit failed: takes the items client puts added in it back out of memory. */
  #discard(inserted: readonly StoredItem[]): void {
    const puts = this.#unsavedPuts;
    if (puts.size === 0) return;
    const lost = inserted.filter((item) => puts.has(item.id));
    if (lost.length === 0) return;
    this.#engine.discard(lost);
    this.changed();
  }

  /** Whether items outlive the process. */
  get durable(): boolean {
    return this.#store.durable;
  }

  // deno-lint-ignore require-await
  async open(info: SessionInfo): Promise<BrokerSession> {
    if (this.#closing) throw new BrokerClosedError();
    const consumer = this.#engine.connect(info.name, info.address);
    const session = new LocalSession(this, this.#engine, consumer, this.#clock);
    this.#sessions.set(session.id, session);
    return session;
  }

  // deno-lint-ignore require-await
  async stats(queue?: string, limit: number = STATS_QUEUE_LIMIT): Promise<BrokerStats> {
    const top = queue === undefined ? this.#engine.statsTop(limit) : undefined;
    const queues = top?.queues ?? this.#engine.stats(queue);
    const paused: string[] = [];
    for (const row of queues) if (this.#engine.isPaused(row.name)) paused.push(row.name);
    const stats: BrokerStats = {
      queues,
      clients: this.#engine.consumerCount,
      paused,
      queueCount: this.#engine.queueCount,
      memory: {
        heldBytes: this.#engine.heldBytes,
        itemLimitBytes: this.#itemLimitBytes,
        limitBytes: this.settings.maxMemoryBytes ?? Infinity,
      },
      startedAt: this.#startedAt,
    };
    if (top?.rest !== undefined) stats.rest = top.rest;
    return stats;
  }

  /**
   * Checks a client's put against the queue cap and the memory budget;
   * returns the items' estimated costs for the engine to keep.
   * @throws {TooManyQueuesError} when the queue would be one too many.
   * @throws {MemoryFullError} when the items would take the held items past the budget.
   */
  admit(queue: string, values: readonly unknown[], originals?: readonly unknown[]): number[] {
    this.checkQueue(queue);
    const costs = this.#engine.costs(values, originals);
    let bytes = 0;
    for (let i = 0; i < costs.length; i++) bytes += costs[i];
    const held = this.#engine.heldBytes;
    if (held + bytes > this.#itemLimitBytes) {
      throw new MemoryFullError(held, bytes, this.#itemLimitBytes);
    }
    return costs;
  }

  /**
   * Checks that `queue` exists or may be created.
   * @throws {TooManyQueuesError} when it would be one too many.
   */
  checkQueue(queue: string): void {
    if (!this.#engine.canCreate(queue)) {
      throw new TooManyQueuesError(queue, this.#engine.maxQueues);
    }
  }

  // deno-lint-ignore require-await
  async sessions(): Promise<SessionView[]> {
    return [...this.#engine.consumers()].map((c) => {
      const id = String(c.id);
      const view: SessionView = {
        id,
        name: c.name,
        address: c.address,
        connectedAt: c.connectedAt,
        lastSeenAt: c.lastSeenAt,
        leased: c.leases.size,
        waiting: c.waiters.size,
        holding: this.#engine.held(c, MAX_HELD_LISTED),
      };
      const controlled = this.#sessions.get(id)?.controlled;
      if (controlled !== undefined) view.controlled = controlled;
      return view;
    });
  }

  // deno-lint-ignore require-await
  async control(sessionId: string, action: ControlAction): Promise<boolean> {
    const session = this.#sessions.get(sessionId);
    if (session === undefined) return false;
    session.control(action);
    return true;
  }

  // deno-lint-ignore require-await
  async items(queue: string, query: ItemsQuery): Promise<ItemPage> {
    const { state, offset, limit } = checkItemsQuery(query);
    return this.#engine.items(queue, state, offset, limit);
  }

  purge(queue: string): Promise<number> {
    const purged = this.#engine.purge(queue);
    this.changed();
    return this.durable$(purged);
  }

  // deno-lint-ignore require-await
  async cancel(ids: readonly number[]): Promise<CancelOutcome> {
    const { cancelled, missing, holders } = this.#engine.cancel(ids);
    this.changed();
    for (const [consumer, held] of holders) {
      this.#sessions.get(String(consumer.id))?.cancelled(held);
    }
    return this.durable$({ cancelled, missing });
  }

  // deno-lint-ignore require-await
  async job(id: number): Promise<JobInfo | undefined> {
    return this.#engine.job(id);
  }

  // deno-lint-ignore require-await
  async setLimits(queue: string, changes: LimitChanges): Promise<QueueLimits> {
    this.checkQueue(queue);
    const limits = this.#engine.setLimits(queue, checkLimits(changes));
    this.changed();
    return limits;
  }

  // deno-lint-ignore require-await
  async limits(queue?: string): Promise<NamedQueueLimits[]> {
    if (queue !== undefined) return [{ queue, ...this.#engine.limitsOf(queue) }];
    return this.#engine.allLimits().map((row) => ({ queue: row.queue, ...row.limits }));
  }

  // deno-lint-ignore require-await
  async pause(queue: string): Promise<void> {
    this.checkQueue(queue);
    this.#engine.pause(queue);
  }

  // deno-lint-ignore require-await
  async resume(queue: string): Promise<void> {
    this.#engine.resume(queue);
    this.changed();
  }

  // deno-lint-ignore require-await
  async peek(queue: string, limit: number): Promise<PeekedItem[]> {
    return this.#engine.peek(queue, limit).map((item) => ({
      id: item.id,
      attempts: item.attempts,
      value: item.value,
    }));
  }

  drop(queue: string, ids: readonly number[] | "all"): Promise<number> {
    const dropped = this.#engine.drop(queue, ids).length;
    this.changed();
    return this.durable$(dropped);
  }

  requeueDead(deadQueue: string, ids: readonly number[] | "all"): Promise<number[]> {
    const added = this.#engine.requeueDead(deadQueue, ids);
    this.changed();
    return this.durable$(added);
  }

  waitEmpty(queue: string, signal?: AbortSignal): Promise<void> {
    if (this.#isEmpty(queue) || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const waiter: EmptyWaiter = {
        queue,
        resolve: () => {
          this.#emptyWaiters.delete(waiter);
          signal?.removeEventListener("abort", waiter.resolve);
          resolve();
        },
      };
      this.#emptyWaiters.add(waiter);
      signal?.addEventListener("abort", waiter.resolve, { once: true });
    });
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      for (const session of [...this.#sessions.values()]) await session.close();
      for (const waiter of [...this.#emptyWaiters]) waiter.resolve();
      await this.#store.close();
    })();
    return this.#closing;
  }

  /**
   * Runs at once the deadlines due by `now` (lease expiries, delays, get
   * timeouts). The broker's timer does this by itself; a caller with an
   * injected clock, or a test that jumps ahead, calls it.
   */
  tick(now: number = this.#clock()): void {
    this.#engine.tick(now);
    this.changed();
  }

  /** Forgets a closed session. */
  forget(session: LocalSession): void {
    this.#sessions.delete(session.id);
  }

  /**
   * After any change: re-arms the deadline timer if the next deadline moved
   * closer, and wakes {@link waitEmpty} callers whose queue emptied.
   */
  changed(): void {
    this.#arm();
    if (this.#emptyWaiters.size > 0) {
      for (const waiter of [...this.#emptyWaiters]) {
        if (this.#isEmpty(waiter.queue)) waiter.resolve();
      }
    }
  }

  /** Resolves with `value` once everything changed so far is durable. */
  durable$<T>(value: T): Promise<T> {
    const store = this.#store;
    if (!store.dirty) return Promise.resolve(value);
    return store.commit().then(() => value, (cause) => {
      throw new NotSavedError(cause);
    });
  }

  /**
   * Resolves with `ids`, the items a client put added, once they are
   * durable; if the commit fails, they are taken back out of memory (see
   * {@link Store.onDiscard}) and the put rejects with {@link NotSavedError}.
   */
  durablePut$(ids: number[]): Promise<number[]> {
    const store = this.#store;
    if (!store.dirty) return Promise.resolve(ids);
    const puts = this.#unsavedPuts;
    for (const id of ids) puts.add(id);
    const settle = () => {
      for (const id of ids) puts.delete(id);
    };
    return store.commit().then(() => {
      settle();
      return ids;
    }, (cause) => {
      settle();
      throw new NotSavedError(cause);
    });
  }

  #isEmpty(queue: string): boolean {
    const [row] = this.#engine.stats(queue);
    return row.ready + row.leased + row.delayed === 0;
  }

  /** Arms the single timer for the engine's next deadline, if that is sooner. */
  #arm(): void {
    const next = this.#engine.nextDeadline();
    if (next === undefined || next >= this.#armedAt || this.#closing) return;
    clearTimeout(this.#timer);
    this.#armedAt = next;
    const wait = Math.min(Math.max(0, next - this.#clock()), MAX_TIMER_MS);
    this.#timer = setTimeout(() => {
      this.#armedAt = Infinity;
      this.#engine.tick();
      this.changed();
    }, wait);
  }
}

/**
 * Checks a put's priority, group and keys (what a front-end validated
 * already; a program calling the broker directly may not have).
 * @throws {RangeError} naming the first one out of range.
 */
function checkPutOptions(options: PutOptions, count: number): void {
  if (options.priority !== undefined) checkPriority(options.priority);
  if (options.group !== undefined) checkLabel(options.group, "group", MAX_GROUP_LENGTH);
  const keys = options.keys;
  if (keys === undefined) return;
  if (keys.length !== count) {
    throw new RangeError("a put needs exactly one key (or none) per value");
  }
  for (const key of keys) if (key !== undefined) checkLabel(key, "key", MAX_KEY_LENGTH);
}

/** Resolves a waiting get. */
type GetResolver = (items: readonly Delivery[]) => void;

/**
 * What a get hands out: a copy of each item as it was delivered, so a
 * holder's attempt number (its fencing number) never changes under it.
 */
function deliveries(items: readonly Item[]): Delivery[] {
  const out = new Array<Delivery>(items.length);
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    out[i] = item.original === undefined
      ? { id: item.id, attempts: item.attempts, value: item.value }
      : { id: item.id, attempts: item.attempts, value: item.value, original: item.original };
  }
  return out;
}

/** A session of a {@link LocalBroker}: one engine consumer. */
class LocalSession implements BrokerSession {
  readonly id: string;
  readonly #broker: LocalBroker;
  readonly #engine: Engine;
  readonly #consumer: Consumer;
  readonly #clock: () => number;
  /** Gets that wait, to resolve with none when the session closes. */
  readonly #waitingGets = new Set<GetResolver>();
  /** Puts that wait for room, to reject when the session closes. */
  readonly #waitingPuts = new Set<(error: Error) => void>();
  #closed = false;
  onCancel: ((ids: number[]) => void) | undefined = undefined;
  /** The last action {@link Broker.control} sent, if any. */
  controlled: ControlAction | undefined = undefined;
  #onControl: ((action: ControlAction) => void) | undefined = undefined;

  constructor(broker: LocalBroker, engine: Engine, consumer: Consumer, clock: () => number) {
    this.#broker = broker;
    this.#engine = engine;
    this.#consumer = consumer;
    this.#clock = clock;
    this.id = String(consumer.id);
  }

  get name(): string {
    return this.#consumer.name;
  }

  get address(): string {
    return this.#consumer.address;
  }

  touch(): void {
    this.#consumer.lastSeenAt = this.#clock();
  }

  /** Called by the broker: held items were cancelled. */
  cancelled(ids: number[]): void {
    this.onCancel?.(ids);
  }

  onControl(handler: (action: ControlAction) => void): void {
    this.#onControl = handler;
  }

  /** Called by the broker: passes `action` to the front-end's handler, if it set one. */
  control(action: ControlAction): void {
    this.controlled = action;
    if (this.#closed) return;
    try {
      this.#onControl?.(action);
    } catch {
      // The front-end's handler failing must not fail the admin's call; the session lives on.
    }
  }

  put(queue: string, values: readonly unknown[], options: PutOptions = {}): Promise<PutIds> {
    if (this.#closed) return Promise.reject(new SessionClosedError());
    let costs: number[];
    try {
      checkPutOptions(options, values.length);
      costs = this.#broker.admit(queue, values, options.originals);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#broker.settings.maxQueueLength === 0) return this.#put(queue, values, options, costs);
    return new Promise<number[]>((resolve, reject) => {
      let settled = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const cancel = (error: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#waitingPuts.delete(cancel);
        reject(error);
      };
      const onRoom = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#waitingPuts.delete(cancel);
        this.#put(queue, values, options, costs).then(resolve, reject);
      };
      if (!this.#engine.isFull(queue, onRoom)) {
        settled = true;
        this.#put(queue, values, options, costs).then(resolve, reject);
        return;
      }
      const limit = this.#broker.settings.maxQueueLength;
      if (options.roomTimeoutMs === 0) {
        cancel(new QueueFullError(queue, limit));
        return;
      }
      this.#waitingPuts.add(cancel);
      if (options.roomTimeoutMs !== undefined) {
        timer = setTimeout(() => cancel(new QueueFullError(queue, limit)), options.roomTimeoutMs);
      }
    });
  }

  #put(
    queue: string,
    values: readonly unknown[],
    options: PutOptions,
    costs: readonly number[],
  ): Promise<PutIds> {
    const extras = options.priority !== undefined || options.group !== undefined ||
        options.keys !== undefined
      ? options
      : undefined;
    const ids = this.#engine.put(
      queue,
      values,
      options.delayMs ?? 0,
      options.maxAttempts ?? 0,
      options.originals,
      costs,
      extras,
    );
    this.#broker.changed();
    return this.#broker.durablePut$(ids);
  }

  get(queue: string, options: GetOptions): Promise<readonly Delivery[]> {
    if (this.#closed) return Promise.resolve([]);
    if (options.timeoutMs > 0) {
      try {
        this.#broker.checkQueue(queue);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    let now: readonly Delivery[] | undefined;
    let later: GetResolver | undefined;
    this.#engine.get(
      this.#consumer,
      queue,
      options.max,
      options.timeoutMs,
      options.leaseMs,
      (items) => {
        if (later === undefined) {
          now = deliveries(items);
          return;
        }
        this.#waitingGets.delete(later);
        later(deliveries(items));
      },
    );
    this.#broker.changed();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise<readonly Delivery[]>((resolve) => {
      later = resolve;
      this.#waitingGets.add(later);
    });
  }

  ack(ids: readonly number[], results?: AckResults): Promise<number[]> {
    const failed = this.#engine.ack(this.#consumer, ids, results);
    this.#broker.changed();
    return this.#broker.durable$(failed);
  }

  nack(ids: readonly number[], delayMs = 0): Promise<number[]> {
    const failed = this.#engine.nack(this.#consumer, ids, delayMs);
    this.#broker.changed();
    return this.#broker.durable$(failed);
  }

  fail(ids: readonly number[], error: string): Promise<number[]> {
    const failed = this.#engine.fail(this.#consumer, ids, error);
    this.#broker.changed();
    return this.#broker.durable$(failed);
  }

  extend(ids: readonly number[], leaseMs: number): Promise<number[]> {
    const failed = this.#engine.extend(this.#consumer, ids, leaseMs);
    this.#broker.changed();
    return Promise.resolve(failed);
  }

  progress(id: number, report: ProgressReport, leaseMs: number): Promise<boolean> {
    const held = this.#engine.progress(this.#consumer, id, report, leaseMs);
    this.#broker.changed();
    return Promise.resolve(held);
  }

  // deno-lint-ignore require-await
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#engine.disconnect(this.#consumer);
    this.#broker.forget(this);
    const gets = [...this.#waitingGets];
    this.#waitingGets.clear();
    for (const resolve of gets) resolve([]);
    for (const cancel of [...this.#waitingPuts]) cancel(new SessionClosedError());
    this.#broker.changed();
  }
}
