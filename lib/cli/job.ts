/**
 * `taskq job ID [--json]`: what the master knows of one item: its state
 * (ready, delayed, leased and by whom since when, done, dead, cancelled),
 * attempts, priority, group, key, progress, last error, result and times;
 * live items and finished ones still in the master's history
 * (`taskq master --keep-jobs`, `--keep-jobs-for`).
 *
 * @example
 * ```ts
 * import { jobText } from "./job.ts";
 * const text = jobText({
 *   id: 7, queue: "tasks", state: "ready", attempts: 0, priority: 0, value: "x", createdAt: 0,
 * });
 * console.log(text.split("\n")[0]); // job 7
 * ```
 *
 * @module
 */

import {
  connectFromFlags,
  CONNECTION_FLAGS,
  CONNECTION_HELP,
  type FlagSpec,
  jobIdArguments,
  parseFlags,
} from "./args.ts";
import { ConfigError, EXIT_FAILURE, TaskqError } from "../errors.ts";
import { DEFAULT_HISTORY_COUNT, DEFAULT_HISTORY_MS, type JobInfo } from "../model/jobs.ts";
import { printable, printableJson } from "../util/printable.ts";
import { jsonReplacer } from "./get.ts";

/** One-line summary shown by `taskq --help`. */
export const JOB_SUMMARY = "show one item: state, holder, attempts, progress, error, result";

/** Exit code of `taskq job` when the master knows no item with that id. */
export const EXIT_NO_SUCH_JOB = EXIT_FAILURE;

/** Milliseconds per minute, for the help text's default. */
const MS_PER_MINUTE = 60_000;

/** Most characters of a value or result the text output shows (`--json` shows all). */
const MAX_SHOWN_CHARS = 2_000;

/** Width of the labels of the text output: the longest, `lease ends:`. */
const LABEL_WIDTH = 11;

/** Help text of `taskq job`. */
export const JOB_HELP = `Usage: taskq job [--json] [options] ID

Shows what the master knows of the item with this id (as taskq put --ids
prints it): its queue and state, one of
  ready      waiting to be served
  delayed    waiting for its delay (a delayed put, or a retry's backoff)
  leased     being worked on: by which client, since when, until when
  done       acked (with its result, if the ack carried one)
  dead       out of attempts, in the dead-letter queue NAME.dead
  cancelled  cancelled (taskq cancel)
and its attempts, priority, group, unique key, last progress, last error,
result, value and times (ISO 8601, UTC).

Finished items are known for as long as the master keeps their records
(taskq master --keep-jobs, default ${DEFAULT_HISTORY_COUNT}, none on PostgreSQL, and
--keep-jobs-for, default ${DEFAULT_HISTORY_MS / MS_PER_MINUTE} minutes).

Options:
  --json                    print the item as one JSON object: id, queue,
                            state, attempts, priority, error and result
                            (null when absent), value, progress {percent,
                            message, at}, holder {session, name, address},
                            and the times in ms since the epoch (createdAt,
                            readyAt, leasedAt, leaseExpiresAt, finishedAt)
                            when they apply; binary values as {"base64": ...}
${CONNECTION_HELP}
  -h, --help                show this help

Exit codes: 0 shown, ${EXIT_NO_SUCH_JOB} no such item (never put, or finished and
forgotten) or another error, 2 bad arguments.
`;

const FLAGS: FlagSpec = { json: { type: "boolean" }, ...CONNECTION_FLAGS };

/** The master knows no item with the id asked for. */
export class NoSuchJobError extends TaskqError {
  /** The id asked for. */
  readonly id: number;

  /** Creates the error for `id`. */
  constructor(id: number) {
    super(`no item ${id}: never put, or finished longer ago than the master keeps records`);
    this.id = id;
  }
}

/**
 * A job as `taskq job --json` prints it: the {@link JobInfo} with `error`
 * and `result` always present (null when absent), binary values as
 * `{"base64": ...}`, safe for a terminal.
 *
 * @example
 * ```ts
 * import { jobJson } from "./job.ts";
 * const json = jobJson({
 *   id: 7, queue: "tasks", state: "done", attempts: 1, priority: 0, createdAt: 0,
 * });
 * console.log(JSON.parse(json).result); // null
 * ```
 */
export function jobJson(info: JobInfo): string {
  return printableJson(
    JSON.stringify(
      { ...info, error: info.error ?? null, result: info.result ?? null },
      jsonReplacer,
    ),
  );
}

/** A time as `taskq job` shows it. */
function when(ms: number): string {
  return new Date(ms).toISOString();
}

/** A value as JSON on one line, cut at {@link MAX_SHOWN_CHARS}. */
function shown(value: unknown): string {
  const text = printableJson(JSON.stringify(value, jsonReplacer) ?? "null");
  return text.length <= MAX_SHOWN_CHARS
    ? text
    : `${text.slice(0, MAX_SHOWN_CHARS)}… (${text.length} characters; --json shows all)`;
}

/**
 * A job as `taskq job` prints it: `job ID`, then one `label: value` line per
 * field it has. Text from peers (names, errors, messages) is made printable.
 *
 * @example
 * ```ts
 * import { jobText } from "./job.ts";
 * const text = jobText({
 *   id: 7, queue: "tasks", state: "dead", attempts: 3, priority: 0, error: "exit 1", createdAt: 0,
 * });
 * console.log(text.includes("error:      exit 1")); // true
 * ```
 */
export function jobText(info: JobInfo): string {
  const rows: [string, string][] = [["queue", printable(info.queue)]];
  let state: string = info.state;
  if (info.state === "leased" && info.holder !== undefined) {
    const { name, address, session } = info.holder;
    const where = address === "" ? "" : `${printable(address)}, `;
    state += ` by ${printable(name)} (${where}session ${printable(session)})`;
  }
  if (info.leasedAt !== undefined) state += ` since ${when(info.leasedAt)}`;
  rows.push(["state", state]);
  if (info.leaseExpiresAt !== undefined) rows.push(["lease ends", when(info.leaseExpiresAt)]);
  rows.push(["attempts", String(info.attempts)], ["priority", String(info.priority)]);
  if (info.group !== undefined) rows.push(["group", printable(info.group)]);
  if (info.key !== undefined) rows.push(["key", printable(info.key)]);
  if (info.progress !== undefined) {
    const { percent, message, at } = info.progress;
    const parts = [
      ...(percent === undefined ? [] : [`${percent}%`]),
      ...(message === undefined ? [] : [printable(message)]),
    ];
    rows.push(["progress", `${parts.join(" ") || "-"} (at ${when(at)})`]);
  }
  if (info.error !== undefined) rows.push(["error", printable(info.error)]);
  if (info.result !== undefined) rows.push(["result", shown(info.result)]);
  rows.push([
    "value",
    "value" in info ? shown(info.value) : "(not kept: larger than a finished item's record holds)",
  ]);
  rows.push(["created", when(info.createdAt)]);
  if (info.readyAt !== undefined) rows.push(["ready at", when(info.readyAt)]);
  if (info.finishedAt !== undefined) rows.push(["finished", when(info.finishedAt)]);
  return [
    `job ${info.id}`,
    ...rows.map(([label, value]) => `  ${`${label}:`.padEnd(LABEL_WIDTH)} ${value}`),
  ].join("\n");
}

/**
 * Runs `taskq job` with `args`; resolves with the exit code.
 * @throws {NoSuchJobError} when the master knows no such item.
 */
export async function runJob(args: string[]): Promise<number> {
  const parsed = parseFlags("job", args, FLAGS);
  if (parsed.values.help) {
    console.log(JOB_HELP);
    return 0;
  }
  if (parsed.positionals.length !== 1) {
    throw new ConfigError(
      `give one item id (${parsed.positionals.length} given; see: taskq job --help)`,
    );
  }
  const [id] = jobIdArguments(parsed.positionals);
  const client = await connectFromFlags(parsed);
  let info: JobInfo | undefined;
  try {
    info = await client.job(id);
  } finally {
    await client.close();
  }
  if (info === undefined) throw new NoSuchJobError(id);
  console.log(parsed.values.json === true ? jobJson(info) : jobText(info));
  return 0;
}
