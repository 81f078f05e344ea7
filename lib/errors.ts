/**
 * The named error classes taskq throws.
 *
 * Every error a user can meet is one of these, so callers can branch on
 * `instanceof` and every message says what went wrong and what to do about it.
 *
 * @module
 */

/** Process exit code of a command that fails with a plain {@link TaskqError}. */
export const EXIT_FAILURE = 1;

/** Exit code for a usage or configuration error. */
export const EXIT_USAGE = 2;

/** Exit code when the master's data directory cannot be used. */
export const EXIT_DATA = 3;

/** Base class of every error taskq throws on purpose. */
export class TaskqError extends Error {
  /** Exit code a command uses when it stops because of this error. */
  readonly exitCode: number = EXIT_FAILURE;

  /** Creates an error with the given message. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The peer sent bytes that are not a valid taskq message (bad frame, bad msgpack, bad fields). */
export class ProtocolError extends TaskqError {
  /** Machine-readable reason, as sent on the wire in `error` replies. */
  readonly code: ErrorCode;
  /** Creates a protocol error with a wire code. */
  constructor(message: string, code: ErrorCode = "bad_request", options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** A frame's length prefix is larger than the configured maximum frame size. */
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

/** The handshake failed: wrong key, an impostor master, or an incompatible version. */
export class AuthenticationError extends TaskqError {}

/** The connection to the peer closed or broke while a request was outstanding. */
export class ConnectionLostError extends TaskqError {}

/** The master answered a request with an error reply. */
export class RemoteError extends TaskqError {
  /** Machine-readable reason sent by the master. */
  readonly code: ErrorCode;
  /** Creates the error from an `error` reply. */
  constructor(code: ErrorCode, message: string) {
    super(`master refused the request: ${message} (${code})`);
    this.code = code;
  }
}

/** An ack, nack or extend named an item whose lease this client no longer holds. */
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

/** A configuration value (address, key file, flag) is unusable. */
export class ConfigError extends TaskqError {
  /** Usage errors exit with {@link EXIT_USAGE}. */
  override readonly exitCode: number = EXIT_USAGE;
}

/** The wire codes carried by `error` messages. */
export type ErrorCode =
  | "bad_request"
  | "frame_too_large"
  | "unsupported_version"
  | "auth_failed"
  | "too_many_connections"
  | "shutting_down"
  | "internal";

/** All wire error codes, for validating a received `error` message. */
export const ERROR_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  "bad_request",
  "frame_too_large",
  "unsupported_version",
  "auth_failed",
  "too_many_connections",
  "shutting_down",
  "internal",
]);

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
