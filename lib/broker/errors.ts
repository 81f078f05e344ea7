/**
 * The errors the broker's calls reject with, for front-ends to turn into
 * their protocol's replies.
 *
 * @example
 * ```ts
 * import { QueueFullError } from "./errors.ts";
 * const error = new QueueFullError("tasks", 1000);
 * console.log(error.message);
 * ```
 *
 * @module
 */

import { type ErrorCode, TaskqError } from "../errors.ts";

/**
 * A put found its queue full and could not wait (or waited as long as it was allowed).
 *
 * @example
 * ```ts
 * import { openLocalBroker } from "./local.ts";
 * import { QueueFullError } from "./errors.ts";
 * const broker = await openLocalBroker({ maxQueueLength: 1 });
 * const session = await broker.open({ name: "producer", address: "" });
 * await session.put("tasks", ["first"]);
 * try {
 *   await session.put("tasks", ["second"], { roomTimeoutMs: 0 });
 * } catch (error) {
 *   console.log(error instanceof QueueFullError, (error as QueueFullError).queue); // true tasks
 * }
 * await broker.close();
 * ```
 */
export class QueueFullError extends TaskqError {
  /** The full queue. */
  readonly queue: string;
  /** Creates the error for `queue`, which holds `limit` items. */
  constructor(queue: string, limit: number) {
    super(
      `queue "${queue}" is full (${limit} items); consume some or raise --max-queue-length`,
    );
    this.queue = queue;
  }
}

/**
 * A call was made on (or was waiting in) a session that has closed.
 *
 * @example
 * ```ts
 * import { openLocalBroker } from "./local.ts";
 * import { SessionClosedError } from "./errors.ts";
 * const broker = await openLocalBroker();
 * const session = await broker.open({ name: "gone", address: "" });
 * await session.close();
 * try {
 *   await session.put("tasks", [1]);
 * } catch (error) {
 *   console.log(error instanceof SessionClosedError); // true
 * }
 * await broker.close();
 * ```
 */
export class SessionClosedError extends TaskqError {
  /** Creates the error. */
  constructor() {
    super("the session closed before the call completed (the connection went away)");
  }
}

/**
 * A change could not be made durable: it was not stored, and a retry may add it again.
 *
 * @example
 * ```ts
 * import { NotSavedError } from "./errors.ts";
 * const error = new NotSavedError(new Error("disk I/O error"));
 * console.log(error.message); // not saved: disk I/O error
 * console.log((error.cause as Error).message); // disk I/O error
 * ```
 */
export class NotSavedError extends TaskqError {
  /** Creates the error from the store's failure. */
  constructor(cause: unknown) {
    super(`not saved: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

/**
 * The broker has closed: the master is shutting down.
 *
 * @example
 * ```ts
 * import { openLocalBroker } from "./local.ts";
 * import { BrokerClosedError } from "./errors.ts";
 * const broker = await openLocalBroker();
 * await broker.close();
 * try {
 *   await broker.open({ name: "late", address: "" });
 * } catch (error) {
 *   console.log(error instanceof BrokerClosedError); // true
 * }
 * ```
 */
export class BrokerClosedError extends TaskqError {
  /** Creates the error. */
  constructor() {
    super("the master is shutting down; reconnect later");
  }
}

/**
 * A put was refused because the items held are near the master's memory
 * budget (`--max-memory`): nothing of it was stored. Gets and acks go on;
 * retry once consumers have taken some items.
 *
 * @example
 * ```ts
 * import { openLocalBroker } from "./local.ts";
 * import { MemoryFullError } from "./errors.ts";
 * const broker = await openLocalBroker({ maxMemoryBytes: 64 * 1024 * 1024 });
 * const session = await broker.open({ name: "producer", address: "" });
 * try {
 *   await session.put("tasks", ["x".repeat(50_000_000)]);
 * } catch (error) {
 *   console.log(error instanceof MemoryFullError, (error as MemoryFullError).code); // true memory_full
 * }
 * await broker.close();
 * ```
 */
export class MemoryFullError extends TaskqError {
  /** The wire code front-ends reply with. */
  readonly code: ErrorCode = "memory_full";
  /**
   * Creates the error: `heldBytes` are held, `limitBytes` may be, the put
   * needed `putBytes`; `where` the items are held: the master's memory
   * (`--max-memory`) or a shared database's tables (`--max-stored`).
   */
  constructor(
    heldBytes: number,
    putBytes: number,
    limitBytes: number,
    where: "memory" | "database" = "memory",
  ) {
    super(
      where === "memory"
        ? `the master is near its memory budget: items held take about ${mib(heldBytes)}, this ` +
          `put ${mib(putBytes)}, and items may take ${mib(limitBytes)}; nothing was stored: ` +
          `retry later, once workers have taken items (or raise --max-memory)`
        : `the queue database holds its most item bytes: items held take about ` +
          `${mib(heldBytes)}, this put ${mib(putBytes)}, and items may take ` +
          `${mib(limitBytes)}; nothing was stored: retry later, once workers have taken items ` +
          `(or raise --max-stored)`,
    );
  }
}

/**
 * A request would create a queue past the master's most (`--max-queues`).
 * Empty, unused queues are forgotten to make room first, so this means that
 * many queues hold items, waiting gets or waiting puts.
 *
 * @example
 * ```ts
 * import { openLocalBroker } from "./local.ts";
 * import { TooManyQueuesError } from "./errors.ts";
 * const broker = await openLocalBroker({ maxQueues: 1 });
 * const session = await broker.open({ name: "producer", address: "" });
 * await session.put("a", [1]);
 * try {
 *   await session.put("b", [1]);
 * } catch (error) {
 *   console.log(error instanceof TooManyQueuesError); // true
 * }
 * await broker.close();
 * ```
 */
export class TooManyQueuesError extends TaskqError {
  /** The wire code front-ends reply with. */
  readonly code: ErrorCode = "too_many_queues";
  /** The queue that would have been created. */
  readonly queue: string;
  /** Creates the error for `queue`, past `limit` queues. */
  constructor(queue: string, limit: number) {
    super(
      `cannot create queue "${queue}": the master holds its most queues (${limit}) that are ` +
        `not empty or in use; drain some queues, or raise --max-queues`,
    );
    this.queue = queue;
  }
}

/**
 * The shared queue database (PostgreSQL) could not be reached, or went away
 * during the request: the request was not carried out (a put stored
 * nothing). The master keeps trying the database and serves again as soon
 * as it returns; retry. {@link unavailableCause} finds it under a
 * {@link NotSavedError}.
 *
 * @example
 * ```ts
 * import { DatabaseUnavailableError } from "./errors.ts";
 * const error = new DatabaseUnavailableError("postgres://taskq@db:5432/taskq", new Error("ECONNREFUSED"));
 * console.log(error.message);
 * // the queue database postgres://taskq@db:5432/taskq is unreachable (ECONNREFUSED); nothing was done: retry once it is back
 * ```
 */
export class DatabaseUnavailableError extends TaskqError {
  /**
   * The wire code front-ends answer with: the request was not carried out;
   * retry later (a connection being opened is refused with it: reconnect
   * later, or to another master).
   */
  readonly code: ErrorCode = "shutting_down";
  /** Creates the error for the database at `url` (without its password), failing with `cause`. */
  constructor(url: string, cause: unknown) {
    super(
      `the queue database ${url} is unreachable (${describeCause(cause)}); nothing was done: ` +
        `retry once it is back`,
      { cause },
    );
  }
}

/**
 * The {@link DatabaseUnavailableError} behind `error` (itself, or the cause
 * of a {@link NotSavedError}), if there is one.
 *
 * @example
 * ```ts
 * import { DatabaseUnavailableError, NotSavedError, unavailableCause } from "./errors.ts";
 * const down = new DatabaseUnavailableError("postgres://db/jobs", new Error("ECONNREFUSED"));
 * console.log(unavailableCause(new NotSavedError(down)) === down); // true
 * ```
 */
export function unavailableCause(error: unknown): DatabaseUnavailableError | undefined {
  if (error instanceof DatabaseUnavailableError) return error;
  const cause = (error as { cause?: unknown })?.cause;
  return cause instanceof DatabaseUnavailableError ? cause : undefined;
}

/** A short description of a database client's failure. */
function describeCause(cause: unknown): string {
  if (cause instanceof AggregateError && cause.errors.length > 0) {
    return describeCause(cause.errors[0]);
  }
  const error = cause as { message?: unknown; code?: unknown };
  const message = typeof error?.message === "string" && error.message !== ""
    ? error.message
    : typeof error?.code === "string"
    ? error.code
    : String(cause);
  return message;
}

/** `bytes` as mebibytes, for messages. */
function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
