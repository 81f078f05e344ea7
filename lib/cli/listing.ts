/**
 * What the operator commands that list things (`taskq peek`, `taskq dead
 * list`, `taskq workers`) share: aligned tables, short value previews, JSON
 * lines safe for a terminal, and the one queue or session argument they take.
 *
 * @example
 * ```ts
 * import { table } from "./listing.ts";
 * console.log(table(["ID", "VALUE"], [["7", "x"]], new Set([1])));
 * // ID  VALUE
 * //  7  x
 * ```
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import { isValidQueueName, QUEUE_NAME_RULE } from "../model/queue_names.ts";
import { describeValue } from "../util/arguments.ts";
import { printable, printableJson } from "../util/printable.ts";
import { jsonReplacer } from "./get.ts";

/** Most characters of a value a listing's text output shows (`--json` shows all). */
export const VALUE_PREVIEW_CHARS = 60;

/** Most characters of an error a listing's text output shows (`--json` shows all). */
export const ERROR_PREVIEW_CHARS = 50;

/**
 * Lays out `cells` under `header` as aligned columns, two spaces apart: the
 * columns in `left` left-aligned, the others right-aligned.
 *
 * @example
 * ```ts
 * import { table } from "./listing.ts";
 * console.log(table(["N", "NAME"], [["10", "a"], ["7", "bb"]], new Set([1])).split("\n")[2]);
 * //  7  bb
 * ```
 */
export function table(
  header: readonly string[],
  cells: readonly (readonly string[])[],
  left: ReadonlySet<number>,
): string {
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (row: readonly string[]) =>
    row.map((v, i) => (left.has(i) ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join("  ")
      .trimEnd();
  return [header, ...cells].map(line).join("\n");
}

/**
 * `text` made printable and cut to `max` characters (an ellipsis marks a cut).
 *
 * @example
 * ```ts
 * import { shorten } from "./listing.ts";
 * console.log(shorten("abcdef", 4)); // abc…
 * ```
 */
export function shorten(text: string, max: number): string {
  const shown = printable(text);
  return shown.length <= max ? shown : `${shown.slice(0, max - 1)}…`;
}

/**
 * A value as one line of JSON (binary as `{"base64": ...}`), printable and
 * cut to {@link VALUE_PREVIEW_CHARS}.
 *
 * @example
 * ```ts
 * import { preview } from "./listing.ts";
 * console.log(preview({ to: "a@b.c" })); // {"to":"a@b.c"}
 * ```
 */
export function preview(value: unknown): string {
  return shorten(JSON.stringify(value, jsonReplacer) ?? "null", VALUE_PREVIEW_CHARS);
}

/**
 * `value` as one JSON line safe for a terminal (binary as `{"base64": ...}`).
 *
 * @example
 * ```ts
 * import { jsonLine } from "./listing.ts";
 * console.log(jsonLine({ id: 1, value: new Uint8Array([1]) })); // {"id":1,"value":{"base64":"AQ=="}}
 * ```
 */
export function jsonLine(value: unknown): string {
  return printableJson(JSON.stringify(value, jsonReplacer));
}

/**
 * The one positional argument of `command`, a queue name (`what` names it
 * in messages).
 * @throws {ConfigError} when there is not exactly one, or it is not a valid queue name.
 *
 * @example
 * ```ts
 * import { queueArgument } from "./listing.ts";
 * console.log(queueArgument("peek", ["tasks"])); // tasks
 * ```
 */
export function queueArgument(command: string, positionals: readonly string[]): string {
  if (positionals.length !== 1) {
    throw new ConfigError(
      `give one queue name (${positionals.length} given; see: taskq ${command} --help)`,
    );
  }
  const [name] = positionals;
  if (!isValidQueueName(name)) {
    throw new ConfigError(
      `${describeValue(name)} is not a valid queue name: a queue name is ${QUEUE_NAME_RULE}`,
    );
  }
  return name;
}

/**
 * A time relative to `now`, as `12s ago` or `in 4m05s`.
 *
 * @example
 * ```ts
 * import { relative } from "./listing.ts";
 * console.log(relative(1_000, 5_000), relative(65_000, 5_000)); // 4s ago in 1m00s
 * ```
 */
export function relative(at: number, now: number): string {
  return at <= now ? `${formatAge(now - at)} ago` : `in ${formatAge(at - now)}`;
}

/** Milliseconds per second. */
const MS_PER_SECOND = 1000;

/** Seconds per minute, minutes per hour. */
const SIXTY = 60;

/**
 * A duration in ms as `3s`, `4m05s` or `2h07m` (as `taskq status` shows ages).
 *
 * @example
 * ```ts
 * import { formatAge } from "./listing.ts";
 * console.log(formatAge(245_000)); // 4m05s
 * ```
 */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / MS_PER_SECOND));
  if (s < SIXTY) return `${s}s`;
  const m = Math.floor(s / SIXTY);
  if (m < SIXTY) return `${m}m${String(s % SIXTY).padStart(2, "0")}s`;
  return `${Math.floor(m / SIXTY)}h${String(m % SIXTY).padStart(2, "0")}m`;
}
