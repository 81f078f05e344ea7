/**
 * Python's managers protocol as an extension of the `master` and `worker`
 * commands: `taskq master --python HOST:PORT` and
 * `taskq worker --python-master HOST:PORT`. `main.ts` passes it to those
 * commands; the core never imports it.
 *
 * @example
 * ```ts
 * import { PYTHON_CLI } from "./cli.ts";
 * console.log(Object.keys(PYTHON_CLI.masterFlags)); // ["python", "python-queue"]
 * ```
 *
 * @module
 */

import type { CliExtension } from "../cli/extension.ts";
import { PYTHON_MASTER_FLAGS, PYTHON_MASTER_HELP, pythonMasterFrontEnd } from "./cli_master.ts";
import { PYTHON_WORKER_FLAGS, PYTHON_WORKER_HELP, runPythonWorkerCommand } from "./cli_worker.ts";

/** The usage line `taskq worker --help` shows for Python masters. */
const PYTHON_WORKER_USAGE =
  "taskq worker --python-master HOST:PORT --python-queue NAME [options] -- COMMAND...";

/** Python's protocol in `taskq master` and `taskq worker`. */
export const PYTHON_CLI: CliExtension = {
  masterFlags: PYTHON_MASTER_FLAGS,
  masterHelp: PYTHON_MASTER_HELP,
  masterFrontEnd: pythonMasterFrontEnd,
  workerFlags: PYTHON_WORKER_FLAGS,
  workerHelp: PYTHON_WORKER_HELP,
  workerUsage: PYTHON_WORKER_USAGE,
  runWorker(parsed) {
    if (parsed.values["python-master"] === undefined) return undefined;
    return runPythonWorkerCommand(parsed);
  },
};
