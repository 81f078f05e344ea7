/**
 * The listener of the master's Python front-end (`taskq master --python`):
 * accepts TCP connections from Python `multiprocessing.managers` clients and
 * runs a {@link PythonSession} on each, over the master's broker, so Python
 * workers and producers share queues with native clients. Given to the
 * master host as {@link pythonFrontEnd}.
 *
 * Registered names map to queues ({@link DEFAULT_PYTHON_QUEUES} unless
 * configured). As with the native listener (and by the same {@link Acceptor}),
 * connections still in the handshake are capped and the oldest is dropped to
 * make room.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { pythonFrontEnd } from "./frontend.ts";
 * const master = await serve({
 *   listen: "127.0.0.1:0",
 *   authkey: "secret",
 *   frontEnds: [pythonFrontEnd({ listen: "127.0.0.1:0" })],
 * });
 * console.log(master.frontEnds[0].banner);
 * await master.close();
 * ```
 *
 * @module
 */

import { PythonConnection } from "./wire/connection.ts";
import { type ChallengeStyle, DEFAULT_CHALLENGE_STYLE } from "./wire/handshake.ts";
import { PythonSession, type PythonSessionContext } from "./session.ts";
import { type Address, formatAddress } from "../config.ts";
import { checkQueueName } from "../wire/messages.ts";
import { ConfigError } from "../errors.ts";
import { Acceptor } from "../server/acceptor.ts";
import { listenTcp, type StreamListener } from "../wire/stream.ts";
import { checkListenAddress } from "../server/master.ts";
import type { FrontEnd, FrontEndFactory, HostContext } from "../server/front_end.ts";

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

/** Options of {@link pythonFrontEnd}. */
export interface PythonServeOptions {
  /** `HOST:PORT` or an address to listen on; port 0 picks a free port. */
  listen: string | Address;
  /** Registered names and their queues; merged over {@link DEFAULT_PYTHON_QUEUES}. */
  queues?: Readonly<Record<string, string>>;
  /** The challenge this side sends (Python accepts both); modern by default. */
  challenge?: ChallengeStyle;
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

/**
 * A running Python front-end.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { PythonFrontEnd, pythonFrontEnd } from "./frontend.ts";
 * const master = await serve({
 *   listen: "127.0.0.1:0",
 *   authkey: "secret",
 *   frontEnds: [pythonFrontEnd({ listen: "127.0.0.1:0", queues: { get_jobs: "jobs" } })],
 * });
 * const python = master.frontEnds[0];
 * if (python instanceof PythonFrontEnd) {
 *   console.log(python.queues.get("get_jobs"), python.queues.get("get_task_queue")); // jobs tasks
 *   console.log(python.connectionCount); // 0
 * }
 * await master.close();
 * ```
 */
export class PythonFrontEnd implements FrontEnd {
  /** It serves Python's managers protocol. */
  readonly name = "python";
  /** The address it listens on (with the real port when 0 was asked). */
  readonly address: string;
  /** The line printed once it is ready. */
  readonly banner: string;
  /** Registered names and their queues. */
  readonly queues: ReadonlyMap<string, string>;
  readonly #ctx: PythonSessionContext;
  readonly #acceptor: Acceptor<PythonSession>;
  #closing: Promise<void> | undefined;

  /** Starts serving on an open listener; use {@link pythonFrontEnd}. */
  constructor(listener: StreamListener, host: HostContext, options: PythonServeOptions) {
    const addr = listener.addr;
    this.address = formatAddress({ hostname: addr.hostname, port: addr.port });
    this.banner = `taskq master serving Python on ${this.address}`;
    this.queues = pythonQueueMap(options.queues);
    this.#ctx = {
      broker: host.broker,
      key: host.key,
      maxFrameBytes: host.maxFrameBytes,
      handshakeTimeoutMs: host.handshakeTimeoutMs,
      challenge: options.challenge ?? DEFAULT_CHALLENGE_STYLE,
      queues: this.queues,
      log: host.logger,
      authThrottle: host.authThrottle,
      onAuthenticated: (session) => this.#acceptor.authenticated(session),
    };
    this.#acceptor = new Acceptor({
      listener,
      log: host.logger,
      maxPending: host.maxPendingHandshakes,
      kind: "Python connections",
      open: (conn) => {
        host.broker.telemetry.connectionsAccepted++;
        return new PythonSession(
          new PythonConnection(conn, { shared: host.buffers, shrinkWhenIdle: true }),
          this.#ctx,
        );
      },
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
 * The Python front-end, to give to the master host (`serve({ frontEnds })`):
 * serves the master's queues to unmodified `BaseManager` programs.
 *
 * @example
 * ```ts
 * import { serve } from "../server/master.ts";
 * import { pythonFrontEnd } from "./frontend.ts";
 * import { PythonManagerClient } from "./client.ts";
 * const master = await serve({
 *   listen: "127.0.0.1:0",
 *   authkey: "secret",
 *   frontEnds: [pythonFrontEnd({ listen: "127.0.0.1:0", challenge: "legacy" })],
 * });
 * // What Python's `manager.get_task_queue()` asks for, over the same protocol:
 * const address = master.frontEnds[0].address;
 * const manager = new PythonManagerClient({ address, authkey: "secret" });
 * const queue = await manager.create("get_task_queue");
 * console.log(queue.ident, queue.exposed.includes("put")); // tasks true
 * await manager.decref(queue.ident);
 * await master.close();
 * ```
 */
export function pythonFrontEnd(options: PythonServeOptions): FrontEndFactory {
  return {
    name: "python",
    check(authkey) {
      checkListenAddress(options.listen, authkey);
      pythonQueueMap(options.queues);
    },
    // deno-lint-ignore require-await
    async start(host) {
      const address = checkListenAddress(
        options.listen,
        host.key.length > 0 ? host.key : undefined,
      );
      let listener: StreamListener;
      try {
        // A worker machine that vanishes without a FIN is noticed eventually.
        listener = listenTcp(address, { keepAlive: true });
      } catch (cause) {
        throw new ConfigError(
          `cannot listen for Python on ${formatAddress(address)}: ${(cause as Error).message}`,
          { cause },
        );
      }
      return new PythonFrontEnd(listener, host, options);
    },
  };
}
