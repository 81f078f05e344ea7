/**
 * The errors of the worker side: what running the work for an item can fail
 * with. Losing a lease (`LeaseLostError`) or the connection
 * (`ConnectionLostError`) is shared with the client, in lib/errors.ts.
 *
 * @module
 */

import { TaskqError } from "../errors.ts";

/** The command run for an item failed: non-zero exit, signal, timeout, or it could not start. */
export class CommandFailedError extends TaskqError {}
