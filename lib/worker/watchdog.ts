/**
 * The worker's watchdog: one small `sh` process per worker that kills the
 * process groups of the commands still running when the worker dies, even
 * by `kill -9`, which no code of the worker can see coming.
 *
 * Each command runs in a process group of its own (lib/worker/command.ts).
 * The worker writes `+PGID` to the watchdog's standard input when a command
 * starts and `-PGID` when it ends. When that input reaches its end, the
 * worker is gone (it exited, or it was killed: the kernel closes its end of
 * the pipe either way), and the watchdog sends SIGKILL to every group still
 * listed, then exits. The watchdog runs in a session of its own and ignores
 * SIGINT, SIGTERM, SIGHUP and SIGQUIT, so a Ctrl-C in the terminal, or a
 * signal to the worker's process group, does not take it down first.
 *
 * What remains: a process a command started that left the command's process
 * group (`setsid`, a daemon that detaches itself, a container runtime) is not
 * in the group, and survives; so does anything still running in a group
 * after its command (the group's leader) has exited, which the worker no
 * longer tracks. A SIGKILL of the watchdog itself (or of the worker's whole
 * process tree at once) leaves the commands running. Not on Windows.
 *
 * @module
 */

import type { Logger } from "../log.ts";

/** The shell the watchdog runs in: POSIX `sh`, where every Unix has it. */
const SHELL = "/bin/sh";

/**
 * The watchdog's script. It keeps the listed groups in one space-separated
 * string (`" 12 34 "`), using only shell builtins, so a line costs no fork;
 * lines that are not `+N` or `-N` are ignored.
 */
export const WATCHDOG_SCRIPT = `trap '' INT TERM HUP QUIT
groups=' '
while IFS= read -r line; do
  id=\${line#?}
  case $id in ''|*[!0-9]*) continue ;; esac
  case $line in
    +*) groups="$groups$id " ;;
    -*) case $groups in *" $id "*) groups="\${groups%% $id *} \${groups#* $id }" ;; esac ;;
  esac
done
for id in $groups; do kill -9 -"$id" 2>/dev/null; done
`;

/**
 * A watchdog process (see the module doc).
 *
 * @example
 * ```ts
 * import { Watchdog } from "./watchdog.ts";
 * import { silentLogger } from "../log.ts";
 * const watchdog = Watchdog.start(silentLogger)!;
 * const sleeper = new Deno.Command("sleep", { args: ["30"], detached: true }).spawn();
 * watchdog.add(sleeper.pid); // its own process group, led by it
 * await watchdog.close(); // as the worker's death would: the group is killed
 * console.log((await sleeper.status).signal); // SIGKILL
 * ```
 */
export class Watchdog {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #log: Logger;
  /** Writes in order, one at a time. */
  #writing: Promise<void> = Promise.resolve();
  /** Set once a write failed (the watchdog is gone): said once, then nothing more is sent. */
  #broken = false;
  /** The groups listed now. */
  readonly #groups = new Set<number>();

  private constructor(child: Deno.ChildProcess, log: Logger) {
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#log = log;
    // The worker may exit while the watchdog runs: that is its purpose.
    child.unref();
  }

  /**
   * Starts a watchdog; `undefined` where there can be none (Windows, no
   * `/bin/sh`), which is logged as a warning on `log`.
   */
  static start(log: Logger): Watchdog | undefined {
    if (Deno.build.os === "windows") return undefined;
    try {
      const child = new Deno.Command(SHELL, {
        args: ["-c", WATCHDOG_SCRIPT],
        stdin: "piped",
        stdout: "null",
        stderr: "null",
        // A session of its own: a Ctrl-C in the terminal does not reach it.
        detached: true,
      }).spawn();
      return new Watchdog(child, log);
    } catch (error) {
      log.warn("no watchdog: commands will outlive a worker that is killed", {
        error: (error as Error).message,
      });
      return undefined;
    }
  }

  /** The process groups listed now (those of the commands running). */
  get groups(): ReadonlySet<number> {
    return this.#groups;
  }

  /** Lists the process group `pgid` (a command just started, leading its own group). */
  add(pgid: number): void {
    this.#groups.add(pgid);
    this.#send(`+${pgid}\n`);
  }

  /** Takes `pgid` off the list (its command ended). */
  remove(pgid: number): void {
    if (!this.#groups.delete(pgid)) return;
    this.#send(`-${pgid}\n`);
  }

  /** Sends SIGKILL to every group listed now (a worker about to exit with commands running). */
  killAll(): void {
    for (const pgid of this.#groups) {
      try {
        Deno.kill(-pgid, "SIGKILL");
      } catch {
        // gone already
      }
    }
  }

  /**
   * Closes the watchdog's input: it kills the groups still listed and exits.
   * Resolves once it has.
   */
  async close(): Promise<void> {
    await this.#writing;
    await this.#writer.close().catch(() => {});
    // Unreferenced, its exit would not keep the event loop alive: a caller
    // awaiting this could see the program end with the promise pending.
    this.#child.ref();
    await this.#child.status;
  }

  #send(line: string): void {
    if (this.#broken) return;
    const bytes = new TextEncoder().encode(line);
    this.#writing = this.#writing.then(() => this.#writer.write(bytes)).catch((error) => {
      if (this.#broken) return;
      this.#broken = true;
      this.#log.warn("the watchdog is gone: commands will outlive a worker that is killed", {
        error: (error as Error).message,
      });
    });
  }
}
