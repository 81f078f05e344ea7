/**
 * `taskq get`: takes items from a queue, prints each as one JSON line, and
 * acks only what it printed.
 *
 * Into a pipe, lines are written one at a time, each acked before the next
 * is written, so that a reader that stops early (`taskq get --count 10 |
 * head -1`) leaves the items it never read in the queue: once a write finds
 * the pipe closed, the items not written are given back (nacked) and the
 * command ends quietly. Into a file or a terminal, which do not close early,
 * a whole batch is written, then acked.
 *
 * @example
 * ```ts
 * import { EXIT_DRAINED, GET_HELP } from "./get.ts";
 * console.log(EXIT_DRAINED, GET_HELP.includes("Exit codes")); // 3 true
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
  queueFlag,
  secondsFlag,
} from "./args.ts";
import { ConfigError, EXIT_FAILURE } from "../errors.ts";
import type { Job, Queue } from "../client/client.ts";
import { MAX_BATCH } from "../wire/messages.ts";
import { Progress } from "./progress.ts";

/** One-line summary shown by `taskq --help`. */
export const GET_SUMMARY = "take items from a queue and print them as JSON lines";

/**
 * Exit code of `taskq get` when fewer than `--count` items came before the
 * timeout (the queue was drained); those that came were printed and acked.
 */
export const EXIT_DRAINED = 3;

/** Help text of `taskq get`. */
export const GET_HELP = `Usage: taskq get --queue NAME [--count N] [--timeout SECONDS]

Takes up to N items from the queue, waiting up to SECONDS in all, prints each
as one JSON line {"id", "queue", "attempt", "value"} and acks each item once
its line is written. Binary values print as {"base64": "..."}. With N > 1 on
a terminal, it shows its progress on stderr.

Only what was written is acked. When the output is a pipe whose reader stops
early (taskq get --count 10 | head -1), the items not written go back to the
queue at once, and taskq get ends quietly (exit code 0). Into a pipe, lines
are written (and acked) one by one; an item already written into the pipe
when its reader stopped is acked even if the reader never read it.

To look at items without taking them, use taskq peek.

Options:
  --queue NAME              queue to take from (required); NAME.dead holds
                            the items that ran out of attempts (see also
                            taskq dead)
  --count N                 how many items (default 1)
  --timeout SECONDS         how long to wait in all (default 0: only what is ready)
${CONNECTION_HELP}
  -h, --help                show this help

Exit codes: 0 all N items came (or the reader of the output stopped early),
${EXIT_DRAINED} fewer than N came before the timeout (the queue is drained; those
that came were printed), ${EXIT_FAILURE} an error (such as the master unreachable), 2 bad
arguments.

Example:
  taskq get --queue results --count 1000 --timeout 60 > results.jsonl
  [ $? -eq ${EXIT_DRAINED} ] && echo "fewer than 1000 results came"
`;

const FLAGS: FlagSpec = {
  queue: { type: "string" },
  count: { type: "string" },
  timeout: { type: "string" },
  ...CONNECTION_FLAGS,
};

/** Items taken per request. */
const GET_BATCH = 1_000;

/** The path through which this process's standard output is examined. */
const STDOUT_PATH = "/dev/stdout";

/** JSON.stringify replacer that shows binary values as base64. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) {
    let text = "";
    for (const byte of value) text += String.fromCharCode(byte);
    return { base64: btoa(text) };
  }
  return value;
}

/** One job as the JSON line `taskq get` prints. */
export function jobLine(job: Job): string {
  return JSON.stringify(
    { id: job.id, queue: job.queue, attempt: job.attempt, value: job.value },
    jsonReplacer,
  );
}

/**
 * Whether standard output may close before all is written (a pipe or a
 * socket), so that each line must be acked before the next is written; true
 * also when that cannot be told.
 */
function outputMayCloseEarly(): boolean {
  try {
    const permission = Deno.permissions.querySync({ name: "read", path: STDOUT_PATH });
    if (permission.state !== "granted") return true;
    const info = Deno.statSync(STDOUT_PATH);
    return !(info.isFile || info.isCharDevice || info.isBlockDevice);
  } catch {
    return true;
  }
}

/** Whether `error` says the reader of the output went away. */
function isClosedOutput(error: unknown): boolean {
  return error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionReset;
}

/** Writes all of `bytes` to standard output. */
async function writeAll(bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await Deno.stdout.write(bytes.subarray(off));
}

/**
 * Writes `jobs` and acks what was written; resolves with how many were
 * written, fewer than `jobs.length` only when the output closed (the rest
 * are then nacked).
 */
async function deliver(
  queue: Queue,
  jobs: readonly Job[],
  oneByOne: boolean,
): Promise<number> {
  const encoder = new TextEncoder();
  if (!oneByOne) {
    let text = "";
    for (const job of jobs) text += jobLine(job) + "\n";
    try {
      await writeAll(encoder.encode(text));
    } catch (error) {
      // What part of the batch got out is unknown: none of it is acked.
      await queue.nack(jobs);
      if (isClosedOutput(error)) return 0;
      throw error;
    }
    await queue.ack(jobs);
    return jobs.length;
  }
  for (let i = 0; i < jobs.length; i++) {
    try {
      await writeAll(encoder.encode(jobLine(jobs[i]) + "\n"));
    } catch (error) {
      await queue.nack(jobs.slice(i));
      if (isClosedOutput(error)) return i;
      throw error;
    }
    // Acked before the next line is written: a reader that stops after this
    // line has had the time of a round trip to close the pipe.
    await queue.ack(jobs[i]);
  }
  return jobs.length;
}

/** Runs `taskq get` with `args`; resolves with the exit code. */
export async function runGet(args: string[]): Promise<number> {
  const parsed = parseFlags("get", args, FLAGS);
  if (parsed.values.help) {
    console.log(GET_HELP);
    return 0;
  }
  const queueName = queueFlag(parsed, "queue");
  if (queueName === undefined) throw new ConfigError("--queue NAME is required");
  const count = intFlag(parsed, "count", 1, 1);
  const deadline = Date.now() + secondsFlag(parsed, "timeout", 0);
  const oneByOne = outputMayCloseEarly();
  const client = await connectFromFlags(parsed);
  let got = 0;
  let closed = false;
  const progress = new Progress({
    label: `get ${queueName}`,
    unit: "items",
    total: count,
    enabled: count > 1 ? undefined : false,
  });
  try {
    const queue = client.queue(queueName);
    while (got < count) {
      const want = Math.min(count - got, GET_BATCH, MAX_BATCH);
      const jobs = await queue.getMany(want, Math.max(0, deadline - Date.now()));
      if (jobs.length === 0) break;
      const written = await deliver(queue, jobs, oneByOne);
      got += written;
      progress.update(got);
      if (written < jobs.length) {
        closed = true;
        break;
      }
    }
  } finally {
    progress.finish();
    await client.close();
  }
  if (closed || got === count) return 0;
  console.error(
    `taskq get: drained: got ${got} of ${count} item${count === 1 ? "" : "s"} before the timeout`,
  );
  return EXIT_DRAINED;
}
