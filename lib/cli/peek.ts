/**
 * `taskq peek QUEUE`: looks at a queue's ready, delayed or leased items
 * without taking them (nothing is leased, acked or counted as a delivery).
 *
 * @example
 * ```ts
 * import { PEEK_HELP } from "./peek.ts";
 * console.log(PEEK_HELP.startsWith("Usage: taskq peek")); // true
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
  parseFlags,
  stringFlag,
} from "./args.ts";
import { ConfigError } from "../errors.ts";
import type { JobInfo } from "../model/jobs.ts";
import {
  type ItemPage,
  LISTED_STATES,
  type ListedState,
  MAX_ITEMS_PAGE,
} from "../client/client.ts";
import type { Client } from "../client/client.ts";
import { MAX_BATCH } from "../wire/messages.ts";
import { printable } from "../util/printable.ts";
import { preview, queueArgument, relative, table } from "./listing.ts";
import { jobJson } from "./job.ts";

/** One-line summary shown by `taskq --help`. */
export const PEEK_SUMMARY = "look at a queue's ready, delayed or leased items without taking them";

/** Items `taskq peek` shows when given no `--count`. */
export const DEFAULT_PEEK_COUNT = 10;

/** Most items one `taskq peek` shows. */
export const MAX_PEEK_COUNT = MAX_BATCH;

/** Help text of `taskq peek`. */
export const PEEK_HELP = `Usage: taskq peek [options] QUEUE

Shows items of the queue without taking them: nothing is leased or acked,
and no attempt is counted. By default the first ${DEFAULT_PEEK_COUNT} ready items, in the order
they will be served (priority, then first in first out).

The text output starts with how many items of that state the queue holds,
then one row per item: its id (what taskq job, taskq cancel and taskq dead
take), attempts so far, priority, and for delayed items when they become
ready, for leased ones who holds them and until when; then the value, cut
to one line (--json shows it whole).

Options:
  --state STATE             ready (default), delayed (waiting for a delay or a
                            retry's backoff, soonest first) or leased (being
                            worked on, oldest lease first)
  --count N                 how many items (default ${DEFAULT_PEEK_COUNT}, at most ${MAX_PEEK_COUNT})
  --offset N                skip the first N items of that state (default 0)
  --json                    print one JSON object per line per item, as
                            taskq job --json prints it (id, queue, state,
                            attempts, priority, value, times, holder...)
${CONNECTION_HELP}
  -h, --help                show this help

Dead letters are the ready items of NAME.dead; taskq dead list shows them
with their error and the queue they failed in.

Examples:
  taskq peek tasks
  taskq peek tasks --state leased --json | jq .holder.name
`;

const FLAGS: FlagSpec = {
  state: { type: "string" },
  count: { type: "string" },
  offset: { type: "string" },
  json: { type: "boolean" },
  ...CONNECTION_FLAGS,
};

/**
 * Up to `count` items of `queue` in `state` from `offset`, asked for a page
 * ({@link MAX_ITEMS_PAGE} at most) at a time; the total is the last page's.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { connect } from "../client/client.ts";
 * import { listItems } from "./peek.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const client = await connect({ address: master.address, authkey: "abc" });
 * await client.queue("tasks").putMany([1, 2, 3]);
 * const page = await listItems(client, "tasks", "ready", 1, 5);
 * console.log(page.total, page.items.length); // 3 2
 * await client.close();
 * await master.close();
 * ```
 */
export async function listItems(
  client: Client,
  queue: string,
  state: ListedState,
  offset: number,
  count: number,
): Promise<ItemPage> {
  const items: JobInfo[] = [];
  let total = 0;
  for (;;) {
    const limit = Math.min(MAX_ITEMS_PAGE, count - items.length);
    const page = await client.items(queue, { state, offset: offset + items.length, limit });
    total = page.total;
    items.push(...page.items);
    if (page.items.length < limit || items.length >= count) break;
  }
  return { items, total };
}

/** The state-specific column of a row: when a delayed item is ready, who holds a leased one. */
function whenOrWho(item: JobInfo, now: number): string {
  if (item.state === "delayed" && item.readyAt !== undefined) {
    return `ready ${relative(item.readyAt, now)}`;
  }
  if (item.state === "leased") {
    const who = item.holder === undefined ? "?" : printable(item.holder.name);
    const until = item.leaseExpiresAt === undefined
      ? ""
      : `, ends ${relative(item.leaseExpiresAt, now)}`;
    return `${who}${until}`;
  }
  return "";
}

/**
 * A page of items as `taskq peek` prints it: a summary line, then a table.
 *
 * @example
 * ```ts
 * import { peekText } from "./peek.ts";
 * const items = [{ id: 7, queue: "q", state: "ready" as const, attempts: 0, priority: 0, value: "x", createdAt: 0 }];
 * console.log(peekText("q", "ready", { items, total: 1 }, 0, 0).split("\n")[0]); // q: 1 ready item; showing 1–1
 * ```
 */
export function peekText(
  queue: string,
  state: ListedState,
  page: ItemPage,
  offset: number,
  now: number,
): string {
  const plural = page.total === 1 ? "" : "s";
  const head = `${printable(queue)}: ${page.total} ${state} item${plural}`;
  if (page.items.length === 0) {
    return offset > 0 && page.total > 0 ? `${head}; none from --offset ${offset}` : head;
  }
  const shown = `showing ${offset + 1}–${offset + page.items.length}`;
  const extra = state === "delayed" ? ["READY"] : state === "leased" ? ["HELD BY"] : [];
  const header = ["ID", "ATTEMPTS", "PRIORITY", ...extra, "VALUE"];
  const cells = page.items.map((item) => [
    String(item.id),
    String(item.attempts),
    String(item.priority),
    ...(extra.length > 0 ? [whenOrWho(item, now)] : []),
    "value" in item ? preview(item.value) : "(not kept)",
  ]);
  const left = new Set([header.length - 1, ...(extra.length > 0 ? [header.length - 2] : [])]);
  return `${head}; ${shown}\n${table(header, cells, left)}`;
}

/** Runs `taskq peek` with `args`; resolves with the exit code. */
export async function runPeek(args: string[]): Promise<number> {
  const parsed = parseFlags("peek", args, FLAGS);
  if (parsed.values.help) {
    console.log(PEEK_HELP);
    return 0;
  }
  const queue = queueArgument("peek", parsed.positionals);
  const state = stringFlag(parsed, "state", "ready") as ListedState;
  if (!LISTED_STATES.includes(state)) {
    throw new ConfigError(
      `--state must be ${LISTED_STATES.join(", ")}, not ${JSON.stringify(state)}`,
    );
  }
  const count = intFlag(parsed, "count", DEFAULT_PEEK_COUNT, 1, MAX_PEEK_COUNT);
  const offset = intFlag(parsed, "offset", 0, 0);
  const client = await connectFromFlags(parsed);
  let page: ItemPage;
  try {
    page = await listItems(client, queue, state, offset, count);
  } finally {
    await client.close();
  }
  if (parsed.values.json === true) {
    for (const item of page.items) console.log(jobJson(item));
  } else {
    console.log(peekText(queue, state, page, offset, Date.now()));
  }
  return 0;
}
