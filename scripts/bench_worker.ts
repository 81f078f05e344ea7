/**
 * A benchmark worker process: squares each int from "tasks" into "results"
 * (the seed's work) with the library worker loop, and exits when idle.
 *
 * Usage: deno run -A scripts/bench_worker.ts HOST:PORT CONCURRENCY [PREFETCH]
 *
 * @module
 */

import { connect } from "../lib/mod.ts";
import { runWorker } from "../lib/worker/worker.ts";

const IDLE_EXIT_MS = 1_000;

const [address, concurrency, prefetch] = Deno.args;
const client = await connect({ address, name: `bench-worker-${Deno.pid}` });
const summary = await runWorker<number>({
  client,
  queue: "tasks",
  results: "results",
  concurrency: Number(concurrency),
  prefetch: prefetch === undefined ? undefined : Number(prefetch),
  exitWhenIdleMs: IDLE_EXIT_MS,
  handler: (job) => `${job.value} * ${job.value} = ${job.value * job.value}`,
});
await client.close();
console.log(JSON.stringify(summary));
