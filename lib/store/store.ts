/**
 * The interface between the queue engine and where its items are kept.
 *
 * The engine holds every live item in memory and tells the store about each
 * change as it happens; a store that persists them commits the changes in
 * groups, and {@link Store.commit} tells the front-ends when a reply that
 * promised durability may be sent. Implementations: {@link MemoryStore} here
 * (keeps nothing beyond the engine's memory: the engine's default) and
 * `SqliteStore` in sqlite.ts.
 *
 * A commit that fails (a full disk, an I/O error) discards its whole batch:
 * none of the changes it carried is written, then or later, so an error
 * reply can mean "not stored". Before its waiters are rejected, the store
 * hands the items the batch inserted to {@link Store.onDiscard}, so that
 * whoever made them can take them back out of memory.
 *
 * @module
 */

import { decode, encode } from "../model/codec.ts";

/** An item as a store keeps it. */
export interface StoredItem {
  /** Unique id, never reused. */
  id: number;
  /** Name of the item's queue. */
  queue: string;
  /** The item itself: any msgpack value. */
  value: unknown;
  /** Deliveries so far. */
  attempts: number;
  /** Earliest time (ms since the epoch) the item may be served; 0 for at once. */
  readyAt: number;
  /** Deliveries allowed before dead-lettering; 0 for the queue's policy. */
  maxAttempts?: number;
  /** Description of the last failure. */
  lastError?: string;
  /** Priority (higher served first); 0 when absent. */
  priority?: number;
  /** Group, for round-robin delivery; none when absent or empty. */
  group?: string;
  /** Unique key within its queue, if it has one. */
  key?: string;
  /** How long its key stays taken after it finished, in ms; 0 when absent. */
  keyHoldMs?: number;
  /** When it was put (ms since the epoch); the load time when absent (stored before it was kept). */
  createdAt?: number;
}

/** A queue's counters as a durable store keeps them across restarts. */
export interface StoredCounters {
  /** The queue's name. */
  queue: string;
  /** Items ever put. */
  put: number;
  /** Items acked. */
  acked: number;
  /** Items nacked. */
  nacked: number;
  /** Leases that ran out or were dropped with their connection. */
  expired: number;
  /** Failures reported by workers. */
  failed: number;
  /** Items moved to the dead-letter queue. */
  dead: number;
}

/** The fields few items have, for one row of an {@link ItemBatch}. */
export type RareFields = Pick<StoredItem, "lastError" | "priority" | "group" | "key" | "keyHoldMs">;

/**
 * A run of stored items in columns, in id order: one page of a streaming
 * load. Its arrays are fresh and never touched again by the store, so a
 * consumer may keep them (adopt `values` as an arena chunk) instead of
 * copying. Values are msgpack bytes, checked to be well formed but not
 * decoded (decode them with `decode(bytes, "trusted")` when needed).
 *
 * @example
 * ```ts
 * import { batchesOf, valueBytes } from "./store.ts";
 * for (const batch of batchesOf([{ id: 1, queue: "q", value: "a", attempts: 0, readyAt: 0 }])) {
 *   console.log(batch.ids[0], batch.queues[batch.queueOf[0]], valueBytes(batch, 0).length);
 * }
 * ```
 */
export interface ItemBatch {
  /** Rows in the batch (at least one). */
  readonly length: number;
  /** Each row's id, ascending, above every id of earlier batches. */
  readonly ids: Float64Array;
  /** The queue names the batch's rows belong to (often just one). */
  readonly queues: readonly string[];
  /** Row `i`'s queue is `queues[queueOf[i]]`. */
  readonly queueOf: Uint32Array;
  /** Every row's value as msgpack bytes, one after the other. */
  readonly values: Uint8Array;
  /** Where row `i`'s bytes end in {@link values}; they start where row `i - 1`'s end (row 0: at 0). */
  readonly valueEnds: Uint32Array;
  /** Each row's deliveries so far. */
  readonly attempts: Uint32Array;
  /** Each row's deliveries allowed before dead-lettering; 0 for the queue's policy. */
  readonly maxAttempts: Uint32Array;
  /** Each row's earliest delivery (ms since the epoch); 0 for at once. */
  readonly readyAt: Float64Array;
  /** When each row was put (ms since the epoch); NaN when unknown (take the load time). */
  readonly createdAt: Float64Array;
  /** The rare fields of the rows that have any, by row index; `undefined` when no row has. */
  readonly rare: ReadonlyMap<number, RareFields> | undefined;
}

/** What a store hands the engine when the master starts. */
export interface LoadedState {
  /**
   * Items that outlived the previous run, in id order, a page at a time:
   * iterate it once. A store may read each page only when it is pulled, so a
   * consumer may pull them all at once or a few at a time while serving.
   * Iterating may throw a `StoreError` (a damaged value, an I/O error).
   */
  batches: Iterable<ItemBatch>;
  /** The next id to hand out (above every id ever used). */
  nextId: number;
  /** The queues' counters as the previous run left them (a store that keeps none: absent). */
  counters?: StoredCounters[];
}

/** Persistence under the engine. */
export interface Store {
  /** Whether committed changes survive the master's process. */
  readonly durable: boolean;
  /** Reads what an earlier run left. */
  load(): Promise<LoadedState>;
  /** Records a new item. */
  insert(item: StoredItem): void;
  /** Records a changed item (attempts or readiness). */
  update(item: StoredItem): void;
  /**
   * Records that an item is settled and gone; `queue`, its queue, when the
   * caller knows it (a store that keeps counters saves that queue's).
   */
  remove(id: number, queue?: string): void;
  /**
   * If set (by the engine), how a store that keeps counters reads a queue's
   * when it commits: `undefined` for a queue that is no more. Such a store
   * saves, with each commit, the counters of the queues whose items the
   * commit's changes touched and of those named to {@link countersChanged}.
   */
  readCounters?: ((queue: string) => StoredCounters | undefined) | undefined;
  /**
   * Records that the counters of `queue` changed with no change to its items
   * (or that it was forgotten), so the next commit saves them; optional.
   */
  countersChanged?(queue: string): void;
  /** Whether changes are recorded but not yet committed. */
  readonly dirty: boolean;
  /**
   * Resolves once every change recorded so far is durable. Rejects when they
   * could not be written: the batch is then discarded (never written later)
   * and {@link onDiscard} was called with the items it inserted.
   */
  commit(): Promise<void>;
  /** Commits what is pending and releases the store. */
  close(): Promise<void>;
  /** If set, called after each commit that wrote to disk with its duration in ms. */
  onCommit?: ((ms: number) => void) | undefined;
  /**
   * If set, called when a commit fails, before its waiters are rejected, with
   * the items (the very objects given to {@link insert}) whose inserts the
   * discarded batch carried: they are not stored, and never will be.
   */
  onDiscard?: ((inserted: readonly StoredItem[]) => void) | undefined;
}

/** Rows per batch {@link batchesOf} makes. */
export const BATCH_ROWS = 8192;

/** The bytes of row `i`'s value in `batch`, a view into {@link ItemBatch.values} (not a copy). */
export function valueBytes(batch: ItemBatch, i: number): Uint8Array {
  return batch.values.subarray(i === 0 ? 0 : batch.valueEnds[i - 1], batch.valueEnds[i]);
}

/** The rare fields of `item` that it has (not at their "none" value), or `undefined` for none. */
function rareFields(item: StoredItem): RareFields | undefined {
  let rare: RareFields | undefined;
  if (item.lastError !== undefined) (rare ??= {}).lastError = item.lastError;
  if (item.priority !== undefined && item.priority !== 0) (rare ??= {}).priority = item.priority;
  if (item.group !== undefined && item.group !== "") (rare ??= {}).group = item.group;
  if (item.key !== undefined) (rare ??= {}).key = item.key;
  if (item.keyHoldMs !== undefined && item.keyHoldMs !== 0) {
    (rare ??= {}).keyHoldMs = item.keyHoldMs;
  }
  return rare;
}

/** Makes one batch of `items` (at least one), encoding their values. */
function batchOf(items: readonly StoredItem[]): ItemBatch {
  const length = items.length;
  const encoded = items.map((item) => encode(item.value));
  const values = new Uint8Array(encoded.reduce((sum, bytes) => sum + bytes.length, 0));
  const valueEnds = new Uint32Array(length);
  const ids = new Float64Array(length);
  const queueOf = new Uint32Array(length);
  const attempts = new Uint32Array(length);
  const maxAttempts = new Uint32Array(length);
  const readyAt = new Float64Array(length);
  const createdAt = new Float64Array(length);
  const queues: string[] = [];
  const queueIndex = new Map<string, number>();
  let rare: Map<number, RareFields> | undefined;
  let end = 0;
  for (let i = 0; i < length; i++) {
    const item = items[i];
    values.set(encoded[i], end);
    end += encoded[i].length;
    valueEnds[i] = end;
    ids[i] = item.id;
    let q = queueIndex.get(item.queue);
    if (q === undefined) {
      q = queues.push(item.queue) - 1;
      queueIndex.set(item.queue, q);
    }
    queueOf[i] = q;
    attempts[i] = item.attempts;
    maxAttempts[i] = item.maxAttempts ?? 0;
    readyAt[i] = item.readyAt;
    createdAt[i] = item.createdAt ?? NaN;
    const fields = rareFields(item);
    if (fields !== undefined) (rare ??= new Map()).set(i, fields);
  }
  return {
    length,
    ids,
    queues,
    queueOf,
    values,
    valueEnds,
    attempts,
    maxAttempts,
    readyAt,
    createdAt,
    rare,
  };
}

/**
 * The items `items` (in id order) as batches of up to {@link BATCH_ROWS}
 * rows: a {@link LoadedState.batches} for a store (or a test) that holds
 * its items as objects.
 *
 * @example
 * ```ts
 * import { batchesOf } from "./store.ts";
 * const state = { nextId: 2, batches: batchesOf([{ id: 1, queue: "q", value: 1, attempts: 0, readyAt: 0 }]) };
 * console.log([...state.batches].length); // 1
 * ```
 */
export function* batchesOf(items: Iterable<StoredItem>): Generator<ItemBatch> {
  let page: StoredItem[] = [];
  for (const item of items) {
    page.push(item);
    if (page.length === BATCH_ROWS) {
      yield batchOf(page);
      page = [];
    }
  }
  if (page.length > 0) yield batchOf(page);
}

/**
 * The rows of `batches` as {@link StoredItem}s, values decoded, fields at
 * their "none" value left out (as a store reads them back): for tests, and
 * for a consumer that wants objects.
 * @throws {ProtocolError} when a value cannot be decoded.
 *
 * @example
 * ```ts
 * import { batchesOf, storedItemsOf } from "./store.ts";
 * const items = [...storedItemsOf(batchesOf([{ id: 1, queue: "q", value: "a", attempts: 0, readyAt: 0 }]))];
 * console.log(items[0].value); // "a"
 * ```
 */
export function* storedItemsOf(batches: Iterable<ItemBatch>): Generator<StoredItem> {
  for (const batch of batches) {
    for (let i = 0; i < batch.length; i++) {
      const item: StoredItem = {
        id: batch.ids[i],
        queue: batch.queues[batch.queueOf[i]],
        value: decode(valueBytes(batch, i), "trusted"),
        attempts: batch.attempts[i],
        readyAt: batch.readyAt[i],
        maxAttempts: batch.maxAttempts[i],
      };
      const rare = batch.rare?.get(i);
      if (rare !== undefined) Object.assign(item, rare);
      if (!Number.isNaN(batch.createdAt[i])) item.createdAt = batch.createdAt[i];
      yield item;
    }
  }
}

/** The first id a fresh store hands out. */
const FIRST_ID = 1;

/** A store that persists nothing; every change is "committed" at once. */
export class MemoryStore implements Store {
  /** Always false: nothing survives the process. */
  readonly durable = false;
  /** Always false: there is never anything to commit. */
  readonly dirty = false;

  /** An empty state: no earlier run to recover. */
  load(): Promise<LoadedState> {
    return Promise.resolve({ batches: [], nextId: FIRST_ID });
  }

  /** Nothing to record. */
  insert(_item: StoredItem): void {}

  /** Nothing to record. */
  update(_item: StoredItem): void {}

  /** Nothing to record. */
  remove(_id: number, _queue?: string): void {}

  /** Resolves at once. */
  commit(): Promise<void> {
    return Promise.resolve();
  }

  /** Resolves at once. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
