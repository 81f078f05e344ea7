/**
 * `taskq quiet SESSION` and `taskq stop SESSION`: ask one connected worker
 * (a session id `taskq workers` lists) to go quiet (take no more items,
 * finish those it runs, then exit) or to stop (as SIGTERM would, within
 * its grace). The master tells that worker at once.
 *
 * @example
 * ```ts
 * import { QUIET_HELP, STOP_HELP } from "./control.ts";
 * console.log(QUIET_HELP.startsWith("Usage: taskq quiet"), STOP_HELP.startsWith("Usage: taskq stop")); // true true
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
import { ConfigError, EXIT_FAILURE, TaskqError } from "../errors.ts";
import type { ControlAction } from "../client/client.ts";
import { MAX_SESSION_TEXT } from "../wire/messages.ts";
import { printable } from "../util/printable.ts";

/** One-line summary of `taskq quiet` shown by `taskq --help`. */
export const QUIET_SUMMARY = "ask a worker to take no more items and exit when its jobs finish";

/** One-line summary of `taskq stop` shown by `taskq --help`. */
export const STOP_SUMMARY = "ask a worker to stop as on SIGTERM (within its --grace)";

/** Exit code of `taskq quiet` and `taskq stop` when no such session is connected. */
export const EXIT_NO_SUCH_SESSION = EXIT_FAILURE;

/** The text both helps end with. */
const COMMON_HELP = `Options:
${CONNECTION_HELP}
  -h, --help                show this help

Exit codes: 0 the worker was told, ${EXIT_NO_SUCH_SESSION} no session with that id is connected
(or another error), 2 bad arguments.`;

/** Help text of `taskq quiet`. */
export const QUIET_HELP = `Usage: taskq quiet [options] SESSION

Asks the worker connected as SESSION (a session id taskq workers lists) to
go quiet: it takes no more items, finishes the jobs it is running (acking
or failing them as usual), then exits with code 0. Its leased items are
not taken from it. Use it to drain a worker before a deploy or a reboot.

The master tells the worker at once; taskq workers shows "quiet" in its
SENT column until it goes. A client other than taskq worker is told too,
and does what its program does with it (Client.onControl).

${COMMON_HELP}

Example:
  taskq workers
  taskq quiet 12
`;

/** Help text of `taskq stop`. */
export const STOP_HELP = `Usage: taskq stop [options] SESSION

Asks the worker connected as SESSION (a session id taskq workers lists) to
stop as SIGTERM would: it takes no more items, gives its running commands
its --grace to finish, then ends them; the items it did not finish go back
to their queue to be served again.

The master tells the worker at once; taskq workers shows "stop" in its SENT
column until it goes. A client other than taskq worker is told too, and
does what its program does with it (Client.onControl).

${COMMON_HELP}
`;

const FLAGS: FlagSpec = { ...CONNECTION_FLAGS };

/** No session with the id given is connected. */
export class NoSuchSessionError extends TaskqError {
  /** Creates the error for session `id`. */
  constructor(id: string) {
    super(`no session ${printable(id)} is connected (taskq workers lists them)`);
  }
}

/** Runs `taskq quiet` or `taskq stop` (by `action`) with `args`; resolves with the exit code. */
async function runControl(action: ControlAction, args: string[]): Promise<number> {
  const command = action === "quiet" ? "quiet" : "stop";
  const parsed = parseFlags(command, args, FLAGS);
  if (parsed.values.help) {
    console.log(action === "quiet" ? QUIET_HELP : STOP_HELP);
    return 0;
  }
  if (parsed.positionals.length !== 1) {
    throw new ConfigError(
      `give one session id (${parsed.positionals.length} given; see: taskq ${command} --help)`,
    );
  }
  const [session] = parsed.positionals;
  if (session.length === 0 || session.length > MAX_SESSION_TEXT) {
    throw new ConfigError(`a session id is 1 to ${MAX_SESSION_TEXT} characters`);
  }
  const client = await connectFromFlags(parsed);
  let found: boolean;
  try {
    found = await client.control(session, action);
  } finally {
    await client.close();
  }
  if (!found) throw new NoSuchSessionError(session);
  console.log(
    action === "quiet"
      ? `asked session ${printable(session)} to go quiet`
      : `asked session ${printable(session)} to stop`,
  );
  return 0;
}

/**
 * Runs `taskq quiet` with `args`; resolves with the exit code.
 * @throws {NoSuchSessionError} when no such session is connected.
 */
export function runQuiet(args: string[]): Promise<number> {
  return runControl("quiet", args);
}

/**
 * Runs `taskq stop` with `args`; resolves with the exit code.
 * @throws {NoSuchSessionError} when no such session is connected.
 */
export function runStop(args: string[]): Promise<number> {
  return runControl("stop", args);
}
