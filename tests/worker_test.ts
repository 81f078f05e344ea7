/**
 * `taskq worker` end to end: real master and worker processes on loopback
 * running real commands; results, retries, dead letters, timeouts, a worker
 * killed mid-command, idle exit, and items full of shell metacharacters.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect, type Job } from "../lib/mod.ts";
import {
  type MasterProcess,
  type Proc,
  type ResultRecord,
  startMaster,
  startTaskq,
  TEST_KEY,
  waitFor,
  WORKER_PERMISSIONS,
} from "./_helpers.ts";

/** Retry backoff used by these masters, so retries come quickly. */
const FAST_BACKOFF = ["--retry-backoff", "0.02"];

const WAIT_MS = 30_000;

/** Workers here exit once no item has come for a second. */
const IDLE_EXIT = ["--exit-when-idle", "1"];

function startWorker(
  master: MasterProcess,
  args: string[],
  env: Record<string, string> = {},
): Proc {
  return startTaskq("worker", ["worker", "--connect", master.address, ...args], {
    env,
    permissions: WORKER_PERMISSIONS,
  });
}

/** Options of {@link shWorker}. */
interface ShWorkerOptions {
  /** Flags before the command; `--exit-when-idle 1` by default. */
  flags?: string[];
  /** When given, `NAME {}` follows the script: the item is `$1`, NAME is `$0`. */
  name?: string;
}

/**
 * Worker arguments taking from "tasks" and putting results on "results", then
 * `flags` and the command `sh -c SCRIPT`.
 */
function shWorker(script: string, options: ShWorkerOptions = {}): string[] {
  return [
    "--queue",
    "tasks",
    "--results",
    "results",
    ...(options.flags ?? IDLE_EXIT),
    "--",
    "sh",
    "-c",
    script,
    ...(options.name === undefined ? [] : [options.name, "{}"]),
  ];
}

/** Collects `count` results from the master's "results" queue (acking them). */
async function collect(
  master: MasterProcess,
  count: number,
  queue = "results",
): Promise<Job<ResultRecord>[]> {
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    const results = client.queue(queue);
    const out: Job<ResultRecord>[] = [];
    const deadline = Date.now() + WAIT_MS;
    while (out.length < count && Date.now() < deadline) {
      const jobs = await results.getMany<ResultRecord>(
        count - out.length,
        Math.max(1, deadline - Date.now()),
      );
      await results.ack(jobs);
      out.push(...jobs);
    }
    assert.equal(out.length, count, `expected ${count} results on "${queue}", got ${out.length}`);
    return out;
  } finally {
    await client.close();
  }
}

async function put(master: MasterProcess, items: unknown[], queue = "tasks"): Promise<number[]> {
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    return await client.queue(queue).putMany(items);
  } finally {
    await client.close();
  }
}

async function queueStats(master: MasterProcess, queue: string) {
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    return (await client.stats(queue)).queues[0];
  } finally {
    await client.close();
  }
}

Deno.test("200 items through 3 workers with --concurrency 4: one correct result each", async () => {
  await using master = await startMaster();
  const n = 200;
  const ids = await put(master, Array.from({ length: n }, (_, i) => i + 1));
  const workers = [1, 2, 3].map(() =>
    startWorker(
      master,
      shWorker("echo $(( $1 * $1 ))", {
        flags: ["--concurrency", "4", ...IDLE_EXIT],
        name: "square",
      }),
    )
  );
  try {
    const results = await collect(master, n);
    const byId = new Map<number, ResultRecord>();
    for (const { value } of results) {
      assert.ok(!byId.has(value.id), `two results for item ${value.id}`);
      byId.set(value.id, value);
      const item = value.item as number;
      assert.equal(value.output, String(item * item));
      assert.equal(value.exitCode, 0);
    }
    assert.deepEqual([...byId.keys()].sort((a, b) => a - b), ids);
    for (const worker of workers) {
      assert.equal((await worker.finished(WAIT_MS)).code, 0, worker.describe());
    }
    const after = await queueStats(master, "results");
    assert.equal(after.ready, 0, "no extra results");
  } finally {
    for (const worker of workers) await worker.dispose();
  }
});

Deno.test("a command that fails twice then succeeds ends with one result at attempt 3", async () => {
  await using master = await startMaster({ args: FAST_BACKOFF });
  await put(master, ["flaky"]);
  await using worker = startWorker(
    master,
    shWorker(
      'if [ "$TASKQ_ATTEMPT" -lt 3 ]; then echo "attempt $TASKQ_ATTEMPT fails" >&2; exit 1; fi; echo "ok on $TASKQ_ATTEMPT"',
    ),
  );
  const [result] = await collect(master, 1);
  assert.equal(result.value.attempt, 3);
  assert.equal(result.value.output, "ok on 3");
  assert.equal((await worker.finished(WAIT_MS)).code, 0);
  assert.match(worker.stderr, /task failed.*attempt=1/);
  const stats = await queueStats(master, "tasks");
  assert.equal(stats.failed, 2);
  assert.equal((await queueStats(master, "results")).ready, 0, "exactly one result");
});

Deno.test("a command that always fails lands in the dead-letter queue with its error", async () => {
  await using master = await startMaster({ args: [...FAST_BACKOFF, "--max-attempts", "3"] });
  const [id] = await put(master, ["doomed"]);
  await using worker = startWorker(
    master,
    shWorker('echo "cannot process $1" >&2; exit 7', { name: "sh" }),
  );
  const [letter] = await collect(master, 1, "tasks.dead");
  assert.equal(letter.value.queue as unknown, "tasks");
  const dead = letter.value as unknown as {
    id: number;
    value: unknown;
    attempts: number;
    error: string;
  };
  assert.equal(dead.id, id);
  assert.equal(dead.value, "doomed");
  assert.equal(dead.attempts, 3);
  assert.match(dead.error, /exited with code 7: cannot process doomed/);
  assert.equal((await worker.finished(WAIT_MS)).code, 0);
  assert.equal((await queueStats(master, "results")).put, 0);
});

Deno.test("a command over --timeout is killed and retried", async () => {
  await using master = await startMaster({ args: FAST_BACKOFF });
  await put(master, ["slow"]);
  await using worker = startWorker(
    master,
    // The first attempt would run for a minute; `exec` makes the sleep the killed process.
    shWorker('if [ "$TASKQ_ATTEMPT" = 1 ]; then exec sleep 60; fi; echo "done on $TASKQ_ATTEMPT"', {
      flags: ["--timeout", "0.3", ...IDLE_EXIT],
    }),
  );
  const [result] = await collect(master, 1);
  assert.equal(result.value.attempt, 2);
  assert.equal(result.value.output, "done on 2");
  assert.match(worker.stderr, /timed out after 300 ms/);
  assert.equal((await worker.finished(WAIT_MS)).code, 0);
});

Deno.test("a worker killed with SIGKILL mid-command loses nothing", async () => {
  await using master = await startMaster();
  const dir = await Deno.makeTempDir({ prefix: "taskq-kill-" });
  const release = `${dir}/release`;
  try {
    const items = ["a", "b", "c", "d"];
    await put(master, items);
    // First attempts mark that they started, then hold until released (so no process outlives the test).
    const script = 'if [ "$TASKQ_ATTEMPT" = 1 ]; then touch "$MARKS/$1"; ' +
      'i=0; while [ ! -e "$RELEASE" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; exit 1; fi; ' +
      'echo "did $1"';
    const concurrency = ["--concurrency", "4"];
    const env = { MARKS: dir, RELEASE: release };
    const doomed = startWorker(master, shWorker(script, { flags: concurrency, name: "sh" }), env);
    try {
      await waitFor("all four commands to start", async () => {
        const names = [];
        for await (const entry of Deno.readDir(dir)) names.push(entry.name);
        return names.length === items.length;
      }, { timeoutMs: WAIT_MS });
      doomed.kill("SIGKILL");
      await doomed.finished(WAIT_MS);
    } finally {
      await doomed.dispose();
    }
    await using rescuer = startWorker(
      master,
      shWorker(script, { flags: [...IDLE_EXIT, ...concurrency], name: "sh" }),
      env,
    );
    const results = await collect(master, items.length);
    assert.deepEqual(results.map((r) => r.value.output).sort(), items.map((i) => `did ${i}`));
    assert.ok(results.every((r) => r.value.attempt === 2));
    assert.equal((await rescuer.finished(WAIT_MS)).code, 0);
  } finally {
    await Deno.writeTextFile(release, "");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("--exit-when-idle exits 0 once no item comes", async () => {
  await using master = await startMaster();
  await using worker = startWorker(master, [
    "--queue",
    "idle",
    "--exit-when-idle",
    "0.3",
    "--",
    "true",
  ]);
  const status = await worker.finished(WAIT_MS);
  assert.equal(status.code, 0, worker.describe());
});

Deno.test("items with shell metacharacters reach the command as one literal argument", async () => {
  await using master = await startMaster();
  const dir = await Deno.makeTempDir({ prefix: "taskq-meta-" });
  try {
    const canary = `${dir}/canary`;
    const items = [
      `; rm -rf ${dir}/x; touch ${canary}`,
      `$(touch ${canary})`,
      "`touch " + canary + "`",
      `it's "quoted" \\ and 'single'`,
      "line one\nline two; touch " + canary,
      `| touch ${canary} && echo pwned > ${canary}`,
      "{}",
      "--help",
    ];
    await put(master, items);
    await using worker = startWorker(master, shWorker('printf "%s|%s" "$#" "$1"', { name: "sh" }));
    const results = await collect(master, items.length);
    const outputs = new Map(results.map((r) => [r.value.item as string, r.value.output]));
    for (const item of items) {
      assert.equal(outputs.get(item), `1|${item}`, `item ${JSON.stringify(item)}`);
    }
    assert.equal((await worker.finished(WAIT_MS)).code, 0);
    await assert.rejects(Deno.stat(canary), Deno.errors.NotFound, "an item ran a command");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the item is on stdin and the task id and attempt are in the environment", async () => {
  await using master = await startMaster();
  const [id] = await put(master, [{ n: 5 }]);
  await using worker = startWorker(
    master,
    shWorker(
      'read -r line; echo "$line id=$TASKQ_TASK_ID attempt=$TASKQ_ATTEMPT queue=$TASKQ_QUEUE"',
    ),
  );
  const [result] = await collect(master, 1);
  assert.equal(result.value.output, `{"n":5} id=${id} attempt=1 queue=tasks`);
  assert.deepEqual(result.value.item, { n: 5 });
  assert.equal((await worker.finished(WAIT_MS)).code, 0);
});
