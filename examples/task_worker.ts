/**
 * The seed's task_worker.py, in taskq: connect with the key "abc", square each
 * task and put back "n * n = m"; exit once no task comes for a second.
 *
 * @module
 */
import { connect } from "../lib/mod.ts";

const server = Deno.env.get("TASKQ_ADDR") ?? "127.0.0.1:5000";
console.log(`Connect to server ${server}...`);
const client = await connect({ address: server, authkey: "abc" });
const task = client.queue("tasks");
const result = client.queue("results");
for (let i = 0; i < 10; i++) {
  const job = await task.get<number>(1000);
  if (job === null) {
    console.log("task queue is empty.");
    break;
  }
  const n = job.value;
  console.log(`run task ${n} * ${n}...`);
  await result.put(`${n} * ${n} = ${n * n}`);
  await task.ack(job);
}
await client.close();
console.log("worker exit.");
