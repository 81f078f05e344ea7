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
  shutting_down: "the master is stopping; reconnect later",
  internal: "the master failed while handling a request, or could not save its change",
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
