/**
 * The errors of the Python `multiprocessing.managers` protocol adapter.
 *
 * Only lib/python (and its tests) imports this module: the core never depends
 * on the Python adapter. The base classes come from lib/errors.ts.
 *
 * @module
 */

import { ProtocolError, TaskqError } from "../errors.ts";

/**
 * A pickle from a Python peer that taskq cannot read or refuses to load: it is
 * malformed, too large or too deep, or it names a global (a class or function)
 * outside the short allow-list of exception and token classes the protocol
 * needs. Nothing it names is ever imported or called.
 */
export class PickleError extends ProtocolError {}

/** A Python `multiprocessing.managers` peer answered a request with an error. */
export class PythonRemoteError extends TaskqError {
  /** The reply kind: `#ERROR` (an exception object), `#TRACEBACK` (text) or another. */
  readonly kind: string;
  /** For `#ERROR`: the exception's class as `module.name` (e.g. `_queue.Empty`). */
  readonly exceptionType: string | undefined;
  /** Creates the error for a reply of `kind`. */
  constructor(kind: string, message: string, exceptionType?: string) {
    super(message);
    this.kind = kind;
    this.exceptionType = exceptionType;
  }
}

/**
 * A value or call from a Python peer that is refused the way Python itself
 * would refuse it: the peer gets this exception (e.g. `builtins.TypeError`)
 * raised, and the connection stays usable.
 */
export class PythonCallError extends TaskqError {
  /** The exception class to raise in the peer, as `module.name`. */
  readonly exceptionType: string;
  /** Creates the error raising `exceptionType(message)` in the peer. */
  constructor(exceptionType: string, message: string) {
    super(message);
    this.exceptionType = exceptionType;
  }
}
