/**
 * The records of finished items (done, dead, cancelled) that job lookup
 * reports: a ring of fixed size in parallel arrays, so that keeping the last
 * ten thousand costs no object per finished item and keeps no item alive
 * (an item kept for lookup would outlive the young generation and make every
 * ack pay for a trip through the old one).
 *
 * Bounded three ways: by count (the ring's size), by age (records older than
 * `maxAgeMs` are dropped as the ring is used or read) and by the estimated
 * bytes of the values and results it keeps.
 *
 * @example
 * ```ts
 * import { History } from "./history.ts";
 * const history = new History(2, 60_000, 1 << 20);
 * for (const id of [1, 2, 3]) {
 *   const item = {
 *     id, queue: "q", attempts: 1, priority: 0, group: "", key: undefined,
 *     lastError: undefined, progress: undefined, createdAt: 0,
 *   };
 *   history.record(item, "done", 10, id, id * id, 8);
 * }
 * console.log(history.get(1, 10), history.get(3, 10)?.result); // undefined 9
 * ```
 *
 * @module
 */

import type { JobInfo, JobProgress, JobState } from "../model/jobs.ts";

/** What the history reads of a finished item (the engine's items have these fields). */
export interface FinishedItem {
  /** Its id. */
  readonly id: number;
  /** Its queue. */
  readonly queue: string;
  /** Deliveries it had. */
  readonly attempts: number;
  /** Its priority. */
  readonly priority: number;
  /** Its group ("" for none). */
  readonly group: string;
  /** Its unique key, if any. */
  readonly key: string | undefined;
  /** The last failure, if any. */
  readonly lastError: string | undefined;
  /** Its last progress report, if any. */
  readonly progress: JobProgress | undefined;
  /** When it was put. */
  readonly createdAt: number;
}

const STATES: readonly JobState[] = ["done", "dead", "cancelled"];
const STATE_CODE = { done: 0, dead: 1, cancelled: 2 } as const;

/** A bounded ring of finished items' records; see the module doc. */
export class History {
  readonly #capacity: number;
  readonly #maxAgeMs: number;
  readonly #maxBytes: number;
  #ids: Float64Array = new Float64Array(0);
  #states: Uint8Array = new Uint8Array(0);
  #attempts: Float64Array = new Float64Array(0);
  #priorities: Int16Array = new Int16Array(0);
  #created: Float64Array = new Float64Array(0);
  #finished: Float64Array = new Float64Array(0);
  #costs: Float64Array = new Float64Array(0);
  #refs: unknown[] = [];
  /** Oldest record's slot. */
  #head = 0;
  #count = 0;
  #bytes = 0;

  /** A history of at most `capacity` records, `maxAgeMs` old, `maxBytes` of values and results. */
  constructor(capacity: number, maxAgeMs: number, maxBytes: number) {
    this.#capacity = capacity;
    this.#maxAgeMs = maxAgeMs;
    this.#maxBytes = maxBytes;
  }

  /** How many records it holds. */
  get size(): number {
    return this.#count;
  }

  /**
   * Records that `item` finished in `state` at `now`, keeping `value` and
   * `result` (`undefined`: none), which take an estimated `cost` bytes;
   * drops the oldest records beyond the bounds.
   */
  record(
    item: FinishedItem,
    state: JobState,
    now: number,
    value: unknown,
    result: unknown,
    cost: number,
  ): void {
    if (this.#capacity === 0) return;
    if (this.#ids.length === 0) this.#allocate();
    this.#prune(now);
    if (this.#count === this.#capacity) this.#dropOldest(false); // its slot is reused now
    const slot = (this.#head + this.#count) % this.#capacity;
    this.#count++;
    this.#ids[slot] = item.id;
    this.#states[slot] = STATE_CODE[state as keyof typeof STATE_CODE] ?? 0;
    this.#attempts[slot] = item.attempts;
    this.#priorities[slot] = item.priority;
    this.#created[slot] = item.createdAt;
    this.#finished[slot] = now;
    this.#costs[slot] = cost;
    const refs = this.#refs;
    const base = slot * REFS_PER_SLOT;
    refs[base] = item.queue;
    refs[base + 1] = item.group;
    refs[base + 2] = item.key;
    refs[base + 3] = value;
    refs[base + 4] = item.lastError;
    refs[base + 5] = result;
    refs[base + 6] = item.progress;
    this.#bytes += cost;
    while (this.#bytes > this.#maxBytes && this.#count > 0) this.#dropOldest(true);
  }

  /**
   * The record of item `id` as a lookup reports it, if kept and not older
   * than the bound. Lookups are rare and the ring small: it is searched,
   * newest first, rather than indexed (an index would cost every ack a
   * hash insert and delete).
   */
  get(id: number, now: number): JobInfo | undefined {
    this.#prune(now);
    const slot = this.#find(id);
    if (slot === undefined) return undefined;
    const refs = this.#refs;
    const base = slot * REFS_PER_SLOT;
    const info: JobInfo = {
      id,
      queue: refs[base] as string,
      state: STATES[this.#states[slot]],
      attempts: this.#attempts[slot],
      priority: this.#priorities[slot],
      createdAt: this.#created[slot],
      finishedAt: this.#finished[slot],
    };
    const group = refs[base + 1] as string;
    if (group !== "") info.group = group;
    if (refs[base + 2] !== undefined) info.key = refs[base + 2] as string;
    if (refs[base + 3] !== undefined) info.value = refs[base + 3];
    if (refs[base + 4] !== undefined) info.error = refs[base + 4] as string;
    if (refs[base + 5] !== undefined) info.result = refs[base + 5];
    const progress = refs[base + 6] as JobProgress | undefined;
    if (progress !== undefined) info.progress = { ...progress };
    return info;
  }

  /** The slot of the newest record of `id`, if any. */
  #find(id: number): number | undefined {
    const ids = this.#ids;
    for (let i = this.#count - 1; i >= 0; i--) {
      const slot = (this.#head + i) % this.#capacity;
      if (ids[slot] === id) return slot;
    }
    return undefined;
  }

  #allocate(): void {
    const n = this.#capacity;
    this.#ids = new Float64Array(n);
    this.#states = new Uint8Array(n);
    this.#attempts = new Float64Array(n);
    this.#priorities = new Int16Array(n);
    this.#created = new Float64Array(n);
    this.#finished = new Float64Array(n);
    this.#costs = new Float64Array(n);
    this.#refs = new Array(n * REFS_PER_SLOT).fill(undefined);
  }

  /** Drops records older than the age bound. */
  #prune(now: number): void {
    const oldest = now - this.#maxAgeMs;
    while (this.#count > 0 && this.#finished[this.#head] <= oldest) this.#dropOldest(true);
  }

  /** Drops the oldest record; `release` lets go of its values (not needed when reused at once). */
  #dropOldest(release: boolean): void {
    const slot = this.#head;
    this.#bytes -= this.#costs[slot];
    if (release) this.#refs.fill(undefined, slot * REFS_PER_SLOT, (slot + 1) * REFS_PER_SLOT);
    this.#head = (slot + 1) % this.#capacity;
    this.#count--;
  }
}

/** Object fields per record: queue, group, key, value, error, result, progress. */
const REFS_PER_SLOT = 7;
