/**
 * The listener of the master's Python front-end (`taskq master --python`):
 * accepts TCP connections from Python `multiprocessing.managers` clients and
 * runs a {@link PythonSession} on each, over the master's engine, so Python
 * workers and producers share queues with native clients.
 *
 * Registered names map to queues ({@link DEFAULT_PYTHON_QUEUES} unless
 * configured). As with the native listener (and by the same {@link Acceptor}),
 * connections still in the handshake are capped and the oldest is dropped to
 * make room.
 *
 * @module
 */

import type { Engine } from "../engine/engine.ts";
import { PythonConnection } from "./wire/connection.ts";
import { type ChallengeStyle, DEFAULT_CHALLENGE_STYLE } from "./wire/handshake.ts";
import { PythonSession, type PythonSessionContext } from "./session.ts";
import { type Address, formatAddress } from "../config.ts";
import { checkQueueName } from "../wire/messages.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/frame.ts";
import { ConfigError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { Acceptor } from "../server/acceptor.ts";
import {
  checkListenAddress,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_PENDING_HANDSHAKES,
} from "../server/master.ts";

/**
 * The names Python workers register and the queues they stand for, by
 * default: the seed's `get_task_queue` and `get_result_queue` are the queues
 * `tasks` and `results`, as `taskq put --queue tasks` and
 * `taskq worker --queue tasks --results results` use them.
 */
export const DEFAULT_PYTHON_QUEUES: Readonly<Record<string, string>> = {
  get_task_queue: "tasks",
  get_result_queue: "results",
};

/** Longest registered name accepted in a mapping. */
const MAX_REGISTERED_NAME_LENGTH = 200;

/** Options of {@link servePython}. */
export interface PythonServeOptions {
  /** The engine whose queues are served (the master's). */
  engine: Engine;
  /** Called after every engine operation (the master re-arms its timer). */
  afterChange: () => void;
  /** `HOST:PORT` or an address to listen on; port 0 picks a free port. */
  listen: string | Address;
  /** The shared key (text is taken as UTF-8); may be omitted only on loopback. */
  authkey?: Uint8Array | string;
  /** Registered names and their queues; merged over {@link DEFAULT_PYTHON_QUEUES}. */
  queues?: Readonly<Record<string, string>>;
  /** The challenge this side sends (Python accepts both); modern by default. */
  challenge?: ChallengeStyle;
  /** Largest message accepted after the handshake. */
  maxFrameBytes?: number;
  /** Time allowed to complete the handshake. */
  handshakeTimeoutMs?: number;
  /** Connections allowed mid-handshake at once. */
  maxPendingHandshakes?: number;
  /** Where events are logged; nowhere by default. */
  logger?: Logger;
}

/**
 * Checks a mapping of registered names to queues (merged over the defaults).
 * @throws {ConfigError} on an empty or overlong name or an invalid queue name.
 */
export function pythonQueueMap(queues: Readonly<Record<string, string>> = {}): Map<string, string> {
  const map = new Map<string, string>(Object.entries(DEFAULT_PYTHON_QUEUES));
  for (const [name, queue] of Object.entries(queues)) {
    if (name.length === 0 || name.length > MAX_REGISTERED_NAME_LENGTH) {
      throw new ConfigError(
        `a registered name must be 1 to ${MAX_REGISTERED_NAME_LENGTH} characters, not "${name}"`,
      );
    }
    try {
      map.set(name, checkQueueName(queue));
    } catch (cause) {
      throw new ConfigError(`bad queue for "${name}": ${(cause as Error).message}`, { cause });
    }
  }
  return map;
}

/** A running Python front-end. */
export class PythonFrontEnd {
  /** The address it listens on (with the real port when 0 was asked). */
  readonly address: Address;
  /** Registered names and their queues. */
  readonly queues: ReadonlyMap<string, string>;
  readonly #ctx: PythonSessionContext;
  readonly #log: Logger;
  readonly #acceptor: Acceptor<PythonSession>;
  #closing: Promise<void> | undefined;

  /** Starts serving on an open listener; use {@link servePython}. */
  constructor(listener: Deno.TcpListener, key: Uint8Array, options: PythonServeOptions) {
    const addr = listener.addr;
    this.address = { hostname: addr.hostname, port: addr.port };
    this.#log = options.logger ?? silentLogger;
    this.queues = pythonQueueMap(options.queues);
    this.#ctx = {
      engine: options.engine,
      key,
      maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      challenge: options.challenge ?? DEFAULT_CHALLENGE_STYLE,
      queues: this.queues,
      log: this.#log,
      afterChange: options.afterChange,
      onAuthenticated: (session) => this.#acceptor.authenticated(session),
    };
    this.#acceptor = new Acceptor({
      listener,
      log: this.#log,
      maxPending: options.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES,
      kind: "Python connections",
      // A worker machine that vanishes without a FIN is noticed eventually.
      keepAlive: true,
      open: (conn) => new PythonSession(new PythonConnection(conn), this.#ctx),
      drop: (session) => session.close(),
    });
  }

  /** Number of open connections (authenticated or not). */
  get connectionCount(): number {
    return this.#acceptor.sessions.size;
  }

  /** Stops accepting and closes every connection (their items go back). Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#acceptor.close();
      const sessions = this.#acceptor.sessions;
      const running = [...sessions.values()];
      for (const session of sessions.keys()) session.close();
      await Promise.all(running);
    })();
    return this.#closing;
  }
}

/**
 * Starts a Python front-end over `options.engine`.
 * @throws {ConfigError} when asked to listen beyond loopback without a key,
 *   when the mapping is invalid, or when the address is in use or unusable.
 */
// deno-lint-ignore require-await
export async function servePython(options: PythonServeOptions): Promise<PythonFrontEnd> {
  const address = checkListenAddress(options.listen, options.authkey);
  pythonQueueMap(options.queues);
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: address.hostname, port: address.port, transport: "tcp" });
  } catch (cause) {
    throw new ConfigError(
      `cannot listen for Python on ${formatAddress(address)}: ${(cause as Error).message}`,
      { cause },
    );
  }
  const key = typeof options.authkey === "string"
    ? new TextEncoder().encode(options.authkey)
    : options.authkey ?? new Uint8Array(0);
  return new PythonFrontEnd(listener, key, options);
}
