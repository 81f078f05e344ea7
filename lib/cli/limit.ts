/**
 * `taskq limit NAME [--rate N/s] [--concurrency M] [--group-concurrency M]`:
 * shows, and with flags changes at run time, a queue's delivery limits, which
 * hold across every worker and every master: at most N deliveries per
 * period, at most M items leased at once, at most M items of one group
 * leased at once. A zero lifts a limit.
 *
 * @example
 * ```ts
 * import { limitsText } from "./limit.ts";
 * const text = limitsText({
 *   queue: "mail", rateCount: 50, ratePeriodMs: 1000, concurrency: 0, groupConcurrency: 2,
 * });
 * console.log(text.split("\n")[1]); //   rate:              50/s
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
  type Parsed,
  parseFlags,
  stringFlag,
} from "./args.ts";
import { ConfigError } from "../errors.ts";
import {
  formatRate,
  type LimitChanges,
  MAX_CONCURRENCY,
  type NamedQueueLimits,
  parseRate,
} from "../model/jobs.ts";
import { isValidQueueName, QUEUE_NAME_RULE } from "../model/queue_names.ts";
import { describeValue } from "../util/arguments.ts";
import { printable, printableJson } from "../util/printable.ts";

/** One-line summary shown by `taskq --help`. */
export const LIMIT_SUMMARY = "show or change a queue's rate and concurrency limits";

/** How a rate is written, for the help text and messages. */
const RATE_RULE = "N/s, N/min, N/h or N/DURATION such as 10/5s or 100/250ms";

/** Help text of `taskq limit`. */
export const LIMIT_HELP =
  `Usage: taskq limit NAME [--rate N/s] [--concurrency M] [--group-concurrency M]

Shows the delivery limits of queue NAME; with any flag, changes them first
(the others stay as they are) and shows the limits now in force. Limits hold
across every worker and every master, and a change takes effect at once:
gets waiting on a lifted limit are served right away. A zero lifts a limit.
Limits can also be set when the master starts (taskq master --queue-rate,
--queue-concurrency, --queue-group-concurrency).

Options:
  --rate RATE               at most this many deliveries per period: ${RATE_RULE};
                            0 lifts it
  --concurrency M           at most M items of the queue leased at once
                            (0 to ${MAX_CONCURRENCY}; 0 lifts it)
  --group-concurrency M     at most M items of one group leased at once
                            (taskq put --group; 0 lifts it)
  --json                    print the limits as one JSON object {queue,
                            rateCount, ratePeriodMs, concurrency,
                            groupConcurrency} (0: none)
${CONNECTION_HELP}
  -h, --help                show this help

Examples:
  taskq limit mail --rate 50/s --concurrency 3
  taskq limit mail --rate 0
  taskq limit mail
`;

const FLAGS: FlagSpec = {
  rate: { type: "string" },
  concurrency: { type: "string" },
  "group-concurrency": { type: "string" },
  json: { type: "boolean" },
  ...CONNECTION_FLAGS,
};

/**
 * The changes the flags ask for: `--rate`, `--concurrency`,
 * `--group-concurrency`; empty when none is given.
 * @throws {ConfigError} for a value that is not a rate or a count in range.
 *
 * @example
 * ```ts
 * import { limitChanges } from "./limit.ts";
 * console.log(limitChanges({ values: { rate: "10/5s" }, positionals: [] }));
 * // { rateCount: 10, ratePeriodMs: 5000 }
 * ```
 */
export function limitChanges(parsed: Parsed): LimitChanges {
  const changes: LimitChanges = {};
  const rate = stringFlag(parsed, "rate");
  if (rate !== undefined) {
    try {
      Object.assign(changes, parseRate(rate));
    } catch (cause) {
      throw new ConfigError(`--rate: ${(cause as Error).message}`, { cause });
    }
  }
  if (stringFlag(parsed, "concurrency") !== undefined) {
    changes.concurrency = intFlag(parsed, "concurrency", 0, 0, MAX_CONCURRENCY);
  }
  if (stringFlag(parsed, "group-concurrency") !== undefined) {
    changes.groupConcurrency = intFlag(parsed, "group-concurrency", 0, 0, MAX_CONCURRENCY);
  }
  return changes;
}

/** A count limit as shown: the number, or `none` for 0. */
function count(value: number): string {
  return value === 0 ? "none" : String(value);
}

/**
 * A queue's limits as `taskq limit` prints them.
 *
 * @example
 * ```ts
 * import { limitsText } from "./limit.ts";
 * const text = limitsText({
 *   queue: "q", rateCount: 0, ratePeriodMs: 1000, concurrency: 3, groupConcurrency: 0,
 * });
 * console.log(text.split("\n")[2]); //   concurrency:       3
 * ```
 */
export function limitsText(limits: NamedQueueLimits): string {
  return [
    `queue ${printable(limits.queue)}`,
    `  rate:              ${formatRate(limits)}`,
    `  concurrency:       ${count(limits.concurrency)}`,
    `  group concurrency: ${count(limits.groupConcurrency)}`,
  ].join("\n");
}

/** Runs `taskq limit` with `args`; resolves with the exit code. */
export async function runLimit(args: string[]): Promise<number> {
  const parsed = parseFlags("limit", args, FLAGS);
  if (parsed.values.help) {
    console.log(LIMIT_HELP);
    return 0;
  }
  if (parsed.positionals.length !== 1) {
    throw new ConfigError(
      `give one queue name (${parsed.positionals.length} given; see: taskq limit --help)`,
    );
  }
  const [queue] = parsed.positionals;
  if (!isValidQueueName(queue)) {
    throw new ConfigError(
      `${describeValue(queue)} is not a valid queue name: a queue name is ${QUEUE_NAME_RULE}`,
    );
  }
  const changes = limitChanges(parsed);
  const client = await connectFromFlags(parsed);
  let limits: NamedQueueLimits;
  try {
    limits = await client.limits(queue, Object.keys(changes).length > 0 ? changes : undefined);
  } finally {
    await client.close();
  }
  console.log(
    parsed.values.json === true ? printableJson(JSON.stringify(limits)) : limitsText(limits),
  );
  return 0;
}
