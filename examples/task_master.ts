/**
 * The seed's task_master.py, in taskq: serve two queues with the key "abc",
 * put 10 random ints on "tasks", then print 10 results from "results".
 * Run `deno run -A examples/task_worker.ts` (on this machine or another) to do the work.
 *
 * @module
 */
import { connect, serve } from "../lib/mod.ts";

const address = Deno.env.get("TASKQ_ADDR") ?? ":5000"; // all interfaces, port 5000
const master = await serve({ listen: address, authkey: "abc" });
const client = await connect({
  address: { hostname: "127.0.0.1", port: master.address.port },
  authkey: "abc",
});
const task = client.queue("tasks");
const result = client.queue("results");
for (let i = 0; i < 10; i++) {
  const n = Math.floor(Math.random() * 10001);
  console.log(`Put task ${n}...`);
  await task.put(n);
}
console.log("Try get results...");
for (let i = 0; i < 10; i++) {
  const r = await result.get(10_000);
  if (r === null) throw new Error("no result within 10 s: is a worker running?");
  console.log(`Result: ${r.value}`);
  await result.ack(r);
}
await client.close();
await master.close();
