/**
 * The scale scenarios of `deno task bench` (issue #15): what the master costs
 * as the work grows along one axis at a time. Each prints its figure and one
 * JSON line per row (the rows of scripts/bench.ts: `scenario`, `store`,
 * `value`, `unit`, more fields), and is a part of its own:
 *
 * - `scale-rss`: a memory master's RSS before and after {@link RSS_ITEMS}
 *   small items (ints, put in batches) are queued: `master-rss-growth`.
 * - `scale-idle`: the seed workload (2 worker processes of
 *   scripts/bench_worker.ts, as bench.ts's) on a fresh memory master with no
 *   idle connections, then on another with {@link IDLE_CONNECTIONS}
 *   authenticated clients blocked in a get on another queue (opened by
 *   {@link IDLE_HELPER_PROCESSES} helper processes: one process may hold
 *   20,000 descriptors here); `seed-workload-idle` for each, the master's RSS
 *   with them (`master-rss-idle`) and the ratio (`ratio-idle-vs-none`).
 * - `scale-queues`: the same N tasks spread over 1 queue, then over
 *   {@link QUEUE_COUNT} queues (`queues-spread`), and the ratio
 *   (`ratio-queues-vs-one`). The workload is built so that both runs make the
 *   same requests and only the number of queues differs: every put and every
 *   get carries {@link queueChunk} items (N / the larger queue count), the
 *   producer puts chunk r on queue r mod Q, and when the queues are filled,
 *   each of 2 worker processes drains its share (with one queue, both share
 *   it) with {@link QUEUE_LANES} requests in flight, a get then an ack that
 *   puts the results, while the producer collects the results. A worker that
 *   owns a queue knows how many items it holds, so no run pays for empty
 *   gets. The figure is N over the fill plus the drain; the fill's and the
 *   drain's rates, and the master's CPU time per task, are in the row.
 * - `scale-restart`: for each count of {@link RESTART_ITEMS}, a durable master
 *   filled with that many items (batched puts, several in flight; the fill's
 *   rate is reported), stopped cleanly (SIGTERM) and restarted, then killed
 *   (SIGKILL) and restarted: `restart-first-get` times each restart from the
 *   spawn to the first get answered (and to "listening", and to every item
 *   counted by `stats`), with the master's RSS then.
 *
 * `scale` names them all. Counts come from the environment, for a smoke run
 * or a slow machine: TASKQ_BENCH_RSS_ITEMS, TASKQ_BENCH_IDLE_CONNECTIONS,
 * TASKQ_BENCH_QUEUES, TASKQ_BENCH_RESTART_ITEMS (comma-separated) and N (the
 * tasks of `scale-idle` and `scale-queues`: bench.ts's N, or this script's
 * argument). TASKQ_BENCH_ROOT runs the masters and the helper processes of
 * another checkout (e.g. a baseline worktree) while this script stays put;
 * TASKQ_BENCH_MASTER_DENO_FLAGS adds `deno run` flags to the masters (to
 * profile them with `--cpu-prof`, or give them a larger heap);
 * TASKQ_BENCH_ROUNDS=3 runs `scale-idle` and `scale-queues` 3 times, the base
 * and the grown case alternately, and compares the medians.
 * Every scenario is bounded in time, stops only the processes it started (by
 * their PIDs) and removes its temporary directories.
 *
 * Usage: deno run -A scripts/scale_bench.ts [N]
 * (TASKQ_BENCH_ONLY=scale-rss,scale-queues picks parts; all of them by default).
 *
 * @module
 */

import process from "node:process";
import { connect } from "../lib/mod.ts";
import { clockTicks } from "./pg_raw_bench.ts";
import {
  bounded,
  listeningAddress,
  rate,
  round2,
  type Scope,
  stopChild as stopChildWithin,
  within,
} from "./bench_util.ts";

/**
 * The parts this script runs, each named in TASKQ_BENCH_ONLY.
 *
 * @example
 * ```ts
 * import { SCALE_PARTS } from "./scale_bench.ts";
 * console.log(SCALE_PARTS.includes("scale-restart")); // true
 * ```
 */
export const SCALE_PARTS = ["scale-rss", "scale-idle", "scale-queues", "scale-restart"] as const;
/**
 * One of {@link SCALE_PARTS}.
 *
 * @example
 * ```ts
 * import type { ScalePart } from "./scale_bench.ts";
 * const part: ScalePart = "scale-queues";
 * console.log(part);
 * ```
 */
export type ScalePart = typeof SCALE_PARTS[number];
/**
 * The name that stands for every part of {@link SCALE_PARTS}.
 *
 * @example
 * ```ts
 * import { SCALE_ALL, scalePartsOf } from "./scale_bench.ts";
 * console.log(scalePartsOf((part) => part === SCALE_ALL).length); // 4
 * ```
 */
export const SCALE_ALL = "scale";

/**
 * A configuration value (an environment variable, or N) that cannot be used.
 *
 * @example
 * ```ts
 * import { ScaleBenchConfigError } from "./scale_bench.ts";
 * const error = new ScaleBenchConfigError("TASKQ_BENCH_QUEUES must be a positive integer");
 * console.log(error.name); // ScaleBenchConfigError
 * ```
 */
export class ScaleBenchConfigError extends Error {
  override name = "ScaleBenchConfigError";
}

/** A positive integer from the environment variable `name`, or `fallback` when unset. */
function envCount(name: string, fallback: number): number {
  const text = Deno.env.get(name);
  if (text === undefined || text === "") return fallback;
  const value = Number(text.replaceAll("_", ""));
  if (!Number.isInteger(value) || value < 1) {
    throw new ScaleBenchConfigError(`${name} must be a positive integer, not "${text}"`);
  }
  return value;
}

/** Positive integers, comma-separated, from the environment variable `name`. */
function envCounts(name: string, fallback: readonly number[]): number[] {
  const text = Deno.env.get(name);
  if (text === undefined || text === "") return [...fallback];
  return text.split(",").map((part) => {
    const value = Number(part.trim().replaceAll("_", ""));
    if (!Number.isInteger(value) || value < 1) {
      throw new ScaleBenchConfigError(
        `${name} takes positive integers, comma-separated (e.g. 1000000,10000000), not "${text}"`,
      );
    }
    return value;
  });
}

/**
 * Rounds of `scale-idle` and `scale-queues` (TASKQ_BENCH_ROUNDS, as bench.ts's): each round runs
 * the base case then the grown one, alternately; the ratio rows compare the medians.
 */
const ROUNDS = envCount("TASKQ_BENCH_ROUNDS", 1);
/** Tasks of `scale-idle` and `scale-queues` when neither bench.ts nor the command line gives N. */
const DEFAULT_N = 100_000;
/** Small items queued in `scale-rss`. */
const RSS_ITEMS = envCount("TASKQ_BENCH_RSS_ITEMS", 1_000_000);
/** Idle connections of `scale-idle`. */
const IDLE_CONNECTIONS = envCount("TASKQ_BENCH_IDLE_CONNECTIONS", 10_000);
/** Processes that open the idle connections between them. */
const IDLE_HELPER_PROCESSES = 4;
/**
 * Connections each helper opens at once (each a TCP connect and a handshake):
 * all the helpers together stay under the master's limit of connections
 * mid-handshake (DEFAULT_MAX_PENDING_HANDSHAKES = 64, lib/server/master.ts),
 * past which it drops the oldest.
 */
const IDLE_CONNECTS_IN_FLIGHT = 12;
/** Tries of one idle connection (a refused or dropped handshake is tried again). */
const IDLE_CONNECT_ATTEMPTS = 20;
/** Pause before another try of an idle connection, in ms. */
const IDLE_RETRY_MS = 100;
/** How long the master's and helpers' CPU use is sampled with the idle clients waiting, in ms. */
const IDLE_QUIET_SAMPLE_MS = 2_000;
/** The queue the idle clients wait on (nothing is ever put there). */
const IDLE_QUEUE = "scale-idle";
/** Time the idle clients have to connect and be seen waiting, in ms. */
const IDLE_READY_TIMEOUT_MS = 180_000;
/** Queues of the spread run of `scale-queues` (the other run has one). */
const QUEUE_COUNT = envCount("TASKQ_BENCH_QUEUES", 10_000);
/** Worker processes of `scale-queues`. */
const QUEUE_WORKERS = 2;
/** Requests (a get, then its ack) each worker of `scale-queues` has in flight. */
const QUEUE_LANES = 16;
/** Put requests the producer of `scale-queues` has in flight. */
const QUEUE_PUTS_IN_FLIGHT = 64;
/** Queue names of `scale-queues`: this, then the queue's number. */
const QUEUE_PREFIX = "spread-";
/** Where the workers of `scale-queues` wait for the producer's go, and put their results. */
const GO_QUEUE = "scale-go";
const RESULTS_QUEUE = "results";
/** Items of each durable master of `scale-restart`. */
const RESTART_ITEMS = envCounts("TASKQ_BENCH_RESTART_ITEMS", [1_000_000, 10_000_000]);
/** The queue `scale-restart` fills. */
const RESTART_QUEUE = "deep";
/** Time a restarted master has to answer the first get, in ms. */
const RESTART_GET_TIMEOUT_MS = 600_000;
/** How often `stats` is asked whether a restarted master counts every item, in ms. */
const LOAD_POLL_MS = 100;
/** Workers of the seed workload in `scale-idle` (as bench.ts's 2-worker row). */
const SEED_WORKERS = 2;
/** The bench workers' concurrency and prefetch (as in scripts/bench.ts). */
const WORKER_CONCURRENCY = 64;
const WORKER_PREFETCH = 256;
/** Items per put, and puts in flight, of every fill but `scale-queues`'s. */
const PUT_BATCH = 1_000;
const PUT_BATCHES_IN_FLIGHT = 8;
/** Results the producer takes (and acks) at once, and how long it waits for them, in ms. */
const COLLECT_BATCH = 1_000;
const COLLECT_TIMEOUT_MS = 60_000;
/** Time a scenario may take: this, plus {@link SCENARIO_MS_PER_ITEM} per item or task, in ms. */
const SCENARIO_BASE_MS = 180_000;
const SCENARIO_MS_PER_ITEM = 0.05;
/** Time a stopped process has to exit before it is killed, in ms (a deep durable master's stop). */
const STOP_GRACE_MS = 60_000;
/** How often a condition is polled, in ms. */
const POLL_MS = 20;
/** Progress lines per fill or run. */
const PROGRESS_STEPS = 4;
/** Bytes in a MiB. */
const MIB = 2 ** 20;

/** The checkout whose main.ts the masters run, and whose library the helper processes use. */
const ROOT_DIR = Deno.env.get("TASKQ_BENCH_ROOT");
const ROOT = ROOT_DIR === undefined
  ? new URL("..", import.meta.url)
  : new URL(`${ROOT_DIR.replace(/\/*$/, "")}/`, `file://${Deno.cwd()}/`);

/**
 * Flags for `deno run` of every master (TASKQ_BENCH_MASTER_DENO_FLAGS, space-separated), to
 * profile one: e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" or "--v8-flags=--max-old-space-size=8192".
 */
const MASTER_DENO_FLAGS = (Deno.env.get("TASKQ_BENCH_MASTER_DENO_FLAGS") ?? "").split(" ")
  .filter((flag) => flag !== "");

/**
 * One row: as scripts/bench.ts's rows (printed as a JSON line and kept for its table).
 *
 * @example
 * ```ts
 * import type { ScaleRow } from "./scale_bench.ts";
 * const row: ScaleRow = { scenario: "master-rss-growth", store: "memory", value: 30, unit: "MiB" };
 * console.log(JSON.stringify(row));
 * ```
 */
export interface ScaleRow {
  scenario: string;
  store?: "memory" | "durable";
  workers?: number;
  value: number;
  unit: string;
  [key: string]: unknown;
}

/**
 * Options of {@link runScale}.
 *
 * @example
 * ```ts
 * import type { RunScaleOptions } from "./scale_bench.ts";
 * const options: RunScaleOptions = { n: 2_000, parts: ["scale-rss"], report: console.log };
 * console.log(options.parts);
 * ```
 */
export interface RunScaleOptions {
  /** Tasks of `scale-idle` and `scale-queues`. */
  n: number;
  /** The parts to run, in the order of {@link SCALE_PARTS}. */
  parts: readonly ScalePart[];
  /** Receives each row (bench.ts prints it as a JSON line and keeps it for the table). */
  report: (row: ScaleRow) => void;
  /** Progress text (default: none). */
  progress?: (text: string) => void;
}

/**
 * Which of {@link SCALE_PARTS} `runs` selects: a part named itself, or
 * {@link SCALE_ALL}; `scale-rss` also for bench.ts's older name `rss`.
 *
 * @example
 * ```ts
 * import { scalePartsOf } from "./scale_bench.ts";
 * const only = ["scale-idle", "rss"];
 * console.log(scalePartsOf((part) => only.includes(part))); // ["scale-rss", "scale-idle"]
 * ```
 */
export function scalePartsOf(runs: (part: string) => boolean): ScalePart[] {
  return SCALE_PARTS.filter((part) =>
    runs(part) || runs(SCALE_ALL) || (part === "scale-rss" && runs("rss"))
  );
}

/**
 * Runs `options.parts`, reporting rows as they come. Resolves to the
 * failures: a scenario that throws or runs over its time is reported there,
 * everything it started is stopped, and the others go on.
 *
 * @example
 * ```ts ignore
 * // Starts masters and worker processes: a smoke run of one part, 2,000 items.
 * import { runScale } from "./scale_bench.ts";
 * const failures = await runScale({ n: 2_000, parts: ["scale-queues"], report: console.log });
 * console.log(failures.length === 0);
 * ```
 */
export async function runScale(options: RunScaleOptions): Promise<string[]> {
  const failures: string[] = [];
  const ctx: Ctx = { ...options, progress: options.progress ?? (() => {}) };
  const ran = (label: string, items: number, run: (cleanups: Scope) => Promise<void>) =>
    bounded(label, SCENARIO_BASE_MS + items * SCENARIO_MS_PER_ITEM, failures, run);
  if (options.parts.includes("scale-rss")) {
    await ran(`scale-rss, ${RSS_ITEMS} items`, RSS_ITEMS, (c) => rssGrowth(ctx, c));
  }
  if (options.parts.includes("scale-idle")) await idleConnections(ctx, ran);
  if (options.parts.includes("scale-queues")) await queueSpread(ctx, ran);
  if (options.parts.includes("scale-restart")) {
    for (const items of RESTART_ITEMS) {
      await ran(`scale-restart, ${items} items`, items, (c) => restart(ctx, c, items));
    }
  }
  return failures;
}

/** What every scenario gets. */
interface Ctx extends RunScaleOptions {
  progress: (text: string) => void;
}

/** Runs one scenario, bounded in time, with its clean-ups (see {@link bounded}). */
type Ran = (label: string, items: number, run: (cleanups: Scope) => Promise<void>) => Promise<
  boolean
>;

// ------------------------------------------------------------------ processes

/** Stops a child process this script started, with this script's longer grace (a deep durable master). */
function stopChild(child: Deno.ChildProcess, signal: Deno.Signal = "SIGTERM"): Promise<void> {
  return stopChildWithin(child, signal, STOP_GRACE_MS);
}

/** A master this script started. */
interface Master {
  address: string;
  pid: number;
  /** ms (performance.now()) from the spawn to its "listening on" line. */
  listeningMs: number;
  /** performance.now() just before the spawn. */
  spawnedAt: number;
  /** Stops it (SIGTERM, or the signal given); resolves when it has exited. */
  stop(signal?: Deno.Signal): Promise<void>;
}

/** Starts `ROOT/main.ts master` on an ephemeral loopback port; stopped by `cleanups`. */
async function startMaster(
  args: readonly string[],
  cleanups: Scope,
  env: Record<string, string> = {},
): Promise<Master> {
  const spawnedAt = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      ...MASTER_DENO_FLAGS,
      new URL("main.ts", ROOT).pathname,
      "master",
      ...["--listen", "127.0.0.1:0", "--log-level", "warn"],
      ...args,
    ],
    env,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stopping: Promise<void> | undefined;
  const stop = (signal: Deno.Signal = "SIGTERM") =>
    stopping ??= (async () => {
      await stopChild(child, signal);
      await reader.cancel().catch(() => {});
    })();
  cleanups.defer(() => stop("SIGTERM"));
  const address = await listeningAddress(reader);
  if (address === undefined) {
    await stop();
    throw new Error("the master exited before listening");
  }
  const listeningMs = performance.now() - spawnedAt;
  // Keep reading what it prints, so that it never blocks on a full pipe.
  (async () => {
    while (!(await reader.read().catch(() => ({ done: true }))).done) {
      // Discarded.
    }
  })();
  return {
    address,
    pid: child.pid,
    listeningMs,
    spawnedAt,
    stop,
  };
}

/** Writes `source` to a file in `dir` and returns its path. */
async function writeScript(dir: string, name: string, source: string): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, source);
  return path;
}

/** A temporary directory, removed by `cleanups`. */
async function tempDir(prefix: string, cleanups: Scope): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  cleanups.defer(() => Deno.remove(dir, { recursive: true }));
  return dir;
}

/** A process's resident set (VmRSS), in bytes. */
async function rssOf(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** A process's CPU time so far (user + system), in seconds. */
async function cpuOf(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // The fields after the command name (which may hold spaces): utime and stime are 14th and 15th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / await clockTicks();
}

/** The machine's load average over the last minute (/proc/loadavg): how busy it was. */
async function loadAverage(): Promise<number> {
  return Number((await Deno.readTextFile("/proc/loadavg")).split(" ")[0]);
}

/** The CPU time so far of every process of `pids`, in seconds. */
async function cpuOfAll(pids: readonly number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) total += await cpuOf(pid);
  return total;
}

/** Bytes the files under `dir` take. */
async function sizeOf(dir: string): Promise<number> {
  let total = 0;
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    total += entry.isDirectory ? await sizeOf(path) : (await Deno.stat(path)).size;
  }
  return total;
}

/** The round a row belongs to, when there are several. */
function roundField(round: number): { round?: number } {
  return ROUNDS > 1 ? { round } : {};
}

/**
 * The median of each numeric field over `list` (other fields: the first's), or undefined
 * when the list is empty or missing.
 */
function medians<T extends object>(list: readonly T[] | undefined): T | undefined {
  if (list === undefined || list.length === 0) return undefined;
  const out = { ...list[0] } as Record<string, unknown>;
  for (const [key, value] of Object.entries(list[0])) {
    if (typeof value !== "number") continue;
    const sorted = list.map((item) => (item as Record<string, number>)[key]).sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    out[key] = sorted.length % 2 === 1 ? sorted[mid] : round2((sorted[mid - 1] + sorted[mid]) / 2);
  }
  return out as T;
}

function mib(bytes: number): number {
  return Math.round(bytes / MIB);
}

/** Polls `check` every `pollMs` until it holds; throws `what` after `ms`. */
async function until(
  check: () => Promise<boolean>,
  ms: number,
  what: string,
  pollMs = POLL_MS,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`${what} within ${ms / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** Puts the ints 0, 1, … `items` - 1 on `queue` in batches, several in flight; resolves in ms. */
async function fill(
  address: string,
  queue: string,
  items: number,
  progress: (text: string) => void,
  label: string,
  env: { authkey?: string } = {},
): Promise<number> {
  const client = await connect({ address, reconnect: false, authkey: env.authkey });
  try {
    const q = client.queue(queue);
    const t0 = performance.now();
    const inFlight: Promise<unknown>[] = [];
    const step = Math.max(PUT_BATCH, Math.ceil(items / PROGRESS_STEPS / PUT_BATCH) * PUT_BATCH);
    for (let first = 0; first < items; first += PUT_BATCH) {
      const values = Array.from(
        { length: Math.min(PUT_BATCH, items - first) },
        (_, i) => first + i,
      );
      const put = q.putMany(values);
      put.catch(() => {});
      inFlight.push(put);
      if (inFlight.length >= PUT_BATCHES_IN_FLIGHT) await inFlight.shift();
      if (first % step === 0) progress(`${label}: ${first}/${items}`);
    }
    await Promise.all(inFlight);
    return performance.now() - t0;
  } finally {
    await client.close();
  }
}

// ------------------------------------------------------------------ scale-rss

/** A memory master's RSS before and after {@link RSS_ITEMS} small items are queued. */
async function rssGrowth(ctx: Ctx, cleanups: Scope): Promise<void> {
  const master = await startMaster(["--memory"], cleanups);
  // Connected once first, so that "before" holds a session as "after" does.
  const client = await connect({ address: master.address, reconnect: false });
  cleanups.defer(() => client.close());
  await client.stats();
  const before = await rssOf(master.pid);
  const fillMs = await fill(master.address, "bench-memory", RSS_ITEMS, ctx.progress, "scale-rss");
  const after = await rssOf(master.pid);
  const growth = after - before;
  console.log(
    `master RSS, memory, ${RSS_ITEMS} small items: ${mib(before)} MiB before, ${mib(after)} MiB ` +
      `after, ${mib(growth)} MiB growth (${Math.round(growth / RSS_ITEMS)} bytes per item)`,
  );
  ctx.report({
    scenario: "master-rss-growth",
    store: "memory",
    value: mib(growth),
    unit: "MiB RSS growth",
    items: RSS_ITEMS,
    rssBeforeMiB: mib(before),
    rssAfterMiB: mib(after),
    bytesPerItem: Math.round(growth / RSS_ITEMS),
    fillSeconds: round2(fillMs / 1000),
  });
}

// ------------------------------------------------------------------ scale-idle

/**
 * A helper holding idle connections: ADDRESS COUNT IN_FLIGHT QUEUE ATTEMPTS
 * RETRY_MS; each client authenticates (TASKQ_AUTHKEY) and waits in a get on
 * QUEUE, forever (a refused handshake is tried again, ATTEMPTS times at most).
 * Prints one line on stderr once all are connected, then holds them until killed.
 */
const IDLE_HELPER_SOURCE = (root: URL) => `
import { connect } from ${JSON.stringify(new URL("lib/mod.ts", root).href)};
const [address, count, inFlight, queue, attempts, retryMs] = Deno.args;
const total = Number(count);
let retries = 0;
const clients = [];
let next = 0;
const t0 = performance.now();
async function lane() {
  while (next < total) {
    const i = next++;
    let client;
    for (let attempt = 1; client === undefined; attempt++) {
      try {
        client = await connect({ address, reconnect: false, name: "idle-" + Deno.pid + "-" + i });
      } catch (error) {
        if (attempt >= Number(attempts)) throw error;
        retries++;
        await new Promise((resolve) => setTimeout(resolve, Number(retryMs)));
      }
    }
    clients.push(client);
    client.queue(queue).get().catch(() => {});
  }
}
await Promise.all(Array.from({ length: Number(inFlight) }, lane));
const ms = Math.round(performance.now() - t0);
console.error("  idle helper " + Deno.pid + ": " + clients.length + " connections in " + ms + " ms, " + retries + " retried");
setInterval(() => {}, 1 << 30);
`;

/** The seed workload on a fresh memory master with 0, then {@link IDLE_CONNECTIONS} idle clients. */
async function idleConnections(ctx: Ctx, ran: Ran): Promise<void> {
  const authkey = crypto.randomUUID();
  const values = new Map<number, { tasks: number; rss: number; cpuUs: number }[]>();
  let rssBeforeIdle = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    for (const idle of [0, IDLE_CONNECTIONS]) {
      await ran(`scale-idle, ${idle} idle connections`, ctx.n, async (cleanups) => {
        const env = { TASKQ_AUTHKEY: authkey };
        const master = await startMaster(["--memory"], cleanups, env);
        const dir = await tempDir("taskq-scale-idle-", cleanups);
        let connectMs = 0;
        let helperPids: number[] = [];
        let quiet: Record<string, number> = {};
        if (idle > 0) {
          rssBeforeIdle = await rssOf(master.pid);
          const script = await writeScript(dir, "idle_helper.ts", IDLE_HELPER_SOURCE(ROOT));
          const t0 = performance.now();
          const helpers = Array.from({ length: IDLE_HELPER_PROCESSES }, (_, h) => {
            const count = Math.floor(idle / IDLE_HELPER_PROCESSES) +
              (h < idle % IDLE_HELPER_PROCESSES ? 1 : 0);
            const child = new Deno.Command(Deno.execPath(), {
              args: [
                "run",
                "-A",
                script,
                master.address,
                String(count),
                String(IDLE_CONNECTS_IN_FLIGHT),
                IDLE_QUEUE,
                String(IDLE_CONNECT_ATTEMPTS),
                String(IDLE_RETRY_MS),
              ],
              env,
              // It says how many it opened, how fast, with how many retries, on stderr.
              stdout: "null",
              stderr: "inherit",
            }).spawn();
            cleanups.defer(() => stopChild(child, "SIGKILL"));
            return child;
          });
          const client = await connect({ address: master.address, reconnect: false, authkey });
          cleanups.defer(() => client.close());
          let waiting = 0;
          await until(
            async () => {
              if (await within(Promise.race(helpers.map((h) => h.status)), 0)) {
                throw new Error("an idle-connection helper exited");
              }
              waiting = (await client.stats(IDLE_QUEUE)).queues[0]?.waiting ?? 0;
              ctx.progress(`scale-idle: ${waiting}/${idle} idle clients waiting`);
              return waiting >= idle;
            },
            IDLE_READY_TIMEOUT_MS,
            `${idle} idle clients were not all waiting (${waiting} were)`,
          );
          connectMs = performance.now() - t0;
          helperPids = helpers.map((h) => h.pid);
          // What the waiting clients cost when nothing else happens (timers, scans): CPU %.
          const master0 = await cpuOf(master.pid);
          const helpers0 = await cpuOfAll(helperPids);
          await new Promise((resolve) => setTimeout(resolve, IDLE_QUIET_SAMPLE_MS));
          const pct = (seconds: number) => round2(seconds / (IDLE_QUIET_SAMPLE_MS / 1000) * 100);
          quiet = {
            masterQuietCpuPct: pct(await cpuOf(master.pid) - master0),
            helpersQuietCpuPct: pct(await cpuOfAll(helperPids) - helpers0),
          };
        }
        const rssIdle = await rssOf(master.pid);
        const helpersBefore = await cpuOfAll(helperPids);
        const row = await seedWorkload(ctx, master, { authkey, dir, idle, cleanups });
        const helpersCpu = round2(await cpuOfAll(helperPids) - helpersBefore);
        const rssAfter = await rssOf(master.pid);
        const measured = {
          tasks: row.value,
          rss: rssIdle,
          cpuUs: row.masterCpuUsPerTask as number,
        };
        values.set(idle, [...values.get(idle) ?? [], measured]);
        ctx.report({
          ...row,
          ...roundField(round),
          idleConnections: idle,
          variant: `${idle} idle`,
          masterRssMiB: mib(rssIdle),
          masterRssAfterMiB: mib(rssAfter),
          ...(idle > 0 ? { idleHelpersCpuSeconds: helpersCpu, ...quiet } : {}),
        });
        if (idle > 0) {
          const perConnection = Math.round((rssIdle - rssBeforeIdle) / idle);
          console.log(
            `  ${idle} idle connections (opened in ${round2(connectMs / 1000)} s): master RSS ` +
              `${mib(rssBeforeIdle)} MiB before them, ${mib(rssIdle)} MiB with them ` +
              `(${perConnection} bytes each), ${mib(rssAfter)} MiB after the workload`,
          );
          ctx.report({
            scenario: "master-rss-idle",
            store: "memory",
            value: mib(rssIdle),
            unit: "MiB RSS",
            variant: `${idle} idle`,
            idleConnections: idle,
            rssBeforeIdleMiB: mib(rssBeforeIdle),
            bytesPerConnection: perConnection,
            connectSeconds: round2(connectMs / 1000),
            ...roundField(round),
          });
        }
      });
    }
  }
  const none = medians(values.get(0));
  const many = medians(values.get(IDLE_CONNECTIONS));
  if (none === undefined || many === undefined) return;
  const ratio = round2(many.tasks / none.tasks);
  console.log(
    `seed workload, ${SEED_WORKERS} workers, memory${ROUNDS > 1 ? ", medians" : ""}: ` +
      `${none.tasks} tasks/s with no idle ` +
      `connection, ${many.tasks} with ${IDLE_CONNECTIONS}: ${ratio}×; master CPU ${none.cpuUs} → ` +
      `${many.cpuUs} µs/task; master RSS ${mib(none.rss)} → ${mib(many.rss)} MiB`,
  );
  ctx.report({
    scenario: "ratio-idle-vs-none",
    store: "memory",
    workers: SEED_WORKERS,
    value: ratio,
    unit: "×",
    idleConnections: IDLE_CONNECTIONS,
    tasksPerSecond: many.tasks,
    noIdleTasksPerSecond: none.tasks,
    masterCpuUsPerTask: many.cpuUs,
    noIdleMasterCpuUsPerTask: none.cpuUs,
    masterRssMiB: mib(many.rss),
    noIdleMasterRssMiB: mib(none.rss),
    rounds: Math.min(values.get(0)!.length, values.get(IDLE_CONNECTIONS)!.length),
  });
}

/**
 * The seed workload as scripts/bench.ts runs it: a producer (this process)
 * puts N ints in pipelined batches, {@link SEED_WORKERS} processes of
 * `ROOT/scripts/bench_worker.ts` square them into "results", the producer
 * collects them. The clock starts once every worker is connected.
 */
async function seedWorkload(
  ctx: Ctx,
  master: Master,
  options: { authkey: string; dir: string; idle: number; cleanups: Scope },
): Promise<ScaleRow> {
  const { authkey, idle, cleanups } = options;
  const n = ctx.n;
  const client = await connect({
    address: master.address,
    reconnect: false,
    authkey,
    name: `scale-producer-${Deno.pid}`,
  });
  cleanups.defer(() => client.close());
  const procs = Array.from({ length: SEED_WORKERS }, () =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("scripts/bench_worker.ts", ROOT).pathname,
        master.address,
        String(WORKER_CONCURRENCY),
        String(WORKER_PREFETCH),
      ],
      env: { TASKQ_AUTHKEY: authkey },
      stdout: "piped",
      stderr: "inherit",
    }).spawn());
  for (const proc of procs) cleanups.defer(() => stopChild(proc, "SIGKILL"));
  const exits = procs.map((proc) => proc.output());
  for (const exit of exits) exit.catch(() => {});
  const ints = Array.from({ length: n }, () => Math.floor(Math.random() * 10_001));
  await until(
    async () => (await client.stats()).clients >= SEED_WORKERS + 1 + idle,
    COLLECT_TIMEOUT_MS,
    "the workers did not connect",
  );
  const tasks = client.queue("tasks");
  const results = client.queue("results");
  const cpu0 = await cpuOf(master.pid);
  const producer0 = process.cpuUsage();
  const t0 = performance.now();
  const putting = (async () => {
    const inFlight: Promise<unknown>[] = [];
    for (let i = 0; i < n; i += PUT_BATCH) {
      const put = tasks.putMany(ints.slice(i, i + PUT_BATCH));
      put.catch(() => {});
      inFlight.push(put);
      if (inFlight.length >= PUT_BATCHES_IN_FLIGHT) await inFlight.shift();
    }
    await Promise.all(inFlight);
  })();
  putting.catch(() => {});
  let got = 0;
  while (got < n) {
    const jobs = await results.getMany(COLLECT_BATCH, COLLECT_TIMEOUT_MS);
    if (jobs.length === 0) throw new Error(`only ${got} of ${n} results came`);
    await results.ack(jobs);
    got += jobs.length;
    if (got % Math.ceil(n / PROGRESS_STEPS) < jobs.length) {
      ctx.progress(`scale-idle, ${idle} idle: ${got}/${n}`);
    }
  }
  const ms = performance.now() - t0;
  const cpu = await cpuOf(master.pid) - cpu0;
  const producerUsed = process.cpuUsage(producer0);
  const producerCpu = (producerUsed.user + producerUsed.system) / 1e6;
  await putting;
  const outputs = await Promise.all(exits);
  const codes = outputs.map((out) => out.code);
  if (codes.some((code) => code !== 0)) {
    console.error(`  bench workers exited with ${codes.join(", ")}; the others finished the run`);
  }
  // Each bench worker's last line says the CPU time it used, start-up included.
  const workerCpu = outputs.reduce((sum, out) => {
    try {
      const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
      return sum + (JSON.parse(line).cpuSeconds ?? 0);
    } catch {
      return sum;
    }
  }, 0);
  return {
    scenario: "seed-workload-idle",
    store: "memory",
    workers: SEED_WORKERS,
    value: rate(n, ms),
    unit: "tasks/s",
    n,
    masterCpuUsPerTask: Math.round(cpu / n * 1e6 * 10) / 10,
    workerCpuSeconds: round2(workerCpu),
    producerCpuSeconds: round2(producerCpu),
    loadAverage: await loadAverage(),
  };
}

// ------------------------------------------------------------------ scale-queues

/**
 * Items per put and per get in `scale-queues`: N over the larger queue count, at least 1.
 *
 * @example
 * ```ts
 * import { queueChunk } from "./scale_bench.ts";
 * console.log(queueChunk(100_000, 10_000)); // 10
 * ```
 */
export function queueChunk(n: number, queues: number): number {
  return Math.max(1, Math.ceil(n / queues));
}

/**
 * A worker of `scale-queues`: ADDRESS INDEX WORKERS QUEUES N CHUNK LANES.
 * It waits for the go (an item on the go queue), then drains its queues
 * (queue q is worker q mod WORKERS's; with fewer queues than workers, all
 * share them) with LANES requests in flight, each a get of up to CHUNK items
 * (waiting for none) and an ack that puts their squares on "results". The
 * producer put chunk r (CHUNK items, the last fewer) on queue r mod QUEUES, so
 * a worker that owns a queue knows how many items it holds; a shared queue is
 * drained until a get comes back empty. Prints one JSON line as it exits.
 */
const QUEUE_WORKER_SOURCE = (root: URL) => `
import process from "node:process";
import { connect } from ${JSON.stringify(new URL("lib/mod.ts", root).href)};
const address = Deno.args[0];
const [index, workers, queues, n, chunk, lanes] = Deno.args.slice(1, 7).map(Number);
const [prefix, goQueue, results] = Deno.args.slice(7);
const client = await connect({ address, reconnect: false, name: "scale-queue-worker-" + Deno.pid });
const go = await client.queue(goQueue).get();
await client.queue(goQueue).ack(go);
const owned = queues >= workers;
const mine = [];
for (let q = 0; q < queues; q++) if (!owned || q % workers === index) mine.push(q);
const chunks = Math.ceil(n / chunk);
const holds = (q) => {
  let items = 0;
  for (let r = q; r < chunks; r += queues) items += Math.min(chunk, n - r * chunk);
  return items;
};
let handled = 0;
let gets = 0;
// Lanes split owned queues between them; a shared queue is drained by every lane.
async function lane(l) {
  for (let k = owned ? l : 0; k < mine.length; k += owned ? lanes : 1) {
    const queue = client.queue(prefix + mine[k]);
    let left = owned ? holds(mine[k]) : Infinity;
    while (left > 0) {
      const jobs = await queue.getMany(Math.min(chunk, left), 0);
      gets++;
      if (jobs.length === 0) {
        if (owned) throw new Error(prefix + mine[k] + " ran dry with " + left + " items to come");
        break;
      }
      left -= jobs.length;
      await queue.ack(jobs, { results: { queue: results, values: jobs.map((j) => j.value * j.value) } });
      handled += jobs.length;
    }
  }
}
await Promise.all(Array.from({ length: lanes }, (_, l) => lane(l)));
await client.close();
const cpu = process.cpuUsage();
console.log(JSON.stringify({ handled, gets, cpuSeconds: (cpu.user + cpu.system) / 1e6 }));
`;

/** The same N tasks over 1 queue, then over {@link QUEUE_COUNT}, each on a fresh memory master. */
async function queueSpread(ctx: Ctx, ran: Ran): Promise<void> {
  const n = ctx.n;
  const chunk = queueChunk(n, QUEUE_COUNT);
  const runs = new Map<number, ScaleRow[]>();
  for (let round = 1; round <= ROUNDS; round++) {
    for (const queues of [1, QUEUE_COUNT]) {
      await ran(`scale-queues, ${queues} queue(s)`, n, async (cleanups) => {
        const master = await startMaster(["--memory"], cleanups);
        const dir = await tempDir("taskq-scale-queues-", cleanups);
        const script = await writeScript(dir, "queue_worker.ts", QUEUE_WORKER_SOURCE(ROOT));
        const client = await connect({ address: master.address, reconnect: false });
        cleanups.defer(() => client.close());
        const procs = Array.from(
          { length: QUEUE_WORKERS },
          (_, index) =>
            new Deno.Command(Deno.execPath(), {
              args: [
                "run",
                "-A",
                script,
                ...[master.address, index, QUEUE_WORKERS, queues, n, chunk, QUEUE_LANES].map(
                  String,
                ),
                QUEUE_PREFIX,
                GO_QUEUE,
                RESULTS_QUEUE,
              ],
              stdout: "piped",
              stderr: "inherit",
            }).spawn(),
        );
        for (const proc of procs) cleanups.defer(() => stopChild(proc, "SIGKILL"));
        const exits = procs.map(async (proc) => {
          const out = await proc.output();
          if (!out.success) throw new Error(`a queue worker exited with ${out.code}`);
          return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!) as {
            handled: number;
            gets: number;
            cpuSeconds: number;
          };
        });
        for (const exit of exits) exit.catch(() => {});
        await until(
          async () => {
            if (await within(Promise.race(procs.map((p) => p.status)), 0)) {
              throw new Error("a queue worker exited before the go");
            }
            return ((await client.stats(GO_QUEUE)).queues[0]?.waiting ?? 0) >= QUEUE_WORKERS;
          },
          COLLECT_TIMEOUT_MS,
          "the queue workers did not connect",
        );
        // The fill: chunk r on queue r mod Q, round-robin, many puts in flight.
        const cpu0 = await cpuOf(master.pid);
        const t0 = performance.now();
        const window = new Set<Promise<unknown>>();
        for (let r = 0, first = 0; first < n; r++, first += chunk) {
          const values = Array.from({ length: Math.min(chunk, n - first) }, (_, i) => first + i);
          const put: Promise<unknown> = client.queue(`${QUEUE_PREFIX}${r % queues}`).putMany(values)
            .finally(() => window.delete(put));
          window.add(put);
          if (window.size >= QUEUE_PUTS_IN_FLIGHT) await Promise.race(window);
        }
        await Promise.all(window);
        const fillMs = performance.now() - t0;
        const cpu1 = await cpuOf(master.pid);
        ctx.progress(`scale-queues, ${queues} queue(s): filled`);
        // The drain: every worker goes at once; the producer collects the results.
        const t1 = performance.now();
        await client.queue(GO_QUEUE).putMany(Array.from({ length: QUEUE_WORKERS }, (_, i) => i));
        const results = client.queue(RESULTS_QUEUE);
        let got = 0;
        while (got < n) {
          const jobs = await results.getMany(COLLECT_BATCH, COLLECT_TIMEOUT_MS);
          if (jobs.length === 0) throw new Error(`only ${got} of ${n} results came`);
          await results.ack(jobs);
          got += jobs.length;
        }
        const drainMs = performance.now() - t1;
        const cpu2 = await cpuOf(master.pid);
        const workers = await Promise.all(exits);
        const handled = workers.reduce((sum, w) => sum + w.handled, 0);
        if (handled !== n) throw new Error(`the workers handled ${handled} items, not ${n}`);
        const row: ScaleRow = {
          scenario: "queues-spread",
          store: "memory",
          workers: QUEUE_WORKERS,
          value: rate(n, fillMs + drainMs),
          unit: "tasks/s",
          variant: `${queues} queue${queues === 1 ? "" : "s"}`,
          queues,
          n,
          itemsPerRequest: chunk,
          putsPerSecond: rate(n, fillMs),
          drainTasksPerSecond: rate(n, drainMs),
          gets: workers.reduce((sum, w) => sum + w.gets, 0),
          masterCpuUsPerTask: Math.round((cpu2 - cpu0) / n * 1e6 * 10) / 10,
          masterCpuUsPerPut: Math.round((cpu1 - cpu0) / n * 1e6 * 10) / 10,
          masterCpuUsPerDrainedTask: Math.round((cpu2 - cpu1) / n * 1e6 * 10) / 10,
          workerCpuSeconds: round2(workers.reduce((sum, w) => sum + w.cpuSeconds, 0)),
          loadAverage: await loadAverage(),
          ...roundField(round),
        };
        runs.set(queues, [...runs.get(queues) ?? [], row]);
        ctx.report(row);
      });
    }
  }
  const one = medians(runs.get(1));
  const many = medians(runs.get(QUEUE_COUNT));
  if (one === undefined || many === undefined) return;
  const ratio = round2(many.value / one.value);
  console.log(
    `${n} tasks, ${chunk} per request${ROUNDS > 1 ? ", medians" : ""}, over 1 queue: ` +
      `${one.value} tasks/s (master ` +
      `${one.masterCpuUsPerTask} µs/task); over ${QUEUE_COUNT}: ${many.value} tasks/s ` +
      `(${many.masterCpuUsPerTask} µs/task): ${ratio}×`,
  );
  ctx.report({
    scenario: "ratio-queues-vs-one",
    store: "memory",
    workers: QUEUE_WORKERS,
    value: ratio,
    unit: "×",
    queues: QUEUE_COUNT,
    drainRatio: round2((many.drainTasksPerSecond as number) / (one.drainTasksPerSecond as number)),
    putRatio: round2((many.putsPerSecond as number) / (one.putsPerSecond as number)),
    masterCpuRatio: round2(
      (many.masterCpuUsPerTask as number) / (one.masterCpuUsPerTask as number),
    ),
    rounds: Math.min(runs.get(1)!.length, runs.get(QUEUE_COUNT)!.length),
  });
}

// ------------------------------------------------------------------ scale-restart

/**
 * A durable master filled with `items` ints, then stopped cleanly and
 * restarted, then killed and restarted: the time from each spawn to the first
 * get answered, and the RSS then.
 */
async function restart(ctx: Ctx, cleanups: Scope, items: number): Promise<void> {
  const dir = await tempDir("taskq-scale-restart-", cleanups);
  const data = ["--data", `${dir}/data`];
  const first = await startMaster(data, cleanups);
  const fillMs = await fill(first.address, RESTART_QUEUE, items, ctx.progress, `scale-restart`);
  const rssFilled = await rssOf(first.pid);
  const t0 = performance.now();
  await first.stop("SIGTERM");
  const stopMs = performance.now() - t0;
  const dataBytes = await sizeOf(`${dir}/data`);
  console.log(
    `durable master, ${items} items: filled in ${round2(fillMs / 1000)} s ` +
      `(${rate(items, fillMs)} items/s), RSS ${mib(rssFilled)} MiB, stopped in ` +
      `${round2(stopMs / 1000)} s, ${mib(dataBytes)} MiB on disk`,
  );
  for (const variant of ["clean stop", "kill -9"] as const) {
    const master = await startMaster(data, cleanups);
    const client = await connect({ address: master.address, reconnect: false });
    const job = await client.queue(RESTART_QUEUE).get(RESTART_GET_TIMEOUT_MS);
    const firstGetMs = performance.now() - master.spawnedAt;
    if (job === null) throw new Error(`no item came within ${RESTART_GET_TIMEOUT_MS / 1000} s`);
    const rssAtGet = await rssOf(master.pid);
    // Every item counted (a master that loads in the background may serve before it has all).
    let counted = 0;
    await until(
      async () => {
        const [queue] = (await client.stats(RESTART_QUEUE)).queues;
        counted = (queue?.ready ?? 0) + (queue?.leased ?? 0) + (queue?.delayed ?? 0);
        return counted >= items;
      },
      RESTART_GET_TIMEOUT_MS,
      `the master counted ${counted} of ${items} items`,
      LOAD_POLL_MS,
    );
    const loadedMs = performance.now() - master.spawnedAt;
    const rssLoaded = await rssOf(master.pid);
    await client.close();
    console.log(
      `  restart after a ${variant}: listening in ${round2(master.listeningMs / 1000)} s, ` +
        `first get in ${round2(firstGetMs / 1000)} s (item ${job.value}), all ${items} counted ` +
        `in ${round2(loadedMs / 1000)} s; RSS ${mib(rssAtGet)} MiB then ${mib(rssLoaded)} MiB`,
    );
    ctx.report({
      scenario: "restart-first-get",
      store: "durable",
      value: round2(firstGetMs / 1000),
      unit: "s to first get",
      variant: `${items} items, ${variant}`,
      items,
      stop: variant,
      listeningSeconds: round2(master.listeningMs / 1000),
      allCountedSeconds: round2(loadedMs / 1000),
      firstValue: job.value,
      inOrder: job.value === 0,
      rssAtFirstGetMiB: mib(rssAtGet),
      rssMiB: mib(rssLoaded),
      fillSeconds: round2(fillMs / 1000),
      fillItemsPerSecond: rate(items, fillMs),
      filledRssMiB: mib(rssFilled),
      cleanStopSeconds: round2(stopMs / 1000),
      dataMiB: mib(dataBytes),
    });
    // The first restart is killed, for the second to restart after a kill -9; that one stops cleanly.
    await master.stop(variant === "clean stop" ? "SIGKILL" : "SIGTERM");
  }
}

// ------------------------------------------------------------------ standalone

if (import.meta.main) {
  const only = Deno.env.get("TASKQ_BENCH_ONLY")?.split(",").map((part) => part.trim());
  const parts = only === undefined ? [...SCALE_PARTS] : scalePartsOf((p) => only.includes(p));
  const n = Number(Deno.args[0] ?? DEFAULT_N);
  if (!Number.isInteger(n) || n < 1) {
    throw new ScaleBenchConfigError(`N must be a positive integer, not ${Deno.args[0]}`);
  }
  console.log(
    `taskq scale bench: N=${n}, parts ${parts.join(", ")}, masters from ${ROOT.pathname}, ` +
      `${navigator.hardwareConcurrency} cores, deno ${Deno.version.deno}`,
  );
  const failures = await runScale({
    n,
    parts,
    report: (row) => console.log(JSON.stringify(row)),
    progress: (text) => Deno.stderr.writeSync(new TextEncoder().encode(`  ${text}\r`)),
  });
  if (failures.length > 0) {
    console.error(`\n${failures.length} scenario(s) failed:\n  ${failures.join("\n  ")}`);
    Deno.exit(1);
  }
}
