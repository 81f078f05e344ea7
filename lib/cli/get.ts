/**
 * `taskq get`: takes items from a queue, prints each as one JSON line, and
 * acks what it printed.
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
import { ConfigError, TaskqError } from "../errors.ts";
import type { Job } from "../client/client.ts";
import { MAX_BATCH } from "../wire/messages.ts";
import { Progress } from "./progress.ts";

/** One-line summary shown by `taskq --help`. */
export const GET_SUMMARY = "take items from a queue and print them as JSON lines";

/** Help text of `taskq get`. */
export const GET_HELP = `Usage: taskq get --queue NAME [--count N] [--timeout SECONDS]

Takes up to N items from the queue, waiting up to SECONDS in all, prints each
as one JSON line {"id", "queue", "attempt", "value"} and acks it once printed.
Binary values print as {"base64": "..."}. Exits 1 if fewer than N items came
in time (after printing those that did). With N > 1 on a terminal, it shows
its progress on stderr.

Options:
  --queue NAME              queue to take from (required); NAME.dead holds
                            the items that ran out of attempts
  --count N                 how many items (default 1)
  --timeout SECONDS         how long to wait in all (default 0: only what is ready)
${CONNECTION_HELP}
  -h, --help                show this help
`;

const FLAGS: FlagSpec = {
  queue: { type: "string" },
  count: { type: "string" },
  timeout: { type: "string" },
  ...CONNECTION_FLAGS,
};

/** Items taken per request. */
const GET_BATCH = 1_000;

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
  const client = await connectFromFlags(parsed);
  const out = Deno.stdout;
  const encoder = new TextEncoder();
  let got = 0;
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
      let text = "";
      for (const job of jobs) text += jobLine(job) + "\n";
      const bytes = encoder.encode(text);
      for (let off = 0; off < bytes.length;) off += await out.write(bytes.subarray(off));
      await queue.ack(jobs);
      got += jobs.length;
      progress.update(got);
    }
  } finally {
    progress.finish();
    await client.close();
  }
  if (got < count) {
    throw new TaskqError(`got ${got} of ${count} item${count === 1 ? "" : "s"} before the timeout`);
  }
  return 0;
}
