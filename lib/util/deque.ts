/**
 * A double-ended queue on a growable ring buffer: O(1) push and shift at both
 * ends, no per-element allocation.
 *
 * A deque that never holds anything allocates nothing beyond itself: its ring
 * is made with the first element (the engine keeps several per queue, most
 * of them never used, and may hold thousands of queues).
 *
 * @example
 * ```ts
 * import { Deque } from "./deque.ts";
 * const deque = new Deque<string>();
 * deque.push("b");
 * deque.unshift("a");
 * console.log(deque.shift(), deque.length); // a 1
 * ```
 *
 * @module
 */

/** Slots of a ring when its first element comes (a power of two, as every later size). */
const INITIAL_CAPACITY = 4;

/** The ring of every deque that has not held anything yet: never written to. */
const NO_ITEMS: never[] = [];

/** A double-ended queue. */
export class Deque<T> {
  /** The ring: its size is 0 or a power of two, so `& (size - 1)` wraps an index. */
  #items: (T | undefined)[] = NO_ITEMS;
  #head = 0;
  #length = 0;

  /** Number of elements. */
  get length(): number {
    return this.#length;
  }

  #grow(): void {
    const old = this.#items;
    const size = old.length;
    const items = new Array<T | undefined>(size === 0 ? INITIAL_CAPACITY : size * 2);
    const mask = size - 1;
    for (let i = 0; i < this.#length; i++) items[i] = old[(this.#head + i) & mask];
    this.#items = items;
    this.#head = 0;
  }

  /** Adds `item` at the back. */
  push(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    const items = this.#items;
    items[(this.#head + this.#length) & (items.length - 1)] = item;
    this.#length++;
  }

  /** Adds `item` at the front. */
  unshift(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    const items = this.#items;
    this.#head = (this.#head - 1) & (items.length - 1);
    items[this.#head] = item;
    this.#length++;
  }

  /** Removes and returns the front element. */
  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const items = this.#items;
    const item = items[this.#head];
    items[this.#head] = undefined;
    this.#head = (this.#head + 1) & (items.length - 1);
    this.#length--;
    return item;
  }

  /** The front element, without removing it. */
  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#items[this.#head];
  }

  /** Removes every element for which `drop` returns true, keeping order. Returns how many. */
  removeWhere(drop: (item: T) => boolean): number {
    let kept = 0;
    const n = this.#length;
    for (let i = 0; i < n; i++) {
      const item = this.shift() as T;
      if (drop(item)) continue;
      this.push(item);
      kept++;
    }
    return n - kept;
  }

  /** Iterates front to back. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.#length; i++) {
      const items = this.#items;
      yield items[(this.#head + i) & (items.length - 1)] as T;
    }
  }
}
