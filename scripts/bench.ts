/**
 * `deno task bench`: measures taskq on this machine and prints a table plus one
 * JSON line per scenario (also written to bench-results/).
 *
 * Scenarios: producer-only puts (batched, and one by one pipelined), the
 * put→get→ack round trip of one client, and the seed's workload end to end
 * (a producer puts N ints, 1, 2 and 4 worker processes square them, the
 * producer collects the N results).
 *
 * Usage: deno task bench [N]   (default N = 100000)
 *
 * @module
 */

import { connect } from "../lib/mod.ts";

const DEFAULT_N = 100_000;
const PUT_BATCH = 1_000;
const PIPELINE_DEPTH = 256;
const ROUND_TRIPS = 5_000;
const WORKER_COUNTS = [1, 2, 4];
const WORKER_CONCURRENCY = 64;
const COLLECT_BATCH = 1_000;
const COLLECT_TIMEOUT_MS = 60_000;

const N = Number(Deno.args[0] ?? DEFAULT_N);
const root = new URL("..", import.meta.url).pathname;

interface Row {
  scenario: string;
  value: number;
  unit: string;
  [key: string]: unknown;
}
const rows: Row[] = [];

function report(row: Row): void {
  rows.push(row);
  console.log(JSON.stringify(row));
}

async function startMaster(): Promise<{ address: string; stop(): Promise<void> }> {
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
  const address = /listening on (\S+)/.exec(text)![1];
  return {
    address,
    async stop() {
      child.kill("SIGTERM");
      await reader.cancel();
      await child.status;
    },
  };
}

function rate(count: number, ms: number): number {
  return Math.round(count / (ms / 1000));
}

async function producerBatched(address: string): Promise<void> {
  const client = await connect({ address });
  const queue = client.queue("bench-put-batched");
  const batch = Array.from({ length: PUT_BATCH }, (_, i) => i);
  const t0 = performance.now();
  const inFlight: Promise<unknown>[] = [];
  for (let sent = 0; sent < N; sent += PUT_BATCH) {
    inFlight.push(queue.putMany(batch));
    if (inFlight.length >= 8) await inFlight.shift();
  }
  await Promise.all(inFlight);
  report({
    scenario: "put-batched",
    value: rate(N, performance.now() - t0),
    unit: "items/s",
    batch: PUT_BATCH,
  });
  await client.close();
}

async function producerOneByOne(address: string): Promise<void> {
  const client = await connect({ address });
  const queue = client.queue("bench-put-single");
  const t0 = performance.now();
  const window = new Set<Promise<unknown>>();
  for (let i = 0; i < N; i++) {
    const p: Promise<unknown> = queue.put(i).finally(() => window.delete(p));
    window.add(p);
    if (window.size >= PIPELINE_DEPTH) await Promise.race(window);
  }
  await Promise.all(window);
  report({
    scenario: "put-single-pipelined",
    value: rate(N, performance.now() - t0),
    unit: "items/s",
    depth: PIPELINE_DEPTH,
  });
  await client.close();
}

async function roundTrip(address: string): Promise<void> {
  const client = await connect({ address });
  const queue = client.queue("bench-rtt");
  const samples: number[] = [];
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const t0 = performance.now();
    await queue.put(i);
    const job = await queue.get(1000);
    await queue.ack(job!);
    samples.push((performance.now() - t0) * 1000);
  }
  samples.sort((a, b) => a - b);
  const median = samples[Math.floor(samples.length / 2)];
  const p99 = samples[Math.floor(samples.length * 0.99)];
  report({
    scenario: "put-get-ack-rtt",
    value: Math.round(median),
    unit: "µs median",
    p99: Math.round(p99),
  });
  await client.close();
}

async function seedWorkload(address: string, workers: number): Promise<void> {
  const client = await connect({ address });
  const tasks = client.queue("tasks");
  const results = client.queue("results");
  const t0 = performance.now();
  const procs = Array.from({ length: workers }, () =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${root}scripts/bench_worker.ts`, address, String(WORKER_CONCURRENCY)],
      stdout: "null",
      stderr: "inherit",
    }).spawn());
  const ints = Array.from({ length: N }, () => Math.floor(Math.random() * 10_001));
  for (let i = 0; i < N; i += PUT_BATCH) await tasks.putMany(ints.slice(i, i + PUT_BATCH));
  let got = 0;
  while (got < N) {
    const jobs = await results.getMany(COLLECT_BATCH, COLLECT_TIMEOUT_MS);
    if (jobs.length === 0) throw new Error(`only ${got} of ${N} results came`);
    await results.ack(jobs);
    got += jobs.length;
    if (got % (N / 4) < jobs.length) {
      await Deno.stderr.write(new TextEncoder().encode(`  ${workers} workers: ${got}/${N}\r`));
    }
  }
  const ms = performance.now() - t0;
  await Promise.all(procs.map((p) => p.status));
  report({
    scenario: "seed-workload",
    value: rate(N, ms),
    unit: "tasks/s",
    workers,
    store: "memory",
    n: N,
  });
  await client.close();
}

console.log(
  `taskq bench: N=${N}, ${navigator.hardwareConcurrency} cores, deno ${Deno.version.deno}`,
);
const master = await startMaster();
try {
  await producerBatched(master.address);
  await producerOneByOne(master.address);
  await roundTrip(master.address);
  for (const workers of WORKER_COUNTS) await seedWorkload(master.address, workers);
} finally {
  await master.stop();
}
console.log("\nscenario               value       unit");
for (const row of rows) {
  console.log(
    `${row.scenario.padEnd(22)} ${String(row.value).padStart(10)}  ${row.unit}${
      row.workers ? ` (${row.workers} workers)` : ""
    }`,
  );
}
await Deno.mkdir(`${root}bench-results`, { recursive: true });
const file = `${root}bench-results/bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
await Deno.writeTextFile(
  file,
  JSON.stringify({ date: new Date().toISOString(), n: N, rows }, null, 2),
);
console.log(`results written to ${file}`);
