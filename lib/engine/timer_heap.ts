/**
 * An indexed binary min-heap of deadlines. Each entry records its own position,
 * so a deadline can be moved or cancelled in O(log n) without leaving stale
 * entries behind.
 *
 * @module
 */

/** Position of an entry that is not in the heap. */
export const NOT_SCHEDULED = -1;

/** Something with a deadline that can sit in a {@link TimerHeap}. */
export interface Timed {
  /** Deadline, in the engine clock's milliseconds. */
  deadline: number;
  /** Position in the heap, or {@link NOT_SCHEDULED}; owned by the heap. */
  heapIndex: number;
}

/** A min-heap of {@link Timed} entries ordered by deadline. */
export class TimerHeap<T extends Timed> {
  #heap: T[] = [];

  /** Number of scheduled entries. */
  get size(): number {
    return this.#heap.length;
  }

  /** The earliest entry, without removing it. */
  peek(): T | undefined {
    return this.#heap[0];
  }

  /** Schedules `entry` at `deadline`, or moves it there if already scheduled. */
  schedule(entry: T, deadline: number): void {
    if (entry.heapIndex !== NOT_SCHEDULED) {
      const earlier = deadline < entry.deadline;
      entry.deadline = deadline;
      if (earlier) this.#up(entry.heapIndex);
      else this.#down(entry.heapIndex);
      return;
    }
    entry.deadline = deadline;
    entry.heapIndex = this.#heap.length;
    this.#heap.push(entry);
    this.#up(entry.heapIndex);
  }

  /** Removes `entry` if scheduled. */
  cancel(entry: T): void {
    const i = entry.heapIndex;
    if (i === NOT_SCHEDULED) return;
    entry.heapIndex = NOT_SCHEDULED;
    const last = this.#heap.pop() as T;
    if (i === this.#heap.length) return;
    this.#heap[i] = last;
    last.heapIndex = i;
    this.#down(i);
    this.#up(last.heapIndex);
  }

  /** Every scheduled entry, in no particular order (do not change the heap while iterating). */
  entries(): Iterable<T> {
    return this.#heap;
  }

  /** Removes and returns the earliest entry if its deadline is at or before `now`. */
  popDue(now: number): T | undefined {
    const top = this.#heap[0];
    if (top === undefined || top.deadline > now) return undefined;
    this.cancel(top);
    return top;
  }

  #swap(i: number, j: number): void {
    const heap = this.#heap;
    const a = heap[i], b = heap[j];
    heap[i] = b;
    heap[j] = a;
    b.heapIndex = i;
    a.heapIndex = j;
  }

  #up(i: number): void {
    const heap = this.#heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent].deadline <= heap[i].deadline) return;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) return;
      const right = left + 1;
      const child = right < n && heap[right].deadline < heap[left].deadline ? right : left;
      if (heap[i].deadline <= heap[child].deadline) return;
      this.#swap(i, child);
      i = child;
    }
  }
}
