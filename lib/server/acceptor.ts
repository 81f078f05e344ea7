/**
 * The accept loop shared by the master's listeners (native and Python): takes
 * TCP connections, runs one session on each, tracks the open sessions and
 * caps those still in the handshake, dropping the oldest of them to make room
 * so a flood of idle connections cannot lock real clients out.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import type { ByteStream, StreamListener } from "../wire/stream.ts";

/** First wait after a failed accept (e.g. out of file descriptors), in ms. */
export const ACCEPT_BACKOFF_MIN_MS = 10;

/** Longest wait between accepts while they keep failing, in ms. */
export const ACCEPT_BACKOFF_MAX_MS = 1_000;

/**
 * Failures this soon after a streak ended (in ms) continue it: one accept
 * that got through while descriptors were still short (one freed for a
 * moment) does not make the next failure a new streak with a log line of
 * its own.
 */
export const ACCEPT_RELAPSE_MS = 1_000;

/**
 * While connections mid-handshake keep being dropped to make room (a flood),
 * the first drop is logged, then one line per this many ms with the count.
 */
export const DROP_REPORT_INTERVAL_MS = 10_000;

/** What the {@link Acceptor} needs of a session. */
export interface AcceptedSession {
  /** The connection, for its peer's address in log lines. */
  readonly conn: { readonly peer: string };
  /** Serves the connection until it ends. */
  run(): Promise<void>;
}

/** Options of an {@link Acceptor}. */
export interface AcceptorOptions<S extends AcceptedSession> {
  /** Where connections come from. */
  listener: StreamListener;
  /** Where failed accepts and dropped connections are logged. */
  log: Logger;
  /** Connections allowed mid-handshake at once. */
  maxPending: number;
  /** What the connections are, in log lines: e.g. "connections". */
  kind: string;
  /** Makes the session of a new connection. */
  open(conn: ByteStream): S;
  /** Drops a session still in the handshake to make room for a new one. */
  drop(session: S): void;
}

/** Accepts connections and tracks their sessions until {@link close}. */
export class Acceptor<S extends AcceptedSession> {
  readonly #options: AcceptorOptions<S>;
  readonly #sessions = new Map<S, Promise<void>>();
  readonly #pending = new Set<S>();
  readonly #accepting: Promise<void>;
  #closing = false;
  #wake: (() => void) | undefined;
  /** While drops are being counted: the timer of the next report line. */
  #dropReport: ReturnType<typeof setTimeout> | undefined;
  #dropsUnreported = 0;

  /** Starts accepting on `options.listener`. */
  constructor(options: AcceptorOptions<S>) {
    this.#options = options;
    this.#accepting = this.#acceptLoop();
  }

  /** Open sessions (authenticated or not), each with the promise of its end. */
  get sessions(): ReadonlyMap<S, Promise<void>> {
    return this.#sessions;
  }

  /** Number of sessions still in the handshake. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** Records that `session` has authenticated: it no longer counts against the cap. */
  authenticated(session: S): void {
    this.#pending.delete(session);
  }

  /**
   * Accepts until closed. A failed accept (out of file descriptors, most
   * often) is logged once per streak and retried after a growing wait, so
   * the loop backs off instead of spinning; the first success ends the streak
   * (a failure within {@link ACCEPT_RELAPSE_MS} of that is not logged unless
   * failures go on past that window).
   */
  async #acceptLoop(): Promise<void> {
    const { listener, log } = this.#options;
    let backoffMs = 0;
    let failures = 0;
    /** Whether this streak was logged (a relapse is not). */
    let logged = false;
    let streakEndedAt = -Infinity;
    for (;;) {
      let conn: ByteStream;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) return;
        failures++;
        // A relapse that outlasts the window is logged after all, as its own streak.
        if (!logged && Date.now() - streakEndedAt >= ACCEPT_RELAPSE_MS) {
          logged = true;
          log.warn(`cannot accept ${this.#options.kind}; backing off until it works again`, {
            error: (error as Error).message,
          });
        }
        backoffMs = Math.min(Math.max(backoffMs * 2, ACCEPT_BACKOFF_MIN_MS), ACCEPT_BACKOFF_MAX_MS);
        await this.#pause(backoffMs);
        continue;
      }
      if (failures > 0) {
        if (logged) log.info(`accepting ${this.#options.kind} again`, { failedAccepts: failures });
        failures = 0;
        backoffMs = 0;
        logged = false;
        streakEndedAt = Date.now();
      }
      this.#start(conn);
    }
  }

  #start(conn: ByteStream): void {
    const { log, maxPending, kind } = this.#options;
    const session = this.#options.open(conn);
    if (this.#pending.size >= maxPending) {
      const oldest = this.#pending.values().next().value as S;
      this.#pending.delete(oldest);
      if (this.#dropReport === undefined) {
        log.warn(`too many unauthenticated ${kind}; dropping the oldest`, {
          peer: oldest.conn.peer,
          limit: maxPending,
        });
        this.#dropReport = setTimeout(() => this.#reportDrops(), DROP_REPORT_INTERVAL_MS);
      } else {
        this.#dropsUnreported++;
      }
      this.#options.drop(oldest);
    }
    this.#pending.add(session);
    const running = session.run().finally(() => {
      this.#sessions.delete(session);
      this.#pending.delete(session);
    });
    this.#sessions.set(session, running);
  }

  /** Logs how many more were dropped since the last line; keeps reporting while drops go on. */
  #reportDrops(): void {
    const dropped = this.#dropsUnreported;
    this.#dropsUnreported = 0;
    this.#dropReport = undefined;
    if (dropped === 0) return;
    const { log, kind, maxPending } = this.#options;
    log.warn(`dropped ${dropped} more unauthenticated ${kind} to make room`, {
      seconds: DROP_REPORT_INTERVAL_MS / 1000,
      limit: maxPending,
    });
    this.#dropReport = setTimeout(() => this.#reportDrops(), DROP_REPORT_INTERVAL_MS);
  }

  /** Waits `ms`, or less if the acceptor closes meanwhile. */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      this.#wake = done;
      function done() {
        clearTimeout(timer);
        resolve();
      }
    });
  }

  /** Stops accepting: closes the listener and waits for the loop to end. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#wake?.();
    clearTimeout(this.#dropReport);
    if (this.#dropReport !== undefined) this.#reportDrops();
    clearTimeout(this.#dropReport);
    this.#dropReport = undefined;
    try {
      this.#options.listener.close();
    } catch {
      // already closed
    }
    await this.#accepting;
  }
}
