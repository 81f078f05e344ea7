/**
 * What `taskq worker` does with its command (lib/cli/worker.ts,
 * lib/worker/command.ts, lib/worker/completions.ts), with real master,
 * worker and command processes:
 *
 * - a command printing more than the master's frame limit fails that one
 *   item with an error saying so (dead-lettered after its attempts), and so
 *   does one whose output fits but whose result record does not; the worker
 *   and its other items go on;
 * - `{}` is replaced only as a whole argument by default: `sh -c 'echo {}'`
 *   with an item `$(echo INJECTED)` runs no injection (the worker warns at
 *   start); the item is on stdin and in TASKQ_ITEM, the id in TASKQ_JOB_ID;
 *   `--embed-item` replaces inside arguments, and its help says it lets an
 *   item inject shell code;
 * - a missing or non-executable command is refused at start with one line
 *   (exit 2), before any item is taken.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect, type Job } from "../lib/mod.ts";
import {
  type MasterProcess,
  type ResultRecord,
  runTaskq,
  startMaster,
  TEST_KEY,
  WORKER_PERMISSIONS,
} from "./_helpers.ts";

/** Longest any wait here may take. */
const WAIT_MS = 30_000;

/** The frame limit of the master of the output test, in bytes. */
const FRAME_BYTES = 65_536;

/** Runs `taskq worker` on the master's "tasks" queue until idle; `args` go before the command. */
async function runWorker(master: MasterProcess, args: string[], command: string[]) {
  return await runTaskq([
    "worker",
    "--connect",
    master.address,
    "--queue",
    "tasks",
    "--exit-when-idle",
    "1",
    ...args,
    "--",
    ...command,
  ], { permissions: WORKER_PERMISSIONS });
}

/** Takes `count` items of `queue` (acking them). */
async function take<T>(master: MasterProcess, queue: string, count: number): Promise<Job<T>[]> {
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    const jobs = await client.queue(queue).getMany<T>(count, WAIT_MS);
    await client.queue(queue).ack(jobs);
    return jobs;
  } finally {
    await client.close();
  }
}

async function put(master: MasterProcess, items: unknown[]): Promise<number[]> {
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    return await client.queue("tasks").putMany(items);
  } finally {
    await client.close();
  }
}

Deno.test("output over the frame limit fails that item alone; the worker goes on", async () => {
  await using master = await startMaster({
    args: ["--max-frame", String(FRAME_BYTES), "--max-attempts", "1"],
  });
  // "huge" prints far more than a frame; "edge" prints just under the limit, so its output
  // is kept but its result record (output, item, id...) does not fit in a frame.
  const small = ["s1", "s2", "s3", "s4"];
  const [huge, edge] = await put(master, ["huge", "edge", ...small]);
  const script = 'case "$1" in ' +
    `huge) head -c ${4 * FRAME_BYTES} /dev/zero | tr '\\0' x ;; ` +
    `edge) head -c ${FRAME_BYTES - 8} /dev/zero | tr '\\0' y ;; ` +
    '*) echo "ok $1" ;; esac';
  const out = await runWorker(master, ["--results", "results", "--concurrency", "3"], [
    "sh",
    "-c",
    script,
    "sh",
    "{}",
  ]);
  assert.equal(out.code, 0, out.stderr);
  const results = await take<ResultRecord>(master, "results", small.length);
  assert.deepEqual(results.map((r) => r.value.output).sort(), small.map((s) => `ok ${s}`));
  const dead = await take<{ id: number; error: string }>(master, "tasks.dead", 2);
  const errors = new Map(dead.map((letter) => [letter.value.id, letter.value.error]));
  assert.match(
    errors.get(huge) ?? "",
    new RegExp(
      `^command printed ${4 * FRAME_BYTES} bytes on stdout, more than the ` +
        `${FRAME_BYTES} bytes a result may hold`,
    ),
  );
  assert.match(
    errors.get(edge) ?? "",
    /^its result takes \d+ bytes, more than the master's frame limit of 65536 bytes/,
  );
  assert.match(out.stderr, /task failed.*printed 262144 bytes/);
  assert.match(out.stderr, /worker stopped.*done=4 failed=2/);
});

Deno.test("{} is replaced only as a whole argument by default: an item cannot inject shell code", async () => {
  await using master = await startMaster();
  const item = "$(echo INJECTED)";
  const [id] = await put(master, [item]);
  const out = await runWorker(master, ["--results", "results"], [
    "sh",
    "-c",
    // {} inside the script stays {}; the item comes as $1, on stdin and in the environment.
    'echo "{}|$1|$(cat)|$TASKQ_ITEM|$TASKQ_JOB_ID"',
    "sh",
    "{}",
  ]);
  assert.equal(out.code, 0, out.stderr);
  const [result] = await take<ResultRecord>(master, "results", 1);
  assert.equal(result.value.output, `{}|${item}|${item}|${item}|${id}`);
  assert.doesNotMatch(result.value.output, /INJECTED$|\|INJECTED\|/);
  assert.match(out.stderr, /WARN .*\{\} inside a larger argument is passed as it is/);
});

Deno.test("--embed-item replaces {} inside arguments, and its help names the risk", async () => {
  await using master = await startMaster();
  await put(master, ["$(echo INJECTED)"]);
  const out = await runWorker(master, ["--results", "results", "--embed-item"], [
    "sh",
    "-c",
    "echo {}",
  ]);
  assert.equal(out.code, 0, out.stderr);
  const [result] = await take<ResultRecord>(master, "results", 1);
  assert.equal(result.value.output, "INJECTED", "opted in: the shell ran the item");
  assert.match(out.stderr, /WARN .*--embed-item: .*an item can run code/);
  const help = await runTaskq(["worker", "--help"]);
  assert.match(
    help.stdout,
    /--embed-item\s+also replace \{\} inside larger arguments\. UNSAFE:\s+it lets an item inject shell code/,
  );
});

Deno.test("a missing or non-executable command is refused at start with one line", async () => {
  await using master = await startMaster();
  await put(master, ["untouched"]);
  const missing = await runWorker(master, [], ["taskq-no-such-command", "{}"]);
  assert.equal(missing.code, 2);
  assert.deepEqual(missing.stderr.trimEnd().split("\n"), [
    'taskq worker: command "taskq-no-such-command" not found on PATH: check its spelling, ' +
    "or give its full path",
  ]);
  const dir = await Deno.makeTempDir({ prefix: "taskq-not-exec-" });
  try {
    const script = `${dir}/job.sh`;
    await Deno.writeTextFile(script, "#!/bin/sh\necho hi\n");
    const notExecutable = await runWorker(master, [], [script]);
    assert.equal(notExecutable.code, 2);
    assert.equal(
      notExecutable.stderr.trim(),
      `taskq worker: command "${script}" is not executable`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    const stats = (await client.stats("tasks")).queues[0];
    assert.equal(stats.ready, 1, "no item was taken");
    assert.equal(stats.failed, 0);
  } finally {
    await client.close();
  }
});
