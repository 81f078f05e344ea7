/**
 * Queue names and the dead-letter naming rule, shared by the engine and every
 * protocol front-end.
 *
 * A name is 1 to {@link MAX_QUEUE_NAME_LENGTH} characters without control
 * characters, not counting one trailing {@link DEAD_LETTER_SUFFIX}; so the
 * dead-letter queue of every valid queue has a valid name too. Items that run
 * out of attempts inside a dead-letter queue stay in it.
 *
 * @module
 */

import { describeValue } from "../util/arguments.ts";
import { ProtocolError } from "../errors.ts";
import type { DeadLetter } from "./types.ts";

/** Longest queue name, in UTF-16 code units, not counting a trailing `.dead`. */
export const MAX_QUEUE_NAME_LENGTH = 200;

/** Suffix of the dead-letter queue that belongs to each queue. */
export const DEAD_LETTER_SUFFIX = ".dead";

// Control characters would corrupt logs and terminals that show queue names.
// deno-lint-ignore no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** Whether `name` names the dead-letter queue of another queue. */
export function isDeadLetterQueue(name: string): boolean {
  return name.endsWith(DEAD_LETTER_SUFFIX) && name.length > DEAD_LETTER_SUFFIX.length;
}

/**
 * The dead-letter queue of queue `name` (a dead-letter queue is its own).
 *
 * @example
 * ```ts
 * import { deadLetterQueue } from "./queue_names.ts";
 * console.log(deadLetterQueue("tasks")); // tasks.dead
 * console.log(deadLetterQueue("tasks.dead")); // tasks.dead
 * ```
 */
export function deadLetterQueue(name: string): string {
  return isDeadLetterQueue(name) ? name : name + DEAD_LETTER_SUFFIX;
}

/** Whether `name` is a valid queue name. */
export function isValidQueueName(name: unknown): name is string {
  if (typeof name !== "string" || name.length === 0 || CONTROL_CHARS.test(name)) return false;
  const base = isDeadLetterQueue(name) ? name.length - DEAD_LETTER_SUFFIX.length : name.length;
  return base <= MAX_QUEUE_NAME_LENGTH;
}

/** What a valid queue name is, for messages. */
export const QUEUE_NAME_RULE =
  `1–${MAX_QUEUE_NAME_LENGTH} characters (plus an optional "${DEAD_LETTER_SUFFIX}") ` +
  `without control characters`;

/**
 * Checks a queue name a local caller passed (a peer's is checked by the wire
 * layer, as a protocol error).
 * @throws {TypeError} when it is not a string.
 * @throws {RangeError} when it is empty, too long or holds control characters.
 */
export function checkQueueNameArgument(name: unknown): string {
  if (typeof name !== "string") {
    throw new TypeError(`a queue name must be a string, not ${describeValue(name)}`);
  }
  const length = name.length;
  if (isValidQueueName(name)) return name;
  throw new RangeError(
    `bad queue name ${describeValue(name)} (${length} characters): ` +
      `a queue name is ${QUEUE_NAME_RULE}`,
  );
}

/**
 * Checks a queue name a peer sent: 1 to {@link MAX_QUEUE_NAME_LENGTH}
 * characters (plus an optional `.dead`), no control characters.
 * @throws {ProtocolError} when it is not.
 */
export function checkQueueName(name: unknown): string {
  if (!isValidQueueName(name)) {
    throw new ProtocolError(
      `queue name must be 1–${MAX_QUEUE_NAME_LENGTH} characters (plus an optional ` +
        `"${DEAD_LETTER_SUFFIX}") without control characters`,
    );
  }
  return name;
}

/**
 * Whether `value` is a dead letter that belongs in the dead-letter queue
 * `deadName` (what an admin may requeue from it).
 *
 * @example
 * ```ts
 * import { isDeadLetterOf } from "./queue_names.ts";
 * const letter = { queue: "tasks", id: 1, value: 2, attempts: 5, error: "boom", failedAt: 0 };
 * console.log(isDeadLetterOf(letter, "tasks.dead"), isDeadLetterOf("x", "tasks.dead")); // true false
 * ```
 */
export function isDeadLetterOf(value: unknown, deadName: string): boolean {
  if (typeof value !== "object" || value === null) return false;
  const letter = value as Partial<DeadLetter>;
  return typeof letter.queue === "string" && isValidQueueName(letter.queue) &&
    "value" in letter && deadLetterQueue(letter.queue) === deadName;
}
