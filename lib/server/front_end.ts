/**
 * What the master host asks of a front-end: the native protocol is built in,
 * and others (Python's managers protocol, the HTTP side) are given to
 * {@link serve} as {@link FrontEndFactory} values, checked before anything
 * opens, started over the host's broker and closed by the host in order.
 *
 * @example
 * ```ts
 * import type { FrontEndFactory } from "./front_end.ts";
 * const idle: FrontEndFactory = {
 *   name: "idle",
 *   check() {},
 *   start() {
 *     const close = () => Promise.resolve();
 *     return Promise.resolve({ name: "idle", address: "-", banner: "idle ready", close });
 *   },
 * };
 * console.log(idle.name);
 * ```
 *
 * @module
 */

import type { Broker } from "../broker/broker.ts";
import type { Logger } from "../log.ts";
import type { AuthThrottle } from "./auth_throttle.ts";
import type { ByteBudget } from "../util/memory.ts";

/** What the host hands each front-end it starts. */
export interface HostContext {
  /** The broker whose queues are served. */
  readonly broker: Broker;
  /** The shared key (empty when none was given: loopback only). */
  readonly key: Uint8Array;
  /** Largest message accepted after the handshake, in bytes. */
  readonly maxFrameBytes: number;
  /** Time a new connection has to authenticate, in ms. */
  readonly handshakeTimeoutMs: number;
  /** Connections allowed mid-handshake at once, per listener. */
  readonly maxPendingHandshakes: number;
  /** Where events are logged. */
  readonly logger: Logger;
  /** The throttle of wrong keys shared by every front-end: check it before a handshake, tell it each failure. */
  readonly authThrottle: AuthThrottle;
  /**
   * The master's buffers share of its memory budget, which every connection
   * (native or not) charges what it buffers to: past its cap, connections
   * holding bytes stop reading ahead.
   */
  readonly buffers: ByteBudget;
  /**
   * The native port's address (`HOST:PORT`), for front-ends that tell a
   * taskq client which reached them where to go instead.
   */
  readonly nativeAddress?: string;
}

/** A running front-end. */
export interface FrontEnd {
  /** What it serves, for log lines: e.g. "python", "http". */
  readonly name: string;
  /** Where it listens (`HOST:PORT` or a URL). */
  readonly address: string;
  /** The line a command prints once it is ready, e.g. `taskq http listening on URL`. */
  readonly banner: string;
  /** Stops accepting and ends its connections. Safe to call twice. */
  close(): Promise<void>;
}

/** A front-end to start: checked before the store opens, started once the broker runs. */
export interface FrontEndFactory {
  /** What it serves, for log lines. */
  readonly name: string;
  /**
   * Checks its settings with the key the host has (undefined: none), before
   * anything opens.
   * @throws {ConfigError} when they cannot work (e.g. beyond loopback without a key).
   */
  check(authkey: Uint8Array | undefined): void;
  /**
   * Starts serving over the host's broker.
   * @throws {ConfigError} when its address cannot be used.
   */
  start(host: HostContext): Promise<FrontEnd>;
}
