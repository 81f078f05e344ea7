/**
 * `taskq worker`: takes items from a queue and runs a command once per item.
 * A cancelled item's command is stopped (its whole process group); progress
 * lines the command writes on stderr are forwarded to the master.
 *
 * @module
 */

import {
  connectFromFlags,
  CONNECTION_FLAGS,
  CONNECTION_HELP,
  type FlagSpec,
  intFlag,
  LOG_FLAGS,
  logSettings,
  parseFlags,
  queueFlag,
  secondsFlag,
  stringFlag,
} from "./args.ts";
import { DEFAULT_GRACE_MS, runWorker } from "../worker/worker.ts";
import {
  type CommandOutcome,
  ITEM_PLACEHOLDER,
  KILL_GRACE_MS,
  MAX_PROGRESS_LINE,
  PROGRESS_PREFIX,
  runCommand,
} from "../worker/command.ts";
import { ProgressForwarder } from "../worker/progress.ts";
import { defaultClientName, type LeasedJob } from "../client/client.ts";
import { MAX_PROGRESS_MESSAGE } from "../model/jobs.ts";
import { ConfigError } from "../errors.ts";
import { createLogger } from "../log.ts";
import type { CliExtension } from "./extension.ts";

/** How often a working worker logs a summary, by default. */
export const DEFAULT_SUMMARY_MS = 30_000;

/** One-line summary shown by `taskq --help`. */
export const WORKER_SUMMARY = "take items from a queue and run a command for each";

/** Help text of `taskq worker` with the given extensions' flags. */
export function workerHelp(extensions: readonly CliExtension[] = []): string {
  const usage = extensions.map((e) => `\n       ${e.workerUsage}`).join("");
  const sections = extensions.map((e) => `\n${e.workerHelp}\n`).join("");
  return `Usage: taskq worker --queue NAME [options] -- COMMAND [ARGS...]${usage}

Takes items from a queue and runs COMMAND once per item, without a shell.
A ${ITEM_PLACEHOLDER} in ARGS is replaced by the item's text; the text is also written to
the command's standard input. The environment has TASKQ_TASK_ID, TASKQ_ATTEMPT
and TASKQ_QUEUE. The command's standard output becomes the result.

A non-zero exit, a crash or a timeout is a failure: the master retries the
item with exponential backoff, then moves it to the dead-letter queue
NAME.dead with its last error (see taskq master --help for the limits).

COMMAND runs in a process group of its own. When its item is cancelled
(taskq cancel ID), the worker hears of it at once and stops the whole group
(whatever COMMAND started too): SIGTERM, then SIGKILL ${KILL_GRACE_MS / 1000} s later. The item
is neither acked nor retried (it ends cancelled); the worker logs it.

Progress: a line on COMMAND's standard error of the form
  ${PROGRESS_PREFIX} PERCENT [MESSAGE]
(PERCENT from 0 to 100, fractions allowed, or - for none; MESSAGE the rest of
the line, at most ${MAX_PROGRESS_MESSAGE} characters kept) reports how far along it is: it shows
in taskq job ID and the worker's log, and renews the item's lease. Such lines
are not part of the command's error output; a line that does not fit the
form, or is longer than ${MAX_PROGRESS_LINE} characters, is ordinary output.
E.g. in sh: echo "${PROGRESS_PREFIX} 40 resizing" >&2

Options:
  --queue NAME              queue to take items from (required)
  --results NAME            queue to put result records on: {id, queue, item,
                            output, exitCode, attempt, worker}
  --concurrency N           commands run at once (default 1)
  --prefetch N              leased items held ready beyond the running ones
                            (default 0; raise it for many short commands)
  --timeout SECONDS         kill a command that runs longer (default: no limit)
  --exit-when-idle SECONDS  exit once no item came for this long
  --lease SECONDS           lease to ask for; renewed while a command runs
  --grace SECONDS           on SIGINT/SIGTERM, time running commands get to
                            finish before they are killed and their items
                            returned (default ${DEFAULT_GRACE_MS / 1000})
  --name NAME               name shown by the master (default host:pid)
${CONNECTION_HELP}
  --summary-every SECONDS   log a progress summary this often while working
                            (default ${DEFAULT_SUMMARY_MS / 1000}; 0: never)
  --quiet / --verbose       only warnings and errors (one line per failure) /
                            also one line per item done
  --log-format FORMAT       text or json (default text)
  -h, --help                show this help
${sections}
Example:
  taskq worker --queue tasks --results results --concurrency 4 -- \\
    sh -c 'echo $(( $1 * $1 ))' square {}

Stops on Ctrl-C (SIGINT) or SIGTERM: takes no more items, lets running
commands finish within the grace period, then returns the rest. When the
master goes away, the worker reconnects by itself and carries on: to the
next master of the --connect list when it names several.
`;
}

const FLAGS: FlagSpec = {
  queue: { type: "string" },
  results: { type: "string" },
  concurrency: { type: "string" },
  prefetch: { type: "string" },
  timeout: { type: "string" },
  "exit-when-idle": { type: "string" },
  lease: { type: "string" },
  grace: { type: "string" },
  name: { type: "string" },
  "summary-every": { type: "string" },
  ...CONNECTION_FLAGS,
  ...LOG_FLAGS,
};

const MAX_CONCURRENCY = 1024;
const STOP_SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM"];

/**
 * Runs `taskq worker` with `args`, and the flags of `extensions`; resolves
 * with the exit code.
 */
export async function runWorkerCommand(
  args: string[],
  extensions: readonly CliExtension[] = [],
): Promise<number> {
  const flags: FlagSpec = { ...FLAGS };
  for (const extension of extensions) Object.assign(flags, extension.workerFlags);
  const parsed = parseFlags("worker", args, flags);
  if (parsed.values.help) {
    console.log(workerHelp(extensions));
    return 0;
  }
  for (const extension of extensions) {
    const running = extension.runWorker(parsed);
    if (running !== undefined) return await running;
  }
  const queue = queueFlag(parsed, "queue");
  if (queue === undefined) throw new ConfigError("--queue NAME is required");
  const results = queueFlag(parsed, "results");
  const [command, ...commandArgs] = parsed.positionals;
  if (command === undefined) {
    throw new ConfigError("give the command to run after --, e.g. -- echo {}");
  }
  const concurrency = intFlag(parsed, "concurrency", 1, 1, MAX_CONCURRENCY);
  const timeoutMs = secondsFlag(parsed, "timeout", undefined);
  const exitWhenIdleMs = secondsFlag(parsed, "exit-when-idle", undefined);
  const leaseMs = secondsFlag(parsed, "lease", undefined);
  const log = createLogger(logSettings(parsed));
  const summaryMs = secondsFlag(parsed, "summary-every", DEFAULT_SUMMARY_MS);
  const name = stringFlag(parsed, "name") ?? defaultClientName();

  const client = await connectFromFlags(parsed, {
    name,
    reconnect: true,
    onDisconnect: (reason) => log.warn("lost the master; reconnecting", { reason: reason.message }),
    onReconnect: (attempt, master) => log.info("reconnected to the master", { master, attempt }),
  });
  const stop = new AbortController();
  const onSignal = () => {
    log.info("stopping: finishing running commands");
    stop.abort();
  };
  for (const signal of STOP_SIGNALS) Deno.addSignalListener(signal, onSignal);
  log.info("worker started", { master: client.address, queue, concurrency, name });
  const progress = new ProgressForwarder(log);
  try {
    const summary = await runWorker({
      client,
      queue,
      results,
      concurrency,
      prefetch: intFlag(parsed, "prefetch", 0, 0, MAX_CONCURRENCY),
      exitWhenIdleMs,
      leaseMs,
      signal: stop.signal,
      graceMs: secondsFlag(parsed, "grace", DEFAULT_GRACE_MS),
      log,
      summaryIntervalMs: summaryMs > 0 ? summaryMs : undefined,
      handler: async (job: LeasedJob, signal: AbortSignal) => {
        const outcome: CommandOutcome = await runCommand(
          { command, args: commandArgs, timeoutMs },
          job,
          signal,
          progress.forJob(job),
        );
        return {
          id: job.id,
          queue: job.queue,
          item: job.value,
          output: outcome.output,
          exitCode: outcome.exitCode,
          attempt: job.attempt,
          worker: name,
        };
      },
    });
    log.info("worker stopped", { ...summary });
    return 0;
  } finally {
    for (const signal of STOP_SIGNALS) Deno.removeSignalListener(signal, onSignal);
    await client.close();
  }
}
