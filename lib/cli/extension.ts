/**
 * How an optional feature adds to the `master` and `worker` commands without
 * the core importing it: `main.ts` hands each command the extensions it was
 * built with (today, Python's managers protocol in lib/python/cli.ts).
 *
 * @example
 * ```ts
 * import type { CliExtension } from "./extension.ts";
 * const none: CliExtension = {
 *   masterFlags: {},
 *   masterHelp: "",
 *   masterFrontEnd: () => undefined,
 *   workerFlags: {},
 *   workerHelp: "",
 *   workerUsage: "",
 *   runWorker: () => undefined,
 * };
 * console.log(Object.keys(none).length);
 * ```
 *
 * @module
 */

import type { FlagSpec, Parsed } from "./args.ts";
import type { FrontEndFactory } from "../server/front_end.ts";

/** An optional feature's part in `taskq master` and `taskq worker`. */
export interface CliExtension {
  /** Flags it adds to `taskq master`. */
  readonly masterFlags: FlagSpec;
  /** Lines it adds to the options of `taskq master --help`. */
  readonly masterHelp: string;
  /**
   * The front-end its flags ask for, checked before anything starts, or
   * `undefined` when they ask for none.
   * @throws {ConfigError} on a bad flag.
   */
  masterFrontEnd(parsed: Parsed, authkey: Uint8Array | undefined): FrontEndFactory | undefined;
  /** Flags it adds to `taskq worker`. */
  readonly workerFlags: FlagSpec;
  /** The section it adds to `taskq worker --help`. */
  readonly workerHelp: string;
  /** The usage line it adds to `taskq worker --help`. */
  readonly workerUsage: string;
  /** Runs `taskq worker` when its flags ask for it; `undefined` when they do not. */
  runWorker(parsed: Parsed): Promise<number> | undefined;
}
