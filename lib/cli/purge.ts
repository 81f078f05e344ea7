/**
 * `taskq purge QUEUE`: removes every ready and delayed item of a queue;
 * leased items finish as usual.
 *
 * @example
 * ```ts
 * import { PURGE_HELP } from "./purge.ts";
 * console.log(PURGE_HELP.startsWith("Usage: taskq purge")); // true
 * ```
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
import { printable } from "../util/printable.ts";
import { queueArgument } from "./listing.ts";

/** One-line summary shown by `taskq --help`. */
export const PURGE_SUMMARY = "remove every ready and delayed item of a queue";

/** Help text of `taskq purge`. */
export const PURGE_HELP = `Usage: taskq purge [options] QUEUE

Removes every ready and delayed item of the queue for good (there is no
undo). Items being worked on (leased) are left to finish as usual: acked,
or failed and retried. Its dead letters are in QUEUE.dead: taskq purge
QUEUE.dead removes them (or taskq dead drop QUEUE --all).

Prints how many items were removed.

Options:
${CONNECTION_HELP}
  -h, --help                show this help

Exit codes: 0 done (even when there was nothing to remove), 1 an error (such
as the master unreachable), 2 bad arguments.
`;

const FLAGS: FlagSpec = { ...CONNECTION_FLAGS };

/** Runs `taskq purge` with `args`; resolves with the exit code. */
export async function runPurge(args: string[]): Promise<number> {
  const parsed = parseFlags("purge", args, FLAGS);
  if (parsed.values.help) {
    console.log(PURGE_HELP);
    return 0;
  }
  const queue = queueArgument("purge", parsed.positionals);
  const client = await connectFromFlags(parsed);
  let count: number;
  try {
    count = await client.purge(queue);
  } finally {
    await client.close();
  }
  console.log(`purged ${count} item${count === 1 ? "" : "s"} from ${printable(queue)}`);
  return 0;
}
