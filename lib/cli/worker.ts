/**
 * `taskq worker`: takes items from a queue and runs a command once per item.
 * A cancelled item's command is stopped (its whole process group); progress
 * lines the command writes on stderr are forwarded to the master.
 *
 * Around the loop (lib/worker/worker.ts): the command is checked before
 * anything else (a missing one is refused with one line); a master that is
 * not up yet is waited for, unless `--fail-fast`; a watchdog process kills
 * the commands' process groups if the worker dies (lib/worker/watchdog.ts);
 * SIGINT, SIGTERM and the master's `control` notice (`taskq stop`, `taskq
 * quiet`) stop it within `--grace` plus a second, master or not
 * (lib/worker/shutdown.ts).
 *
 * @module
 */

import {
  connectFromFlags,
  CONNECTION_FLAGS,
  CONNECTION_HELP,
  type FlagSpec,
  GRACE_RANGE,
  intFlag,
  LEASE_RANGE,
  LOG_FLAGS,
  logSettings,
  type Parsed,
  parseFlags,
  PERIOD_RANGE,
  queueFlag,
  secondsFlag,
  stringFlag,
  WAIT_RANGE,
} from "./args.ts";
import { DEFAULT_GRACE_MS, runWorker } from "../worker/worker.ts";
import { Shutdown, STOP_MARGIN_MS } from "../worker/shutdown.ts";
import { Watchdog } from "../worker/watchdog.ts";
import {
  type CommandOutcome,
  type CommandSpec,
  embeddedPlaceholders,
  findCommand,
  ITEM_ENV,
  ITEM_PLACEHOLDER,
  KILL_GRACE_MS,
  MAX_ENV_ITEM_BYTES,
  MAX_PROGRESS_LINE,
  PROGRESS_PREFIX,
  runCommand,
} from "../worker/command.ts";
import { ProgressForwarder } from "../worker/progress.ts";
import {
  type Client,
  type ConnectOptions,
  defaultClientName,
  type LeasedJob,
  RECONNECT_BASE_MS,
  RECONNECT_MAX_MS,
} from "../client/client.ts";
import { MAX_PROGRESS_MESSAGE } from "../model/jobs.ts";
import { ConfigError, ConnectionLostError, RemoteError } from "../errors.ts";
import { createLogger, type Logger } from "../log.ts";
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
The item's text reaches COMMAND three ways: on its standard input; in the
environment variable ${ITEM_ENV} (when it fits: at most ${MAX_ENV_ITEM_BYTES} bytes, no NUL
byte); and as an argument wherever an argument of ARGS is exactly ${ITEM_PLACEHOLDER}. A ${ITEM_PLACEHOLDER}
inside a larger argument (sh -c 'echo ${ITEM_PLACEHOLDER}') is passed as it is, unless
--embed-item says otherwise: with a shell, write sh -c 'echo "$1"' sh ${ITEM_PLACEHOLDER}
or sh -c 'echo "$${ITEM_ENV}"'. The environment also has TASKQ_JOB_ID (and
TASKQ_TASK_ID, the same), TASKQ_ATTEMPT and TASKQ_QUEUE. COMMAND must exist
(on PATH, or a path to an executable file): the worker checks it at start.

The command's standard output becomes the result. Output larger than the
master's frame limit (taskq master --max-frame, 16 MiB by default) fails
that item, with an error saying so (it is retried, then dead-lettered like
any failure); the worker and its other commands go on. Without --results
the output is read and dropped.

A non-zero exit, a crash or a timeout is a failure: the master retries the
item with exponential backoff, then moves it to the dead-letter queue
NAME.dead with its last error (see taskq master --help for the limits).

COMMAND runs in a process group of its own. When its item is cancelled
(taskq cancel ID), the worker hears of it at once and stops the whole group
(whatever COMMAND started too): SIGTERM, then SIGKILL ${KILL_GRACE_MS / 1000} s later. The item
is neither acked nor retried (it ends cancelled); the worker logs it. A
small watchdog process (sh) kills the groups of running commands if the
worker itself dies, even by kill -9; a process that leaves its command's
process group (setsid, a daemon) is beyond its reach.

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
  --exit-when-idle SECONDS  exit once no item came for this long (the master
                            being away counts as idle too)
  --lease SECONDS           lease to ask for; renewed while a command runs
  --grace SECONDS           on SIGINT/SIGTERM, time running commands get to
                            finish before they are killed and their items
                            returned (default ${DEFAULT_GRACE_MS / 1000})
  --embed-item              also replace ${ITEM_PLACEHOLDER} inside larger arguments. UNSAFE:
                            it lets an item inject shell code (in sh -c
                            'echo ${ITEM_PLACEHOLDER}' an item $(rm -rf ~) runs). Off by default
  --fail-fast               exit at once (code 1) when the master cannot be
                            reached at start, instead of waiting for it
  --name NAME               name shown by the master (default host:pid)
${CONNECTION_HELP}
  --summary-every SECONDS   log a progress summary this often while working
                            (default ${DEFAULT_SUMMARY_MS / 1000}; 0: never)
  --quiet / --verbose       only warnings and errors: one line per failed
                            item and one per outage of the master / also one
                            line per item done
  --log-format FORMAT       text or json (default text)
  -h, --help                show this help
${sections}
Example:
  taskq worker --queue tasks --results results --concurrency 4 -- \\
    sh -c 'echo $(( $1 * $1 ))' square ${ITEM_PLACEHOLDER}

Stopping: Ctrl-C (SIGINT) or SIGTERM, or taskq stop SESSION through the
master, stops taking items and lets running commands finish within --grace;
at its end they get SIGTERM (their whole process group), and the worker
exits at most ${STOP_MARGIN_MS / 1000} s later, master or no master (still running then: SIGKILL).
taskq quiet SESSION stops taking items and exits once the running commands
end, however long they take. Under systemd, KillMode=mixed lets the grace
apply (the default control-group mode signals the commands at once too).

The master: a worker started before its master waits for it, retrying with
backoff (--fail-fast exits instead). When the master goes away, the worker
logs it once, reconnects by itself and carries on: to the next master of the
--connect list when it names several. Commands running meanwhile finish, but
their leases ended with the connection, so their results are dropped and the
master serves their items again (logged as "the lease ended before the work
did").
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
  "embed-item": { type: "boolean" },
  "fail-fast": { type: "boolean" },
  ...CONNECTION_FLAGS,
  ...LOG_FLAGS,
};

const MAX_CONCURRENCY = 1024;

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
  const timeoutMs = secondsFlag(parsed, "timeout", undefined, WAIT_RANGE);
  const exitWhenIdleMs = secondsFlag(parsed, "exit-when-idle", undefined, WAIT_RANGE);
  const leaseMs = secondsFlag(parsed, "lease", undefined, LEASE_RANGE);
  const log = createLogger(logSettings(parsed));
  const summaryMs = secondsFlag(parsed, "summary-every", DEFAULT_SUMMARY_MS, PERIOD_RANGE);
  const name = stringFlag(parsed, "name") ?? defaultClientName();

  const graceMs = secondsFlag(parsed, "grace", DEFAULT_GRACE_MS, GRACE_RANGE);
  const embedItem = parsed.values["embed-item"] === true;
  await findCommand(command);
  warnOfEmbeddedPlaceholders(commandArgs, embedItem, log);

  const shutdown = new Shutdown({ graceMs, log });
  let client: Client | undefined;
  let watchdog: Watchdog | undefined;
  try {
    client = await connectWaiting(parsed, {
      name,
      reconnect: true,
      onDisconnect: (reason) =>
        log.warn("lost the master; reconnecting", { reason: reason.message }),
      onReconnect: (attempt, master) => log.info("reconnected to the master", { master, attempt }),
    }, {
      failFast: parsed.values["fail-fast"] === true,
      log,
      stop: shutdown.stop.signal,
      idleMs: exitWhenIdleMs,
    });
    if (client === undefined) {
      log.info("worker stopped before the master was reached");
      return 0;
    }
    const connected = client;
    connected.onControl((action) => {
      if (action === "quiet") shutdown.requestQuiet("taskq quiet, through the master");
      else shutdown.requestStop("taskq stop, through the master");
    });
    watchdog = Watchdog.start(log);
    shutdown.watchdog = watchdog;
    log.info("worker started", { master: connected.address, queue, concurrency, name });
    const progress = new ProgressForwarder(log);
    const summary = await runWorker({
      client: connected,
      queue,
      results,
      concurrency,
      prefetch: intFlag(parsed, "prefetch", 0, 0, MAX_CONCURRENCY),
      exitWhenIdleMs,
      leaseMs,
      signal: shutdown.stop.signal,
      quiet: shutdown.quiet.signal,
      graceMs,
      log,
      summaryIntervalMs: summaryMs > 0 ? summaryMs : undefined,
      handler: async (job: LeasedJob, signal: AbortSignal) => {
        const spec: CommandSpec = {
          command,
          args: commandArgs,
          timeoutMs,
          embedItem,
          watchdog,
          // The output goes in a result record, sent to the master in one frame.
          ...(results === undefined
            ? { discardOutput: true }
            : { maxOutputBytes: connected.maxFrameBytes }),
        };
        const outcome: CommandOutcome = await runCommand(spec, job, signal, progress.forJob(job));
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
    await stopWorkerProcess(shutdown, watchdog, client);
  }
}

/**
 * Ends a worker process's resources once its loop returned: commands left
 * running (a stop's grace and settling were over) are killed, the watchdog
 * closed, the client closed, each within a bounded time.
 *
 * @example
 * ```ts
 * import { stopWorkerProcess } from "./worker.ts";
 * import { Shutdown } from "../worker/shutdown.ts";
 * import { Watchdog } from "../worker/watchdog.ts";
 * import { silentLogger } from "../log.ts";
 * const shutdown = new Shutdown({ graceMs: 1_000, log: silentLogger, signals: false });
 * const watchdog = Watchdog.start(silentLogger);
 * const left = new Deno.Command("sleep", { args: ["30"], detached: true }).spawn();
 * watchdog?.add(left.pid); // a command still running when the loop returned
 * await stopWorkerProcess(shutdown, watchdog, undefined);
 * console.log((await left.status).signal); // SIGKILL
 * ```
 */
export async function stopWorkerProcess(
  shutdown: Shutdown,
  watchdog: Watchdog | undefined,
  client: { close(): Promise<void> } | undefined,
): Promise<void> {
  watchdog?.killAll();
  await within(Promise.all([watchdog?.close(), client?.close()]), CLOSE_MS);
  shutdown.dispose();
}

/** Time the watchdog and the client get to close when a worker ends, in ms. */
const CLOSE_MS = 300;

/** Waits for `promise`, or `ms` at most. */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise.catch(() => {}),
    new Promise((resolve) => timer = setTimeout(resolve, ms)),
  ]);
  clearTimeout(timer);
}

/**
 * Logs, once at start, the arguments with a `{}` inside: passed as they are
 * (without `--embed-item`), or a shell-injection risk (with it).
 *
 * @example
 * ```ts
 * import { warnOfEmbeddedPlaceholders } from "./worker.ts";
 * import { createLogger } from "../log.ts";
 * const lines: string[] = [];
 * const log = createLogger({ write: (line) => lines.push(line) });
 * warnOfEmbeddedPlaceholders(["-c", "echo {}"], false, log);
 * console.log(lines.length, lines[0].includes("passed as it is")); // 1 true
 * ```
 */
export function warnOfEmbeddedPlaceholders(
  args: readonly string[],
  embedItem: boolean,
  log: Logger,
): void {
  const embedded = embeddedPlaceholders(args);
  if (embedded.length === 0) return;
  if (embedItem) {
    log.warn(
      "--embed-item: an item's text goes inside these arguments; with a shell, an item can run code",
      { arguments: embedded },
    );
  } else {
    log.warn(
      `${ITEM_PLACEHOLDER} inside a larger argument is passed as it is (only an argument that ` +
        `is exactly ${ITEM_PLACEHOLDER} becomes the item); use "$1" with ${ITEM_PLACEHOLDER} as its own ` +
        `argument, or $${ITEM_ENV}`,
      { arguments: embedded },
    );
  }
}

/** Options of {@link connectWaiting}. */
interface WaitOptions {
  /** Throw the first failure instead of waiting. */
  failFast: boolean;
  /** Where the wait is logged (once). */
  log: Logger;
  /** Aborting it ends the wait: {@link connectWaiting} then resolves with `undefined`. */
  stop: AbortSignal;
  /** End the wait after this long (`--exit-when-idle`), resolving with `undefined`. */
  idleMs?: number;
}

/**
 * Connects to the master of the flags, waiting for it if it is not up yet:
 * tries again with capped exponential backoff while the failure is one the
 * master coming up would end (nothing listening, no answer, a master
 * refusing for now), logging the wait once. A wrong key, TLS trouble or
 * something that is not a taskq master fails at once, as does any failure
 * with `failFast`. Resolves with `undefined` when stopped meanwhile.
 */
async function connectWaiting(
  parsed: Parsed,
  options: Omit<ConnectOptions, "address" | "authkey">,
  wait: WaitOptions,
): Promise<Client | undefined> {
  const { log, stop } = wait;
  const giveUpAt = wait.idleMs === undefined ? Infinity : Date.now() + wait.idleMs;
  for (let attempt = 1;; attempt++) {
    if (stop.aborted) return undefined;
    if (Date.now() >= giveUpAt) {
      log.info("no item came for a while (the master never answered); exiting");
      return undefined;
    }
    const connecting = connectFromFlags(parsed, { ...options, retryFirstConnection: false });
    const stopped = new Promise<undefined>((resolve) => {
      if (stop.aborted) resolve(undefined);
      stop.addEventListener("abort", () => resolve(undefined), { once: true });
    });
    try {
      const client = await Promise.race([connecting, stopped]);
      if (client === undefined) {
        connecting.then((late) => late.close(), () => {});
        return undefined;
      }
      if (attempt > 1) log.info("the master is up", { master: client.address, attempts: attempt });
      return client;
    } catch (error) {
      if (wait.failFast || !masterNotUp(error)) throw error;
      const reason = error instanceof Error ? error.message : String(error);
      if (attempt === 1) {
        log.warn("the master cannot be reached; waiting for it (--fail-fast exits instead)", {
          reason,
        });
      } else log.debug("the master still cannot be reached", { reason, attempt });
      const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** (attempt - 1));
      await Promise.race([
        new Promise((resolve) => {
          const jittered = delay * (0.5 + Math.random() / 2);
          const timer = setTimeout(resolve, Math.min(jittered, Math.max(0, giveUpAt - Date.now())));
          stop.addEventListener("abort", () => clearTimeout(timer), { once: true });
        }),
        stopped,
      ]);
    }
  }
}

/** Whether a failed connection is one that a master coming up (or calming down) would end. */
function masterNotUp(error: unknown): boolean {
  if (error instanceof ConnectionLostError) return true;
  return error instanceof RemoteError &&
    (error.code === "too_many_connections" || error.code === "shutting_down");
}
