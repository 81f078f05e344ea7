/**
 * `taskq worker` and a master that is not there (lib/cli/worker.ts,
 * lib/worker/worker.ts), with real master, worker and command processes:
 *
 * - a worker started before its master waits for it (one WARN line), then
 *   serves it once it comes up; with `--fail-fast` it exits 1 at once;
 * - a master that crashes while commands run: each worker logs the outage
 *   once (one WARN line), says of the command that finished meanwhile "the
 *   lease ended before the work did", reconnects to the restarted master and
 *   serves it; with `--quiet` that outage is its only line.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect, type Job } from "../lib/mod.ts";
import {
  freeLoopbackPort,
  type Proc,
  type ResultRecord,
  startMaster,
  startTaskq,
  TEST_KEY,
  waitFor,
  WORKER_PERMISSIONS,
} from "./_helpers.ts";

/** Longest any wait here may take. */
const WAIT_MS = 30_000;

/** How soon a worker with `--fail-fast` must give up on a master that is not there, in ms. */
const FAIL_FAST_MS = 3_000;

/** Starts `taskq worker ARGS`. */
function startWorker(args: string[], env: Record<string, string> = {}): Proc {
  return startTaskq("worker", ["worker", ...args], { env, permissions: WORKER_PERMISSIONS });
}

/** The WARN (and ERROR) lines of a text log. */
function warnings(log: string): string[] {
  return log.split("\n").filter((line) => / (WARN|ERROR) /.test(line));
}

Deno.test("a worker started before its master waits for it, then serves it", async () => {
  const address = `127.0.0.1:${freeLoopbackPort()}`;
  await using worker = startWorker([
    "--connect",
    address,
    "--queue",
    "tasks",
    "--results",
    "results",
    "--",
    "sh",
    "-c",
    'echo "got $1"',
    "sh",
    "{}",
  ]);
  await waitFor(
    "the worker to say it waits",
    () => /WARN .*the master cannot be reached; waiting for it/.test(worker.stderr),
    { timeoutMs: WAIT_MS },
  );
  assert.equal(worker.exited, undefined, "still running");
  await using master = await startMaster({ listen: address });
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    await client.queue("tasks").put("late");
    const [result] = await client.queue("results").getMany<ResultRecord>(1, WAIT_MS);
    assert.equal(result?.value.output, "got late", worker.describe());
    await client.queue("results").ack(result);
  } finally {
    await client.close();
  }
  worker.kill("SIGTERM");
  assert.equal((await worker.finished(WAIT_MS)).code, 0, worker.describe());
  assert.equal(warnings(worker.stderr).length, 1, worker.stderr);
  assert.match(worker.stderr, /the master is up/);
});

Deno.test("--fail-fast: a worker whose master is not there exits 1 at once", async () => {
  const address = `127.0.0.1:${freeLoopbackPort()}`;
  const started = Date.now();
  await using worker = startWorker([
    "--connect",
    address,
    "--queue",
    "tasks",
    "--fail-fast",
    "--",
    "true",
  ]);
  const status = await worker.finished(WAIT_MS);
  const took = Date.now() - started;
  assert.equal(status.code, 1, worker.describe());
  assert.ok(took < FAIL_FAST_MS, `gave up in ${took} ms`);
  assert.deepEqual(worker.stderr.trimEnd().split("\n").length, 1, worker.stderr);
  assert.match(worker.stderr, /^taskq worker: cannot reach master 127\.0\.0\.1:\d+/);
});

Deno.test("a master crash mid-command: one WARN per worker, the lease ended before the work did", async () => {
  const dir = await Deno.makeTempDir({ prefix: "taskq-crash-" });
  const address = `127.0.0.1:${freeLoopbackPort()}`;
  try {
    const first = await startMaster({ listen: address });
    let client = await connect({ address, authkey: TEST_KEY });
    await client.queue("tasks").putMany(["one", "two"]);
    await client.close();
    // Each command runs until released, so the master crashes while they run.
    const command = [
      "--",
      "sh",
      "-c",
      'touch "$MARKS/$1"; while [ ! -e "$MARKS/release" ]; do sleep 0.05; done; echo "did $1"',
      "sh",
      "{}",
    ];
    const flags = ["--connect", address, "--queue", "tasks", "--results", "results"];
    await using normal = startWorker([...flags, ...command], { MARKS: dir });
    await using quiet = startWorker([...flags, "--quiet", ...command], { MARKS: dir });
    await waitFor("both commands to start", async () => {
      let count = 0;
      for await (const _ of Deno.readDir(dir)) count++;
      return count === 2;
    }, { timeoutMs: WAIT_MS });
    first.proc.kill("SIGKILL");
    await first.proc.finished(WAIT_MS);
    for (const worker of [normal, quiet]) {
      await waitFor("the outage to be logged", () => /lost the master/.test(worker.stderr), {
        timeoutMs: WAIT_MS,
      });
    }
    await Deno.writeTextFile(`${dir}/release`, "");
    await waitFor(
      "the finished command to be described",
      () => /the lease ended before the work did/.test(normal.stderr),
      { timeoutMs: WAIT_MS },
    );
    // A new master on the same address: both workers reconnect and serve it.
    await using second = await startMaster({ listen: address });
    client = await connect({ address: second.address, authkey: TEST_KEY });
    try {
      await client.queue("tasks").putMany(["three", "four"]);
      const results: Job<ResultRecord>[] = [];
      const deadline = Date.now() + WAIT_MS;
      while (results.length < 2 && Date.now() < deadline) {
        const jobs = await client.queue("results").getMany<ResultRecord>(
          2 - results.length,
          WAIT_MS,
        );
        await client.queue("results").ack(jobs);
        results.push(...jobs);
      }
      assert.deepEqual(results.map((r) => r.value.output).sort(), ["did four", "did three"]);
    } finally {
      await client.close();
    }
    // Both results may come from one worker while the other still waits out its backoff.
    await waitFor(
      "the first worker to log its return",
      () => /reconnected to the master/.test(normal.stderr),
      {
        timeoutMs: WAIT_MS,
      },
    );
    for (const worker of [normal, quiet]) {
      worker.kill("SIGTERM");
      assert.equal((await worker.finished(WAIT_MS)).code, 0, worker.describe());
    }
    const normalWarnings = warnings(normal.stderr);
    assert.equal(normalWarnings.length, 1, `one WARN for the outage:\n${normal.stderr}`);
    assert.match(normalWarnings[0], /lost the master; reconnecting/);
    const quietLines = quiet.stderr.trimEnd().split("\n");
    assert.equal(quietLines.length, 1, `--quiet: the outage only:\n${quiet.stderr}`);
    assert.match(quietLines[0], /WARN +lost the master; reconnecting/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
