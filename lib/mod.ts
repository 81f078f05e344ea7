/**
 * taskq: distributed task queues in one binary.
 *
 * The public API: {@link connect} to a master and use named queues,
 * {@link runWorker} to serve a queue with a handler, or {@link serve} to run
 * a master inside your own program (in memory or durable in SQLite). Python's
 * managers protocol is under the `./python` subpath, the HTTP side under
 * `./http`.
 *
 * Beyond put and get: a put may give a priority, a group and a unique key
 * ({@link PutOptions}); {@link Client.cancel} cancels items (a holder's
 * {@link LeasedJob.signal} aborts), {@link Client.job} looks one up,
 * {@link Client.limits} sets a queue's rate and concurrency limits, and
 * {@link LeasedJob.progress} reports a running job's progress.
 *
 * @example
 * ```ts
 * import { connect, serve } from "./mod.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const client = await connect({ address: master.address, authkey: "abc" });
 * await client.queue("tasks").put(7);
 * const job = await client.queue("tasks").get(1000);
 * console.log(job?.value); // 7
 * await client.queue("tasks").ack(job!);
 * await client.close();
 * await master.close();
 * ```
 *
 * @module
 */

export {
  type AckOptions,
  type CancelOutcome,
  Client,
  connect,
  type ConnectOptions,
  type ControlAction,
  DEFAULT_CONNECT_TIMEOUT_MS,
  type GetOptions,
  type HeldItemRecord,
  type ItemPage,
  type ItemsQuery,
  type Job,
  type JobRef,
  type LeasedJob,
  type ListedState,
  type NackOptions,
  type ProgressReport,
  type PutIds,
  type PutManyOptions,
  type PutOptions,
  Queue,
  type SessionRecord,
  type Stats,
} from "./client/client.ts";
export {
  DEFAULT_PRIORITY,
  type JobHolder,
  type JobInfo,
  type JobProgress,
  type JobState,
  type LimitChanges,
  MAX_GROUP_LENGTH,
  MAX_KEY_LENGTH,
  MAX_PRIORITY,
  MAX_PROGRESS_MESSAGE,
  MIN_PRIORITY,
  type NamedQueueLimits,
  type QueueLimits,
} from "./model/jobs.ts";
export {
  DEFAULT_GRACE_MS,
  type Handler,
  runWorker,
  type WorkerOptions,
  type WorkerSummary,
} from "./worker/worker.ts";
export {
  checkListenAddress,
  Master,
  type MasterOptions,
  type PostgresChoice,
  serve,
} from "./server/master.ts";
export { type TlsClientOptions, TlsHandshakeError, type TlsServerOptions } from "./wire/tls.ts";
export { makeTlsMaterial, type TlsMaterial, type TlsMaterialOptions } from "./cli/tls.ts";
export {
  type ItemBatch,
  type LoadedState,
  type RareFields,
  type Store,
  type StoreChoice,
  type StoredCounters,
  type StoredItem,
} from "./broker/local.ts";
export type { FrontEnd, FrontEndFactory, HostContext } from "./server/front_end.ts";
export {
  type AuthRefusal,
  AuthThrottle,
  type AuthThrottleOptions,
} from "./server/auth_throttle.ts";
export type {
  AckResults,
  Broker,
  BrokerSession,
  BrokerSettings,
  BrokerStats,
  CancelOutcome as BrokerCancelOutcome,
  Delivery,
  GetOptions as BrokerGetOptions,
  HeldItem,
  JobOptions,
  MemoryStats,
  PeekedItem,
  ProgressReport as BrokerProgressReport,
  PutIds as BrokerPutIds,
  PutOptions as BrokerPutOptions,
  SessionInfo,
  SessionView,
} from "./broker/broker.ts";
export { Histogram, Telemetry } from "./broker/telemetry.ts";
export { ByteBudget } from "./util/memory.ts";
export {
  BrokerClosedError,
  DatabaseUnavailableError,
  NotSavedError,
  QueueFullError,
  SessionClosedError,
} from "./broker/errors.ts";
export {
  AuthenticationError,
  ConfigError,
  ConnectionLostError,
  ERROR_CODE_TABLE,
  type ErrorCode,
  FrameTooLargeError,
  JobCancelledError,
  LeaseLostError,
  ProtocolError,
  RemoteError,
  TaskqError,
  UnsupportedError,
} from "./errors.ts";
export { type Address, type AuthKeySource, loadAuthKey, parseAddress } from "./config.ts";
export {
  createLogger,
  type LogFields,
  type LogFormat,
  type Logger,
  type LoggerOptions,
  type LogLevel,
} from "./log.ts";
export {
  type DeadLetter,
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_ATTEMPTS,
  type QueueStats,
  type RetryPolicy,
} from "./model/types.ts";
export { DEAD_LETTER_SUFFIX, deadLetterQueue, MAX_QUEUE_NAME_LENGTH } from "./model/queue_names.ts";
export { MAX_ITEM_DEPTH, MAX_VALUE_DEPTH } from "./model/codec.ts";
