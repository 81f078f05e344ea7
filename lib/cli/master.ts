/**
 * `taskq master`: runs a master until interrupted.
 *
 * @module
 */

import {
  authKey,
  DURATION_RULE,
  durationFlag,
  type FlagSpec,
  intFlag,
  LOG_FLAGS,
  logSettings,
  MAX_GRACE_MS,
  MAX_LEASE_MS,
  MIN_LEASE_MS,
  MIN_WAIT_MS,
  type Parsed,
  parseFlags,
  secondsFlag,
  stringFlag,
} from "./args.ts";
import { checkListenAddress, DEFAULT_HANDSHAKE_TIMEOUT_MS, serve } from "../server/master.ts";
import { DEFAULT_ADDRESS, formatAddress, redactUrl } from "../config.ts";
import {
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_LEASE_MS,
  DEFAULT_MAX_ATTEMPTS,
} from "../model/types.ts";
import { MAX_ATTEMPTS_LIMIT } from "../wire/messages.ts";
import { isValidQueueName, QUEUE_NAME_RULE } from "../model/queue_names.ts";
import { ConfigError } from "../errors.ts";
import { ITEMS_SHARE, MIN_MAX_MEMORY_BYTES, parseByteSize } from "../util/memory.ts";
import type { JobOptions } from "../broker/broker.ts";
import {
  DEFAULT_HISTORY_COUNT,
  DEFAULT_HISTORY_MS,
  type LimitChanges,
  MAX_CONCURRENCY,
  parseRate,
} from "../model/jobs.ts";

/** Most queues by default (as the engine's own default). */
const DEFAULT_MAX_QUEUES = 100_000;

/** Largest `--max-queue-length`, `--max-queues` and `--keep-jobs` accepted, in items. */
const MAX_ITEM_COUNT_FLAG = 1_000_000_000;

/** `--max-memory` in bytes, or `undefined` for the default. */
function maxMemoryFlag(parsed: Parsed): number | undefined {
  const text = stringFlag(parsed, "max-memory");
  if (text === undefined) return undefined;
  const bytes = parseByteSize(text);
  if (bytes === undefined || bytes < MIN_MAX_MEMORY_BYTES) {
    throw new ConfigError(
      `--max-memory takes a size of at least ${MIN_MAX_MEMORY_BYTES / 1024 / 1024}MiB, in ` +
        `bytes or with a unit (e.g. 512MiB, 2GiB), not "${text}"`,
    );
  }
  return bytes;
}
import { DEFAULT_MAX_FRAME_BYTES } from "../wire/frame.ts";
import { createLogger } from "../log.ts";
import { checkHttpAddress, httpFrontEnd } from "../http/server.ts";
import type { FrontEndFactory } from "../server/front_end.ts";
import type { CliExtension } from "./extension.ts";
import { TLS_MASTER_FLAGS, TLS_MASTER_HELP, tlsServerFromFlags } from "./tls_flags.ts";
import { PG_FLAGS, PG_HELP, postgresFromFlags } from "./pg_flags.ts";

/** Where the master keeps its items unless told otherwise. */
export const DEFAULT_DATA_DIR = "taskq-data";

/** One-line summary shown by `taskq --help`. */
export const MASTER_SUMMARY = "run a master that serves named queues";

/** Help text of `taskq master`, with the given extensions' options. */
export function masterHelp(extensions: readonly CliExtension[] = []): string {
  const more = extensions.map((e) => `${e.masterHelp}\n`).join("");
  return `Usage: taskq master [--listen HOST:PORT] [options]

Runs a master: serves named queues to clients and workers over TCP.
Queues are created on first use.

Options:
  --listen HOST:PORT        address to listen on (default ${DEFAULT_ADDRESS});
                            port 0 picks a free port
  --authkey-file FILE       file holding the shared key (else TASKQ_AUTHKEY);
                            required unless listening on loopback
${TLS_MASTER_HELP}
  --data DIR                where queued items are kept, durably (default
                            ${DEFAULT_DATA_DIR} in the working directory)
  --memory                  keep items in memory only: faster, but everything
                            queued is lost when the master stops
${PG_HELP}
  --lease SECONDS           default lease of a taken item, ${MIN_LEASE_MS / 1000} to ${
    MAX_LEASE_MS / 1000
  } (default ${DEFAULT_LEASE_MS / 1000})
  --max-attempts N          deliveries before a failing item goes to the
                            dead-letter queue NAME.dead (default ${DEFAULT_MAX_ATTEMPTS})
  --queue-max-attempts NAME=N
                            the same for one queue (repeatable)
  --retry-backoff SECONDS   first retry delay after a failure, at most ${
    DEFAULT_BACKOFF_MAX_MS / 1000
  };
                            doubles per attempt up to ${DEFAULT_BACKOFF_MAX_MS / 1000} s (default ${
    DEFAULT_BACKOFF_BASE_MS / 1000
  })
  --max-queue-length N      items a queue may hold before puts to it wait
                            (back-pressure on producers; default 0: no limit)
  --max-memory SIZE         memory budget, in bytes or with MiB/GiB (default
                            half the machine's memory, at most 3/4 of the
                            heap limit): puts are refused (memory_full) once
                            items take ${ITEMS_SHARE * 100}% of it; gets and acks go on
  --max-queues N            most queues at once (default ${DEFAULT_MAX_QUEUES}; 0: no
                            limit); empty, unused queues are forgotten first
  --queue-rate NAME=RATE    at most this many deliveries from queue NAME per
                            period, across every worker and master: RATE is
                            N/s, N/min, N/h or N/DURATION such as 10/5s
                            (repeatable; taskq limit changes it at run time)
  --queue-concurrency NAME=M
                            at most M items of queue NAME leased at once
                            (repeatable)
  --queue-group-concurrency NAME=M
                            at most M items of one group of queue NAME
                            leased at once (repeatable)
  --keep-jobs N             finished items whose records taskq job can show
                            (default ${DEFAULT_HISTORY_COUNT}, and 0 with
                            --store postgres, where each is a row written
                            with the ack; 0: none)
  --keep-jobs-for DURATION  how long those records are kept (default ${
    DEFAULT_HISTORY_MS / MS_PER_HOUR
  }h);
                            DURATION is ${DURATION_RULE}
  --max-frame BYTES         largest message accepted (default ${DEFAULT_MAX_FRAME_BYTES})
  --handshake-timeout SECONDS
                            time a new connection has to authenticate,
                            ${MIN_WAIT_MS / 1000} to ${MAX_GRACE_MS / 1000} (default ${
    DEFAULT_HANDSHAKE_TIMEOUT_MS / 1000
  })
${more}  --log-level LEVEL         debug, info, warn or error (default info)
  --http [HOST:]PORT        also serve the dashboard, a JSON API and /metrics
                            over HTTP (off by default; PORT alone means
                            127.0.0.1:PORT); every request but the page needs
                            the token printed by taskq http-token
  --log-format FORMAT       text or json (default text)
  -h, --help                show this help

Prints "taskq master listening on HOST:PORT" once ready. Stops cleanly on
Ctrl-C (SIGINT) or SIGTERM: stops accepting, answers what is in flight,
commits and closes the store.

Exit codes: 0 stopped cleanly, 2 bad flags, 3 the data directory or the
database's schema cannot be used (damaged, from a newer taskq, or held by
another running master: it is never overwritten), 1 any other error (the
database unreachable among them).
`;
}

const FLAGS: FlagSpec = {
  listen: { type: "string" },
  "authkey-file": { type: "string" },
  lease: { type: "string" },
  data: { type: "string" },
  memory: { type: "boolean" },
  "max-attempts": { type: "string" },
  "queue-max-attempts": { type: "string", multiple: true },
  "retry-backoff": { type: "string" },
  "queue-rate": { type: "string", multiple: true },
  "queue-concurrency": { type: "string", multiple: true },
  "queue-group-concurrency": { type: "string", multiple: true },
  "keep-jobs": { type: "string" },
  "keep-jobs-for": { type: "string" },
  "max-frame": { type: "string" },
  "max-queue-length": { type: "string" },
  "max-memory": { type: "string" },
  "max-queues": { type: "string" },
  "handshake-timeout": { type: "string" },
  http: { type: "string" },
  ...TLS_MASTER_FLAGS,
  ...PG_FLAGS,
  ...LOG_FLAGS,
};

function queueMaxAttempts(parsed: Parsed): Record<string, number> {
  const out: Record<string, number> = {};
  const values = parsed.values["queue-max-attempts"];
  for (const entry of Array.isArray(values) ? values : []) {
    const match = /^(.+)=(\d+)$/.exec(String(entry));
    const n = match ? Number(match[2]) : 0;
    if (!match || n < 1 || n > MAX_ATTEMPTS_LIMIT) {
      throw new ConfigError(
        `--queue-max-attempts takes NAME=N with N from 1 to ${MAX_ATTEMPTS_LIMIT}, not "${entry}"`,
      );
    }
    if (!isValidQueueName(match[1])) {
      throw new ConfigError(
        `--queue-max-attempts: "${match[1]}" is not a valid queue name: a queue name is ` +
          QUEUE_NAME_RULE,
      );
    }
    out[match[1]] = n;
  }
  return out;
}

/** Milliseconds per hour, for the help text's default. */
const MS_PER_HOUR = 3_600_000;

/**
 * The `NAME=VALUE` entries of a repeatable per-queue flag, as name and value
 * text, the names checked.
 * @throws {ConfigError} for an entry without `=` or with a bad queue name.
 */
function queueEntries(parsed: Parsed, flag: string, value: string): [string, string][] {
  const values = parsed.values[flag];
  return (Array.isArray(values) ? values : []).map((entry) => {
    const text = String(entry);
    const at = text.lastIndexOf("=");
    if (at <= 0) throw new ConfigError(`--${flag} takes NAME=${value}, not "${text}"`);
    const name = text.slice(0, at);
    if (!isValidQueueName(name)) {
      throw new ConfigError(
        `--${flag}: "${name}" is not a valid queue name: a queue name is ${QUEUE_NAME_RULE}`,
      );
    }
    return [name, text.slice(at + 1)];
  });
}

/**
 * The limits `--queue-rate`, `--queue-concurrency` and
 * `--queue-group-concurrency` set, by queue.
 * @throws {ConfigError} for a bad entry, naming the flag and the entry.
 */
function queueLimits(parsed: Parsed): Record<string, LimitChanges> {
  const out: Record<string, LimitChanges> = {};
  const set = (name: string, changes: LimitChanges) => out[name] = { ...out[name], ...changes };
  for (const [name, text] of queueEntries(parsed, "queue-rate", "RATE")) {
    try {
      set(name, parseRate(text));
    } catch (cause) {
      throw new ConfigError(`--queue-rate ${name}=${text}: ${(cause as Error).message}`, {
        cause,
      });
    }
  }
  const counts = [
    ["queue-concurrency", "concurrency"],
    ["queue-group-concurrency", "groupConcurrency"],
  ] as const;
  for (const [flag, field] of counts) {
    for (const [name, text] of queueEntries(parsed, flag, "M")) {
      const n = /^\d{1,7}$/.test(text) ? Number(text) : NaN;
      if (!(n <= MAX_CONCURRENCY)) {
        throw new ConfigError(
          `--${flag} takes NAME=M with M a whole number from 0 to ${MAX_CONCURRENCY} ` +
            `(0: no limit), not "${name}=${text}"`,
        );
      }
      set(name, { [field]: n });
    }
  }
  return out;
}

/**
 * The job options the flags give: history bounds (`--keep-jobs`,
 * `--keep-jobs-for`) and the queue limits set at start.
 * @throws {ConfigError} for a bad value.
 */
function jobOptions(parsed: Parsed): JobOptions {
  return {
    // Absent: each store's own default (none on PostgreSQL, where it costs a row per ack).
    historyCount: stringFlag(parsed, "keep-jobs") === undefined
      ? undefined
      : intFlag(parsed, "keep-jobs", DEFAULT_HISTORY_COUNT, 0, MAX_ITEM_COUNT_FLAG),
    historyMs: durationFlag(parsed, "keep-jobs-for", DEFAULT_HISTORY_MS),
    limits: queueLimits(parsed),
  };
}

const SHUTDOWN_SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM"];

/**
 * Runs `taskq master` with `args`, and the flags of `extensions`; resolves
 * with the exit code once stopped.
 */
export async function runMaster(
  args: string[],
  extensions: readonly CliExtension[] = [],
): Promise<number> {
  const flags: FlagSpec = { ...FLAGS };
  for (const extension of extensions) Object.assign(flags, extension.masterFlags);
  const parsed = parseFlags("master", args, flags);
  if (parsed.values.help) {
    console.log(masterHelp(extensions));
    return 0;
  }
  const log = createLogger(logSettings(parsed));
  if (parsed.values.memory && parsed.values.data !== undefined) {
    throw new ConfigError("--memory and --data exclude each other");
  }
  const postgres = postgresFromFlags(parsed);
  if (postgres !== undefined && (parsed.values.memory || parsed.values.data !== undefined)) {
    throw new ConfigError(
      `--store postgres://… keeps the items in the database: leave out --${
        parsed.values.memory ? "memory" : "data"
      }`,
    );
  }
  const dataDir = stringFlag(parsed, "data", DEFAULT_DATA_DIR) as string;
  // Refuse an unsafe address before the store creates or locks anything on disk.
  const authkey = authKey(parsed);
  const listen = checkListenAddress(
    stringFlag(parsed, "listen", DEFAULT_ADDRESS) as string,
    authkey,
  );
  const tls = tlsServerFromFlags(parsed);
  const frontEnds: FrontEndFactory[] = [];
  const httpText = stringFlag(parsed, "http");
  if (httpText !== undefined) {
    checkHttpAddress(httpText, authkey);
    frontEnds.push(httpFrontEnd({ listen: httpText, tls }));
  }
  for (const extension of extensions) {
    const frontEnd = extension.masterFrontEnd(parsed, authkey);
    if (frontEnd !== undefined) frontEnds.push(frontEnd);
  }
  const jobs = jobOptions(parsed);
  const master = await serve({
    listen,
    authkey,
    defaultLeaseMs: secondsFlag(parsed, "lease", DEFAULT_LEASE_MS, {
      minMs: MIN_LEASE_MS,
      maxMs: MAX_LEASE_MS,
    }),
    maxQueueLength: intFlag(parsed, "max-queue-length", 0, 0, MAX_ITEM_COUNT_FLAG),
    maxMemoryBytes: maxMemoryFlag(parsed),
    maxQueues: intFlag(parsed, "max-queues", DEFAULT_MAX_QUEUES, 0, MAX_ITEM_COUNT_FLAG),
    jobs,
    retry: {
      maxAttempts: intFlag(parsed, "max-attempts", DEFAULT_MAX_ATTEMPTS, 1, MAX_ATTEMPTS_LIMIT),
      backoffBaseMs: secondsFlag(parsed, "retry-backoff", DEFAULT_BACKOFF_BASE_MS, {
        maxMs: DEFAULT_BACKOFF_MAX_MS,
      }),
      maxAttemptsByQueue: queueMaxAttempts(parsed),
    },
    maxFrameBytes: intFlag(parsed, "max-frame", DEFAULT_MAX_FRAME_BYTES, 1024, 2 ** 32 - 1),
    handshakeTimeoutMs: secondsFlag(parsed, "handshake-timeout", DEFAULT_HANDSHAKE_TIMEOUT_MS, {
      minMs: MIN_WAIT_MS,
      maxMs: MAX_GRACE_MS,
    }),
    logger: log,
    tls,
    frontEnds,
    // Last, once every flag has been checked.
    store: postgres ?? (parsed.values.memory ? "memory" : { sqlite: dataDir }),
  });
  // Signals stop the master cleanly from the moment it says it listens.
  const stopped = Promise.withResolvers<string>();
  const handlers = SHUTDOWN_SIGNALS.map((signal) => {
    const handler = () => stopped.resolve(signal);
    Deno.addSignalListener(signal, handler);
    return [signal, handler] as const;
  });
  const where = formatAddress(master.address);
  console.log(`taskq master listening on ${where}`);
  for (const frontEnd of master.frontEnds) {
    console.log(frontEnd.banner);
    log.info(`${frontEnd.name} front-end started`, { address: frontEnd.address });
  }
  log.info("master started", {
    address: where,
    store: postgres !== undefined
      ? `postgres (${redactUrl(postgres.postgres)})`
      : parsed.values.memory
      ? "memory"
      : dataDir,
    maxMemoryBytes: master.broker.settings.maxMemoryBytes,
  });
  for (const [queue, limits] of Object.entries(jobs.limits ?? {})) {
    log.info("queue limits set", { queue, ...limits });
  }
  // The store may be a shared database that just went away: that is logged by the broker and
  // must not stop a master that has said it listens.
  const memory = (await master.broker.stats(undefined, 0).catch(() => undefined))?.memory;
  if (memory !== undefined && memory.heldBytes > memory.itemLimitBytes) {
    log.warn(
      "the items loaded take more than --max-memory allows items to: puts are refused " +
        "(memory_full) until workers take some; gets and acks go on",
      { heldBytes: memory.heldBytes, itemLimitBytes: memory.itemLimitBytes },
    );
  }
  const signal = await stopped.promise;
  for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
  log.info("master stopping", { signal });
  await master.close();
  log.info("master stopped");
  return 0;
}
