/**
 * One row per queue for people to read: each `NAME.dead` queue is folded into
 * NAME's row as its dead-letter count. Shared by `taskq status` and the HTTP
 * dashboard, so both show the same numbers.
 *
 * @module
 */

import { DEAD_LETTER_SUFFIX, deadLetterQueue, isDeadLetterQueue } from "./queue_names.ts";
import type { QueueStats } from "./types.ts";

/** A queue's row in the status: its stats and its dead-letter count. */
export interface StatusRow extends QueueStats {
  /** Items in the queue's dead-letter queue (ready or leased). */
  deadLetters: number;
}

/**
 * Folds each `NAME.dead` queue into NAME's row as its dead-letter count; a
 * dead-letter queue whose own queue is unknown keeps a row of its own.
 */
export function statusRows(queues: readonly QueueStats[]): StatusRow[] {
  const byName = new Map(queues.map((q) => [q.name, q]));
  const rows: StatusRow[] = [];
  for (const queue of queues) {
    const isDeadLetters = isDeadLetterQueue(queue.name) &&
      byName.has(queue.name.slice(0, -DEAD_LETTER_SUFFIX.length));
    if (isDeadLetters) continue;
    const dead = isDeadLetterQueue(queue.name)
      ? undefined
      : byName.get(deadLetterQueue(queue.name));
    rows.push({ ...queue, deadLetters: dead ? dead.ready + dead.leased + dead.delayed : 0 });
  }
  return rows;
}
