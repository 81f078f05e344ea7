/**
 * The errors of the durable store: why a master's data directory cannot be
 * used. Each exits a command with {@link EXIT_DATA}.
 *
 * @module
 */

import { EXIT_DATA, TaskqError } from "../errors.ts";

/** Why the data directory cannot be used. */
export class StoreError extends TaskqError {
  /** Data-directory errors exit with {@link EXIT_DATA}. */
  override readonly exitCode: number = EXIT_DATA;
}

/** Another running master holds the data directory. */
export class StoreLockedError extends StoreError {}

/**
 * The data directory's database is damaged or not a taskq database: a file
 * that is not SQLite, another program's database, damaged pages, a file
 * emptied to 0 bytes, or a stored item that cannot be decoded.
 */
export class StoreCorruptError extends StoreError {}

/** The data directory was written by a newer taskq. */
export class StoreVersionError extends StoreError {}
