/**
 * The in-memory store: items live only in the engine's memory and are gone
 * when the master exits (`--memory`).
 *
 * @module
 */

import type { LoadedState, Store, StoredItem } from "./store.ts";

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
  remove(_id: number): void {}

  /** Resolves at once. */
  commit(): Promise<void> {
    return Promise.resolve();
  }

  /** Resolves at once. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
