/**
 * The taskq command: dispatches `taskq COMMAND` to the command's module.
 *
 * @module
 */

import { MASTER_SUMMARY, masterHelp, runMaster } from "./lib/cli/master.ts";
import { runWorkerCommand, WORKER_SUMMARY, workerHelp } from "./lib/cli/worker.ts";
import type { CliExtension } from "./lib/cli/extension.ts";
import { PYTHON_CLI } from "./lib/python/cli.ts";
import { PUT_HELP, PUT_SUMMARY, runPut } from "./lib/cli/put.ts";
import { GET_HELP, GET_SUMMARY, runGet } from "./lib/cli/get.ts";
import { runStatus, STATUS_HELP, STATUS_SUMMARY } from "./lib/cli/status.ts";
import { CANCEL_HELP, CANCEL_SUMMARY, runCancel } from "./lib/cli/cancel.ts";
import { JOB_HELP, JOB_SUMMARY, runJob } from "./lib/cli/job.ts";
import { LIMIT_HELP, LIMIT_SUMMARY, runLimit } from "./lib/cli/limit.ts";
import { DEMO_HELP, DEMO_SUMMARY, runDemo } from "./lib/cli/demo.ts";
import { HTTP_TOKEN_HELP, HTTP_TOKEN_SUMMARY, runHttpToken } from "./lib/cli/http_token.ts";
import { runTls, TLS_HELP, TLS_SUMMARY } from "./lib/cli/tls.ts";
import { PEEK_HELP, PEEK_SUMMARY, runPeek } from "./lib/cli/peek.ts";
import { DEAD_HELP, DEAD_SUMMARY, runDead } from "./lib/cli/dead.ts";
import { PURGE_HELP, PURGE_SUMMARY, runPurge } from "./lib/cli/purge.ts";
import { runWorkers, WORKERS_HELP, WORKERS_SUMMARY } from "./lib/cli/workers.ts";
import {
  QUIET_HELP,
  QUIET_SUMMARY,
  runQuiet,
  runStop,
  STOP_HELP,
  STOP_SUMMARY,
} from "./lib/cli/control.ts";
import { TaskqError } from "./lib/errors.ts";
import { errorLogLine, jsonLogsRequested } from "./lib/log.ts";
import denoJson from "./deno.json" with { type: "json" };

/** The release of this build. */
export const VERSION: string = denoJson.version;

/** The optional features this build adds to `master` and `worker`. */
const EXTENSIONS: readonly CliExtension[] = [PYTHON_CLI];

interface Command {
  summary: string;
  help: string;
  run(args: string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  master: {
    summary: MASTER_SUMMARY,
    help: masterHelp(EXTENSIONS),
    run: (args) => runMaster(args, EXTENSIONS),
  },
  worker: {
    summary: WORKER_SUMMARY,
    help: workerHelp(EXTENSIONS),
    run: (args) => runWorkerCommand(args, EXTENSIONS),
  },
  put: { summary: PUT_SUMMARY, help: PUT_HELP, run: runPut },
  get: { summary: GET_SUMMARY, help: GET_HELP, run: runGet },
  peek: { summary: PEEK_SUMMARY, help: PEEK_HELP, run: runPeek },
  dead: { summary: DEAD_SUMMARY, help: DEAD_HELP, run: runDead },
  purge: { summary: PURGE_SUMMARY, help: PURGE_HELP, run: runPurge },
  workers: { summary: WORKERS_SUMMARY, help: WORKERS_HELP, run: runWorkers },
  quiet: { summary: QUIET_SUMMARY, help: QUIET_HELP, run: runQuiet },
  stop: { summary: STOP_SUMMARY, help: STOP_HELP, run: runStop },
  status: { summary: STATUS_SUMMARY, help: STATUS_HELP, run: runStatus },
  job: { summary: JOB_SUMMARY, help: JOB_HELP, run: runJob },
  cancel: { summary: CANCEL_SUMMARY, help: CANCEL_HELP, run: runCancel },
  limit: { summary: LIMIT_SUMMARY, help: LIMIT_HELP, run: runLimit },
  demo: { summary: DEMO_SUMMARY, help: DEMO_HELP, run: runDemo },
  "http-token": { summary: HTTP_TOKEN_SUMMARY, help: HTTP_TOKEN_HELP, run: runHttpToken },
  tls: { summary: TLS_SUMMARY, help: TLS_HELP, run: runTls },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, command]) =>
    `  ${name.padEnd(width)}  ${command.summary}`
  );
  return `taskq ${VERSION}: distributed task queues in one binary.

Usage: taskq COMMAND [options]

Commands:
${lines.join("\n")}

Run "taskq COMMAND --help" for a command's options.
The key comes from --authkey-file FILE or the TASKQ_AUTHKEY environment variable.
`;
}

/** Runs the command line `args`; resolves with the process exit code. */
export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    console.log(`taskq ${VERSION}`);
    return 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    console.error(`taskq: unknown command "${name}" (run "taskq --help" for the list)`);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof TaskqError) {
      if (jsonLogsRequested(rest)) console.error(errorLogLine(name, error.message));
      else console.error(`taskq ${name}: ${error.message}`);
      return error.exitCode;
    }
    throw error;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
