/**
 * The errors of the worker side: what running the work for an item can fail
 * with. Losing a lease (`LeaseLostError`) or the connection
 * (`ConnectionLostError`) is shared with the client, in lib/errors.ts.
 *
 * @module
 */

import { ConfigError, TaskqError } from "../errors.ts";

/** The command run for an item failed: non-zero exit, signal, timeout, or it could not start. */
export class CommandFailedError extends TaskqError {}

/**
 * A command printed more on its standard output than a result may hold (the
 * master's frame limit): its item fails with this error; the worker goes on.
 *
 * @example
 * ```ts
 * import { OutputTooLargeError } from "./errors.ts";
 * const error = new OutputTooLargeError(20_000_000, 16_777_216);
 * console.log(error.message.startsWith("command printed 20000000 bytes")); // true
 * ```
 */
export class OutputTooLargeError extends CommandFailedError {
  /** Bytes the command printed. */
  readonly bytes: number;
  /** Most bytes a result may hold. */
  readonly limit: number;
  /** The error for `bytes` printed when `limit` are allowed. */
  constructor(bytes: number, limit: number) {
    super(
      `command printed ${bytes} bytes on stdout, more than the ${limit} bytes a result may ` +
        `hold (the master's frame limit); write large output to shared storage and print its path`,
    );
    this.bytes = bytes;
    this.limit = limit;
  }
}

/**
 * A finished item's result (the command's output) could not be sent: it does
 * not fit in one frame to the master. Its item fails with this error.
 *
 * @example
 * ```ts
 * import { ResultTooLargeError } from "./errors.ts";
 * const error = new ResultTooLargeError(17_000_000, 16_777_216);
 * console.log(error.message.startsWith("its result takes 17000000 bytes")); // true
 * ```
 */
export class ResultTooLargeError extends CommandFailedError {
  /** The constructor's arguments: the frame's size and the limit, in bytes. */
  constructor(bytes: number, limit: number) {
    super(
      `its result takes ${bytes} bytes, more than the master's frame limit of ${limit} bytes; ` +
        `write large output to shared storage and return its path`,
    );
  }
}

/**
 * The command a worker is to run cannot be found or is not executable: the
 * worker refuses to start (exit code 2) rather than fail every item.
 *
 * @example
 * ```ts
 * import { CommandNotFoundError } from "./errors.ts";
 * console.log(new CommandNotFoundError('command "x" not found on PATH').exitCode); // 2
 * ```
 */
export class CommandNotFoundError extends ConfigError {}
