/**
 * The master: listens on TCP, runs one protocol session per connection over a
 * shared queue engine, and drives the engine's timers.
 *
 * Connections that have not finished the handshake are capped; when the cap is
 * reached the oldest of them is dropped to make room, so a flood of idle
 * connections cannot lock real clients out (the shared {@link Acceptor}).
 *
 * @module
 */

import { Engine, type RetryPolicy } from "../engine/engine.ts";
import type { Store } from "../store/store.ts";
import { FramedConnection } from "../wire/connection.ts";
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/frame.ts";
import { NativeSession, type SessionContext } from "./native_session.ts";
import { type Address, formatAddress, isLoopback, parseAddress } from "../config.ts";
import { ConfigError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { Telemetry } from "../broker/telemetry.ts";
import { Acceptor } from "./acceptor.ts";

/** Time a new connection has to complete the handshake: 5 s. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;

/** Connections allowed to be mid-handshake at once. */
export const DEFAULT_MAX_PENDING_HANDSHAKES = 64;

/** Largest frame accepted before authentication: the longest `hello` (a 200-character name) is under 700 bytes. */
export const HANDSHAKE_MAX_FRAME_BYTES = 1024;

/** Longest single wait `setTimeout` supports. */
const MAX_TIMER_MS = 2_147_483_647;

/** Options of {@link serve}. */
export interface MasterOptions {
  /** `HOST:PORT` or an address to listen on; port 0 picks a free port. */
  listen: string | Address;
  /** The shared key (text is taken as UTF-8); may be omitted only when listening on loopback. */
  authkey?: Uint8Array | string;
  /** Where items are kept; in memory by default. */
  store?: Store;
  /** Lease length for gets that name none. */
  defaultLeaseMs?: number;
  /** How failed items are retried and when they are dead-lettered. */
  retry?: Partial<RetryPolicy>;
  /** Items a queue may hold before puts to it wait (0, the default: no limit). */
  maxQueueLength?: number;
  /** Largest frame payload accepted. */
  maxFrameBytes?: number;
  /** Time allowed to complete the handshake. */
  handshakeTimeoutMs?: number;
  /** Connections allowed mid-handshake at once. */
  maxPendingHandshakes?: number;
  /** Where events are logged; nowhere by default. */
  logger?: Logger;
}

/** A running master. */
export class Master {
  /** The queue engine it serves. */
  readonly engine: Engine;
  /** The address it listens on (with the real port when 0 was asked). */
  readonly address: Address;
  /** What it counts about itself (error replies, connections, commit latency). */
  readonly telemetry: Telemetry = new Telemetry();
  readonly #ctx: SessionContext;
  readonly #log: Logger;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedAt = Infinity;
  #closing: Promise<void> | undefined;
  readonly #acceptor: Acceptor<NativeSession>;

  /** Starts serving on an open listener; use {@link serve}. */
  constructor(listener: Deno.TcpListener, engine: Engine, key: Uint8Array, options: MasterOptions) {
    this.engine = engine;
    const addr = listener.addr;
    this.address = { hostname: addr.hostname, port: addr.port };
    this.#log = options.logger ?? silentLogger;
    this.#ctx = {
      engine,
      key,
      maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      log: this.#log,
      afterChange: () => this.#arm(),
      onAuthenticated: (session) => this.#acceptor.authenticated(session),
      telemetry: this.telemetry,
    };
    engine.store.onCommit = (ms) => this.telemetry.observeCommit(ms);
    this.#acceptor = new Acceptor({
      listener,
      log: this.#log,
      maxPending: options.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES,
      kind: "connections",
      keepAlive: false,
      open: (conn) => this.#open(conn),
      drop: (session) =>
        session.refuse("too_many_connections", "too many connections are mid-handshake"),
    });
  }

  /** Number of open connections (authenticated or not). */
  get connectionCount(): number {
    return this.#acceptor.sessions.size;
  }

  /** Number of connections still in the handshake. */
  get pendingCount(): number {
    return this.#acceptor.pendingCount;
  }

  /** The session of a newly accepted connection. */
  #open(conn: Deno.TcpConn): NativeSession {
    this.telemetry.connectionsAccepted++;
    // Until the peer proves the key, only handshake-sized frames are accepted.
    const framed = new FramedConnection(conn, { maxFrameBytes: HANDSHAKE_MAX_FRAME_BYTES });
    return new NativeSession(framed, this.#ctx);
  }

  /** Re-arms the engine's timer after changes made outside a session (e.g. over HTTP). */
  rearm(): void {
    this.#arm();
  }

  /** Arms the single timer for the engine's next deadline, if that is sooner. */
  #arm(): void {
    const next = this.engine.nextDeadline();
    if (next === undefined || next >= this.#armedAt || this.#closing) return;
    clearTimeout(this.#timer);
    this.#armedAt = next;
    const wait = Math.min(Math.max(0, next - Date.now()), MAX_TIMER_MS);
    this.#timer = setTimeout(() => {
      this.#armedAt = Infinity;
      this.engine.tick();
      this.#arm();
    }, wait);
  }

  /** Stops accepting, closes every connection and the store. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearTimeout(this.#timer);
      await this.#acceptor.close();
      // Answer what is in flight: commit, so replies waiting on durability go
      // out, then tell every client (it will reconnect) and close.
      await this.engine.store.commit().catch(() => {});
      await Promise.all(
        [...this.#acceptor.sessions.keys()].map((session) =>
          session.refuse("shutting_down", "the master is shutting down; reconnect later")
        ),
      );
      await this.engine.store.close();
    })();
    return this.#closing;
  }
}

/**
 * Checks that a master may listen on `listen` with the key it has (or none),
 * before anything is opened; returns the parsed address.
 * @throws {ConfigError} when the address is malformed, or beyond loopback without a key.
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
 * Starts a master.
 * @throws {ConfigError} when asked to listen beyond loopback without a key, or
 *   when the address is in use or unusable.
 */
export async function serve(options: MasterOptions): Promise<Master> {
  const address = checkListenAddress(options.listen, options.authkey);
  const engine = new Engine({
    store: options.store,
    defaultLeaseMs: options.defaultLeaseMs,
    retry: options.retry,
    maxQueueLength: options.maxQueueLength,
  });
  engine.restore(await engine.store.load());
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: address.hostname, port: address.port, transport: "tcp" });
  } catch (cause) {
    await engine.store.close();
    throw new ConfigError(
      `cannot listen on ${formatAddress(address)}: ${(cause as Error).message}`,
      { cause },
    );
  }
  const key = typeof options.authkey === "string"
    ? new TextEncoder().encode(options.authkey)
    : options.authkey ?? new Uint8Array(0);
  return new Master(listener, engine, key, options);
}
