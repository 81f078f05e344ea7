/**
 * One row per queue for people to read: each `NAME.dead` queue is folded into
 * NAME's row as its dead-letter count. Shared by `taskq status`, the HTTP
 * dashboard and `/metrics`, so all show the same numbers.
 *
 * A dead-letter queue never has a row of its own: when NAME itself is not
 * listed (after a master restart a queue that holds nothing may not be known
 * again, or it may be among the queues the stats added up), an empty row is
 * made for it, so its dead letters show in the same place before and after.
 *
 * @example
 * ```ts
 * import { statusRows } from "./status_rows.ts";
 * import { emptyQueueStats } from "./types.ts";
 * const rows = statusRows([{ ...emptyQueueStats("a.dead"), ready: 2 }]);
 * console.log(rows.map((r) => [r.name, r.deadLetters])); // [ [ "a", 2 ] ]
 * ```
 *
 * @module
 */

import { DEAD_LETTER_SUFFIX, deadLetterQueue, isDeadLetterQueue } from "./queue_names.ts";
import { emptyQueueStats, type QueueStats } from "./types.ts";

/** A queue's row in the status: its stats and its dead-letter count. */
export interface StatusRow extends QueueStats {
  /** Items in the queue's dead-letter queue (ready, leased or delayed). */
  deadLetters: number;
}

/**
 * The queue whose dead letters queue `name` holds, or `undefined` when it is
 * not a dead-letter queue (or is the dead-letter queue of one, which a
 * dead-letter queue never has: such a name was made by hand and keeps a row).
 */
function ownerOf(name: string): string | undefined {
  if (!isDeadLetterQueue(name)) return undefined;
  const owner = name.slice(0, -DEAD_LETTER_SUFFIX.length);
  return isDeadLetterQueue(owner) ? undefined : owner;
}

/**
 * Folds each `NAME.dead` queue into NAME's row as its dead-letter count,
 * making an empty row for NAME when it is not listed; the rows keep the
 * order of `queues` (a made row takes its dead-letter queue's place).
 *
 * @example
 * ```ts
 * import { statusRows } from "./status_rows.ts";
 * import { emptyQueueStats } from "./types.ts";
 * const rows = statusRows([
 *   { ...emptyQueueStats("a"), ready: 1 },
 *   { ...emptyQueueStats("a.dead"), ready: 3 },
 * ]);
 * console.log(rows.length, rows[0].deadLetters); // 1 3
 * ```
 */
export function statusRows(queues: readonly QueueStats[]): StatusRow[] {
  const byName = new Map(queues.map((q) => [q.name, q]));
  const rows: StatusRow[] = [];
  const made = new Set<string>();
  const deadLettersOf = (name: string): number => {
    const dead = byName.get(deadLetterQueue(name));
    return dead === undefined ? 0 : dead.ready + dead.leased + dead.delayed;
  };
  for (const queue of queues) {
    const owner = ownerOf(queue.name);
    if (owner === undefined) {
      const deadLetters = isDeadLetterQueue(queue.name) ? 0 : deadLettersOf(queue.name);
      rows.push({ ...queue, deadLetters });
      continue;
    }
    if (byName.has(owner) || made.has(owner)) continue;
    made.add(owner);
    rows.push({ ...emptyQueueStats(owner), deadLetters: deadLettersOf(owner) });
  }
  return rows;
}
