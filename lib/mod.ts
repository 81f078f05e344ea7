/**
 * taskq: distributed task queues in one binary.
 *
 * The public API: {@link connect} to a master and use named queues, or
 * {@link serve} to run a master inside your own program.
 *
 * @example
 * ```ts
 * import { connect } from "./lib/mod.ts";
 * const client = await connect({ address: "127.0.0.1:5000", authkey: "abc" });
 * const job = await client.queue("tasks").get(1000);
 * ```
 *
 * @module
 */

export {
  type AckOptions,
  Client,
  connect,
  type ConnectOptions,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type GetOptions,
  type Job,
  type NackOptions,
  type PutOptions,
  Queue,
  type Stats,
} from "./client/client.ts";
export { Master, type MasterOptions, serve } from "./server/master.ts";
export { type HttpOptions, HttpServer, serveHttp } from "./http/server.ts";
export { httpToken } from "./http/token.ts";
export type { QueueStats } from "./wire/messages.ts";
export {
  AuthenticationError,
  ConfigError,
  ConnectionLostError,
  type ErrorCode,
  FrameTooLargeError,
  LeaseLostError,
  ProtocolError,
  RemoteError,
  TaskqError,
} from "./errors.ts";
export { type Address, loadAuthKey, parseAddress } from "./config.ts";
export { DEFAULT_LEASE_MS } from "./engine/engine.ts";
export { type DeadLetter, DEFAULT_MAX_ATTEMPTS, type RetryPolicy } from "./engine/engine.ts";
export { DEAD_LETTER_SUFFIX, deadLetterQueue, MAX_QUEUE_NAME_LENGTH } from "./model/queue_names.ts";
export {
  DEFAULT_PYTHON_QUEUES,
  PythonFrontEnd,
  type PythonServeOptions,
  servePython,
} from "./python/frontend.ts";
export { PythonManagerClient, type PythonManagerOptions } from "./python/client.ts";
export {
  type PythonHandler,
  type PythonWorkerOptions,
  type PythonWorkerSummary,
  runPythonWorker,
} from "./python/worker.ts";
export { PickleError, PythonCallError, PythonRemoteError } from "./errors.ts";
export { MAX_ITEM_DEPTH, MAX_VALUE_DEPTH } from "./model/codec.ts";
