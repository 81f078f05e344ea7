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

/** What a store hands the engine when the master starts. */
export interface LoadedState {
  /** Items that outlived the previous run, in id order. */
  items: StoredItem[];
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
    return Promise.resolve({ items: [], nextId: FIRST_ID });
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
