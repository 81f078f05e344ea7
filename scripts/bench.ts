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
 * the master's memory with 1,000,000 small items queued, and, for scale, a raw
 * TCP ping-pong between two processes (the floor under every round trip).
 * The taskq producer pipelines batched puts and the workers prefetch; the
 * Python programs do what the seed does (one call at a time).
 *
 * Over TLS (mutual, certificates from `makeTlsMaterial`), the seed workload
 * with 2 workers on a memory master, next to the same on plain TCP, with the
 * ratio.
 *
 * Usage: deno task bench [N]   (default N = 100000)
 * TASKQ_BENCH_ONLY=tls,raw deno task bench   runs only the named parts, of:
 * raw, memory, durable, python, rss, tls (all by default).
 *
 * @module
 */

import { connect } from "../lib/mod.ts";
import { makeTlsMaterial, writeTlsMaterial } from "../lib/cli/tls.ts";

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
const MEMORY_ITEMS = 1_000_000;
const PROGRESS_STEPS = 4;
const STARTUP_POLL_MS = 20;

const N = Number(Deno.args[0] ?? DEFAULT_N);
/** Workers of the TLS comparison. */
const TLS_WORKERS = 2;
/** The parts to run (TASKQ_BENCH_ONLY, comma-separated); all when unset. */
const ONLY = Deno.env.get("TASKQ_BENCH_ONLY")?.split(",").map((part) => part.trim());
const runs = (part: string) => ONLY === undefined || ONLY.includes(part);
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
  store?: Store | "python" | "memory-tls";
  workers?: number;
  value: number;
  unit: string;
  [key: string]: unknown;
}
const rows: Row[] = [];

function report(row: Row): void {
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

async function startMaster(store: Store, tls?: TlsFiles): Promise<RunningMaster> {
  const dataDir = store === "durable" ? await Deno.makeTempDir({ prefix: "taskq-bench-" }) : "";
  const storeArgs = store === "durable" ? ["--data", dataDir] : ["--memory"];
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
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/listening on (\S+)/.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error("master exited before listening");
    text += value;
  }
  return {
    address: /listening on (\S+)/.exec(text)![1],
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM");
      await reader.cancel();
      await child.status;
      if (dataDir) await Deno.remove(dataDir, { recursive: true });
    },
  };
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

function rate(count: number, ms: number): number {
  return Math.round(count / (ms / 1000));
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

async function seedWorkload(
  address: string,
  store: Store,
  workers: number,
  tls?: TlsFiles & { workerScript: string },
): Promise<void> {
  const read = (name: string) => Deno.readTextFileSync(`${tls?.dir}/${name}`);
  const client = await connect({
    address,
    reconnect: false,
    tls: tls === undefined
      ? undefined
      : { ca: read("ca.pem"), cert: read("client.pem"), key: read("client-key.pem") },
  });
  const tasks = client.queue("tasks");
  const results = client.queue("results");
  const procs = Array.from({ length: workers }, () =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        tls?.workerScript ?? `${root}scripts/bench_worker.ts`,
        address,
        String(WORKER_CONCURRENCY),
        String(WORKER_PREFETCH),
      ],
      stdout: "null",
      stderr: "inherit",
    }).spawn());
  const ints = Array.from({ length: N }, () => Math.floor(Math.random() * 10_001));
  // Time the work, not the workers' process start-up: wait until all are connected.
  while ((await client.stats()).clients < workers + 1) {
    await new Promise((resolve) => setTimeout(resolve, STARTUP_POLL_MS));
  }
  const t0 = performance.now();
  const putting = (async () => {
    const inFlight: Promise<unknown>[] = [];
    for (let i = 0; i < N; i += PUT_BATCH) {
      inFlight.push(tasks.putMany(ints.slice(i, i + PUT_BATCH)));
      if (inFlight.length >= PUT_BATCHES_IN_FLIGHT) await inFlight.shift();
    }
    await Promise.all(inFlight);
  })();
  let got = 0;
  while (got < N) {
    const jobs = await results.getMany(COLLECT_BATCH, COLLECT_TIMEOUT_MS);
    if (jobs.length === 0) throw new Error(`only ${got} of ${N} results came`);
    await results.ack(jobs);
    got += jobs.length;
    if (got % (N / PROGRESS_STEPS) < jobs.length) {
      progress(`${store}, ${workers} workers: ${got}/${N}`);
    }
  }
  const ms = performance.now() - t0;
  await putting;
  await Promise.all(procs.map((p) => p.status));
  report({
    scenario: "seed-workload",
    store: tls === undefined ? store : "memory-tls",
    workers,
    value: rate(N, ms),
    unit: "tasks/s",
    n: N,
  });
  await client.close();
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
        await seedWorkload(plain.address, "memory", TLS_WORKERS);
      } finally {
        await plain.stop();
      }
    }
    const master = await startMaster("memory", { dir });
    try {
      await seedWorkload(master.address, "memory", TLS_WORKERS, { dir, workerScript });
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

async function rssOf(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

async function memoryFootprint(): Promise<void> {
  const master = await startMaster("memory");
  try {
    const client = await connect({ address: master.address, reconnect: false });
    const before = await rssOf(master.pid);
    const queue = client.queue("bench-memory");
    const batch = Array.from({ length: PUT_BATCH }, (_, i) => i);
    for (let sent = 0; sent < MEMORY_ITEMS; sent += PUT_BATCH) {
      await queue.putMany(batch);
      if (sent % (MEMORY_ITEMS / PROGRESS_STEPS) === 0) progress(`memory: ${sent}/${MEMORY_ITEMS}`);
    }
    const after = await rssOf(master.pid);
    report({
      scenario: "master-rss-1M-items",
      store: "memory",
      value: Math.round(after / 2 ** 20),
      unit: "MiB RSS",
      bytesPerItem: Math.round((after - before) / MEMORY_ITEMS),
    });
    await client.close();
  } finally {
    await master.stop();
  }
}

function find(scenario: string, store: string, workers?: number): number | undefined {
  return rows.find((r) => r.scenario === scenario && r.store === store && r.workers === workers)
    ?.value;
}

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
    for (const workers of WORKER_COUNTS) await seedWorkload(master.address, store, workers);
  } finally {
    await master.stop();
  }
}
if (runs("python")) { for (const workers of WORKER_COUNTS) await pythonWorkload(workers); }
if (runs("rss")) await memoryFootprint();
if (runs("tls")) await tlsWorkload();

console.log("\nscenario                   store     workers        value  unit");
for (const row of rows) {
  console.log(
    `${row.scenario.padEnd(25)} ${String(row.store ?? "").padEnd(9)} ${
      String(row.workers ?? "").padStart(7)
    } ${String(row.value).padStart(12)}  ${row.unit}`,
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
await Deno.mkdir(`${root}bench-results`, { recursive: true });
const file = `${root}bench-results/bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
await Deno.writeTextFile(
  file,
  JSON.stringify({ date: new Date().toISOString(), n: N, deno: Deno.version.deno, rows }, null, 2),
);
console.log(`results written to ${file}`);
