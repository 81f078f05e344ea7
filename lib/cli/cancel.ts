/**
 * `taskq cancel ID…`: cancels items by id, wherever they are: a ready or
 * delayed item is removed, a leased one's lease is revoked and its holder
 * told at once (a command worker kills the command's process group); either
 * way the item ends in the `cancelled` state, never retried nor
 * dead-lettered.
 *
 * @example
 * ```ts
 * import { CANCEL_HELP } from "./cancel.ts";
 * console.log(CANCEL_HELP.startsWith("Usage: taskq cancel")); // true
 * ```
 *
 * @module
 */

import {
  connectFromFlags,
  CONNECTION_FLAGS,
  CONNECTION_HELP,
  type FlagSpec,
  jobIdArguments,
  parseFlags,
} from "./args.ts";
import { ConfigError, EXIT_FAILURE, TaskqError } from "../errors.ts";
import { MAX_BATCH } from "../wire/messages.ts";

/** One-line summary shown by `taskq --help`. */
export const CANCEL_SUMMARY = "cancel items by id: remove them, or stop their running job";

/**
 * Exit code of `taskq cancel` when some of the ids were not cancelled
 * (unknown, or already finished); each is named on stderr.
 */
export const EXIT_SOME_MISSING = EXIT_FAILURE;

/** Help text of `taskq cancel`. */
export const CANCEL_HELP = `Usage: taskq cancel [options] ID...

Cancels the items with these ids (as taskq put --ids prints them), whatever
queue they are in. A ready or delayed item is removed. A leased one is taken
back from its worker at once: the worker is told, a command worker kills the
command (its whole process group), a library handler's AbortSignal fires,
and the worker's ack or fail of it is refused. A cancelled item is never
retried nor dead-lettered; taskq job ID shows it as cancelled.

Prints each cancelled id on stdout, one per line, and names on stderr each
id that was not cancelled: unknown to the master, or already finished (done,
dead or cancelled).

Options:
${CONNECTION_HELP}
  -h, --help                show this help

Exit codes: 0 every id was cancelled, ${EXIT_SOME_MISSING} some were not (or another error,
such as the master unreachable), 2 bad arguments.

Example:
  id=$(taskq put --queue tasks --ids job.json) && taskq cancel "$id"
`;

const FLAGS: FlagSpec = { ...CONNECTION_FLAGS };

/** Raised when some ids were not cancelled (its exit code is {@link EXIT_SOME_MISSING}). */
export class NotCancelledError extends TaskqError {
  /** The ids not cancelled. */
  readonly missing: readonly number[];

  /** Creates the error for the ids not cancelled, out of `total`. */
  constructor(missing: readonly number[], total: number) {
    super(`${missing.length} of ${total} id${total === 1 ? " was" : "s were"} not cancelled`);
    this.missing = missing;
  }
}

/**
 * Runs `taskq cancel` with `args`; resolves with the exit code.
 * @throws {NotCancelledError} when some ids were not cancelled (after naming each on stderr).
 */
export async function runCancel(args: string[]): Promise<number> {
  const parsed = parseFlags("cancel", args, FLAGS);
  if (parsed.values.help) {
    console.log(CANCEL_HELP);
    return 0;
  }
  if (parsed.positionals.length === 0) {
    throw new ConfigError("give the ids of the items to cancel (see: taskq cancel --help)");
  }
  const ids = [...new Set(jobIdArguments(parsed.positionals))];
  const missing: number[] = [];
  const client = await connectFromFlags(parsed);
  try {
    for (let start = 0; start < ids.length; start += MAX_BATCH) {
      const outcome = await client.cancel(ids.slice(start, start + MAX_BATCH));
      if (outcome.cancelled.length > 0) console.log(outcome.cancelled.join("\n"));
      missing.push(...outcome.missing);
    }
  } finally {
    await client.close();
  }
  if (missing.length === 0) return 0;
  for (const id of missing) {
    console.error(`taskq cancel: ${id}: no such live item (unknown, or already finished)`);
  }
  throw new NotCancelledError(missing, ids.length);
}
