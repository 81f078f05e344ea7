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

import { TaskqError } from "../errors.ts";

/** A put found its queue full and could not wait (or waited as long as it was allowed). */
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

/** A call was made on (or was waiting in) a session that has closed. */
export class SessionClosedError extends TaskqError {
  /** Creates the error. */
  constructor() {
    super("the session closed before the call completed (the connection went away)");
  }
}

/** A change could not be made durable: it was not stored, and a retry may add it again. */
export class NotSavedError extends TaskqError {
  /** Creates the error from the store's failure. */
  constructor(cause: unknown) {
    super(`not saved: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

/** The broker has closed: the master is shutting down. */
export class BrokerClosedError extends TaskqError {
  /** Creates the error. */
  constructor() {
    super("the master is shutting down; reconnect later");
  }
}
