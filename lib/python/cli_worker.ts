/**
 * `taskq worker --python-master HOST:PORT`: the worker command serving an
 * unmodified Python `multiprocessing.managers` master (such as the seed's
 * `task_master.py`) instead of a taskq master. Its flags are parsed by
 * `taskq worker`; this module checks them and runs the loop of
 * lib/worker/python_worker.ts with the command runner.
 *
 * @module
 */

import {
  authKey,
  type FlagSpec,
  GRACE_RANGE,
  intFlag,
  logSettings,
  type Parsed,
  secondsFlag,
  stringFlag,
  WAIT_RANGE,
} from "../cli/args.ts";
import { PythonManagerClient } from "./client.ts";
import { runPythonWorker } from "./worker.ts";
import { DEFAULT_GRACE_MS } from "../worker/worker.ts";
import { type CommandSpec, findCommand, runCommand } from "../worker/command.ts";
import { Shutdown } from "../worker/shutdown.ts";
import { Watchdog } from "../worker/watchdog.ts";
import { stopWorkerProcess, warnOfEmbeddedPlaceholders } from "../cli/worker.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/frame.ts";
import { defaultClientName, type Job } from "../client/client.ts";
import { DEFAULT_MAX_ATTEMPTS } from "../model/types.ts";
import { MAX_ATTEMPTS_LIMIT } from "../wire/messages.ts";
import { ConfigError } from "../errors.ts";
import { createLogger } from "../log.ts";
import { formatAddress, parseAddress } from "../config.ts";

/** The flags `taskq worker` understands for a Python master. */
export const PYTHON_WORKER_FLAGS: FlagSpec = {
  "python-master": { type: "string" },
  "python-queue": { type: "string" },
  "python-results": { type: "string" },
  "max-attempts": { type: "string" },
};

/** The part of `taskq worker --help` about Python masters. */
export const PYTHON_WORKER_HELP = `Serving a Python master (multiprocessing.managers, unmodified):
  --python-master HOST:PORT take items from the Python BaseManager at this
                            address instead of a taskq master; the key
                            (--authkey-file or TASKQ_AUTHKEY) is its authkey
  --python-queue NAME       the name the master registered its task queue
                            under (e.g. get_task_queue; required)
  --python-results NAME     the name of its result queue (e.g.
                            get_result_queue); each command's output goes
                            there as a str
  --max-attempts N          runs of a failing command before its item is
                            dropped: a Python master cannot retry (default ${DEFAULT_MAX_ATTEMPTS})
  --concurrency, --timeout, --exit-when-idle, --grace, --embed-item,
  --fail-fast and --name apply too; an output over ${
  DEFAULT_MAX_FRAME_BYTES / 1024 / 1024
} MiB fails its item.
  Example, for the classic task_master.py (authkey b'abc'):
    TASKQ_AUTHKEY=abc taskq worker --python-master 10.0.0.5:5000 \\
      --python-queue get_task_queue --python-results get_result_queue -- \\
      sh -c 'echo "$1 * $1 = $(( $1 * $1 ))"' square {}`;

/** Flags of `taskq worker` that only make sense with a taskq master. */
const NATIVE_ONLY = ["queue", "results", "prefetch", "lease", "connect"];

/** Most commands run at once. */
const MAX_CONCURRENCY = 1024;

/**
 * Runs `taskq worker --python-master ...` with flags already parsed by `taskq
 * worker`; resolves with the exit code.
 * @throws {ConfigError} on missing or conflicting flags.
 */
export async function runPythonWorkerCommand(parsed: Parsed): Promise<number> {
  const address = parseAddress(stringFlag(parsed, "python-master") as string);
  for (const flag of NATIVE_ONLY) {
    if (parsed.values[flag] !== undefined) {
      throw new ConfigError(
        `--${flag} is for taskq masters; with --python-master use --python-queue and ` +
          `--python-results`,
      );
    }
  }
  const queue = stringFlag(parsed, "python-queue");
  if (!queue) {
    throw new ConfigError("--python-queue NAME is required (e.g. --python-queue get_task_queue)");
  }
  const results = stringFlag(parsed, "python-results");
  const [command, ...commandArgs] = parsed.positionals;
  if (command === undefined) {
    throw new ConfigError("give the command to run after --, e.g. -- echo {}");
  }
  const timeoutMs = secondsFlag(parsed, "timeout", undefined, WAIT_RANGE);
  const exitWhenIdleMs = secondsFlag(parsed, "exit-when-idle", undefined, WAIT_RANGE);
  const concurrency = intFlag(parsed, "concurrency", 1, 1, MAX_CONCURRENCY);
  const maxAttempts = intFlag(parsed, "max-attempts", DEFAULT_MAX_ATTEMPTS, 1, MAX_ATTEMPTS_LIMIT);
  const graceMs = secondsFlag(parsed, "grace", DEFAULT_GRACE_MS, GRACE_RANGE);
  const log = createLogger(logSettings(parsed));
  const name = stringFlag(parsed, "name") ?? defaultClientName();
  const manager = new PythonManagerClient({
    address,
    authkey: authKey(parsed) ?? new Uint8Array(0),
  });

  const embedItem = parsed.values["embed-item"] === true;
  await findCommand(command);
  warnOfEmbeddedPlaceholders(commandArgs, embedItem, log);
  const shutdown = new Shutdown({ graceMs, log });
  const watchdog = Watchdog.start(log);
  shutdown.watchdog = watchdog;
  log.info("worker started", {
    pythonMaster: formatAddress(address),
    queue,
    results: results ?? "(none: outputs are dropped)",
    concurrency,
    name,
  });
  const spec: CommandSpec = {
    command,
    args: commandArgs,
    timeoutMs,
    embedItem,
    watchdog,
    ...(results === undefined
      ? { discardOutput: true }
      : { maxOutputBytes: DEFAULT_MAX_FRAME_BYTES }),
  };
  try {
    const summary = await runPythonWorker({
      manager,
      queue,
      results,
      concurrency,
      maxAttempts,
      exitWhenIdleMs,
      graceMs,
      signal: shutdown.stop.signal,
      name,
      log,
      failFast: parsed.values["fail-fast"] === true,
      handler: async (job: Job, signal: AbortSignal) =>
        (await runCommand(spec, job, signal)).output,
    });
    log.info("worker stopped", { ...summary });
    return 0;
  } finally {
    await stopWorkerProcess(shutdown, watchdog, undefined);
  }
}
