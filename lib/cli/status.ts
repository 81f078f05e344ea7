/**
 * `taskq status`: shows each queue's counts and the connected clients.
 *
 * @module
 */

import {
  connectFromFlags,
  CONNECTION_FLAGS,
  CONNECTION_HELP,
  type FlagSpec,
  parseFlags,
} from "./args.ts";
import type { Stats } from "../client/client.ts";
import { DEAD_LETTER_SUFFIX, deadLetterQueue, isDeadLetterQueue } from "../queue_names.ts";
import type { QueueStats } from "../wire/messages.ts";

/** One-line summary shown by `taskq --help`. */
export const STATUS_SUMMARY = "show queues (ready, leased, delayed, dead) and clients";

/** Help text of `taskq status`. */
export const STATUS_HELP = `Usage: taskq status [--json]

Shows, per queue, the items ready, leased (being worked on), delayed (waiting
for a retry or a delayed put) and dead (in NAME.dead after their last
attempt), the gets waiting, the totals put and acked, and the number of
connected clients.

Options:
  --json                    print one JSON object instead of a table
${CONNECTION_HELP}
  -h, --help                show this help
`;

const FLAGS: FlagSpec = { json: { type: "boolean" }, ...CONNECTION_FLAGS };

/** A queue's row in the status: its stats and its dead-letter count. */
export interface StatusRow extends QueueStats {
  /** Items in the queue's dead-letter queue. */
  deadLetters: number;
}

/** Folds each `NAME.dead` queue into NAME's row as its dead-letter count. */
export function statusRows(stats: Stats): StatusRow[] {
  const byName = new Map(stats.queues.map((q) => [q.name, q]));
  const rows: StatusRow[] = [];
  for (const queue of stats.queues) {
    const isDeadLetters = isDeadLetterQueue(queue.name) &&
      byName.has(queue.name.slice(0, -DEAD_LETTER_SUFFIX.length));
    if (isDeadLetters) continue;
    const dead = isDeadLetterQueue(queue.name)
      ? undefined
      : byName.get(deadLetterQueue(queue.name));
    rows.push({ ...queue, deadLetters: dead ? dead.ready + dead.leased : 0 });
  }
  return rows;
}

/** Formats rows as an aligned text table. */
export function statusTable(rows: readonly StatusRow[], clients: number): string {
  const header = ["QUEUE", "READY", "LEASED", "DELAYED", "DEAD", "WAITING", "PUT", "ACKED"];
  const cells = rows.map((r) => [
    r.name,
    ...[r.ready, r.leased, r.delayed, r.deadLetters, r.waiting, r.put, r.acked].map(String),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) =>
    c.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join("  ");
  const body = cells.length > 0 ? cells.map(line).join("\n") : "(no queues yet)";
  return `${line(header)}\n${body}\n\nclients connected: ${clients}`;
}

/** Runs `taskq status` with `args`; resolves with the exit code. */
export async function runStatus(args: string[]): Promise<number> {
  const parsed = parseFlags("status", args, FLAGS);
  if (parsed.values.help) {
    console.log(STATUS_HELP);
    return 0;
  }
  const client = await connectFromFlags(parsed);
  try {
    const stats = await client.stats();
    const rows = statusRows(stats);
    if (parsed.values.json) {
      console.log(JSON.stringify({ queues: rows, clients: stats.clients }));
    } else {
      console.log(statusTable(rows, stats.clients));
    }
    return 0;
  } finally {
    await client.close();
  }
}
