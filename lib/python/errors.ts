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
 *
 * @example
 * ```ts
 * import { PickleError } from "./errors.ts";
 * import { unpickle } from "./wire/pickle_reader.ts";
 * // pickle.dumps(os.system, protocol=2): a global outside the allow-list.
 * const bytes = Uint8Array.from("\x80\x02cos\nsystem\n.", (c) => c.charCodeAt(0));
 * try {
 *   unpickle(bytes);
 * } catch (error) {
 *   console.log(error instanceof PickleError); // true: "refused to load os.system: ..."
 * }
 * ```
 */
export class PickleError extends ProtocolError {}

/**
 * A Python `multiprocessing.managers` peer answered a request with an error.
 *
 * @example
 * ```ts
 * import { PythonRemoteError } from "./errors.ts";
 * import { serve } from "../server/master.ts";
 * import { pythonFrontEnd } from "./frontend.ts";
 * import { PythonManagerClient } from "./client.ts";
 * const master = await serve({
 *   listen: "127.0.0.1:0",
 *   authkey: "secret",
 *   frontEnds: [pythonFrontEnd({ listen: "127.0.0.1:0" })],
 * });
 * const address = master.frontEnds[0].address;
 * const manager = new PythonManagerClient({ address, authkey: "secret" });
 * try {
 *   await manager.create("get_no_such_queue");
 * } catch (error) {
 *   // An unknown registered name: the manager answers with a traceback.
 *   if (!(error instanceof PythonRemoteError)) throw error;
 *   console.log(error.kind); // #TRACEBACK
 * }
 * await master.close();
 * ```
 */
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
 *
 * @example
 * ```ts
 * import { PythonCallError } from "./errors.ts";
 * // What the front-end raises in a Python peer that calls `queue.get(timeout=-1)`.
 * const message = "'timeout' must be a non-negative number";
 * const error = new PythonCallError("builtins.ValueError", message);
 * console.log(error.exceptionType); // builtins.ValueError
 * ```
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
