/**
 * `taskq dead list|requeue|drop`: the dead letters (items that ran out of
 * attempts, kept in `NAME.dead` with their last error): list them with
 * paging and a queue filter, put them back on the queue they failed in (all
 * of them, or by id), or drop them for good.
 *
 * @example
 * ```ts
 * import { DEAD_HELP } from "./dead.ts";
 * console.log(DEAD_HELP.startsWith("Usage: taskq dead")); // true
 * ```
 *
 * @module
 */

import {
  connectFromFlags,
  CONNECTION_FLAGS,
  CONNECTION_HELP,
  type FlagSpec,
  intFlag,
  jobIdArguments,
  type Parsed,
  parseFlags,
} from "./args.ts";
import { ConfigError, EXIT_FAILURE, TaskqError } from "../errors.ts";
import type { JobInfo } from "../model/jobs.ts";
import type { DeadLetter } from "../model/types.ts";
import { deadLetterQueue, isDeadLetterOf, isDeadLetterQueue } from "../model/queue_names.ts";
import type { Client } from "../client/client.ts";
import { MAX_BATCH } from "../wire/messages.ts";
import { printable } from "../util/printable.ts";
import {
  ERROR_PREVIEW_CHARS,
  jsonLine,
  preview,
  queueArgument,
  relative,
  shorten,
  table,
} from "./listing.ts";
import { listItems } from "./peek.ts";

/** One-line summary shown by `taskq --help`. */
export const DEAD_SUMMARY = "list, re-queue or drop dead letters (items out of attempts)";

/** Dead letters `taskq dead list` shows when given no `--limit`. */
export const DEFAULT_DEAD_LIMIT = 50;

/** Most dead letters one `taskq dead list` shows. */
export const MAX_DEAD_LIMIT = MAX_BATCH;

/**
 * Exit code of `taskq dead requeue` and `taskq dead drop` when some of the
 * ids given were not dead letters of that queue (the others were handled).
 */
export const EXIT_SOME_NOT_DEAD = EXIT_FAILURE;

/** Help text of `taskq dead`. */
export const DEAD_HELP = `Usage: taskq dead list [QUEUE] [--offset N] [--limit N] [--json]
       taskq dead requeue QUEUE (--all | ID...)
       taskq dead drop QUEUE (--all | ID...)

An item that runs out of attempts (taskq put --max-attempts, the master's
--max-attempts) moves to the dead-letter queue NAME.dead with its last error.
QUEUE is the queue's name; a trailing .dead is optional.

  list     shows dead letters: of QUEUE, or of every queue (by queue name);
           each with its id in NAME.dead (what requeue and drop take), the
           queue it failed in, its attempts, when it died, its last error and
           its value (cut to one line; --json shows them whole)
  requeue  puts dead letters back on the queue they failed in, as new items
           with fresh attempts: every one of QUEUE (--all) or those with the
           ids given; prints the new items' ids, one per line
  drop     removes dead letters for good: every one of QUEUE (--all) or those
           with the ids given

Options:
  --offset N                list: skip the first N dead letters (default 0)
  --limit N                 list: show at most N (default ${DEFAULT_DEAD_LIMIT}, at most ${MAX_DEAD_LIMIT})
  --json                    list: one JSON object per line: id, deadQueue,
                            queue (failed in), originalId, attempts, error,
                            failedAt (ms since the epoch), value; letter is
                            false for an item put on NAME.dead by hand (it
                            has only id, deadQueue and value)
  --all                     requeue, drop: every dead letter of QUEUE
${CONNECTION_HELP}
  -h, --help                show this help

Exit codes: 0 done, ${EXIT_SOME_NOT_DEAD} some ids given were not dead letters of QUEUE (the
others were handled) or another error, 2 bad arguments.

Examples:
  taskq dead list
  taskq dead list tasks --offset 50 --limit 50
  taskq dead requeue tasks --all
  taskq dead drop tasks 17 18
`;

const FLAGS: FlagSpec = {
  offset: { type: "string" },
  limit: { type: "string" },
  json: { type: "boolean" },
  all: { type: "boolean" },
  ...CONNECTION_FLAGS,
};

/** One dead letter as `taskq dead list` shows it. */
export interface DeadRow {
  /** Its id in the dead-letter queue: what requeue and drop take. */
  id: number;
  /** The dead-letter queue holding it. */
  deadQueue: string;
  /** Whether it is a dead letter (false: an item put on the dead-letter queue by hand). */
  letter: boolean;
  /** The queue it failed in. */
  queue?: string;
  /** Its id in that queue. */
  originalId?: number;
  /** Deliveries it had. */
  attempts?: number;
  /** Its last error. */
  error?: string;
  /** When it was dead-lettered (ms since the epoch). */
  failedAt?: number;
  /** The item as it was put. */
  value: unknown;
}

/**
 * A ready item of a dead-letter queue as a {@link DeadRow}.
 *
 * @example
 * ```ts
 * import { deadRow } from "./dead.ts";
 * const letter = { queue: "q", id: 3, value: "x", attempts: 5, error: "boom", failedAt: 0 };
 * const row = deadRow({ id: 9, queue: "q.dead", state: "ready", attempts: 0, priority: 0, value: letter, createdAt: 0 });
 * console.log(row.id, row.queue, row.originalId, row.error); // 9 q 3 boom
 * ```
 */
export function deadRow(item: JobInfo): DeadRow {
  if (!isDeadLetterOf(item.value, item.queue)) {
    return { id: item.id, deadQueue: item.queue, letter: false, value: item.value };
  }
  const letter = item.value as DeadLetter;
  return {
    id: item.id,
    deadQueue: item.queue,
    letter: true,
    queue: letter.queue,
    originalId: Number(letter.id),
    attempts: Number(letter.attempts),
    error: String(letter.error ?? ""),
    failedAt: Number(letter.failedAt),
    value: letter.value,
  };
}

/**
 * Dead letters as `taskq dead list` prints them: a summary line, then a table.
 *
 * @example
 * ```ts
 * import { deadText } from "./dead.ts";
 * console.log(deadText([], 0, 0, 0)); // no dead letters
 * ```
 */
export function deadText(
  rows: readonly DeadRow[],
  total: number,
  offset: number,
  now: number,
): string {
  if (total === 0) return "no dead letters";
  const head = `${total} dead letter${total === 1 ? "" : "s"}`;
  if (rows.length === 0) return `${head}; none from --offset ${offset}`;
  const header = ["ID", "QUEUE", "ATTEMPTS", "DIED", "ERROR", "VALUE"];
  const cells = rows.map((row) => [
    String(row.id),
    printable(row.letter ? row.queue as string : row.deadQueue),
    row.letter ? String(row.attempts) : "-",
    row.letter ? relative(row.failedAt as number, now) : "-",
    row.letter ? shorten(row.error as string, ERROR_PREVIEW_CHARS) : "(put by hand)",
    preview(row.value),
  ]);
  const end = offset + rows.length;
  const more = end < total ? `; --offset ${end} for more` : "";
  return `${head}; showing ${offset + 1}–${end}${more}\n` +
    table(header, cells, new Set([1, 3, 4, 5]));
}

/**
 * Dead letters of one queue, or of every queue (dead-letter queues by name,
 * among those the master's statistics list), from `offset`, at most `limit`.
 */
async function listDead(
  client: Client,
  queue: string | undefined,
  offset: number,
  limit: number,
): Promise<{ rows: DeadRow[]; total: number }> {
  if (queue !== undefined) {
    const page = await listItems(client, deadLetterQueue(queue), "ready", offset, limit);
    return { rows: page.items.map(deadRow), total: page.total };
  }
  const stats = await client.stats();
  const queues = stats.queues
    .filter((q) => isDeadLetterQueue(q.name) && q.ready > 0)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const total = queues.reduce((sum, q) => sum + q.ready, 0);
  const rows: DeadRow[] = [];
  let skip = offset;
  for (const { name, ready } of queues) {
    if (rows.length >= limit) break;
    if (skip >= ready) {
      skip -= ready;
      continue;
    }
    const page = await listItems(client, name, "ready", skip, limit - rows.length);
    rows.push(...page.items.map(deadRow));
    skip = 0;
  }
  return { rows, total };
}

/** Some ids given to requeue or drop were not dead letters of the queue. */
export class NotDeadError extends TaskqError {
  /** Creates the error: `done` of `given` ids were handled in `queue`. */
  constructor(verb: string, done: number, given: number, queue: string) {
    super(
      `${verb} ${done} of ${given} ids: the others are not dead letters of ${queue} ` +
        `(see: taskq dead list ${queue.slice(0, -".dead".length)})`,
    );
  }
}

/** The ids or `--all` of requeue and drop; exactly one of the two. */
function idsOrAll(parsed: Parsed, command: string): number[] | "all" {
  const ids = parsed.positionals.slice(2);
  if (parsed.values.all === true) {
    if (ids.length > 0) {
      throw new ConfigError(`give --all or ids, not both (see: taskq dead --help)`);
    }
    return "all";
  }
  if (ids.length === 0) {
    throw new ConfigError(
      `give the ids of the dead letters to ${command}, or --all (see: taskq dead --help)`,
    );
  }
  return [...new Set(jobIdArguments(ids))];
}

/** Runs `taskq dead requeue` or `taskq dead drop` on the parsed arguments. */
async function handle(parsed: Parsed, action: "requeue" | "drop"): Promise<number> {
  const [, name] = parsed.positionals;
  if (name === undefined) {
    throw new ConfigError(
      `give the queue whose dead letters to ${action} (see: taskq dead --help)`,
    );
  }
  const dead = deadLetterQueue(queueArgument("dead", [name]));
  const ids = idsOrAll(parsed, action);
  const client = await connectFromFlags(parsed);
  let done = 0;
  try {
    if (action === "requeue") {
      const batches = ids === "all" ? ["all" as const] : chunks(ids);
      for (const batch of batches) {
        const fresh = await client.requeueDead(dead, batch);
        if (fresh.length > 0) console.log(fresh.join("\n"));
        done += fresh.length;
      }
    } else {
      const batches = ids === "all" ? ["all" as const] : chunks(ids);
      for (const batch of batches) done += await client.drop(dead, batch);
    }
  } finally {
    await client.close();
  }
  const verb = action === "requeue" ? "re-queued" : "dropped";
  console.error(`taskq dead: ${verb} ${done} dead letter${done === 1 ? "" : "s"} of ${dead}`);
  if (ids !== "all" && done < ids.length) throw new NotDeadError(verb, done, ids.length, dead);
  return 0;
}

/** `ids` in batches of at most {@link MAX_BATCH}. */
function chunks(ids: readonly number[]): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < ids.length; i += MAX_BATCH) out.push(ids.slice(i, i + MAX_BATCH));
  return out;
}

/** Runs `taskq dead` with `args`; resolves with the exit code. */
export async function runDead(args: string[]): Promise<number> {
  const parsed = parseFlags("dead", args, FLAGS);
  if (parsed.values.help) {
    console.log(DEAD_HELP);
    return 0;
  }
  const [action, ...rest] = parsed.positionals;
  if (action === "requeue" || action === "drop") return await handle(parsed, action);
  if (action !== "list") {
    throw new ConfigError(
      action === undefined
        ? `give list, requeue or drop (see: taskq dead --help)`
        : `unknown action ${JSON.stringify(action)}: give list, requeue or drop`,
    );
  }
  if (parsed.values.all === true) throw new ConfigError(`--all is for requeue and drop`);
  if (rest.length > 1) throw new ConfigError(`list takes at most one queue name`);
  const queue = rest.length === 1 ? queueArgument("dead", rest) : undefined;
  const offset = intFlag(parsed, "offset", 0, 0);
  const limit = intFlag(parsed, "limit", DEFAULT_DEAD_LIMIT, 1, MAX_DEAD_LIMIT);
  const client = await connectFromFlags(parsed);
  let listed: { rows: DeadRow[]; total: number };
  try {
    listed = await listDead(client, queue, offset, limit);
  } finally {
    await client.close();
  }
  if (parsed.values.json === true) {
    for (const row of listed.rows) console.log(jsonLine(row));
  } else {
    console.log(deadText(listed.rows, listed.total, offset, Date.now()));
  }
  return 0;
}
