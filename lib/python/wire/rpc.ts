/**
 * The request and reply messages of `multiprocessing.managers`, and Python's
 * argument binding.
 *
 * A request is the pickled tuple `(ident or None, method, args, kwargs)`; a
 * reply is `(kind, value)` where kind is `#RETURN` (the result), `#ERROR` (an
 * exception object the client raises as it is), `#TRACEBACK` (text the client
 * raises as `RemoteError`), `#PROXY` or `#UNSERIALIZABLE`.
 *
 * @module
 */

import { PyDict, pyException, PyObject, PyTuple, pyTypeName, type PyValue } from "./values.ts";
import { pickle } from "./pickle_writer.ts";
import { PickleError, PythonCallError } from "../errors.ts";

/** The kinds of reply. */
export type ReplyKind = "#RETURN" | "#ERROR" | "#TRACEBACK" | "#PROXY" | "#UNSERIALIZABLE";

const REPLY_KINDS: ReadonlySet<string> = new Set<ReplyKind>([
  "#RETURN",
  "#ERROR",
  "#TRACEBACK",
  "#PROXY",
  "#UNSERIALIZABLE",
]);

/** A decoded request. */
export interface PyRequest {
  /** The object called (`None` for the manager's own functions). */
  ident: string | null;
  /** The method or function name. */
  method: string;
  /** Positional arguments. */
  args: readonly PyValue[];
  /** Keyword arguments. */
  kwargs: PyDict;
}

/** A decoded reply. */
export interface PyReply {
  /** What kind of reply it is. */
  kind: ReplyKind;
  /** Its value. */
  value: PyValue;
}

/**
 * Reads a request tuple.
 * @throws {PickleError} when it is not `(str | None, str, tuple, dict)`.
 */
export function parseRequest(value: PyValue): PyRequest {
  if (!(value instanceof PyTuple) || value.items.length !== 4) {
    throw new PickleError(
      `a request must be the tuple (ident, method, args, kwargs), not ${pyTypeName(value)}`,
    );
  }
  const [ident, method, args, kwargs] = value.items;
  if (ident !== null && typeof ident !== "string") {
    throw new PickleError(`a request's ident must be str or None, not ${pyTypeName(ident)}`);
  }
  if (typeof method !== "string") {
    throw new PickleError(`a request's method must be str, not ${pyTypeName(method)}`);
  }
  if (!(args instanceof PyTuple) && !Array.isArray(args)) {
    throw new PickleError(`a request's args must be a tuple, not ${pyTypeName(args)}`);
  }
  if (!(kwargs instanceof PyDict) || kwargs.entries.some(([key]) => typeof key !== "string")) {
    throw new PickleError("a request's kwargs must be a dict with str keys");
  }
  return { ident, method, args: args instanceof PyTuple ? args.items : args, kwargs };
}

/** Pickles a request. */
export function encodeRequest(
  ident: string | null,
  method: string,
  args: readonly PyValue[] = [],
  kwargs: Record<string, PyValue> = {},
): Uint8Array {
  return pickle(
    new PyTuple([ident, method, new PyTuple(args), new PyDict(Object.entries(kwargs))]),
  );
}

/**
 * Reads a reply tuple.
 * @throws {PickleError} when it is not `(kind, value)` with a known kind.
 */
export function parseReply(value: PyValue): PyReply {
  if (
    !(value instanceof PyTuple) || value.items.length !== 2 || typeof value.items[0] !== "string" ||
    !REPLY_KINDS.has(value.items[0])
  ) {
    throw new PickleError(`a reply must be the tuple (kind, value), not ${pyTypeName(value)}`);
  }
  return { kind: value.items[0] as ReplyKind, value: value.items[1] };
}

/** Pickles a reply. */
export function encodeReply(kind: ReplyKind, value: PyValue): Uint8Array {
  return pickle(new PyTuple([kind, value]));
}

/** The `#ERROR` reply raising `error`'s exception in the peer (with no arguments when its message is empty). */
export function errorReply(error: PythonCallError): Uint8Array {
  const dot = error.exceptionType.lastIndexOf(".");
  const args: PyValue[] = error.message === "" ? [] : [error.message];
  return encodeReply(
    "#ERROR",
    pyException(error.exceptionType.slice(0, dot), error.exceptionType.slice(dot + 1), ...args),
  );
}

/** The first string argument of an exception object, for messages. */
export function exceptionText(value: PyValue): string {
  if (!(value instanceof PyObject)) return pyTypeName(value);
  const first = value.args[0];
  const name = value.cls.qualifiedName;
  return typeof first === "string" ? `${name}: ${first}` : name;
}

/** One parameter of a Python method: its name and default (`undefined`: required). */
export type Param = readonly [name: string, fallback?: PyValue];

/**
 * Binds positional and keyword arguments to `params` as Python does.
 * @throws {PythonCallError} (`TypeError`) for too many, missing, repeated or unknown arguments.
 */
export function bindArgs(
  method: string,
  params: readonly Param[],
  args: readonly PyValue[],
  kwargs: PyDict,
): Map<string, PyValue> {
  const typeError = (message: string) => new PythonCallError("builtins.TypeError", message);
  if (args.length > params.length) {
    throw typeError(
      `${method}() takes ${params.length + 1} positional arguments but ${args.length + 1} ` +
        `were given`,
    );
  }
  const bound = new Map<string, PyValue>();
  args.forEach((arg, i) => bound.set(params[i][0], arg));
  for (const [key, value] of kwargs.entries) {
    const name = key as string;
    if (!params.some(([param]) => param === name)) {
      throw typeError(`${method}() got an unexpected keyword argument '${name}'`);
    }
    if (bound.has(name)) throw typeError(`${method}() got multiple values for argument '${name}'`);
    bound.set(name, value);
  }
  for (const [name, fallback] of params) {
    if (bound.has(name)) continue;
    if (fallback === undefined) {
      throw typeError(`${method}() missing 1 required positional argument: '${name}'`);
    }
    bound.set(name, fallback);
  }
  return bound;
}
