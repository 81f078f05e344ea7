/**
 * A double-ended queue on a growable ring buffer: O(1) push and shift at both
 * ends, no per-element allocation.
 *
 * @module
 */

const INITIAL_CAPACITY = 16;

/** A double-ended queue. */
export class Deque<T> {
  #items: (T | undefined)[] = new Array(INITIAL_CAPACITY);
  #head = 0;
  #length = 0;

  /** Number of elements. */
  get length(): number {
    return this.#length;
  }

  #grow(): void {
    const old = this.#items;
    const items = new Array<T | undefined>(old.length * 2);
    for (let i = 0; i < this.#length; i++) items[i] = old[(this.#head + i) % old.length];
    this.#items = items;
    this.#head = 0;
  }

  /** Adds `item` at the back. */
  push(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#items[(this.#head + this.#length) % this.#items.length] = item;
    this.#length++;
  }

  /** Adds `item` at the front. */
  unshift(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#head = (this.#head - 1 + this.#items.length) % this.#items.length;
    this.#items[this.#head] = item;
    this.#length++;
  }

  /** Removes and returns the front element. */
  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#items.length;
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
      yield this.#items[(this.#head + i) % this.#items.length] as T;
    }
  }
}
