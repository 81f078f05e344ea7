/**
 * `taskq put`: adds items to a queue, from arguments or one per line of stdin.
 *
 * @module
 */

import {
  connectFromFlags,
  CONNECTION_FLAGS,
  CONNECTION_HELP,
  DURATION_RULE,
  durationFlag,
  type FlagSpec,
  intFlag,
  type Parsed,
  parseFlags,
  queueFlag,
  secondsFlag,
  stringFlag,
} from "./args.ts";
import { ConfigError } from "../errors.ts";
import { MAX_ATTEMPTS_LIMIT, MAX_BATCH } from "../wire/messages.ts";
import { checkItemArgument } from "../model/codec.ts";
import type { PutIds, PutManyOptions } from "../client/client.ts";
import {
  checkLabel,
  DEFAULT_PRIORITY,
  MAX_GROUP_LENGTH,
  MAX_KEY_LENGTH,
  MAX_PRIORITY,
  MIN_PRIORITY,
} from "../model/jobs.ts";
import { printable } from "../util/printable.ts";
import { Progress } from "./progress.ts";

/** One-line summary shown by `taskq --help`. */
export const PUT_SUMMARY = "add items to a queue";

/** Help text of `taskq put`. */
export const PUT_HELP = `Usage: taskq put --queue NAME [options] [ITEM...]

Adds each ITEM to the queue; with no ITEM, adds one item per line of standard
input (empty lines are skipped). Items are text unless --json is given.
Keep items small: put a file's path on shared storage, not the file.
Reading standard input on a terminal, it shows its progress on stderr.

Options:
  --queue NAME              queue to add to (required)
  --json                    parse each item as JSON (numbers, objects, ...)
  --delay SECONDS           make the items ready only after this long
  --max-attempts N          deliveries before a failing item is dead-lettered
  --priority N              ${MIN_PRIORITY} to ${MAX_PRIORITY} (default ${DEFAULT_PRIORITY}): within a queue, a higher
                            priority is served first, first in first out
                            within one; a retry keeps it
  --group GROUP             the items' group (a tenant, a customer; 1 to
                            ${MAX_GROUP_LENGTH} characters): deliveries go round-robin
                            across the groups that have items ready
  --key KEY                 unique key (1 to ${MAX_KEY_LENGTH} characters), for a put of
                            exactly one item: while an item with this key is
                            in the queue (ready, delayed or leased), nothing
                            is added and the put answers with that item's id
  --key-hold DURATION       with --key: the key stays taken this long after
                            its item finished (done, dead or cancelled);
                            DURATION is ${DURATION_RULE}
  --ids                     print each item's id, one per line, in order (for
                            a key that was taken, the existing item's id)
${CONNECTION_HELP}
  -h, --help                show this help

When a key was taken, a line on stderr says so and names the existing item;
the exit code is 0 all the same (the item is in the queue).

Examples:
  taskq put --queue tasks 3 5 7 --json
  seq 1 1000 | taskq put --queue tasks --json --priority 5 --group tenant-a
  taskq put --queue mail --key invoice-42 --ids '{"to":"a@b.c"}' --json
  taskq get --queue tasks.dead | jq -c .value.value | taskq put --queue tasks --json
`;

const FLAGS: FlagSpec = {
  queue: { type: "string" },
  json: { type: "boolean" },
  delay: { type: "string" },
  "max-attempts": { type: "string" },
  priority: { type: "string" },
  group: { type: "string" },
  key: { type: "string" },
  "key-hold": { type: "string" },
  ids: { type: "boolean" },
  ...CONNECTION_FLAGS,
};

/** A label flag (`--group`, `--key`) checked by the model's rule, or `undefined`. */
function labelFlag(parsed: Parsed, name: string, what: string, max: number): string | undefined {
  const value = stringFlag(parsed, name);
  if (value === undefined) return undefined;
  try {
    return checkLabel(value, what, max);
  } catch (cause) {
    throw new ConfigError(`--${name}: ${(cause as Error).message}`, { cause });
  }
}

/**
 * The put options the flags give (everything but the unique key, which goes
 * with its one item).
 * @throws {ConfigError} for a value out of range.
 */
function putOptions(parsed: Parsed): PutManyOptions {
  const options: PutManyOptions = { delayMs: secondsFlag(parsed, "delay", 0) };
  const maxAttempts = intFlag(parsed, "max-attempts", 0, 1, MAX_ATTEMPTS_LIMIT);
  if (maxAttempts > 0) options.maxAttempts = maxAttempts;
  // Only what was given goes on the wire, so a put without these flags works on any master.
  if (stringFlag(parsed, "priority") !== undefined) {
    options.priority = intFlag(parsed, "priority", DEFAULT_PRIORITY, MIN_PRIORITY, MAX_PRIORITY);
  }
  const group = labelFlag(parsed, "group", "group", MAX_GROUP_LENGTH);
  if (group !== undefined) options.group = group;
  return options;
}

/** Writes all of `text` to standard output. */
async function writeOut(text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  for (let off = 0; off < bytes.length;) off += await Deno.stdout.write(bytes.subarray(off));
}

/** Items sent per request when reading standard input. */
const STDIN_BATCH = 1_000;

/** Batches in flight at once when reading standard input. */
const STDIN_PIPELINE = 4;

/** Where standard input can be looked at as a file (Linux and macOS). */
const STDIN_PATH = "/dev/stdin";

/** The size of standard input when it is a regular file (a redirect), else 0. */
function stdinFileSize(): number {
  try {
    const info = Deno.statSync(STDIN_PATH);
    return info.isFile ? info.size : 0;
  } catch {
    return 0;
  }
}

/** Yields the non-empty lines of a byte stream. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let newline = rest.indexOf("\n");
    while (newline >= 0) {
      const line = rest.slice(0, newline).replace(/\r$/, "");
      if (line !== "") yield line;
      rest = rest.slice(newline + 1);
      newline = rest.indexOf("\n");
    }
  }
  const last = rest.replace(/\r$/, "");
  if (last !== "") yield last;
}

/** Runs `taskq put` with `args`; resolves with the exit code. */
export async function runPut(args: string[]): Promise<number> {
  const parsed = parseFlags("put", args, FLAGS);
  if (parsed.values.help) {
    console.log(PUT_HELP);
    return 0;
  }
  const queueName = queueFlag(parsed, "queue");
  if (queueName === undefined) throw new ConfigError("--queue NAME is required");
  const json = parsed.values.json === true;
  const parse = (text: string, where: string): unknown => {
    if (!json) return text;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new ConfigError(`${where} is not valid JSON: ${text.slice(0, 80)}`);
    }
    try {
      checkItemArgument(value);
    } catch (cause) {
      throw new ConfigError(`${where} cannot be an item: ${(cause as Error).message}`, { cause });
    }
    return value;
  };
  const options = putOptions(parsed);
  const key = labelFlag(parsed, "key", "key", MAX_KEY_LENGTH);
  const keyHoldMs = durationFlag(parsed, "key-hold", undefined);
  if (keyHoldMs !== undefined && key === undefined) {
    throw new ConfigError("--key-hold needs --key (it says how long that key stays taken)");
  }
  const printIds = parsed.values.ids === true;

  // Parse arguments before connecting, so a bad item fails without side effects.
  if (parsed.positionals.length > MAX_BATCH) {
    throw new ConfigError(
      `at most ${MAX_BATCH} items as arguments (${parsed.positionals.length} given): ` +
        `give more on standard input, one per line`,
    );
  }
  let fromArgs = parsed.positionals.map((text, i) => parse(text, `item ${i + 1}`));
  if (key !== undefined) {
    // A key names one item: with no ITEM, standard input must hold exactly one line.
    const fromStdin = fromArgs.length === 0;
    if (fromStdin) fromArgs = await oneLine(Deno.stdin.readable, parse);
    if (fromArgs.length !== 1) {
      const given = !fromStdin
        ? `${fromArgs.length} given`
        : fromArgs.length === 0
        ? "none on standard input"
        : "more than one line on standard input";
      throw new ConfigError(
        `--key applies to a put of exactly one item (${given}): ` +
          `put the others without --key, or one at a time`,
      );
    }
    options.keys = [key];
    if (keyHoldMs !== undefined) options.keyHoldMs = keyHoldMs;
  }
  let existing = 0;
  let lastExisting: number | undefined;
  // Says on stderr what already existed (the put's summary): nothing else is printed there.
  const noteExisting = (): number => {
    if (existing === 0) return 0;
    console.error(
      key !== undefined
        ? `taskq put: nothing added: key ${
          printable(JSON.stringify(key))
        } is taken by job ${lastExisting}`
        : `taskq put: ${existing} item${existing === 1 ? "" : "s"} already existed: ` +
          `nothing added for ${existing === 1 ? "it" : "them"}`,
    );
    return 0;
  };
  const report = async (ids: PutIds) => {
    for (const index of ids.existing ?? []) {
      existing++;
      lastExisting = ids[index];
    }
    if (printIds && ids.length > 0) await writeOut(ids.join("\n") + "\n");
  };
  const client = await connectFromFlags(parsed);
  try {
    const queue = client.queue(queueName);
    if (fromArgs.length > 0) {
      await report(await queue.putMany(fromArgs, options));
      return noteExisting();
    }
    const inFlight = new Set<Promise<unknown>>();
    // Ids are printed batch after batch, in the order the batches were sent.
    let printed: Promise<void> = Promise.resolve();
    let batch: unknown[] = [];
    let lineNo = 0;
    const progress = new Progress({ label: `put ${queueName}`, unit: "items" });
    let input: ReadableStream<Uint8Array> = Deno.stdin.readable;
    let bytesRead = 0;
    let inputBytes = 0;
    if (progress.enabled) {
      // From a file, the share of it read gives a bar and a time left.
      inputBytes = stdinFileSize();
      input = input.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            bytesRead += chunk.length;
            controller.enqueue(chunk);
          },
        }),
      );
    }
    let confirmed = 0;
    const send = async () => {
      const sending = queue.putMany(batch, options);
      if (progress.enabled) {
        sending.then((ids) => {
          confirmed += ids.length;
          progress.update(confirmed, inputBytes > 0 ? bytesRead / inputBytes : undefined);
        }, () => {});
      }
      printed = printed.then(() => sending).then(report);
      printed.catch(() => {}); // its error is the batch's, met below
      batch = [];
      inFlight.add(sending);
      sending.finally(() => inFlight.delete(sending)).catch(() => {});
      if (inFlight.size >= STDIN_PIPELINE) await Promise.race(inFlight);
    };
    for await (const line of lines(input)) {
      batch.push(parse(line, `line ${++lineNo}`));
      if (batch.length >= STDIN_BATCH) await send();
    }
    if (batch.length > 0) await send();
    await Promise.all(inFlight);
    await printed;
    progress.update(confirmed, inputBytes > 0 ? 1 : undefined);
    progress.finish();
    return noteExisting();
  } finally {
    await client.close();
  }
}

/**
 * The items on standard input when it holds at most one line; stops reading
 * at the second (the caller refuses more than one).
 */
async function oneLine(
  stream: ReadableStream<Uint8Array>,
  parse: (text: string, where: string) => unknown,
): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const line of lines(stream)) {
    out.push(parse(line, `line ${out.length + 1}`));
    if (out.length > 1) break;
  }
  return out;
}
