/**
 * The master host: opens the broker, serves taskq's native protocol on TCP,
 * starts the other front-ends it is given (Python's managers protocol, the
 * HTTP side) over the same broker, and owns the order of startup and
 * shutdown.
 *
 * Connections that have not finished the handshake are capped; when the cap is
 * reached the oldest of them is dropped to make room, so a flood of idle
 * connections cannot lock real clients out (the shared {@link Acceptor}).
 *
 * @example
 * ```ts
 * import { serve } from "./master.ts";
 * const master = await serve({ listen: "127.0.0.1:0", authkey: "secret", store: "memory" });
 * console.log(master.address.port > 0); // true
 * await master.close();
 * ```
 *
 * @module
 */

import type { Broker, JobOptions } from "../broker/broker.ts";
import { openLocalBroker, processMaxMemoryBytes, type StoreChoice } from "../broker/local.ts";
import { openPostgresBroker } from "../broker/postgres/broker.ts";
import type { Telemetry } from "../broker/telemetry.ts";
import type { RetryPolicy } from "../model/types.ts";
import { FramedConnection } from "../wire/connection.ts";
import { type ByteStream, listenTcp, type StreamListener } from "../wire/stream.ts";
import { listenTls, type TlsServerOptions } from "../wire/tls.ts";

export type { TlsServerOptions };
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/frame.ts";
import { NativeSession, type SessionContext } from "./native_session.ts";
import type { FrontEnd, FrontEndFactory, HostContext } from "./front_end.ts";
import { type Address, formatAddress, isLoopback, parseAddress } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { Acceptor } from "./acceptor.ts";
import { BUFFERS_SHARE, ByteBudget, shareOf } from "../util/memory.ts";
import { AuthThrottle, type AuthThrottleOptions } from "./auth_throttle.ts";

/** Time a new connection has to complete the handshake: 5 s. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;

/** Connections allowed to be mid-handshake at once. */
export const DEFAULT_MAX_PENDING_HANDSHAKES = 64;

/** Largest frame accepted before authentication: the longest `hello` (a 200-character name) is under 700 bytes. */
export const HANDSHAKE_MAX_FRAME_BYTES = 1024;

/** A PostgreSQL database that any number of masters share (`taskq master --store postgres://…`). */
export interface PostgresChoice {
  /** `postgres://USER@HOST:PORT/DB`. */
  postgres: string;
  /** Its password, when the server asks for one (else `PGPASSWORD`). */
  password?: string;
  /** The schema taskq keeps its tables in (`taskq` by default). */
  schema?: string;
  /** Most bytes of item values the database may hold (no limit by default). */
  maxStoredBytes?: number;
  /** After how long without a heartbeat another master counts as dead, in ms (5 s by default). */
  masterTimeoutMs?: number;
}

/** Options of {@link serve}. */
export interface MasterOptions {
  /** `HOST:PORT` or an address to listen on; port 0 picks a free port. */
  listen: string | Address;
  /** The shared key (text is taken as UTF-8); may be omitted only when listening on loopback. */
  authkey?: Uint8Array | string;
  /**
   * Where items are kept: `"memory"` (the default), `{ sqlite: DIR }`, a
   * store object, or a PostgreSQL database shared with other masters
   * (`{ postgres: URL }`). Ignored when {@link MasterOptions.broker} is given.
   */
  store?: StoreChoice | PostgresChoice;
  /** A broker opened elsewhere to serve, instead of a local one over {@link MasterOptions.store}. */
  broker?: Broker;
  /** Further front-ends to start over the same broker (Python's protocol, HTTP). */
  frontEnds?: readonly FrontEndFactory[];
  /** Lease length for gets that name none. */
  defaultLeaseMs?: number;
  /** How failed items are retried and when they are dead-lettered. */
  retry?: Partial<RetryPolicy>;
  /** Items a queue may hold before puts to it wait (0, the default: no limit). */
  maxQueueLength?: number;
  /**
   * The memory budget in bytes (`--max-memory`; by default half the machine's
   * memory, at most three quarters of the heap's limit): puts are refused
   * before items take too much of it, and it caps what all connections
   * buffer together.
   */
  maxMemoryBytes?: number;
  /** Most queues at once (`--max-queues`; 100 000 by default, 0: no limit). */
  maxQueues?: number;
  /** Job history and queue limits (`--keep-jobs`, `--queue-rate`, `--queue-concurrency`). */
  jobs?: JobOptions;
  /** Largest frame payload accepted. */
  maxFrameBytes?: number;
  /** Time allowed to complete the handshake. */
  handshakeTimeoutMs?: number;
  /** Connections allowed mid-handshake at once. */
  maxPendingHandshakes?: number;
  /** Where events are logged; nowhere by default. */
  logger?: Logger;
  /**
   * Serve the native protocol over TLS with this certificate and key (PEM
   * text); with `clientCa`, only clients presenting a certificate from that CA
   * get through the TLS handshake (mutual TLS). The key's handshake still runs
   * inside TLS. Plain TCP when absent.
   */
  tls?: TlsServerOptions;
  /**
   * How wrong keys are throttled per source address, on every front-end
   * (loopback included): by default 10 failures per minute, then 10 s of
   * refused connections, doubling each time (see {@link AuthThrottle}).
   */
  authThrottle?: Omit<AuthThrottleOptions, "logger" | "telemetry">;
}

/**
 * A running master.
 *
 * @example
 * ```ts
 * import { type Master, serve } from "./master.ts";
 * const master: Master = await serve({ listen: "127.0.0.1:0", authkey: "secret" });
 * console.log(master.connectionCount); // 0
 * const session = await master.broker.open({ name: "in-process", address: "" });
 * await session.put("tasks", ["a"]);
 * console.log((await master.broker.stats("tasks")).queues[0].ready); // 1
 * await session.close();
 * await master.close();
 * ```
 */
export class Master {
  /** The broker it serves. */
  readonly broker: Broker;
  /** The address it listens on (with the real port when 0 was asked). */
  readonly address: Address;
  /** The other front-ends it started, in order. */
  readonly frontEnds: readonly FrontEnd[];
  readonly #ctx: SessionContext;
  readonly #log: Logger;
  #closing: Promise<void> | undefined;
  readonly #acceptor: Acceptor<NativeSession>;
  readonly #started: FrontEnd[] = [];
  /**
   * What every connection buffers, together, against the buffers share: the
   * native ones what they queue for sending, the other front-ends' what they
   * hold (see {@link HostContext.buffers}).
   */
  readonly buffers: ByteBudget;
  /** The throttle of wrong keys every front-end shares. */
  readonly authThrottle: AuthThrottle;

  /** Starts serving on an open listener; use {@link serve}. */
  constructor(listener: StreamListener, broker: Broker, key: Uint8Array, options: MasterOptions) {
    this.broker = broker;
    this.frontEnds = this.#started;
    const addr = listener.addr;
    this.address = { hostname: addr.hostname, port: addr.port };
    this.#log = options.logger ?? silentLogger;
    const budget = broker.settings.maxMemoryBytes ?? options.maxMemoryBytes ?? Infinity;
    this.buffers = new ByteBudget(shareOf(budget, BUFFERS_SHARE));
    this.authThrottle = new AuthThrottle({
      ...options.authThrottle,
      logger: this.#log,
      telemetry: broker.telemetry,
    });
    this.#ctx = {
      broker,
      key,
      maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      log: this.#log,
      authThrottle: this.authThrottle,
      onAuthenticated: (session) => this.#acceptor.authenticated(session),
    };
    this.#acceptor = new Acceptor({
      listener,
      log: this.#log,
      maxPending: options.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES,
      kind: "connections",
      open: (conn) => this.#open(conn),
      drop: (session) =>
        session.refuse("too_many_connections", "too many connections are mid-handshake"),
    });
  }

  /** What the master counts about itself (the broker's telemetry). */
  get telemetry(): Telemetry {
    return this.broker.telemetry;
  }

  /** Number of open native connections (authenticated or not). */
  get connectionCount(): number {
    return this.#acceptor.sessions.size;
  }

  /** Number of native connections still in the handshake. */
  get pendingCount(): number {
    return this.#acceptor.pendingCount;
  }

  /** The session of a newly accepted connection. */
  #open(conn: ByteStream): NativeSession {
    this.broker.telemetry.connectionsAccepted++;
    // Until the peer proves the key, only handshake-sized frames are accepted.
    const framed = new FramedConnection(conn, {
      maxFrameBytes: HANDSHAKE_MAX_FRAME_BYTES,
      shared: this.buffers,
      // Thousands of clients may wait in a get: each keeps a small buffer meanwhile.
      shrinkWhenIdle: true,
    });
    return new NativeSession(framed, this.#ctx);
  }

  /** Starts the further front-ends, in order; on a failure closes what started. */
  async startFrontEnds(
    factories: readonly FrontEndFactory[],
    options: MasterOptions,
  ): Promise<void> {
    const host: HostContext = {
      broker: this.broker,
      key: this.#ctx.key,
      maxFrameBytes: this.#ctx.maxFrameBytes,
      handshakeTimeoutMs: this.#ctx.handshakeTimeoutMs,
      maxPendingHandshakes: options.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES,
      logger: this.#log,
      authThrottle: this.authThrottle,
      buffers: this.buffers,
      nativeAddress: formatAddress(this.address),
    };
    for (const factory of factories) this.#started.push(await factory.start(host));
  }

  /**
   * Stops in order: the other front-ends (newest first), then the native
   * listener (answering what is in flight and telling every client to
   * reconnect later), then the broker, which commits and closes the store.
   * Safe to call twice.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const frontEnd of [...this.#started].reverse()) {
        await frontEnd.close().catch((error) =>
          this.#log.error("front-end did not close cleanly", {
            frontEnd: frontEnd.name,
            error: String(error),
          })
        );
      }
      await this.#acceptor.close();
      await Promise.all(
        [...this.#acceptor.sessions.keys()].map((session) =>
          session.refuse("shutting_down", "the master is shutting down; reconnect later")
        ),
      );
      this.authThrottle.close();
      await this.broker.close();
    })();
    return this.#closing;
  }
}

/** Settings of {@link openListener} beyond the address. */
export interface ListenerOptions {
  /** Serve TLS with these (PEM text); plain TCP when absent. */
  tls?: TlsServerOptions;
  /** Time a connection has to complete the TLS handshake. */
  handshakeTimeoutMs?: number;
  /** Where failed TLS handshakes are logged (at debug). */
  logger?: Logger;
}

/**
 * Opens the listener a front-end serves on: plain TCP, or TLS when
 * `options.tls` is given (see {@link MasterOptions.tls}). Every accepted
 * stream has Nagle's algorithm off. The master's native listener is opened
 * this way; the HTTP side can open its own with the same TLS settings.
 * @throws {ConfigError} when the address is in use or unusable, or the
 *   certificate, key or client CA cannot be used.
 *
 * @example
 * ```ts
 * import { openListener } from "./master.ts";
 * const listener = await openListener({ hostname: "127.0.0.1", port: 0 });
 * console.log(listener.addr.port > 0); // true
 * listener.close();
 * ```
 */
export async function openListener(
  address: Address,
  options: ListenerOptions = {},
): Promise<StreamListener> {
  const { tls, logger } = options;
  try {
    if (tls === undefined) return listenTcp(address);
    return await listenTls(address, {
      ...tls,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      onHandshakeError: (error) =>
        logger?.debug("TLS handshake failed", {
          address: formatAddress(address),
          error: error.message,
        }),
    });
  } catch (cause) {
    if (cause instanceof ConfigError) throw cause;
    throw new ConfigError(
      `cannot listen on ${formatAddress(address)}: ${(cause as Error).message}`,
      { cause },
    );
  }
}

/**
 * Logs, once, that a listener beyond loopback without TLS carries items and
 * the key's proofs in clear text; says nothing for loopback or TLS.
 *
 * @example
 * ```ts
 * import { warnIfClearText } from "./master.ts";
 * const lines: string[] = [];
 * const logger = { debug() {}, info() {}, warn: (m: string) => lines.push(m), error() {} };
 * warnIfClearText({ hostname: "127.0.0.1", port: 5000 }, undefined, logger);
 * console.log(lines.length); // 0
 * warnIfClearText({ hostname: "0.0.0.0", port: 5000 }, undefined, logger);
 * console.log(lines.length); // 1
 * ```
 */
export function warnIfClearText(
  address: Address,
  tls: TlsServerOptions | undefined,
  logger: Logger,
): void {
  if (tls !== undefined || isLoopback(address.hostname)) return;
  logger.warn(
    "listening beyond loopback without TLS: items, results and the key's handshake proofs " +
      "travel in clear text; use --tls-cert and --tls-key (taskq tls init makes them)",
    { address: formatAddress(address) },
  );
}

/**
 * Checks that a master may listen on `listen` with the key it has (or none),
 * before anything is opened; returns the parsed address.
 * @throws {ConfigError} when the address is malformed, or beyond loopback without a key.
 *
 * @example
 * ```ts
 * import { checkListenAddress } from "./master.ts";
 * import { ConfigError } from "../errors.ts";
 * const address = checkListenAddress("127.0.0.1:5000", undefined); // no key: loopback only
 * console.log(address); // { hostname: "127.0.0.1", port: 5000 }
 * try {
 *   checkListenAddress("0.0.0.0:5000", undefined);
 * } catch (error) {
 *   console.log(error instanceof ConfigError); // true: no key beyond loopback
 * }
 * ```
 */
export function checkListenAddress(
  listen: string | Address,
  authkey: Uint8Array | string | undefined,
): Address {
  const address = typeof listen === "string" ? parseAddress(listen) : listen;
  if (authkey === undefined && !isLoopback(address.hostname)) {
    throw new ConfigError(
      `refusing to listen on ${formatAddress(address)} without a key: anyone who can reach ` +
        `the port could read and write the queues; set TASKQ_AUTHKEY or use --authkey-file`,
    );
  }
  return address;
}

/**
 * Starts a master: checks every address, opens the broker (loading what a
 * durable store kept), listens for the native protocol, then starts the
 * further front-ends.
 * @throws {ConfigError} when asked to listen beyond loopback without a key,
 *   when an address is in use or unusable, or when the TLS certificate, key
 *   or client CA cannot be used.
 * @throws {StoreError} when the store cannot be used.
 *
 * @example
 * ```ts
 * import { serve } from "./master.ts";
 * import { connect } from "../client/client.ts";
 * const dir = await Deno.makeTempDir();
 * const options = { listen: "127.0.0.1:0", authkey: "secret", store: { sqlite: dir } };
 * const first = await serve(options);
 * const client = await connect({ address: first.address, authkey: "secret" });
 * await client.queue("tasks").put("kept");
 * await client.close();
 * await first.close();
 * // A new master over the same directory still has the item.
 * const second = await serve(options);
 * console.log((await second.broker.stats("tasks")).queues[0].ready); // 1
 * await second.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function serve(options: MasterOptions): Promise<Master> {
  const address = checkListenAddress(options.listen, options.authkey);
  new AuthThrottle(options.authThrottle); // checks its options before anything opens
  const key = typeof options.authkey === "string"
    ? new TextEncoder().encode(options.authkey)
    : options.authkey ?? new Uint8Array(0);
  const factories = options.frontEnds ?? [];
  for (const factory of factories) factory.check(options.authkey === undefined ? undefined : key);
  const store = options.store;
  const broker = options.broker ??
    (typeof store === "object" && "postgres" in store
      ? await openPostgresBroker({
        url: store.postgres,
        password: store.password,
        schema: store.schema,
        maxStoredBytes: store.maxStoredBytes,
        masterTimeoutMs: store.masterTimeoutMs,
        defaultLeaseMs: options.defaultLeaseMs,
        retry: options.retry,
        maxQueueLength: options.maxQueueLength,
        maxQueues: options.maxQueues,
        maxMemoryBytes: options.maxMemoryBytes ?? processMaxMemoryBytes(),
        log: options.logger,
        ...options.jobs,
      })
      : await openLocalBroker({
        store,
        defaultLeaseMs: options.defaultLeaseMs,
        retry: options.retry,
        maxQueueLength: options.maxQueueLength,
        maxMemoryBytes: options.maxMemoryBytes,
        maxQueues: options.maxQueues,
        ...options.jobs,
      }));
  let listener: StreamListener;
  try {
    listener = await openListener(address, {
      tls: options.tls,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
      logger: options.logger,
    });
  } catch (error) {
    await broker.close();
    throw error;
  }
  warnIfClearText(address, options.tls, options.logger ?? silentLogger);
  const master = new Master(listener, broker, key, options);
  try {
    await master.startFrontEnds(factories, options);
  } catch (error) {
    await master.close();
    throw error;
  }
  return master;
}
