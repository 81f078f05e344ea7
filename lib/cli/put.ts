/**
 * `taskq put`: adds items to a queue, from arguments or one per line of stdin.
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
import { ConfigError } from "../errors.ts";
import { MAX_ATTEMPTS_LIMIT, MAX_BATCH } from "../wire/messages.ts";
import { checkItemArgument } from "../model/codec.ts";
import type { PutOptions } from "../client/client.ts";
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
${CONNECTION_HELP}
  -h, --help                show this help

Examples:
  taskq put --queue tasks 3 5 7 --json
  seq 1 1000 | taskq put --queue tasks --json
  taskq get --queue tasks.dead | jq -c .value.value | taskq put --queue tasks --json
`;

const FLAGS: FlagSpec = {
  queue: { type: "string" },
  json: { type: "boolean" },
  delay: { type: "string" },
  "max-attempts": { type: "string" },
  ...CONNECTION_FLAGS,
};

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
  const options: PutOptions = { delayMs: secondsFlag(parsed, "delay", 0) };
  const maxAttempts = intFlag(parsed, "max-attempts", 0, 1, MAX_ATTEMPTS_LIMIT);
  if (maxAttempts > 0) options.maxAttempts = maxAttempts;

  // Parse arguments before connecting, so a bad item fails without side effects.
  if (parsed.positionals.length > MAX_BATCH) {
    throw new ConfigError(
      `at most ${MAX_BATCH} items as arguments (${parsed.positionals.length} given): ` +
        `give more on standard input, one per line`,
    );
  }
  const fromArgs = parsed.positionals.map((text, i) => parse(text, `item ${i + 1}`));
  const client = await connectFromFlags(parsed);
  try {
    const queue = client.queue(queueName);
    if (parsed.positionals.length > 0) {
      await queue.putMany(fromArgs, options);
      return 0;
    }
    const inFlight = new Set<Promise<unknown>>();
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
    progress.update(confirmed, inputBytes > 0 ? 1 : undefined);
    progress.finish();
    return 0;
  } finally {
    await client.close();
  }
}
