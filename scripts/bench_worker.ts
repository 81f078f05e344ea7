/**
 * A benchmark worker process: squares each int from "tasks" into "results"
 * (the seed's work) with the library worker loop, and exits when idle.
 *
 * Usage: deno run -A scripts/bench_worker.ts ADDRESS CONCURRENCY [PREFETCH [START]]
 *
 * ADDRESS is one master's HOST:PORT, or several masters sharing one database
 * (`HOST:PORT,HOST:PORT,...`, as `--connect` takes them). The client starts
 * on a random one of several; with START, the worker reconnects until its
 * session is on the START-th (from 0), so that a benchmark spreads its
 * workers over the masters the same way each run. It keeps the whole list,
 * so it still fails over to the others.
 *
 * Prints one JSON line when it exits: its master, the worker's summary, when
 * it handled its last item (`lastHandledAt`, ms since the epoch) and the CPU
 * time it used (`cpuSeconds`, user + system, start-up included).
 *
 * @module
 */

import process from "node:process";
import { type Client, connect, type ConnectOptions } from "../lib/mod.ts";
import { runWorker } from "../lib/worker/worker.ts";

const IDLE_EXIT_MS = 1_000;

/** Connections tried to land on the START-th master before giving up. */
const PIN_ATTEMPTS = 100;

/**
 * Connects to the masters of `address` (a comma-separated list), on the
 * `start`-th of them when given: a session elsewhere is closed and another
 * opened, until the client's random choice falls on it.
 * @throws {Error} when {@link PIN_ATTEMPTS} sessions all land elsewhere.
 */
export async function connectOn(
  address: string,
  start: number | undefined,
  options: Omit<ConnectOptions, "address"> = {},
): Promise<Client> {
  const masters = address.split(",");
  const wanted = start === undefined ? undefined : masters[start % masters.length];
  for (let attempt = 0; attempt < PIN_ATTEMPTS; attempt++) {
    const client = await connect({ address, ...options });
    if (wanted === undefined || masters.length === 1 || client.address === wanted) return client;
    await client.close();
  }
  throw new Error(`no session landed on ${wanted} in ${PIN_ATTEMPTS} tries`);
}

if (import.meta.main) {
  const [address, concurrency, prefetch, start] = Deno.args;
  /** When the last item was handled (ms since the epoch). */
  let lastHandledAt = 0;
  const client = await connectOn(address, start === undefined ? undefined : Number(start), {
    name: `bench-worker-${Deno.pid}`,
  });
  const summary = await runWorker<number>({
    client,
    queue: "tasks",
    results: "results",
    concurrency: Number(concurrency),
    prefetch: prefetch === undefined ? undefined : Number(prefetch),
    exitWhenIdleMs: IDLE_EXIT_MS,
    handler: (job) => {
      lastHandledAt = Date.now();
      return `${job.value} * ${job.value} = ${job.value * job.value}`;
    },
  });
  await client.close();
  const cpu = process.cpuUsage();
  // The benchmark reads this line: the CPU time is this process's, start-up included.
  console.log(JSON.stringify({
    master: client.address,
    ...summary,
    lastHandledAt,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  }));
}
