/**
 * The floor a PostgreSQL database allows a job queue on this machine: the
 * seed workload (a producer puts N ints, consumers square them into
 * "results", the producer collects the N results) done by hand with the
 * plainest `FOR UPDATE SKIP LOCKED` loop, no taskq in between. `deno task
 * bench --store postgres` sets taskq's figures next to it.
 *
 * On a fresh schema (dropped first), one table `t` holds tasks and results,
 * as taskq's `items` does, with a partial index on the unclaimed rows:
 *
 * - one producer connection inserts the N tasks in batches of 1,000
 *   (`INSERT ... SELECT ... FROM unnest($2::bytea[])`), 8 statements in
 *   flight, pipelined on its connection, as the seed's producer pipelines
 *   its puts;
 * - meanwhile C consumers (4 by default), each on a connection of its own,
 *   claim 100 rows per statement:
 *   `WITH c AS (SELECT id FROM t WHERE queue=$1 AND owner IS NULL ORDER BY
 *   run_at, id LIMIT 100 FOR UPDATE SKIP LOCKED) UPDATE t SET owner=$2 FROM c
 *   WHERE t.id=c.id RETURNING t.id, t.value`, decode each value (msgpack, as
 *   taskq stores it), and in one statement delete the claimed rows
 *   (`DELETE FROM t WHERE id = ANY($1)`) and insert their results (taskq
 *   commits the results together with the ack);
 * - the producer's second connection collects the results as the seed's
 *   producer does: claims up to 1,000 per statement, then deletes them.
 *
 * Timed from the first insert to the N-th result collected (puts included),
 * as the seed workload is: tasks/s. Every statement is prepared and is its
 * own transaction. Claims commit with `synchronous_commit = off` by default,
 * as taskq's claims do (a claim lost in a crash only leaves its rows
 * unclaimed, served again); `--sync-claims` makes every commit wait for the
 * WAL flush.
 *
 * The table is given statistics before the clock starts (N rows inserted,
 * ANALYZE, TRUNCATE): a production queue has them from autovacuum, and a
 * table created seconds ago has none, so the planner guesses two rows for
 * `queue = $1 AND owner IS NULL` and each claim sorts the whole queue
 * (bitmap scan, external merge sort: 3× slower at N = 100,000, worse as the
 * queue grows). `--no-analyze` measures that cold table.
 *
 * Also exports the CPU accounting `deno task bench` uses ({@link sampleCpu},
 * {@link cpuSplit}): per-process user+system time from /proc, PostgreSQL's
 * processes (children of the postmaster) split into backends, autovacuum and
 * the rest.
 *
 * ```sh
 * deno run -A scripts/pg_raw_bench.ts [--url postgres://USER@HOST:PORT/DB] [--n 100000]
 *   [--consumers 4] [--schema bench_raw] [--sync-claims] [--no-analyze]
 *   [--postmaster-pid PID] [--timeout SECONDS]
 * ```
 *
 * Without `--url`, a throwaway durable cluster (tests/_postgres.ts) is
 * started and destroyed. Prints a summary on stderr and one JSON line on
 * stdout.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import process from "node:process";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { decode, encode } from "../lib/model/codec.ts";
import { startPostgres } from "../tests/_postgres.ts";
import { round2 } from "./bench_util.ts";

/** Tasks by default. */
const DEFAULT_N = 100_000;

/** Consumer connections by default. */
const DEFAULT_CONSUMERS = 4;

/** Tasks per insert statement (the seed's put batch). */
const PUT_BATCH = 1_000;

/** Insert statements in flight at once on the producer's connection. */
const PUTS_IN_FLIGHT = 8;

/** Rows one consumer claims per statement. */
const CLAIM_ROWS = 100;

/** Results the producer collects per statement (the seed's collect batch). */
const COLLECT_ROWS = 1_000;

/** Pause of a loop that found nothing to claim, in ms. */
const IDLE_PAUSE_MS = 1;

/** Time the whole run may take by default, in seconds (60 s plus 1 ms per task). */
const defaultTimeoutS = (n: number) => 60 + n / 1_000;

/** Rows the statistics are gathered on, at least. */
const MIN_STATISTICS_ROWS = 10_000;

/** The queue names, as taskq's seed workload has them. */
const TASKS = "tasks";
const RESULTS = "results";

/** A schema name that needs no quoting. */
const PLAIN_NAME = /^[a-z_][a-z0-9_]*$/;

// ------------------------------------------------------------------ CPU accounting

/** Clock ticks per second of /proc's times (`getconf CLK_TCK`; 100 on Linux). */
let ticksPerSecond: number | undefined;

/** Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`, else 100). */
export async function clockTicks(): Promise<number> {
  if (ticksPerSecond !== undefined) return ticksPerSecond;
  try {
    const out = await new Deno.Command("getconf", { args: ["CLK_TCK"], stderr: "null" }).output();
    const n = Number(new TextDecoder().decode(out.stdout).trim());
    ticksPerSecond = Number.isInteger(n) && n > 0 ? n : 100;
  } catch {
    ticksPerSecond = 100;
  }
  return ticksPerSecond;
}

/** The fields of /proc/PID/stat this accounting reads. */
interface ProcStat {
  ppid: number;
  /** utime + stime, in ticks. */
  ticks: number;
  /** cutime + cstime (children waited for), in ticks. */
  childTicks: number;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // After the parenthesised command name: state ppid ... utime(14) stime cutime cstime.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return {
    ppid: Number(fields[1]),
    ticks: Number(fields[11]) + Number(fields[12]),
    childTicks: Number(fields[13]) + Number(fields[14]),
  };
}

/** What a PostgreSQL child process is, from its title (`postgres: autovacuum worker`, ...). */
function postgresRole(pid: number): "backends" | "autovacuum" | "background" {
  let title = "";
  try {
    title = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
  } catch {
    // Gone: counted with the exited children.
  }
  if (title.includes("autovacuum")) return "autovacuum";
  if (
    /checkpointer|background writer|walwriter|wal writer|launcher|io worker|archiver|stats/
      .test(title)
  ) return "background";
  return "backends";
}

/** One moment's CPU times: per process, and the whole machine's (/proc/stat). */
export interface CpuSample {
  at: number;
  /** Ticks per group of processes, per pid. */
  groups: Record<string, Map<number, number>>;
  /** The postmaster's children that have exited (cutime + cstime), in ticks. */
  pgExited: number;
  /** The machine's ticks: all, idle, iowait. */
  machine: { total: number; idle: number; iowait: number };
}

/**
 * Samples the CPU time used so far by each group of processes (`groups`:
 * name → pids), and by PostgreSQL's (the postmaster `postmasterPid` and its
 * children, split into `pgBackends`, `pgAutovacuum`, `pgBackground`).
 */
export function sampleCpu(groups: Record<string, number[]>, postmasterPid?: number): CpuSample {
  const sample: CpuSample = {
    at: performance.now(),
    groups: {},
    pgExited: 0,
    machine: { total: 0, idle: 0, iowait: 0 },
  };
  for (const [name, pids] of Object.entries(groups)) {
    const map = new Map<number, number>();
    for (const pid of pids) {
      const stat = readStat(pid);
      if (stat !== undefined) map.set(pid, stat.ticks);
    }
    sample.groups[name] = map;
  }
  if (postmasterPid !== undefined) {
    const roles = {
      pgBackends: new Map<number, number>(),
      pgAutovacuum: new Map<number, number>(),
      pgBackground: new Map<number, number>(),
    };
    const postmaster = readStat(postmasterPid);
    if (postmaster !== undefined) {
      roles.pgBackground.set(postmasterPid, postmaster.ticks);
      sample.pgExited = postmaster.childTicks;
    }
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      const pid = Number(entry.name);
      const stat = readStat(pid);
      if (stat === undefined || stat.ppid !== postmasterPid) continue;
      const role = postgresRole(pid);
      const map = role === "backends"
        ? roles.pgBackends
        : role === "autovacuum"
        ? roles.pgAutovacuum
        : roles.pgBackground;
      map.set(pid, stat.ticks);
    }
    Object.assign(sample.groups, roles);
  }
  const line = Deno.readTextFileSync("/proc/stat").split("\n", 1)[0];
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user).
  sample.machine = {
    total: ticks.slice(0, 8).reduce((a, b) => a + b, 0),
    idle: ticks[3],
    iowait: ticks[4],
  };
  return sample;
}

/** CPU seconds per group between two samples, and how busy the machine was. */
export interface CpuSplit {
  /** Wall-clock seconds between the samples. */
  seconds: number;
  /** CPU seconds (user + system) per group; PostgreSQL's exited children in `pgExited`. */
  cpuSeconds: Record<string, number>;
  /** Share of all the machine's cores that was busy (not idle, not iowait), %. */
  machineBusyPct: number;
  /** Share of all the machine's cores waiting for I/O, %. */
  iowaitPct: number;
}

/**
 * CPU seconds each group used from `before` to `after`: a process seen only
 * in `after` counts from zero (it started in between), one gone by `after`
 * is not counted (PostgreSQL's exited children are, in `pgExited`).
 */
export async function cpuSplit(before: CpuSample, after: CpuSample): Promise<CpuSplit> {
  const hz = await clockTicks();
  const cpuSeconds: Record<string, number> = {};
  for (const [name, map] of Object.entries(after.groups)) {
    let ticks = 0;
    for (const [pid, now] of map) ticks += now - (before.groups[name]?.get(pid) ?? 0);
    cpuSeconds[name] = round2(ticks / hz);
  }
  if (after.groups.pgBackends !== undefined) {
    cpuSeconds.pgExited = round2((after.pgExited - before.pgExited) / hz);
  }
  const total = after.machine.total - before.machine.total;
  const idle = after.machine.idle - before.machine.idle;
  const iowait = after.machine.iowait - before.machine.iowait;
  return {
    seconds: round2((after.at - before.at) / 1000),
    cpuSeconds,
    machineBusyPct: total > 0 ? Math.round(((total - idle - iowait) / total) * 100) : 0,
    iowaitPct: total > 0 ? Math.round((iowait / total) * 100) : 0,
  };
}

/** PostgreSQL's share of a split: backends, autovacuum (with exited children) and the rest. */
export function postgresSeconds(split: CpuSplit): number {
  const c = split.cpuSeconds;
  return round2(
    (c.pgBackends ?? 0) + (c.pgAutovacuum ?? 0) + (c.pgBackground ?? 0) + (c.pgExited ?? 0),
  );
}

/** One line of a split: `postgres 12.3 s (backends 10.1, ...), masters 8.1 s, ...`. */
export function describeSplit(split: CpuSplit): string {
  const c = split.cpuSeconds;
  const parts: string[] = [];
  if (c.pgBackends !== undefined) {
    parts.push(
      `postgres ${postgresSeconds(split)} s (backends ${c.pgBackends}, autovacuum ` +
        `${c.pgAutovacuum}, exited children ${c.pgExited}, wal/checkpoint/other ${c.pgBackground})`,
    );
  }
  for (const [name, seconds] of Object.entries(c)) {
    if (!name.startsWith("pg")) parts.push(`${name} ${seconds} s`);
  }
  return `cpu over ${split.seconds} s: ${parts.join(", ")}; machine busy ` +
    `${split.machineBusyPct}% of ${navigator.hardwareConcurrency} cores, iowait ${split.iowaitPct}%`;
}

// ------------------------------------------------------------------ the raw loop

/** Options of {@link runRawBench}. */
export interface RawBenchOptions {
  /** The database, `postgres://USER@HOST:PORT/DB`. */
  url: string;
  /** Tasks. */
  n: number;
  /** Consumer connections. */
  consumers: number;
  /** The schema to (re)create the table in. */
  schema: string;
  /** Claims wait for the WAL flush too (default: they commit asynchronously, as taskq's do). */
  syncClaims: boolean;
  /** Gather the table's statistics first (on by default; see {@link runRawBench}). */
  analyze?: boolean;
  /** The postmaster's pid, to split the CPU time (optional). */
  postmasterPid?: number;
  /** Time the run may take, in ms. */
  timeoutMs: number;
}

/** What {@link runRawBench} measured. */
export interface RawBenchResult {
  /** Tasks per second, first insert to N-th result collected. */
  tasksPerSecond: number;
  n: number;
  consumers: number;
  claimRows: number;
  syncClaims: boolean;
  /** Whether the table had statistics. */
  analyzed: boolean;
  seconds: number;
  /** When the producer's last insert was committed, seconds after the start. */
  putsDoneSeconds: number;
  /** Claim statements that found nothing (consumers waiting for the producer, or the end). */
  emptyClaims: number;
  /** This process's CPU time (user + system) per task, in µs. */
  clientCpuUsPerTask: number;
  cpu?: CpuSplit;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs the raw loop once on a fresh `schema.t` (dropped and created, then a
 * CHECKPOINT so that no earlier writes are flushed during the run). Unless
 * `analyze` is false, the table is given the statistics a queue in service
 * has first (N rows of tasks and results inserted, ANALYZE, TRUNCATE, which
 * keeps them): a table created seconds ago has none, and then the planner
 * sorts the whole queue for every claim, which is no floor.
 * @throws {Error} when it takes longer than `timeoutMs`, or a result is missing or wrong.
 */
export async function runRawBench(options: RawBenchOptions): Promise<RawBenchResult> {
  const { url, n, consumers, schema, syncClaims, postmasterPid, timeoutMs } = options;
  const analyze = options.analyze ?? true;
  if (!PLAIN_NAME.test(schema)) throw new Error(`--schema must be a plain lowercase name`);
  const t = `${schema}.t`;
  const claimSql = (limit: number) =>
    `WITH c AS (SELECT id FROM ${t} WHERE queue = $1 AND owner IS NULL ` +
    `ORDER BY run_at, id LIMIT ${limit} FOR UPDATE SKIP LOCKED) ` +
    `UPDATE ${t} SET owner = $2 FROM c WHERE ${t}.id = c.id RETURNING ${t}.id, ${t}.value`;
  const INSERT = `INSERT INTO ${t} (queue, value) SELECT $1, v FROM unnest($2::bytea[]) AS u(v)`;
  const CLAIM = claimSql(CLAIM_ROWS);
  const COLLECT = claimSql(COLLECT_ROWS);
  const ACK = `WITH d AS (DELETE FROM ${t} WHERE id = ANY($1::bigint[]))
    INSERT INTO ${t} (queue, value) SELECT $2, v FROM unnest($3::bytea[]) AS u(v)`;
  const DELETE = `DELETE FROM ${t} WHERE id = ANY($1::bigint[])`;

  const base = { onnotice: () => {}, idle_timeout: 0, prepare: true };
  const connection = (settings: Record<string, string> = {}) =>
    postgres(url, { ...base, max: 1, connection: { application_name: "raw-bench", ...settings } });
  const admin = connection();
  const producer = connection();
  const collector = connection();
  const claimers = Array.from(
    { length: consumers },
    () => connection(syncClaims ? {} : { synchronous_commit: "off" }),
  );
  // Acks (delete + results) always wait for the flush, as taskq's do.
  const ackers = Array.from({ length: consumers }, () => connection());
  const all = [admin, producer, collector, ...claimers, ...ackers];
  let failed: Error | undefined;
  const deadline = performance.now() + timeoutMs;
  const check = () => {
    if (failed !== undefined) throw failed;
    if (performance.now() > deadline) {
      throw failed = new Error(`the raw loop took longer than ${timeoutMs / 1000} s`);
    }
  };
  try {
    await admin.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.unsafe(`CREATE SCHEMA ${schema}`);
    await admin.unsafe(`CREATE TABLE ${t} (
      id bigserial PRIMARY KEY,
      queue text NOT NULL,
      run_at bigint NOT NULL DEFAULT 0,
      owner text,
      value bytea NOT NULL
    )`);
    await admin.unsafe(`CREATE INDEX t_claimable ON ${t} (queue, run_at, id) WHERE owner IS NULL`);
    if (analyze) {
      // The statistics of a queue in service (autovacuum's ANALYZE keeps them): TRUNCATE keeps
      // them. Without any, the planner takes `queue = $1 AND owner IS NULL` for a couple of rows
      // and each claim sorts the whole queue (a bitmap scan and an external sort).
      const rows = Math.max(n, MIN_STATISTICS_ROWS);
      await admin.unsafe(
        `INSERT INTO ${t} (queue, value) SELECT CASE WHEN g % 2 = 0 THEN $1 ELSE $2 END,
           '\\x01'::bytea FROM generate_series(1, ${rows}) AS g`,
        [TASKS, RESULTS],
      );
      await admin.unsafe(`ANALYZE ${t}`);
      await admin.unsafe(`TRUNCATE ${t}`);
    }
    await admin.unsafe("CHECKPOINT");
    // postgres.js connects on first use: connect everything before the clock starts.
    await Promise.all(all.map((sql) => sql.unsafe("SELECT 1")));

    const ints = Array.from({ length: n }, () => Math.floor(Math.random() * 10_001));
    const batches: Buffer[][] = [];
    for (let i = 0; i < n; i += PUT_BATCH) {
      batches.push(ints.slice(i, i + PUT_BATCH).map((v) => Buffer.from(encode(v))));
    }
    let expectedSum = 0;
    for (const v of ints) expectedSum += v * v;

    const cpuBefore = postmasterPid === undefined
      ? undefined
      : sampleCpu({ rawClient: [Deno.pid] }, postmasterPid);
    const usage = process.cpuUsage();
    const t0 = performance.now();
    let putsDone = false;
    let putsDoneAt = 0;
    let emptyClaims = 0;

    const putting = (async () => {
      const inFlight: Promise<unknown>[] = [];
      for (const batch of batches) {
        check();
        inFlight.push(producer.unsafe(INSERT, [TASKS, producer.array(batch)]));
        if (inFlight.length >= PUTS_IN_FLIGHT) await inFlight.shift();
      }
      await Promise.all(inFlight);
      putsDone = true;
      putsDoneAt = performance.now();
    })();
    putting.catch((error) => failed ??= error);

    const consuming = claimers.map(async (claimer, index) => {
      const acker = ackers[index];
      const owner = `raw-${index}`;
      for (;;) {
        check();
        const done = putsDone;
        const rows = await claimer.unsafe(CLAIM, [TASKS, owner]);
        if (rows.length === 0) {
          emptyClaims++;
          // Nothing unclaimed after the last put: the others hold the rest.
          if (done) return;
          await sleep(IDLE_PAUSE_MS);
          continue;
        }
        const ids: string[] = [];
        const results: Buffer[] = [];
        for (const row of rows) {
          const v = decode(row.value, "trusted") as number;
          ids.push(row.id);
          results.push(Buffer.from(encode(`${v} * ${v} = ${v * v}`)));
        }
        await acker.unsafe(ACK, [ids, RESULTS, acker.array(results)]);
      }
    });
    for (const c of consuming) c.catch((error) => failed ??= error);

    let got = 0;
    let sum = 0;
    while (got < n) {
      check();
      const rows = await collector.unsafe(COLLECT, [RESULTS, "collector"]);
      if (rows.length === 0) {
        await sleep(IDLE_PAUSE_MS);
        continue;
      }
      const ids: string[] = [];
      for (const row of rows) {
        ids.push(row.id);
        sum += Number((decode(row.value, "trusted") as string).split(" = ")[1]);
      }
      await collector.unsafe(DELETE, [ids]);
      got += rows.length;
    }
    const ms = performance.now() - t0;
    const cpuUs = process.cpuUsage(usage);
    const cpuAfter = cpuBefore === undefined
      ? undefined
      : sampleCpu({ rawClient: [Deno.pid] }, postmasterPid);
    await putting;
    await Promise.all(consuming);
    if (got !== n || sum !== expectedSum) {
      throw new Error(
        `collected ${got} results of ${n}, squares summing to ${sum}, not ${expectedSum}`,
      );
    }
    const [{ left }] = await admin.unsafe(`SELECT count(*)::int AS left FROM ${t}`);
    if (left !== 0) throw new Error(`${left} rows left in ${t} after the run`);
    return {
      tasksPerSecond: Math.round(n / (ms / 1000)),
      n,
      consumers,
      claimRows: CLAIM_ROWS,
      syncClaims,
      analyzed: analyze,
      seconds: round2(ms / 1000),
      putsDoneSeconds: round2((putsDoneAt - t0) / 1000),
      emptyClaims,
      clientCpuUsPerTask: round2((cpuUs.user + cpuUs.system) / n),
      cpu: cpuBefore === undefined ? undefined : await cpuSplit(cpuBefore, cpuAfter!),
    };
  } finally {
    failed ??= new Error("the raw loop stopped");
    await Promise.all(all.map((sql) => sql.end({ timeout: 5 }).catch(() => {})));
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      url: { type: "string" },
      n: { type: "string" },
      consumers: { type: "string" },
      schema: { type: "string" },
      "sync-claims": { type: "boolean" },
      "no-analyze": { type: "boolean" },
      "postmaster-pid": { type: "string" },
      timeout: { type: "string" },
    },
  });
  const n = Number(values.n ?? DEFAULT_N);
  const consumers = Number(values.consumers ?? DEFAULT_CONSUMERS);
  if (!Number.isInteger(n) || n < 1) throw new Error("--n must be a positive integer");
  if (!Number.isInteger(consumers) || consumers < 1) {
    throw new Error("--consumers must be a positive integer");
  }
  const timeoutMs = Number(values.timeout ?? defaultTimeoutS(n)) * 1000;
  const cluster = values.url === undefined ? await startPostgres({ durable: true }) : undefined;
  try {
    let postmasterPid = values["postmaster-pid"] === undefined
      ? undefined
      : Number(values["postmaster-pid"]);
    if (cluster !== undefined) {
      postmasterPid = Number(
        Deno.readTextFileSync(`${cluster.dataDir}/postmaster.pid`).split("\n", 1)[0],
      );
    }
    const result = await runRawBench({
      url: values.url ?? cluster!.url,
      n,
      consumers,
      schema: values.schema ?? "bench_raw",
      syncClaims: values["sync-claims"] ?? false,
      analyze: !values["no-analyze"],
      postmasterPid,
      timeoutMs,
    });
    console.error(
      `raw SKIP LOCKED loop: ${result.tasksPerSecond} tasks/s (N=${n}, ${consumers} consumers ` +
        `claiming ${CLAIM_ROWS}, claims ${result.syncClaims ? "synchronous" : "async"}, ` +
        `${result.analyzed ? "with" : "without"} statistics; puts ` +
        `done after ${result.putsDoneSeconds} s of ${result.seconds} s)`,
    );
    if (result.cpu !== undefined) console.error(describeSplit(result.cpu));
    console.log(JSON.stringify(result));
  } finally {
    await cluster?.destroy();
  }
}

if (import.meta.main) await main();
