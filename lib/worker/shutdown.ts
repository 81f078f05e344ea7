/**
 * How a command worker process (`taskq worker`, native or for a Python
 * master) is told to stop, and the promise that it does, in time.
 *
 * SIGINT (Ctrl-C) and SIGTERM ask it to stop: no more items; running
 * commands get the grace period to finish, then SIGTERM to their process
 * groups (the worker loop does that). Whatever happens meanwhile (a master
 * that is down, a request that never returns), {@link Shutdown} ends the
 * process {@link STOP_MARGIN_MS} after the grace period: it sends SIGKILL to
 * the process groups of the commands still running and exits. A quiet
 * request (an operator through the master) only stops taking items, with no
 * deadline: the running commands finish, then the worker exits.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import type { Watchdog } from "./watchdog.ts";

/**
 * Time after the grace period at which a stopping worker process exits, even
 * if its loop has not returned, in ms: commands still running are killed
 * (SIGKILL to their groups) and their items go back to the queue with the
 * connection.
 */
export const STOP_MARGIN_MS = 1_000;

/** Exit code of a worker process stopped by its deadline: a stop it was asked for. */
const EXIT_STOPPED = 0;

/** The signals that ask a worker process to stop. */
const STOP_SIGNALS: readonly Deno.Signal[] = ["SIGINT", "SIGTERM"];

/** Options of {@link Shutdown}. */
export interface ShutdownOptions {
  /** The worker's grace period, in ms. */
  graceMs: number;
  /** Where stops are logged. */
  log: Logger;
  /** Its commands' process groups, killed at the deadline. */
  watchdog?: Watchdog;
  /** Ends the process (`Deno.exit` by default; tests pass their own). */
  exit?: (code: number) => void;
  /** Listen for SIGINT and SIGTERM (default true). */
  signals?: boolean;
}

/**
 * A worker process's stop and quiet requests, with the deadline of a stop.
 *
 * @example
 * ```ts
 * import { Shutdown } from "./shutdown.ts";
 * import { silentLogger } from "../log.ts";
 * let exited: number | undefined;
 * const shutdown = new Shutdown({
 *   graceMs: 10,
 *   log: silentLogger,
 *   signals: false,
 *   exit: (code) => exited = code,
 * });
 * shutdown.requestStop("as a test");
 * console.log(shutdown.stop.signal.aborted); // true
 * await new Promise((resolve) => setTimeout(resolve, 1_100)); // grace + STOP_MARGIN_MS
 * console.log(exited); // 0: the loop did not return in time
 * shutdown.dispose();
 * ```
 */
export class Shutdown {
  /** Aborted on a stop request: the worker loop's `signal`. */
  readonly stop: AbortController = new AbortController();
  /** Aborted on a quiet request: the worker loop's `quiet`. */
  readonly quiet: AbortController = new AbortController();
  readonly #options: ShutdownOptions;
  readonly #onSignal: () => void;
  #deadline: ReturnType<typeof setTimeout> | undefined;
  #watchdog: Watchdog | undefined;

  /** Listens for SIGINT and SIGTERM (unless told not to). */
  constructor(options: ShutdownOptions) {
    this.#options = options;
    this.#watchdog = options.watchdog;
    this.#onSignal = () => this.requestStop("a signal");
    if (options.signals !== false) {
      for (const signal of STOP_SIGNALS) Deno.addSignalListener(signal, this.#onSignal);
    }
  }

  /** The watchdog whose groups are killed at the deadline (it may start after the listeners). */
  set watchdog(watchdog: Watchdog | undefined) {
    this.#watchdog = watchdog;
  }

  /** Asks the worker to stop: no more items, the grace period, then the deadline. */
  requestStop(why: string): void {
    if (this.stop.signal.aborted) return;
    const { graceMs, log } = this.#options;
    log.info("stopping: finishing running commands", { why, graceSeconds: graceMs / 1000 });
    this.stop.abort();
    this.#deadline = setTimeout(() => {
      log.warn("stopping now: the grace period is over and the worker has not ended", {
        running: this.#watchdog?.groups.size ?? 0,
      });
      this.#watchdog?.killAll();
      (this.#options.exit ?? Deno.exit)(EXIT_STOPPED);
    }, graceMs + STOP_MARGIN_MS);
  }

  /** Asks the worker to go quiet: no more items; exit once running commands end. */
  requestQuiet(why: string): void {
    if (this.quiet.signal.aborted || this.stop.signal.aborted) return;
    this.#options.log.info(
      "going quiet: taking no more items; exiting once the running commands end",
      { why },
    );
    this.quiet.abort();
  }

  /** Stops listening for signals and clears the deadline (the loop returned). */
  dispose(): void {
    clearTimeout(this.#deadline);
    if (this.#options.signals !== false) {
      for (const signal of STOP_SIGNALS) Deno.removeSignalListener(signal, this.#onSignal);
    }
  }
}
