/**
 * `taskq demo`: the seed's scenario in one command: a master and two workers
 * on loopback, 10 random ints squared, the results printed.
 *
 * @module
 */

import { parseFlags } from "./args.ts";
import { serve } from "../server/master.ts";
import { connect } from "../client/client.ts";
import { runWorker } from "../worker/worker.ts";
import { TaskqError } from "../errors.ts";

/** One-line summary shown by `taskq --help`. */
export const DEMO_SUMMARY = "run the classic example: a master, two workers, 10 squares";

/** Help text of `taskq demo`. */
export const DEMO_HELP = `Usage: taskq demo

Starts a master on a free loopback port with a random key, two workers, and
a producer that puts 10 random ints on "tasks"; each worker squares what it
takes and puts "n * n = m" on "results"; the producer prints the results.
`;

const TASKS = 10;
const WORKERS = 2;
const MAX_TASK = 10_000;
const RESULT_TIMEOUT_MS = 10_000;
const WORKER_IDLE_EXIT_MS = 1_000;
const KEY_BYTES = 32;

/** Runs `taskq demo`; resolves with the exit code. */
export async function runDemo(args: string[]): Promise<number> {
  const parsed = parseFlags("demo", args, {});
  if (parsed.values.help) {
    console.log(DEMO_HELP);
    return 0;
  }
  const authkey = crypto.getRandomValues(new Uint8Array(KEY_BYTES));
  const master = await serve({ listen: "127.0.0.1:0", authkey });
  const address = master.address;
  const producer = await connect({ address, authkey, name: "demo-producer" });
  try {
    const workers = Array.from({ length: WORKERS }, async (_, i) => {
      const client = await connect({ address, authkey, name: `demo-worker-${i + 1}` });
      try {
        await runWorker<number>({
          client,
          queue: "tasks",
          results: "results",
          exitWhenIdleMs: WORKER_IDLE_EXIT_MS,
          handler: (job) => `${job.value} * ${job.value} = ${job.value * job.value}`,
        });
      } finally {
        await client.close();
      }
    });
    const tasks = producer.queue("tasks");
    const results = producer.queue("results");
    for (let i = 0; i < TASKS; i++) {
      const n = Math.floor(Math.random() * (MAX_TASK + 1));
      console.log(`Put task ${n}...`);
      await tasks.put(n);
    }
    console.log("Try get results...");
    for (let i = 0; i < TASKS; i++) {
      const result = await results.get(RESULT_TIMEOUT_MS);
      if (result === null) throw new TaskqError("a result did not come within 10 s");
      console.log(`Result: ${result.value}`);
      await results.ack(result);
    }
    await Promise.all(workers);
    return 0;
  } finally {
    await producer.close();
    await master.close();
  }
}
