/**
 * The `--python` flags of `taskq master`: checking them, and starting the
 * Python front-end next to the native listener once the master runs.
 *
 * @module
 */

import { type FlagSpec, type Parsed, stringFlag } from "../cli/args.ts";
import {
  DEFAULT_PYTHON_QUEUES,
  type PythonFrontEnd,
  pythonQueueMap,
  servePython,
} from "./frontend.ts";
import { checkListenAddress, type Master } from "../server/master.ts";
import { type Address, formatAddress } from "../config.ts";
import { ConfigError } from "../errors.ts";
import type { Logger } from "../log.ts";

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

/** What the Python flags asked for. */
export interface PythonSettings {
  /** Where to listen. */
  listen: Address;
  /** Registered names and queues given on the command line (over the defaults). */
  queues: Record<string, string>;
}

/**
 * The Python front-end the flags ask for, checked before anything starts;
 * `undefined` without `--python`.
 * @throws {ConfigError} on a bad address (or one beyond loopback without a
 *   key), or a malformed or invalid `--python-queue`.
 */
export function pythonSettings(
  parsed: Parsed,
  authkey: Uint8Array | undefined,
): PythonSettings | undefined {
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
  return { listen: checkListenAddress(text, authkey), queues };
}

/** Options of {@link startPythonFrontEnd} shared with the master. */
export interface PythonStartOptions {
  /** The key. */
  authkey: Uint8Array | undefined;
  /** Largest message accepted. */
  maxFrameBytes: number;
  /** Time allowed to authenticate. */
  handshakeTimeoutMs: number;
  /** Where events are logged. */
  logger: Logger;
}

/**
 * Starts the Python front-end over a running master's queues and prints its
 * address (`taskq master serving Python on HOST:PORT`).
 * @throws {ConfigError} when the address cannot be used.
 */
export async function startPythonFrontEnd(
  master: Master,
  settings: PythonSettings,
  options: PythonStartOptions,
): Promise<PythonFrontEnd> {
  const python = await servePython({
    engine: master.engine,
    afterChange: () => master.rearm(),
    listen: settings.listen,
    authkey: options.authkey,
    queues: settings.queues,
    maxFrameBytes: options.maxFrameBytes,
    handshakeTimeoutMs: options.handshakeTimeoutMs,
    logger: options.logger,
  });
  const where = formatAddress(python.address);
  console.log(`taskq master serving Python on ${where}`);
  options.logger.info("Python front-end started", {
    address: where,
    queues: Object.fromEntries(python.queues),
  });
  return python;
}
