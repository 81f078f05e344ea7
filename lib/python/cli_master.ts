/**
 * The `--python` flags of `taskq master`: checking them, and the Python
 * front-end they ask the master host to start beside the native listener.
 *
 * @module
 */

import { type FlagSpec, type Parsed, stringFlag } from "../cli/args.ts";
import { DEFAULT_PYTHON_QUEUES, pythonFrontEnd, pythonQueueMap } from "./frontend.ts";
import { checkListenAddress } from "../server/master.ts";
import type { FrontEndFactory } from "../server/front_end.ts";
import { ConfigError } from "../errors.ts";

/** The flags `taskq master` understands for Python's protocol. */
export const PYTHON_MASTER_FLAGS: FlagSpec = {
  python: { type: "string" },
  "python-queue": { type: "string", multiple: true },
};

const defaults = Object.entries(DEFAULT_PYTHON_QUEUES).map(([name, queue]) => `${name}=${queue}`);

/** The part of `taskq master --help` about Python's protocol. */
export const PYTHON_MASTER_HELP =
  `  --python HOST:PORT        also speak Python's multiprocessing.managers
                            protocol here, with the same key: unmodified
                            Python BaseManager programs use the same queues
                            (see docs/PYTHON.md)
  --python-queue NAME=QUEUE the queue that a name Python programs register
                            stands for (repeatable; by default
                            ${defaults.join(" and\n                            ")})`;

/**
 * The Python front-end the flags ask for, checked before anything starts;
 * `undefined` without `--python`.
 * @throws {ConfigError} on a bad address (or one beyond loopback without a
 *   key), or a malformed or invalid `--python-queue`.
 */
export function pythonMasterFrontEnd(
  parsed: Parsed,
  authkey: Uint8Array | undefined,
): FrontEndFactory | undefined {
  const text = stringFlag(parsed, "python");
  const entries = parsed.values["python-queue"];
  const list = Array.isArray(entries) ? entries.map(String) : [];
  if (text === undefined) {
    if (list.length > 0) throw new ConfigError("--python-queue needs --python HOST:PORT");
    return undefined;
  }
  const queues: Record<string, string> = {};
  for (const entry of list) {
    const at = entry.indexOf("=");
    if (at <= 0 || at === entry.length - 1) {
      throw new ConfigError(
        `--python-queue takes NAME=QUEUE, e.g. get_task_queue=tasks, not "${entry}"`,
      );
    }
    queues[entry.slice(0, at)] = entry.slice(at + 1);
  }
  pythonQueueMap(queues);
  return pythonFrontEnd({ listen: checkListenAddress(text, authkey), queues });
}
