/**
 * Python's `multiprocessing.managers` protocol, as the `./python` subpath of
 * taskq: a front-end that serves a master's queues to unmodified Python
 * `BaseManager` programs, a client of Python masters, and a worker loop that
 * serves one. The core never imports this folder.
 *
 * @example
 * ```ts
 * import { serve } from "../mod.ts";
 * import { pythonFrontEnd } from "./mod.ts";
 * const master = await serve({
 *   listen: "127.0.0.1:0",
 *   authkey: "abc",
 *   frontEnds: [pythonFrontEnd({ listen: "127.0.0.1:0" })],
 * });
 * console.log(master.frontEnds[0].banner);
 * await master.close();
 * ```
 *
 * @module
 */

export {
  DEFAULT_PYTHON_QUEUES,
  PythonFrontEnd,
  pythonFrontEnd,
  type PythonServeOptions,
} from "./frontend.ts";
export {
  PythonCallConnection,
  PythonManagerClient,
  type PythonManagerOptions,
  type RemoteObject,
} from "./client.ts";
export type { ChallengeStyle } from "./wire/handshake.ts";
export {
  type PyBuild,
  PyDict,
  PyFloat,
  PyGlobal,
  PyObject,
  PySet,
  PyTuple,
  type PyValue,
} from "./wire/values.ts";
export { PythonConnection } from "./wire/connection.ts";
export {
  type PythonHandler,
  type PythonWorkerOptions,
  type PythonWorkerSummary,
  runPythonWorker,
} from "./worker.ts";
export { PickleError, PythonCallError, PythonRemoteError } from "./errors.ts";
