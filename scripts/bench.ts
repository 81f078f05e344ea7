/**
 * `deno task bench`: measures taskq on this machine next to Python's
 * `multiprocessing.managers`, and prints a table, the ratios, and one JSON line
 * per scenario (all also written to bench-results/).
 *
 * For each store (in memory, and durable SQLite, the default):
 * - producer-only puts, batched and one by one (pipelined);
 * - put→get→ack throughput: one producer, one consumer taking and acking in batches;
 * - the put→get→ack round trip of one client (median, p99), request by request
 *   and with the get pipelined behind the put;
 * - the seed's workload: a producer puts N ints, 1, 2 and 4 worker processes
 *   square them into "results", the producer collects the N results.
 * Then the same seed workload on Python's managers (scripts/python_managers_bench.py),
 * the master's memory growth with 1,000,000 small items queued, and, for scale, a raw
 * TCP ping-pong between two processes (the floor under every round trip).
 * The taskq producer pipelines batched puts and the workers prefetch; the
 * Python programs do what the seed does (one call at a time).
 *
 * The scale scenarios (scripts/scale_bench.ts, issue #15): the master's RSS
 * growth for 1,000,000 small items; the seed workload with 0 and 10,000 idle
 * connections; the same tasks over 1 and 10,000 queues; a durable master
 * restarted with 1,000,000 and 10,000,000 items, to its first get.
 *
 * Over TLS (mutual, certificates from `makeTlsMaterial`), the seed workload
 * with 2 workers on a memory master, next to the same on plain TCP, with the
 * ratio.
 *
 * On PostgreSQL (`--store postgres`, or the part `postgres`), on one
 * throwaway cluster (tests/_postgres.ts) with fsync and synchronous_commit
 * on, as production would run it:
 * - the raw floor: scripts/pg_raw_bench.ts, the seed workload done by hand
 *   with a `FOR UPDATE SKIP LOCKED` claim-and-delete loop (4 consumers, 100
 *   rows per claim, results inserted with the delete), puts included: the
 *   floor with claims committed asynchronously, as taskq's are, on a table
 *   with statistics; then with every commit synchronous; then on a table
 *   without statistics (as a table created seconds ago is);
 * - the seed workload through taskq on 1, 2 and 3 masters (each its own
 *   process, `--store URL`, on a fresh `--pg-schema bench_<M>m`), with 2
 *   workers in all: worker i on master i mod M, the producer (one process,
 *   as the seed's) on the last master, every client given the whole list
 *   (`--connect a,b,c`) and placed on its master by reconnecting until it
 *   lands there (what random placement gives on average);
 * - the same workload on one durable SQLite master (`--data DIR`), 2 workers;
 * - the ratios: taskq on 2 masters / the raw loop (target ≥ 0.8), and
 *   taskq on 2 masters in tasks/s (target ≥ 50,000/s on 2 cores);
 * - for each, the CPU time of PostgreSQL's processes (backends, autovacuum,
 *   the rest), the masters, the workers and the producer (/proc/PID/stat).
 * The part `pgsize` (opt-in) puts 1,000,000 items through 2 masters, then
 * reports the size of `bench_size.items` (table, indexes, total) before and
 * after a manual VACUUM, and the table's reloptions
 * (TASKQ_BENCH_PG_SIZE_ITEMS changes the count).
 *
 * The part `features` (issue #13) runs the seed workload (2 workers, a fresh
 * in-memory master each run) plain, then with each feature used on its own:
 * mixed priorities, a unique key on every item, 100 groups, a concurrency
 * limit and a rate limit set too high to bind, and job history off
 * (`--keep-jobs 0`; plain keeps the default history). It prints tasks/s and
 * the ratio to plain for each, one JSON row per run and one `feature-cost`
 * row per feature. The same on one PostgreSQL master (a fresh schema each
 * run): the part `features-postgres` (only when named), or `features` with
 * `--store postgres` (which then skips the PostgreSQL comparison unless
 * `postgres` is named too).
 *
 * TASKQ_BENCH_ROUNDS=3 runs the PostgreSQL comparison and the feature
 * comparison 3 times over (each round in the same order) and compares the
 * medians: on a small machine single runs vary by ±20%.
 *
 * With `--peers` (or the part `peers`, only when named), the same seed
 * workload, same N and worker counts, on the peers a user would pick instead
 * (scripts/peers_bench.ts): Redis lists (pipelined LPUSH batches, BRPOP
 * workers), Redis Streams with a consumer group (XADD, XREADGROUP COUNT
 * BLOCK, XACK) and beanstalkd (put, reserve, delete), each on a throwaway
 * server without persistence (Debian's redis-server and beanstalkd, installed
 * with apt-get when missing: it says so), then "taskq / best peer" for each
 * worker count, from taskq's memory and durable rows of the same run (the
 * memory seed workload runs for it when the run has none).
 *
 * Each scenario of these parts is bounded in time (60 s plus 1 ms per task;
 * TASKQ_BENCH_TIMEOUT_S overrides): one that runs over is stopped, its
 * processes killed, reported as FAILED, and the bench goes on (and exits 1).
 *
 * Usage: deno task bench [--store memory|durable|postgres] [--peers] [N]   (default N = 100000)
 * TASKQ_BENCH_ONLY=tls,raw deno task bench   runs only the named parts, of:
 * raw, memory, durable, python, rss, tls, features, postgres, and the scale
 * parts of scripts/scale_bench.ts (scale-rss, scale-idle, scale-queues,
 * scale-restart; `scale` names all four; `rss` is scale-rss) (all by
 * default), and pgsize, features-postgres and peers (only when named).
 * `--store NAME` adds that store's part to them (and, alone, runs only it);
 * `--peers` adds the part `peers` (TASKQ_BENCH_ONLY=memory deno task bench
 * --peers: taskq in memory and the peers).
 *
 * @module
 */

import { parseArgs } from "node:util";
import postgres from "postgres";
import { type Client, connect, type Queue } from "../lib/mod.ts";
import { makeTlsMaterial, writeTlsMaterial } from "../lib/cli/tls.ts";
import { connectOn } from "./bench_worker.ts";
import { type Peer, peerRatios, runPeers } from "./peers_bench.ts";
import { runScale, scalePartsOf } from "./scale_bench.ts";
import {
  clockTicks,
  type CpuSplit,
  cpuSplit,
  describeSplit,
  postgresSeconds,
  sampleCpu,
} from "./pg_raw_bench.ts";
import {
  type PgCluster,
  POSTGRES_MISSING,
  postgresAvailable,
  startPostgres,
} from "../tests/_postgres.ts";
import {
  activeScopes,
  bounded,
  DEFAULT_STOP_GRACE_MS,
  listeningAddress,
  rate,
  round2,
  type Scope,
  stopChild,
} from "./bench_util.ts";

const DEFAULT_N = 100_000;
const PUT_BATCH = 1_000;
const PUT_BATCHES_IN_FLIGHT = 8;
const PIPELINE_DEPTH = 256;
const ROUND_TRIPS = 5_000;
const WORKER_COUNTS = [1, 2, 4];
const WORKER_CONCURRENCY = 64;
const WORKER_PREFETCH = 256;
const COLLECT_BATCH = 1_000;
const COLLECT_TIMEOUT_MS = 60_000;
const PROGRESS_STEPS = 4;
const STARTUP_POLL_MS = 20;

/** Masters of the PostgreSQL seed workloads, each its own process on one database. */
const PG_MASTER_COUNTS = [1, 2, 3];
/** Workers of the PostgreSQL seed workloads, in all (spread over the masters). */
const PG_WORKERS = 2;
/** Consumer connections of the raw SKIP LOCKED loop. */
const PG_RAW_CONSUMERS = 4;
/** Items put through 2 masters before the table's size is measured (part pgsize). */
const PG_SIZE_ITEMS = Number(Deno.env.get("TASKQ_BENCH_PG_SIZE_ITEMS") ?? 1_000_000);
/** Masters of the size run. */
const PG_SIZE_MASTERS = 2;
/** Targets: taskq on 2 masters / the raw loop, and taskq on 2 masters in tasks/s. */
const PG_RATIO_TARGET = 0.8;
const PG_RATE_TARGET = 50_000;
/** Rounds of the PostgreSQL comparison (TASKQ_BENCH_ROUNDS, default 1); medians are compared. */
const PG_ROUNDS = Number(Deno.env.get("TASKQ_BENCH_ROUNDS") ?? 1);
/** Time a bounded scenario may take: this, plus {@link SCENARIO_MS_PER_TASK} per task. */
const SCENARIO_BASE_MS = 60_000;
const SCENARIO_MS_PER_TASK = 1;
/** The stores `--store` selects, as parts. */
const STORE_PARTS = ["memory", "durable", "postgres"];
/** Parts that run only when named. */
const OPT_IN_PARTS = ["pgsize", "features-postgres", "peers"];

const { values: flags, positionals } = parseArgs({
  args: Deno.args,
  options: { store: { type: "string" }, peers: { type: "boolean" } },
  allowPositionals: true,
});
const N = Number(positionals[0] ?? DEFAULT_N);
if (!Number.isInteger(N) || N < 1) throw new Error(`N must be a positive integer, not ${N}`);
if (!Number.isInteger(PG_ROUNDS) || PG_ROUNDS < 1) {
  throw new Error(`TASKQ_BENCH_ROUNDS must be a positive integer, not ${PG_ROUNDS}`);
}
if (flags.store !== undefined && !STORE_PARTS.includes(flags.store)) {
  throw new Error(`--store takes one of ${STORE_PARTS.join(", ")}, not "${flags.store}"`);
}
/** Workers of the TLS comparison. */
const TLS_WORKERS = 2;
/** The parts to run (TASKQ_BENCH_ONLY, comma-separated, plus --store's); all when unset. */
const ENV_ONLY = Deno.env.get("TASKQ_BENCH_ONLY")?.split(",").map((part) => part.trim());
const ONLY = flags.store === undefined ? ENV_ONLY : [...ENV_ONLY ?? [], flags.store];
const runs = (part: string) =>
  ONLY === undefined ? !OPT_IN_PARTS.includes(part) : ONLY.includes(part);
/** `--store postgres` with the part `features`: the features on PostgreSQL, not the comparison. */
const FEATURES_WITH_STORE = flags.store === "postgres" && ENV_ONLY?.includes("features") === true;
/** Whether the feature comparison also runs on a PostgreSQL master. */
const FEATURES_ON_POSTGRES = runs("features-postgres") || FEATURES_WITH_STORE;
/** Whether the PostgreSQL comparison runs. */
const PG_COMPARISON = runs("postgres") && !(FEATURES_WITH_STORE && !ENV_ONLY?.includes("postgres"));
/** Whether the peers run (`--peers`, or the part `peers` named). */
const PEERS_RUN = flags.peers === true || runs("peers");
const TIMEOUT_OVERRIDE_S = Deno.env.get("TASKQ_BENCH_TIMEOUT_S");
/** Time a bounded scenario of `n` tasks may take, in ms. */
const scenarioMs = (n: number) =>
  TIMEOUT_OVERRIDE_S !== undefined
    ? Number(TIMEOUT_OVERRIDE_S) * 1000
    : SCENARIO_BASE_MS + n * SCENARIO_MS_PER_TASK;
const PING_BYTES = 64;
/** A client that pings a port N times and prints the median and p99 round trip in µs. */
const ECHO_CLIENT_SOURCE = `
const [port, count] = Deno.args.map(Number);
const c = await Deno.connect({ hostname: "127.0.0.1", port });
c.setNoDelay(true);
const b = new Uint8Array(${PING_BYTES});
const s = [];
for (let i = 0; i < count; i++) {
  const t = performance.now();
  await c.write(b);
  let got = 0;
  while (got < b.length) got += await c.read(b.subarray(got));
  s.push((performance.now() - t) * 1000);
}
c.close();
s.sort((x, y) => x - y);
console.log(JSON.stringify({ median: Math.round(s[s.length >> 1]), p99: Math.round(s[Math.floor(s.length * 0.99)]) }));
`;
const root = new URL("..", import.meta.url).pathname;
const encoder = new TextEncoder();

type Store = "memory" | "durable";

/** Options of a put of many items (priority, group, a key per item). */
type PutManyOptions = NonNullable<Parameters<Queue["putMany"]>[1]>;

/** Masters on a PostgreSQL database, in schema `schema`. */
interface PgStore {
  postgres: string;
  schema: string;
}

/** Where a TLS master's and its clients' PEM files are. */
interface TlsFiles {
  dir: string;
}

/** A bench worker over TLS: scripts/bench_worker.ts with the client's certificates. */
const TLS_WORKER_SOURCE = (dir: string) => `
import { connect } from ${JSON.stringify(new URL("../lib/mod.ts", import.meta.url).href)};
import { runWorker } from ${
  JSON.stringify(new URL("../lib/worker/worker.ts", import.meta.url).href)
};
const read = (name) => Deno.readTextFileSync(${JSON.stringify(dir)} + "/" + name);
const [address, concurrency, prefetch] = Deno.args;
const client = await connect({
  address,
  name: "bench-tls-worker-" + Deno.pid,
  tls: { ca: read("ca.pem"), cert: read("client.pem"), key: read("client-key.pem") },
});
await runWorker({
  client, queue: "tasks", results: "results",
  concurrency: Number(concurrency), prefetch: Number(prefetch), exitWhenIdleMs: 1000,
  handler: (job) => job.value + " * " + job.value + " = " + job.value * job.value,
});
await client.close();
`;

interface Row {
  scenario: string;
  store?: Store | "python" | "memory-tls" | "postgres" | Peer;
  masters?: number;
  workers?: number;
  value: number;
  unit: string;
  [key: string]: unknown;
}
const rows: Row[] = [];
/** Scenarios that failed (the bench exits 1 after writing the rest). */
const failures: string[] = [];

/** The round of the PostgreSQL comparison being run, recorded in its rows. */
let currentRound: number | undefined;

function report(row: Row): void {
  if (currentRound !== undefined) row.round = currentRound;
  rows.push(row);
  console.log(JSON.stringify(row));
}

function progress(text: string): void {
  Deno.stderr.writeSync(encoder.encode(`  ${text}\r`));
}

interface RunningMaster {
  address: string;
  pid: number;
  stop(): Promise<void>;
}

async function startMaster(
  store: Store | PgStore,
  tls?: TlsFiles,
  scope?: Scope,
  extraArgs: readonly string[] = [],
): Promise<RunningMaster> {
  const dataDir = store === "durable" ? await Deno.makeTempDir({ prefix: "taskq-bench-" }) : "";
  const storeArgs = store === "durable"
    ? ["--data", dataDir]
    : store === "memory"
    ? ["--memory"]
    : ["--store", store.postgres, "--pg-schema", store.schema];
  if (tls !== undefined) {
    storeArgs.push(
      ...["--tls-cert", `${tls.dir}/server.pem`, "--tls-key", `${tls.dir}/server-key.pem`],
      ...["--tls-client-ca", `${tls.dir}/ca.pem`],
    );
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${root}main.ts`,
      "master",
      "--listen",
      "127.0.0.1:0",
      "--log-level",
      "warn",
      ...storeArgs,
      ...extraArgs,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      await stopChild(child);
      await reader.cancel().catch(() => {});
      if (dataDir) await Deno.remove(dataDir, { recursive: true });
    })();
  scope?.defer(stop);
  const address = await listeningAddress(reader);
  if (address === undefined) {
    await stop();
    throw new Error("master exited before listening");
  }
  return { address, pid: child.pid, stop };
}

/** The floor under any round trip here: a raw 64-byte TCP ping-pong between two processes. */
async function rawPingPong(): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const echo = new Deno.Command(Deno.execPath(), {
    args: ["eval", ECHO_CLIENT_SOURCE, String(listener.addr.port), String(ROUND_TRIPS)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const conn = await listener.accept();
  conn.setNoDelay(true);
  const buf = new Uint8Array(PING_BYTES);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    await conn.write(buf.subarray(0, n));
  }
  conn.close();
  listener.close();
  const out = JSON.parse(new TextDecoder().decode((await echo.output()).stdout));
  report({ scenario: "raw-tcp-pingpong", value: out.median, unit: "µs median", p99: out.p99 });
}

async function producerBatched(address: string, store: Store): Promise<void> {
  const client = await connect({ address, reconnect: false });
  const queue = client.queue("bench-put-batched");
  const batch = Array.from({ length: PUT_BATCH }, (_, i) => i);
  const t0 = performance.now();
  const inFlight: Promise<unknown>[] = [];
  for (let sent = 0; sent < N; sent += PUT_BATCH) {
    inFlight.push(queue.putMany(batch));
    if (inFlight.length >= PUT_BATCHES_IN_FLIGHT) await inFlight.shift();
  }
  await Promise.all(inFlight);
  const value = rate(N, performance.now() - t0);
  report({ scenario: "put-batched", store, value, unit: "items/s", batch: PUT_BATCH });
  await client.close();
}

async function producerOneByOne(address: string, store: Store): Promise<void> {
  const client = await connect({ address, reconnect: false });
  const queue = client.queue("bench-put-single");
  const t0 = performance.now();
  const window = new Set<Promise<unknown>>();
  for (let i = 0; i < N; i++) {
    const p: Promise<unknown> = queue.put(i).finally(() => window.delete(p));
    window.add(p);
    if (window.size >= PIPELINE_DEPTH) await Promise.race(window);
  }
  await Promise.all(window);
  const value = rate(N, performance.now() - t0);
  report({ scenario: "put-single", store, value, unit: "items/s", pipelined: PIPELINE_DEPTH });
  await client.close();
}

/** One producer puts N items (batched, pipelined) while one consumer takes and acks them in batches. */
async function putGetAck(address: string, store: Store): Promise<void> {
  const producer = await connect({ address, reconnect: false });
  const consumer = await connect({ address, reconnect: false });
  const name = "bench-put-get-ack";
  const batch = Array.from({ length: PUT_BATCH }, (_, i) => i);
  const t0 = performance.now();
  const putting = (async () => {
    const inFlight: Promise<unknown>[] = [];
    for (let sent = 0; sent < N; sent += PUT_BATCH) {
      inFlight.push(producer.queue(name).putMany(batch));
      if (inFlight.length >= PUT_BATCHES_IN_FLIGHT) await inFlight.shift();
    }
    await Promise.all(inFlight);
  })();
  const queue = consumer.queue(name);
  for (let got = 0; got < N;) {
    const jobs = await queue.getMany(COLLECT_BATCH, COLLECT_TIMEOUT_MS);
    await queue.ack(jobs);
    got += jobs.length;
  }
  await putting;
  const value = rate(N, performance.now() - t0);
  report({ scenario: "put-get-ack", store, value, unit: "items/s", batch: PUT_BATCH });
  await producer.close();
  await consumer.close();
}

/**
 * One client's put→get→ack latency, unloaded: each request waits for the one
 * before it (three round trips), and pipelined, where the get is sent with
 * the put (the master handles a connection's requests in order, so the get
 * sees the item): two round trips.
 */
async function roundTrip(address: string, store: Store): Promise<void> {
  const client = await connect({ address, reconnect: false });
  const queue = client.queue("bench-rtt");
  for (const pipelined of [false, true]) {
    const samples: number[] = [];
    for (let i = 0; i < ROUND_TRIPS; i++) {
      const t0 = performance.now();
      let job;
      if (pipelined) [, job] = await Promise.all([queue.put(i), queue.get(1000)]);
      else {
        await queue.put(i);
        job = await queue.get(1000);
      }
      await queue.ack(job!);
      samples.push((performance.now() - t0) * 1000);
    }
    samples.sort((a, b) => a - b);
    const median = Math.round(samples[Math.floor(samples.length / 2)]);
    const p99 = Math.round(samples[Math.floor(samples.length * 0.99)]);
    const scenario = pipelined ? "put-get-ack-rtt-pipelined" : "put-get-ack-rtt";
    report({ scenario, store, value: median, unit: "µs median", p99 });
  }
  await client.close();
}

/** Options of {@link seedWorkload}. */
interface SeedOptions {
  /** One master's HOST:PORT, or several masters sharing one database, comma-separated. */
  address: string;
  store: Store | "postgres";
  workers: number;
  /**
   * Masters named in `address`: worker i starts on master i mod `masters`, the
   * producer on the last (each with the whole list; see scripts/bench_worker.ts).
   */
  masters?: number;
  /** Tasks (N by default). */
  n?: number;
  /** The row's scenario (`seed-workload` by default). */
  scenario?: string;
  tls?: TlsFiles & { workerScript: string };
  /** Processes to split the CPU time over: the masters', and the postmaster's. */
  cpu?: { masters: number[]; postmasterPid?: number };
  /** Run once everything is connected, just before the clock starts. */
  beforeStart?: () => Promise<void>;
  /** Where the workers and the producer's client are stopped if the scenario is cut short. */
  scope?: Scope;
  /** More fields for the row. */
  extra?: Record<string, unknown>;
  /** Adds fields to the row before it is reported (e.g. a ratio to another row). */
  annotate?: (row: Row) => Record<string, unknown>;
  /**
   * Options of the put of batch `batch` (from 0) holding the items from
   * `first` on, when the puts use a feature (priorities, keys, groups); none
   * by default, as the seed's.
   */
  putOptions?: (batch: number, first: number, values: readonly number[]) => PutManyOptions;
}

async function seedWorkload(options: SeedOptions): Promise<Row> {
  const { address, store, workers, tls, scope } = options;
  const n = options.n ?? N;
  const masters = options.masters;
  const read = (name: string) => Deno.readTextFileSync(`${tls?.dir}/${name}`);
  const client: Client = await connectOn(address, masters === undefined ? undefined : masters - 1, {
    reconnect: false,
    name: `bench-producer-${Deno.pid}`,
    tls: tls === undefined
      ? undefined
      : { ca: read("ca.pem"), cert: read("client.pem"), key: read("client-key.pem") },
  });
  let closing: Promise<void> | undefined;
  const closeClient = () => closing ??= client.close();
  scope?.defer(closeClient);
  const tasks = client.queue("tasks");
  const results = client.queue("results");
  const procs = Array.from({ length: workers }, (_, i) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        tls?.workerScript ?? `${root}scripts/bench_worker.ts`,
        address,
        String(WORKER_CONCURRENCY),
        String(WORKER_PREFETCH),
        ...(masters === undefined ? [] : [String(i % masters)]),
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn());
  for (const proc of procs) scope?.defer(() => stopChild(proc, "SIGKILL"));
  // Each prints one JSON line as it exits (scripts/bench_worker.ts): its CPU time, its last item.
  const exits = procs.map(async (proc) => {
    const { stdout, code } = await proc.output();
    try {
      const line = JSON.parse(new TextDecoder().decode(stdout).trim().split("\n").at(-1)!);
      return { ...line, code } as { cpuSeconds?: number; lastHandledAt?: number; code: number };
    } catch {
      return { code };
    }
  });
  for (const exit of exits) exit.catch(() => {});
  const ints = Array.from({ length: n }, () => Math.floor(Math.random() * 10_001));
  // Time the work, not the workers' process start-up: wait until all are connected.
  while ((await client.stats()).clients < workers + 1) {
    await new Promise((resolve) => setTimeout(resolve, STARTUP_POLL_MS));
  }
  await options.beforeStart?.();
  const cpuGroups = options.cpu === undefined ? undefined : {
    masters: options.cpu.masters,
    workers: procs.map((p) => p.pid),
    producer: [Deno.pid],
  };
  const cpuBefore = cpuGroups && sampleCpu(cpuGroups, options.cpu?.postmasterPid);
  const t0 = performance.now();
  const t0Epoch = Date.now();
  let putsDoneSeconds = 0;
  const putting = (async () => {
    const inFlight: Promise<unknown>[] = [];
    for (let i = 0; i < n; i += PUT_BATCH) {
      const values = ints.slice(i, i + PUT_BATCH);
      const put = options.putOptions === undefined
        ? tasks.putMany(values)
        : tasks.putMany(values, options.putOptions(i / PUT_BATCH, i, values));
      // Awaited below; if one fails, the others still in flight must not go unhandled.
      put.catch(() => {});
      inFlight.push(put);
      if (inFlight.length >= PUT_BATCHES_IN_FLIGHT) await inFlight.shift();
    }
    await Promise.all(inFlight);
    putsDoneSeconds = round2((performance.now() - t0) / 1000);
  })();
  putting.catch(() => {});
  const label = `${store}${masters === undefined ? "" : `, ${masters} master(s)`}`;
  let got = 0;
  while (got < n) {
    const jobs = await results.getMany(COLLECT_BATCH, COLLECT_TIMEOUT_MS);
    if (jobs.length === 0) throw new Error(`only ${got} of ${n} results came`);
    await results.ack(jobs);
    got += jobs.length;
    if (got % Math.ceil(n / PROGRESS_STEPS) < jobs.length) {
      progress(`${label}, ${workers} workers: ${got}/${n}`);
    }
  }
  const ms = performance.now() - t0;
  let cpu = cpuGroups &&
    await cpuSplit(cpuBefore!, sampleCpu(cpuGroups, options.cpu?.postmasterPid));
  await putting;
  const exited = await Promise.all(exits);
  const lastHandled = Math.max(...exited.map((e) => e.lastHandledAt ?? 0));
  // A worker that died (its error is above) gave its items back; the others finished the run.
  const workersFailed = exited.filter((e) => e.code !== 0).length;
  if (workersFailed > 0) {
    console.error(
      `  ${workersFailed} of ${workers} workers exited with an error (exit codes ` +
        `${exited.map((e) => e.code).join(", ")}); the others finished the run`,
    );
  }
  if (cpu !== undefined && exited.every((e) => e.cpuSeconds !== undefined)) {
    // Workers that finished before the last result was collected have exited by the second
    // sample: count what each said it used at exit, less what it had used before the clock.
    const hz = await clockTicks();
    const before = procs.reduce((sum, p) => sum + (cpuBefore!.groups.workers.get(p.pid) ?? 0), 0);
    const used = exited.reduce((sum, e) => sum + e.cpuSeconds!, 0) - before / hz;
    cpu = { ...cpu, cpuSeconds: { ...cpu.cpuSeconds, workers: round2(used) } };
  }
  const row: Row = {
    scenario: options.scenario ?? "seed-workload",
    store: tls === undefined ? store : "memory-tls",
    ...(masters === undefined ? {} : { masters }),
    workers,
    value: rate(n, ms),
    unit: "tasks/s",
    n,
    putsDoneSeconds,
    ...(workersFailed > 0 ? { workersFailed } : {}),
    ...(lastHandled > 0 ? { workersDoneSeconds: round2((lastHandled - t0Epoch) / 1000) } : {}),
    ...options.extra,
    ...(cpu === undefined ? {} : { cpu }),
  };
  Object.assign(row, options.annotate?.(row));
  report(row);
  if (cpu !== undefined) console.log(`  ${describeSplit(cpu)}`);
  await closeClient();
  return row;
}

// ------------------------------------------------------------ features (#13)

/** Workers of the feature comparison. */
const FEATURE_WORKERS = 2;
/** Priorities the "priorities" scenario gives its put batches, in turn. */
const FEATURE_PRIORITIES = [0, 5, -5, 10, 1];
/** Groups of the "groups" scenario: each put batch is one, in turn. */
const FEATURE_GROUPS = 100;
/**
 * A concurrency limit that does not bind: the workers hold at most
 * {@link FEATURE_WORKERS} × ({@link WORKER_CONCURRENCY} + {@link WORKER_PREFETCH}) items.
 */
const FEATURE_CONCURRENCY = 100_000;
/** A rate limit that does not bind (per second): far above what one master delivers. */
const FEATURE_RATE_PER_S = 1_000_000;
/** The row scenario of the feature comparison's runs, and of its summary. */
const FEATURE_SCENARIO = "seed-workload-features";
const FEATURE_COST_SCENARIO = "feature-cost";

/** One run of the feature comparison: the seed workload with one feature used. */
interface Feature {
  /** Its name (the rows' `variant`). */
  name: string;
  /** What it does differently from the plain seed workload. */
  description: string;
  /** Flags of its master (limits, history). */
  masterArgs?: string[];
  /** Options of its puts (priorities, keys, groups). */
  putOptions?: SeedOptions["putOptions"];
}

/** The plain seed workload first (the ratios' base), then each feature used on its own. */
const FEATURES: readonly Feature[] = [
  { name: "plain", description: "no feature used (job history at its default)" },
  {
    name: "priorities",
    description: `put batches of priority ${FEATURE_PRIORITIES.join(", ")} in turn`,
    putOptions: (batch) => ({ priority: FEATURE_PRIORITIES[batch % FEATURE_PRIORITIES.length] }),
  },
  {
    name: "unique-keys",
    description: "every item a unique key of its own",
    putOptions: (_batch, first, values) => ({ keys: values.map((_, j) => `item-${first + j}`) }),
  },
  {
    name: "groups",
    description: `${FEATURE_GROUPS} groups (put batches, one group each in turn)`,
    putOptions: (batch) => ({ group: `tenant-${batch % FEATURE_GROUPS}` }),
  },
  {
    name: "concurrency-limit",
    description: `--queue-concurrency tasks=${FEATURE_CONCURRENCY} (never binds)`,
    masterArgs: ["--queue-concurrency", `tasks=${FEATURE_CONCURRENCY}`],
  },
  {
    name: "rate-limit",
    description: `--queue-rate tasks=${FEATURE_RATE_PER_S}/s (never binds)`,
    masterArgs: ["--queue-rate", `tasks=${FEATURE_RATE_PER_S}/s`],
  },
  {
    name: "no-history",
    description: "--keep-jobs 0: no records of finished items (plain keeps them)",
    masterArgs: ["--keep-jobs", "0"],
  },
];

/** Where the feature comparison runs: a fresh master for each run. */
interface FeatureTarget {
  store: "memory" | "postgres";
  /** Starts the master of `feature`'s run (stopped with `scope`). */
  start(feature: Feature, scope: Scope): Promise<RunningMaster>;
  /** What {@link SeedOptions} gets besides (CPU split, checkpoint). */
  seed?: (master: RunningMaster) => Partial<SeedOptions>;
  /** Runs after each run (drops its schema). */
  after?: (feature: Feature) => Promise<void>;
}

/** The feature comparison on in-memory masters. */
const MEMORY_FEATURES: FeatureTarget = {
  store: "memory",
  start: (feature, scope) => startMaster("memory", undefined, scope, feature.masterArgs),
  seed: (master) => ({ cpu: { masters: [master.pid] } }),
};

/**
 * The seed workload plain, then with each feature used ({@link FEATURES}),
 * {@link FEATURE_WORKERS} workers, each run on a fresh master of `target`;
 * TASKQ_BENCH_ROUNDS rounds, each in the same order. One row per run (with
 * its ratio to the same round's plain run), then the medians and one
 * `feature-cost` row per feature: its tasks/s over plain's.
 */
async function featureWorkloads(target: FeatureTarget): Promise<void> {
  const rounds = PG_ROUNDS;
  console.log(
    `features (${target.store}), seed workload, N=${N}, ${FEATURE_WORKERS} workers` +
      (rounds > 1 ? `, ${rounds} rounds` : ""),
  );
  const values = new Map<string, number[]>();
  /** The masters' CPU time per task (µs, user + system) of each run, by feature. */
  const masterCpu = new Map<string, number[]>();
  /** PostgreSQL's CPU time per task (µs, its every process), by feature, on PostgreSQL. */
  const pgCpu = new Map<string, number[]>();
  for (let round = 1; round <= rounds; round++) {
    currentRound = rounds > 1 ? round : undefined;
    let plain: number | undefined;
    for (const feature of FEATURES) {
      await bounded(
        `features (${target.store}), ${feature.name}`,
        scenarioMs(N),
        failures,
        async (scope) => {
          const master = await target.start(feature, scope);
          const row = await seedWorkload({
            address: master.address,
            store: target.store,
            workers: FEATURE_WORKERS,
            scenario: FEATURE_SCENARIO,
            putOptions: feature.putOptions,
            scope,
            ...target.seed?.(master),
            extra: { variant: feature.name, feature: feature.description },
            annotate: (row) =>
              feature.name === "plain" || plain === undefined
                ? {}
                : { ratioToPlain: round2(row.value / plain) },
          });
          if (feature.name === "plain") plain = row.value;
          values.set(feature.name, [...values.get(feature.name) ?? [], row.value]);
          const cpu = row.cpu as CpuSplit | undefined;
          if (cpu !== undefined) {
            const us = Math.round(cpu.cpuSeconds.masters / (row.n as number) * 1e6 * 10) / 10;
            masterCpu.set(feature.name, [...masterCpu.get(feature.name) ?? [], us]);
            if (cpu.cpuSeconds.pgBackends !== undefined) {
              const pgUs = Math.round(postgresSeconds(cpu) / (row.n as number) * 1e6 * 10) / 10;
              pgCpu.set(feature.name, [...pgCpu.get(feature.name) ?? [], pgUs]);
            }
          }
        },
      );
      await target.after?.(feature);
    }
  }
  currentRound = undefined;
  const plain = median(values.get("plain") ?? []);
  const plainCpu = medianOf(masterCpu.get("plain") ?? []);
  const plainPgCpu = medianOf(pgCpu.get("plain") ?? []);
  console.log(
    `\nfeatures (${target.store}), seed workload, N=${N}, ${FEATURE_WORKERS} workers` +
      (rounds > 1 ? `, medians of ${rounds} rounds:` : ":"),
  );
  for (const feature of FEATURES) {
    const list = values.get(feature.name) ?? [];
    const value = median(list);
    if (value === undefined) {
      console.log(`  ${feature.name.padEnd(18)} FAILED (${feature.description})`);
      continue;
    }
    const ratio = plain === undefined ? undefined : round2(value / plain);
    const each = list.length > 1 ? ` (rounds: ${list.join(", ")})` : "";
    const cpu = medianOf(masterCpu.get(feature.name) ?? []);
    const cpuText = cpu === undefined ? "" : `, master CPU ${cpu} µs/task` +
      (plainCpu === undefined ? "" : ` (${round2(cpu / plainCpu).toFixed(2)}× plain)`);
    const pg = medianOf(pgCpu.get(feature.name) ?? []);
    const pgText = pg === undefined ? "" : `, PostgreSQL CPU ${pg} µs/task` +
      (plainPgCpu === undefined ? "" : ` (${round2(pg / plainPgCpu).toFixed(2)}× plain)`);
    console.log(
      `  ${feature.name.padEnd(18)} ${String(value).padStart(7)} tasks/s` +
        `${ratio === undefined ? "" : `, ${ratio.toFixed(2)}× plain`}${cpuText}${pgText}${each}` +
        `  — ${feature.description}`,
    );
    if (feature.name === "plain" || ratio === undefined) continue;
    report({
      scenario: FEATURE_COST_SCENARIO,
      store: target.store,
      workers: FEATURE_WORKERS,
      value: ratio,
      unit: "× plain",
      variant: feature.name,
      tasksPerSecond: value,
      plainTasksPerSecond: plain,
      ...(cpu === undefined ? {} : { masterCpuUsPerTask: cpu }),
      ...(plainCpu === undefined ? {} : { plainMasterCpuUsPerTask: plainCpu }),
      ...(pg === undefined ? {} : { postgresCpuUsPerTask: pg }),
      ...(plainPgCpu === undefined ? {} : { plainPostgresCpuUsPerTask: plainPgCpu }),
      n: N,
      rounds: list.length,
    });
  }
}

/** The seed workload over mutual TLS next to plain TCP (memory store), and the ratio. */
async function tlsWorkload(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "taskq-bench-tls-" });
  try {
    await writeTlsMaterial(dir, await makeTlsMaterial({ hosts: ["127.0.0.1"] }));
    const workerScript = `${dir}/tls_worker.ts`;
    await Deno.writeTextFile(workerScript, TLS_WORKER_SOURCE(dir));
    if (find("seed-workload", "memory", TLS_WORKERS) === undefined) {
      const plain = await startMaster("memory");
      try {
        await seedWorkload({ address: plain.address, store: "memory", workers: TLS_WORKERS });
      } finally {
        await plain.stop();
      }
    }
    const master = await startMaster("memory", { dir });
    try {
      await seedWorkload({
        address: master.address,
        store: "memory",
        workers: TLS_WORKERS,
        tls: { dir, workerScript },
      });
    } finally {
      await master.stop();
    }
    const plain = find("seed-workload", "memory", TLS_WORKERS)!;
    const overTls = find("seed-workload", "memory-tls", TLS_WORKERS)!;
    const ratio = Math.round((overTls / plain) * 100) / 100;
    console.log(
      `seed workload, ${TLS_WORKERS} workers, memory: TLS ${overTls} tasks/s, plain ${plain} ` +
        `tasks/s, TLS / plain ${ratio}×`,
    );
    report({ scenario: "ratio-tls-vs-plain", workers: TLS_WORKERS, value: ratio, unit: "×" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function pythonWorkload(workers: number): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("python3", {
      args: [`${root}scripts/python_managers_bench.py`, String(N), String(workers)],
      stdout: "piped",
      stderr: "inherit",
    }).output();
  } catch {
    console.log(`python managers, ${workers} workers: SKIPPED (no python3 on this machine)`);
    return;
  }
  if (!output.success) throw new Error("python managers benchmark failed");
  const result = JSON.parse(new TextDecoder().decode(output.stdout));
  report({
    scenario: "seed-workload",
    store: "python",
    workers,
    value: result.tasks_per_s,
    unit: "tasks/s",
    n: N,
    python: result.python,
  });
}

/**
 * The seed workload on the peers (scripts/peers_bench.ts), after taskq's in
 * memory for the worker counts this run has not measured yet.
 */
async function peersWorkload(): Promise<void> {
  const missing = WORKER_COUNTS.filter((w) => find("seed-workload", "memory", w) === undefined);
  if (missing.length > 0) {
    console.log(`peers: taskq's memory seed workload first (${missing.join(", ")} workers)`);
    await bounded(
      "memory seed workload (for the peers)",
      scenarioMs(N) * missing.length,
      failures,
      async (scope) => {
        const master = await startMaster("memory", undefined, scope);
        for (const workers of missing) {
          await seedWorkload({
            address: master.address,
            store: "memory",
            workers,
            cpu: { masters: [master.pid] },
            scope,
          });
        }
      },
    );
  }
  failures.push(
    ...await runPeers({
      n: N,
      workerCounts: WORKER_COUNTS,
      report,
      scenarioMs: scenarioMs(N),
      progress,
    }),
  );
}

function find(
  scenario: string,
  store: string,
  workers?: number,
  masters?: number,
): number | undefined {
  return rows.find((r) =>
    r.scenario === scenario && r.store === store && r.workers === workers &&
    r.masters === masters
  )?.value;
}

// ------------------------------------------------------------------ PostgreSQL

/** The database the PostgreSQL parts use, and what they run on it. */
interface PgBench {
  cluster: PgCluster;
  /** One connection for the schema work and the size queries. */
  admin: postgres.Sql;
  postmasterPid: number;
}

/** Drops a schema and everything in it, then CHECKPOINTs, so the next run starts clean. */
async function dropSchema(pg: PgBench, schema: string): Promise<void> {
  await pg.admin.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await pg.admin.unsafe("CHECKPOINT");
}

/**
 * Variants of the raw loop: the floor (claims committed asynchronously, as
 * taskq's are, on a table with statistics), every commit synchronous, and a
 * table without statistics (what a table created seconds ago gets).
 */
const PG_RAW_VARIANTS = [
  { name: "async", schema: "bench_raw", syncClaims: false, analyze: true },
  { name: "synchronous", schema: "bench_raw_sync", syncClaims: true, analyze: true },
  { name: "async-no-statistics", schema: "bench_raw_cold", syncClaims: false, analyze: false },
] as const;

/** The raw SKIP LOCKED loop (scripts/pg_raw_bench.ts, in a process of its own). */
async function pgRawLoop(
  pg: PgBench,
  variant: typeof PG_RAW_VARIANTS[number],
  scope: Scope,
): Promise<void> {
  const { schema, syncClaims, analyze } = variant;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${root}scripts/pg_raw_bench.ts`,
      ...["--url", pg.cluster.url, "--n", String(N), "--consumers", String(PG_RAW_CONSUMERS)],
      ...["--schema", schema, "--postmaster-pid", String(pg.postmasterPid)],
      ...["--timeout", String(scenarioMs(N) / 1000)],
      ...(syncClaims ? ["--sync-claims"] : []),
      ...(analyze ? [] : ["--no-analyze"]),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  scope.defer(() => stopChild(child, "SIGKILL"));
  const output = await child.output();
  if (!output.success) throw new Error(`scripts/pg_raw_bench.ts exited with ${output.code}`);
  const lines = new TextDecoder().decode(output.stdout).trim().split("\n");
  const result = JSON.parse(lines[lines.length - 1]);
  report({
    scenario: "pg-raw-skip-locked",
    store: "postgres",
    value: result.tasksPerSecond,
    unit: "tasks/s",
    n: N,
    consumers: result.consumers,
    claimRows: result.claimRows,
    claims: syncClaims ? "synchronous" : "async",
    statistics: analyze,
    variant: variant.name,
    putsDoneSeconds: result.putsDoneSeconds,
    clientCpuUsPerTask: result.clientCpuUsPerTask,
    cpu: result.cpu,
  });
  await dropSchema(pg, schema);
}

/**
 * The seed workload through `masters` taskq masters on schema `schema` of
 * the database ({@link seedWorkload} places the workers and the producer).
 */
async function pgSeed(
  pg: PgBench,
  masters: number,
  schema: string,
  scope: Scope,
  n = N,
  scenario?: string,
): Promise<Row> {
  await dropSchema(pg, schema);
  const started = await Promise.all(
    Array.from(
      { length: masters },
      () => startMaster({ postgres: pg.cluster.url, schema }, undefined, scope),
    ),
  );
  return await seedWorkload({
    address: started.map((m) => m.address).join(","),
    store: "postgres",
    workers: PG_WORKERS,
    masters,
    n,
    scenario,
    cpu: { masters: started.map((m) => m.pid), postmasterPid: pg.postmasterPid },
    // Start with no earlier writes left to flush (the schema was just created).
    beforeStart: async () => {
      await pg.admin.unsafe("CHECKPOINT");
    },
    scope,
    extra: {
      schema,
      placement: `worker i on master i mod ${masters}, producer on master ${masters - 1}`,
    },
  });
}

/** The seed workload on one durable SQLite master, with the CPU split, for comparison. */
async function sqliteSeed(scope: Scope): Promise<void> {
  const master = await startMaster("durable", undefined, scope);
  await seedWorkload({
    address: master.address,
    store: "durable",
    workers: PG_WORKERS,
    masters: 1,
    cpu: { masters: [master.pid] },
    scope,
  });
}

/** `<schema>.items`'s size, rows and vacuum counts. */
async function itemsSize(pg: PgBench, schema: string): Promise<Record<string, unknown>> {
  const table = `${schema}.items`;
  const [size] = await pg.admin.unsafe(
    `SELECT pg_total_relation_size($1::regclass) AS total, pg_relation_size($1::regclass) AS heap,
       pg_indexes_size($1::regclass) AS indexes,
       (SELECT reloptions FROM pg_class WHERE oid = $1::regclass) AS reloptions`,
    [table],
  );
  const [{ count }] = await pg.admin.unsafe(`SELECT count(*)::int AS count FROM ${table}`);
  const [stat] = await pg.admin.unsafe(
    `SELECT n_live_tup, n_dead_tup, vacuum_count, autovacuum_count, autoanalyze_count
     FROM pg_stat_user_tables WHERE relid = $1::regclass`,
    [table],
  );
  return {
    totalBytes: Number(size.total),
    tableBytes: Number(size.heap),
    indexesBytes: Number(size.indexes),
    reloptions: size.reloptions,
    rows: count,
    liveRowsEstimate: Number(stat.n_live_tup),
    deadRowsEstimate: Number(stat.n_dead_tup),
    vacuums: Number(stat.vacuum_count),
    autovacuums: Number(stat.autovacuum_count),
    autoanalyzes: Number(stat.autoanalyze_count),
  };
}

/** 1,000,000 items through 2 masters, then `bench_size.items`'s size before and after VACUUM. */
async function pgSize(pg: PgBench): Promise<void> {
  const schema = "bench_size";
  const ran = await bounded(
    `postgres, ${PG_SIZE_MASTERS} masters, ${PG_SIZE_ITEMS} items`,
    scenarioMs(PG_SIZE_ITEMS),
    failures,
    async (scope) => {
      await pgSeed(pg, PG_SIZE_MASTERS, schema, scope, PG_SIZE_ITEMS, "seed-workload-pgsize");
    },
  );
  if (!ran) return;
  // The masters are stopped: nothing but autovacuum touches the table now.
  for (const phase of ["before-vacuum", "after-vacuum"]) {
    if (phase === "after-vacuum") await pg.admin.unsafe(`VACUUM ${schema}.items`);
    const size = await itemsSize(pg, schema);
    report({
      scenario: "pg-items-size",
      store: "postgres",
      masters: PG_SIZE_MASTERS,
      value: Math.round((size.totalBytes as number) / 1024),
      unit: "KiB total",
      phase,
      items: PG_SIZE_ITEMS,
      ...size,
    });
    console.log(
      `  ${schema}.items after ${PG_SIZE_ITEMS} items, ${phase}: total ${
        kib(size.totalBytes)
      }, table ${kib(size.tableBytes)}, indexes ${kib(size.indexesBytes)}; ` +
        `${size.rows} rows (statistics: ${size.liveRowsEstimate} live, ${size.deadRowsEstimate} ` +
        `dead), ${size.autovacuums} autovacuums so far` +
        (phase === "before-vacuum" ? `; reloptions ${JSON.stringify(size.reloptions)}` : ""),
    );
  }
  await dropSchema(pg, schema);
}

function kib(bytes: unknown): string {
  return `${Math.round((bytes as number) / 1024).toLocaleString("en-US")} KiB`;
}

/**
 * The feature comparison on one PostgreSQL master (`--store URL`) of the
 * throwaway cluster, on a fresh schema each run.
 */
function postgresFeatures(pg: PgBench): FeatureTarget {
  const schemaOf = (feature: Feature) => `bench_feature_${feature.name.replaceAll("-", "_")}`;
  return {
    store: "postgres",
    start: async (feature, scope) => {
      await dropSchema(pg, schemaOf(feature));
      return await startMaster(
        { postgres: pg.cluster.url, schema: schemaOf(feature) },
        undefined,
        scope,
        feature.masterArgs,
      );
    },
    seed: (master) => ({
      cpu: { masters: [master.pid], postmasterPid: pg.postmasterPid },
      beforeStart: async () => {
        await pg.admin.unsafe("CHECKPOINT");
      },
    }),
    after: (feature) => dropSchema(pg, schemaOf(feature)),
  };
}

/** The PostgreSQL parts on one throwaway durable cluster. */
async function postgresParts(): Promise<void> {
  if (!postgresAvailable()) {
    console.log(`postgres: SKIPPED (${POSTGRES_MISSING})`);
    return;
  }
  const cluster = await startPostgres({ durable: true, database: "bench" });
  const admin = postgres(cluster.url, { max: 1, onnotice: () => {}, idle_timeout: 0 });
  // Ctrl-C must not leave the throwaway cluster running.
  const onSignal = () => {
    console.error("\ninterrupted: stopping the scenario's processes and the PostgreSQL cluster");
    Promise.allSettled([...activeScopes].map((scope) => scope.close()))
      .then(() => cluster.destroy())
      .finally(() => Deno.exit(130));
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, onSignal);
  try {
    const postmasterPid = Number(
      (await Deno.readTextFile(`${cluster.dataDir}/postmaster.pid`)).split("\n", 1)[0],
    );
    const pg: PgBench = { cluster, admin, postmasterPid };
    const [{ server_version: version }] = await admin.unsafe("SHOW server_version");
    const [{ fsync }] = await admin.unsafe("SHOW fsync");
    const [{ synchronous_commit }] = await admin.unsafe("SHOW synchronous_commit");
    const [{ autovacuum_naptime: naptime }] = await admin.unsafe("SHOW autovacuum_naptime");
    console.log(
      `postgres ${version} at ${cluster.url} (throwaway; fsync ${fsync}, synchronous_commit ` +
        `${synchronous_commit}, autovacuum_naptime ${naptime})`,
    );
    if (FEATURES_ON_POSTGRES) await featureWorkloads(postgresFeatures(pg));
    if (PG_COMPARISON) {
      for (let round = 1; round <= PG_ROUNDS; round++) {
        currentRound = round;
        if (PG_ROUNDS > 1) console.log(`postgres, round ${round} of ${PG_ROUNDS}`);
        for (const variant of PG_RAW_VARIANTS) {
          await bounded(
            `raw SKIP LOCKED loop (${variant.name})`,
            scenarioMs(N) + DEFAULT_STOP_GRACE_MS,
            failures,
            (scope) => pgRawLoop(pg, variant, scope),
          );
        }
        for (const masters of PG_MASTER_COUNTS) {
          const schema = `bench_${masters}m`;
          await bounded(
            `postgres, ${masters} master(s)`,
            scenarioMs(N),
            failures,
            async (scope) => {
              await pgSeed(pg, masters, schema, scope);
            },
          );
          await dropSchema(pg, schema);
        }
        await bounded("durable (SQLite), 1 master", scenarioMs(N), failures, sqliteSeed);
      }
      currentRound = undefined;
      postgresSummary();
    }
    if (runs("pgsize")) await pgSize(pg);
  } finally {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.removeSignalListener(signal, onSignal);
    }
    await admin.end({ timeout: 5 });
    await cluster.destroy();
  }
}

/** What a row of the PostgreSQL comparison measured: a raw variant, or a store and masters. */
function pgKey(row: Row): string | undefined {
  if (row.scenario === "pg-raw-skip-locked") return `raw loop, ${row.variant}`;
  if (row.scenario !== "seed-workload" || row.masters === undefined) return undefined;
  return `${row.store === "durable" ? "SQLite" : row.store}, ${row.masters} master${
    row.masters === 1 ? "" : "s"
  }`;
}

/** The median of `values`, unrounded (for figures with decimals). */
function medianOf(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : Math.round((sorted[mid - 1] + sorted[mid]) / 2);
}

/** The PostgreSQL figures side by side (medians over the rounds), and the targets. */
function postgresSummary(): void {
  const byKey = new Map<string, Row[]>();
  for (const row of rows) {
    const key = pgKey(row);
    if (key !== undefined && row.round !== undefined) {
      byKey.set(key, [...byKey.get(key) ?? [], row]);
    }
  }
  const med = (key: string) => median((byKey.get(key) ?? []).map((r) => r.value));
  const each = (key: string) => {
    const list = byKey.get(key) ?? [];
    return list.length > 1 ? ` (rounds: ${list.map((r) => r.value).join(", ")})` : "";
  };
  const raw = med("raw loop, async");
  const rawSync = med("raw loop, synchronous");
  const two = med("postgres, 2 masters");
  const sqlite = med("SQLite, 1 master");
  const rounds = Math.max(0, ...[...byKey.values()].map((list) => list.length));
  console.log(
    `\npostgres, seed workload, N=${N}, ${PG_WORKERS} workers in all` +
      (rounds > 1 ? `, medians of ${rounds} rounds:` : ":"),
  );
  for (const [key, list] of byKey) {
    const value = med(key)!;
    const ofRaw = raw && !key.startsWith("raw loop, async")
      ? `, ${round2(value / raw)}× the raw loop`
      : "";
    const unit = list[0].scenario === "pg-raw-skip-locked"
      ? ` (${PG_RAW_CONSUMERS} consumers)`
      : "";
    const died = list.filter((r) => r.workersFailed !== undefined).map((r) => r.round);
    const note = died.length > 0 ? `; a worker died in round ${died.join(", ")}` : "";
    console.log(`  ${key}${unit}: ${value} tasks/s${ofRaw}${each(key)}${note}`);
  }
  if (two !== undefined && raw !== undefined) {
    const ratio = round2(two / raw);
    const met = ratio >= PG_RATIO_TARGET;
    console.log(
      `  taskq 2 masters / raw loop: ${ratio}× (target ≥ ${PG_RATIO_TARGET}: ${
        met ? "met" : "NOT met"
      })`,
    );
    report({
      scenario: "ratio-pg-2m-vs-raw",
      store: "postgres",
      masters: 2,
      value: ratio,
      unit: "×",
      target: PG_RATIO_TARGET,
      met,
      rounds,
      vsSynchronousClaims: rawSync === undefined ? undefined : round2(two / rawSync),
    });
  }
  if (two !== undefined) {
    const met = two >= PG_RATE_TARGET;
    console.log(
      `  taskq 2 masters: ${two} tasks/s (target ≥ ${PG_RATE_TARGET} on 2 cores, this machine ` +
        `has ${navigator.hardwareConcurrency}: ${met ? "met" : "NOT met"})`,
    );
    if (sqlite !== undefined) {
      report({
        scenario: "ratio-pg-2m-vs-sqlite",
        store: "postgres",
        masters: 2,
        value: round2(two / sqlite),
        unit: "×",
        rounds,
        rateTarget: PG_RATE_TARGET,
        rateTargetMet: met,
      });
    }
  }
  console.log("  CPU per task (µs, mean over the rounds; user + system):");
  for (const [key, list] of byKey) {
    const perTask = new Map<string, number>();
    let busy = 0;
    for (const row of list) {
      const cpu = row.cpu as CpuSplit | undefined;
      if (cpu === undefined) continue;
      busy += cpu.machineBusyPct / list.length;
      const add = (name: string, seconds: number) =>
        perTask.set(
          name,
          (perTask.get(name) ?? 0) + (seconds / (row.n as number)) * 1e6 / list.length,
        );
      if (cpu.cpuSeconds.pgBackends !== undefined) {
        add("postgres", postgresSeconds(cpu));
        add("backends", cpu.cpuSeconds.pgBackends);
        add("autovacuum", cpu.cpuSeconds.pgAutovacuum + cpu.cpuSeconds.pgExited);
        add("other", cpu.cpuSeconds.pgBackground);
      }
      for (const [name, seconds] of Object.entries(cpu.cpuSeconds)) {
        if (!name.startsWith("pg")) add(name, seconds);
      }
    }
    const us = (name: string) => Math.round(perTask.get(name) ?? 0);
    const parts = [...perTask.keys()]
      .filter((name) => !["backends", "autovacuum", "other"].includes(name))
      .map((name) =>
        name === "postgres"
          ? `postgres ${us(name)} (backends ${us("backends")}, autovacuum ${
            us("autovacuum")
          }, other ${us("other")})`
          : `${name} ${us(name)}`
      );
    console.log(`    ${key.padEnd(32)} ${parts.join(", ")}; machine busy ${Math.round(busy)}%`);
  }
}

// A request left behind by a failed scenario must not end the bench before its cleanup (which
// stops the processes and the throwaway PostgreSQL cluster) has run: report it instead.
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  const message = `unhandled rejection: ${(event.reason as Error)?.message ?? event.reason}`;
  console.error(message);
  failures.push(message);
});

console.log(
  `taskq bench: N=${N}, ${navigator.hardwareConcurrency} cores, deno ${Deno.version.deno}`,
);
if (runs("raw")) await rawPingPong();
for (const store of ["memory", "durable"] as const) {
  if (!runs(store)) continue;
  const master = await startMaster(store);
  try {
    await producerBatched(master.address, store);
    await producerOneByOne(master.address, store);
    await putGetAck(master.address, store);
    await roundTrip(master.address, store);
    for (const workers of WORKER_COUNTS) {
      await seedWorkload({
        address: master.address,
        store,
        workers,
        cpu: { masters: [master.pid] },
      });
    }
  } finally {
    await master.stop();
  }
}
if (runs("python")) { for (const workers of WORKER_COUNTS) await pythonWorkload(workers); }
if (PEERS_RUN) await peersWorkload();
{
  // The scale scenarios (issue #15): RSS growth, idle connections, many queues, deep restarts.
  const parts = scalePartsOf(runs);
  if (parts.length > 0) failures.push(...await runScale({ n: N, parts, report, progress }));
}
if (runs("tls")) await tlsWorkload();
if (runs("features")) await featureWorkloads(MEMORY_FEATURES);
if (PG_COMPARISON || FEATURES_ON_POSTGRES || runs("pgsize")) await postgresParts();

console.log("\nscenario                   store         masters workers        value  unit");
for (const row of rows) {
  const notes = [
    ...(row.variant === undefined ? [] : [String(row.variant)]),
    ...(row.phase === undefined ? [] : [String(row.phase)]),
    ...(row.round === undefined ? [] : [`round ${row.round}`]),
  ];
  console.log(
    `${row.scenario.padEnd(25)} ${String(row.store ?? "").padEnd(13)} ${
      String(row.masters ?? "").padStart(7)
    } ${String(row.workers ?? "").padStart(7)} ${String(row.value).padStart(12)}  ${row.unit}${
      notes.length > 0 ? `  (${notes.join(", ")})` : ""
    }`,
  );
}
console.log("\nseed workload, taskq / python managers:");
for (const workers of WORKER_COUNTS) {
  const python = find("seed-workload", "python", workers);
  if (python === undefined) continue;
  const ratios: Record<string, number> = {};
  for (const store of ["memory", "durable"]) {
    const value = find("seed-workload", store, workers);
    if (value !== undefined) ratios[store] = Math.round((value / python) * 10) / 10;
  }
  console.log(`  ${workers} workers: memory ${ratios.memory}×, durable ${ratios.durable}×`);
  report({ scenario: "ratio-vs-python", workers, value: ratios.memory, unit: "×", ...ratios });
}
if (PEERS_RUN) {
  console.log("\nseed workload, taskq / best peer (same run):");
  for (
    const r of peerRatios((store, workers) => find("seed-workload", store, workers), WORKER_COUNTS)
  ) {
    const taskq = ["memory", "durable"].filter((store) => r.ratios[store] !== undefined)
      .map((store) => `${store} ${r.ratios[store]}×`);
    console.log(
      `  ${r.workers} workers: best peer ${r.bestPeer} ${r.bestPeerValue} tasks/s; ${
        taskq.join(", ")
      }`,
    );
    report({
      scenario: "ratio-vs-best-peer",
      workers: r.workers,
      value: r.ratios.memory,
      unit: "×",
      bestPeer: r.bestPeer,
      bestPeerValue: r.bestPeerValue,
      ...r.ratios,
    });
  }
}
await Deno.mkdir(`${root}bench-results`, { recursive: true });
const file = `${root}bench-results/bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
await Deno.writeTextFile(
  file,
  JSON.stringify({ date: new Date().toISOString(), n: N, deno: Deno.version.deno, rows }, null, 2),
);
console.log(`results written to ${file}`);
if (failures.length > 0) {
  console.error(`\n${failures.length} scenario(s) failed:\n  ${failures.join("\n  ")}`);
  Deno.exit(1);
}
