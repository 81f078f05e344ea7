/**
 * The named error classes taskq throws.
 *
 * The base class and the errors every layer shares. Each layer with errors of
 * its own exports them from one module next to its code: lib/broker/errors.ts
 * (the broker's refusals), lib/store/errors.ts (the data directory),
 * lib/worker/errors.ts (commands run for items) and lib/python/errors.ts (the
 * Python managers protocol, imported only by lib/python). Every error a user can
 * meet is one of these classes, so callers can branch on `instanceof`, and every
 * message says what went wrong and what to do about it.
 *
 * {@link ProtocolError} means only that a peer sent bad bytes. A caller's own
 * bad argument (a queue name, a count, a duration, an item that is not plain
 * data) is a `TypeError` (wrong type) or `RangeError` (out of range), thrown
 * before anything is sent.
 *
 * @module
 */

/** Process exit code of a command that fails with a plain {@link TaskqError}. */
export const EXIT_FAILURE = 1;

/** Exit code for a usage or configuration error. */
export const EXIT_USAGE = 2;

/** Exit code when the master's data directory cannot be used. */
export const EXIT_DATA = 3;

/**
 * Base class of every error taskq throws on purpose.
 *
 * @example
 * ```ts
 * import { TaskqError } from "./errors.ts";
 * import { parseAddress } from "./config.ts";
 * try {
 *   parseAddress("no port");
 * } catch (error) {
 *   if (!(error instanceof TaskqError)) throw error; // a bug, not a refusal
 *   console.log(error.name, error.exitCode); // ConfigError 2
 * }
 * ```
 */
export class TaskqError extends Error {
  /** Exit code a command uses when it stops because of this error. */
  readonly exitCode: number = EXIT_FAILURE;

  /** Creates an error with the given message. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * The peer sent bytes that are not a valid taskq message (bad frame, bad msgpack, bad fields).
 *
 * @example
 * ```ts
 * import { ProtocolError } from "./errors.ts";
 * const error = new ProtocolError('a "get" needs a queue name');
 * console.log(error.code); // bad_request
 * ```
 */
export class ProtocolError extends TaskqError {
  /** Machine-readable reason, as sent on the wire in `error` replies. */
  readonly code: ErrorCode;
  /** Creates a protocol error with a wire code. */
  constructor(message: string, code: ErrorCode = "bad_request", options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/**
 * A frame's length prefix is larger than the configured maximum frame size.
 *
 * @example
 * ```ts
 * import { FrameTooLargeError, ProtocolError } from "./errors.ts";
 * const error = new FrameTooLargeError(32_000_000, 16_777_216);
 * console.log(error instanceof ProtocolError, error.code); // true frame_too_large
 * ```
 */
export class FrameTooLargeError extends ProtocolError {
  /** The length the prefix announced. */
  readonly length: number;
  /** The configured maximum. */
  readonly max: number;
  /** Creates the error for a frame of `length` bytes when `max` is allowed. */
  constructor(length: number, max: number) {
    super(
      `frame of ${length} bytes is larger than the maximum of ${max} bytes ` +
        `(send smaller items, e.g. a path on shared storage, or raise --max-frame)`,
      "frame_too_large",
    );
    this.length = length;
    this.max = max;
  }
}

/**
 * The handshake failed: wrong key, an impostor master, or an incompatible version.
 *
 * @example
 * ```ts
 * import { AuthenticationError } from "./errors.ts";
 * import { serve } from "./server/master.ts";
 * import { connect } from "./client/client.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "right" });
 * try {
 *   await connect({ address: master.address, authkey: "wrong" });
 * } catch (error) {
 *   console.log(error instanceof AuthenticationError); // true
 * }
 * await master.close();
 * ```
 */
export class AuthenticationError extends TaskqError {}

/**
 * The connection to the peer closed or broke while a request was outstanding.
 *
 * @example
 * ```ts
 * import { ConnectionLostError } from "./errors.ts";
 * import { serve } from "./server/master.ts";
 * import { connect } from "./client/client.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const client = await connect({ address: master.address, authkey: "abc" });
 * await client.close();
 * try {
 *   await client.queue("tasks").put(1);
 * } catch (error) {
 *   console.log(error instanceof ConnectionLostError); // true
 * }
 * await master.close();
 * ```
 */
export class ConnectionLostError extends TaskqError {}

/**
 * The master answered a request with an error reply.
 *
 * @example
 * ```ts
 * import { RemoteError } from "./errors.ts";
 * const error = new RemoteError("internal", "could not save the change");
 * console.log(error.code); // internal
 * console.log(error.message); // master refused the request: could not save the change (internal)
 * ```
 */
export class RemoteError extends TaskqError {
  /** Machine-readable reason sent by the master. */
  readonly code: ErrorCode;
  /** Creates the error from an `error` reply. */
  constructor(code: ErrorCode, message: string) {
    super(`master refused the request: ${message} (${code})`);
    this.code = code;
  }
}

/**
 * An ack, nack or extend named an item whose lease this client no longer holds.
 *
 * @example
 * ```ts
 * import { LeaseLostError } from "./errors.ts";
 * import { serve } from "./server/master.ts";
 * import { connect } from "./client/client.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "abc" });
 * const client = await connect({ address: master.address, authkey: "abc" });
 * const tasks = client.queue("tasks");
 * await tasks.put("x");
 * const job = (await tasks.get(1000))!;
 * await tasks.ack(job);
 * try {
 *   await tasks.ack(job); // settled already
 * } catch (error) {
 *   console.log(error instanceof LeaseLostError, (error as LeaseLostError).ids); // true [ 1 ]
 * }
 * await client.close();
 * await master.close();
 * ```
 */
export class LeaseLostError extends TaskqError {
  /** The ids whose leases were lost (expired, or the item was already settled). */
  readonly ids: readonly number[];
  /** Creates the error for the given ids. */
  constructor(ids: readonly number[]) {
    super(
      `lease lost for item${ids.length === 1 ? "" : "s"} ${ids.join(", ")}: ` +
        `it expired or was settled already, and the item was (or will be) served again; ` +
        `extend leases of long-running work before they run out`,
    );
    this.ids = ids;
  }
}

/**
 * A held item was cancelled (`taskq cancel`, `Client.cancel`): its lease is
 * revoked, so the work on it should stop; it is never served again. The
 * reason of a job's `signal` once the master says so.
 *
 * @example
 * ```ts
 * import { JobCancelledError } from "./errors.ts";
 * const error = new JobCancelledError(42);
 * console.log(error.id, error.message.startsWith("item 42 was cancelled")); // 42 true
 * ```
 */
export class JobCancelledError extends TaskqError {
  /** The cancelled item's id. */
  readonly id: number;
  /** Creates the error for item `id`. */
  constructor(id: number) {
    super(
      `item ${id} was cancelled: its lease is revoked and it will not be served again; ` +
        `stop working on it`,
    );
    this.id = id;
  }
}

/**
 * The connected master speaks an older protocol version that lacks what was
 * asked for (a cancel, a job lookup, limits, progress, or a put with a
 * priority, group or unique key): upgrade the master.
 *
 * @example
 * ```ts
 * import { UnsupportedError } from "./errors.ts";
 * const error = new UnsupportedError("cancel", 1, 2, "0.2");
 * console.log(error.message);
 * // the master speaks protocol 1; cancel needs a master of taskq 0.2 or later
 * ```
 */
export class UnsupportedError extends TaskqError {
  /** What was asked for. */
  readonly feature: string;
  /** The protocol version the connection speaks. */
  readonly version: number;
  /** The protocol version the feature needs. */
  readonly needs: number;
  /** Creates the error for `feature`, needing protocol `needs` (taskq `release`), on `version`. */
  constructor(feature: string, version: number, needs: number, release: string) {
    super(
      `the master speaks protocol ${version}; ${feature} needs a master of taskq ${release} ` +
        `or later`,
    );
    this.feature = feature;
    this.version = version;
    this.needs = needs;
  }
}

/**
 * A configuration value (address, key file, flag) is unusable.
 *
 * @example
 * ```ts
 * import { ConfigError } from "./errors.ts";
 * import { loadAuthKey } from "./config.ts";
 * try {
 *   loadAuthKey({ authkeyFile: "/no/such/key/file" });
 * } catch (error) {
 *   console.log(error instanceof ConfigError, (error as ConfigError).exitCode); // true 2
 * }
 * ```
 */
export class ConfigError extends TaskqError {
  /** Usage errors exit with {@link EXIT_USAGE}. */
  override readonly exitCode: number = EXIT_USAGE;
}

/**
 * The wire codes carried by `error` messages, each with what it means: the one
 * list both {@link ErrorCode} and {@link ERROR_CODES} come from (docs/PROTOCOL.md
 * §9 lists the same codes).
 */
export const ERROR_CODE_TABLE = {
  bad_request: "the peer sent a frame that is not a valid message, or one not allowed now",
  frame_too_large: "a frame's length prefix exceeds the receiver's maximum frame size",
  unsupported_version: "the peer speaks another protocol version",
  auth_failed: "the key's proof was wrong, or the handshake did not finish in time",
  too_many_connections: "the connection was evicted from a full handshake queue",
  shutting_down:
    "the master is stopping, or cannot reach its database; reconnect later (or to another master)",
  internal: "the master failed while handling a request, or could not save its change",
  memory_full:
    "the master is near its memory budget (--max-memory): the put stored nothing; retry later",
  too_many_queues:
    "the master holds its most queues (--max-queues): the request would create one more",
} as const;

/** The wire codes carried by `error` messages (the keys of {@link ERROR_CODE_TABLE}). */
export type ErrorCode = keyof typeof ERROR_CODE_TABLE;

/** All wire error codes, for validating a received `error` message. */
export const ERROR_CODES: ReadonlySet<string> = new Set<ErrorCode>(
  Object.keys(ERROR_CODE_TABLE) as ErrorCode[],
);

/** Whether `value` is one of the wire error codes. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && ERROR_CODES.has(value);
}
