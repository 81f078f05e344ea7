/**
 * Cancellation and progress on the worker side, with real processes where
 * the issue asks for them:
 *
 * - a `taskq worker` process running `sleep 30` (started by a shell, so a
 *   grandchild of the worker) whose item is cancelled by another client: the
 *   sleep process is gone within a second of the cancel (its pid checked in
 *   /proc), the item ends cancelled and is never served again, the worker
 *   logs it and goes on to the next item;
 * - a command's `taskq-progress PERCENT MESSAGE` line on stderr shows in
 *   Client.job(id).progress and the worker's log, and is not part of the
 *   command's error output (the error of a failing command keeps its other
 *   stderr lines);
 * - the library worker: a cancelled item's handler sees its signal abort with
 *   a JobCancelledError, the item is neither acked nor failed, and the
 *   summary counts it as cancelled; a handler's `job.progress` is recorded;
 *   a prefetched item cancelled before it starts is never run;
 * - runCommand on its own: progress lines parsed (split across writes, at
 *   the end without a newline), malformed or overlong ones kept as ordinary
 *   output, and a stop for a cancelled item named as such.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Client,
  connect,
  JobCancelledError,
  type LeasedJob,
  MAX_PROGRESS_MESSAGE,
  runWorker,
  serve,
} from "../lib/mod.ts";
import { CommandFailedError } from "../lib/worker/errors.ts";
import { type CommandProgress, parseProgressLine, runCommand } from "../lib/worker/command.ts";
import {
  type MasterProcess,
  type Proc,
  processEnded,
  startMaster,
  startTaskq,
  TEST_KEY,
  waitFor,
  withDeadline,
  WORKER_PERMISSIONS,
} from "./_helpers.ts";

/** Longest any wait here may take (processes start slowly on a busy machine). */
const WAIT_MS = 30_000;

/** How soon after the cancel the command's processes must be gone (the bound). */
const GONE_WITHIN_MS = 1_000;

/** How long a get waits to be sure nothing comes. */
const QUIET_MS = 500;

/** Starts `taskq worker` on the master's "tasks" queue running `sh -c SCRIPT ARGS...`. */
function startShWorker(master: MasterProcess, script: string, args: string[] = []): Proc {
  return startTaskq(
    "worker",
    ["worker", "--connect", master.address, "--queue", "tasks", "--", "sh", "-c", script, ...args],
    { permissions: WORKER_PERMISSIONS },
  );
}

/** Runs `fn` with a master process, a client of it, and a fresh temp directory. */
async function withMasterProcess(
  fn: (master: MasterProcess, client: Client, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "taskq-worker-cancel-test-" });
  await using master = await startMaster();
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    await fn(master, client, dir);
  } finally {
    await client.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Whether process `pid` is alive (a zombie, dead but not reaped yet, is not). */
async function alive(pid: number): Promise<boolean> {
  return !(await processEnded(pid));
}

/** Reads a pid a command wrote to `path`, waiting for it. */
async function pidIn(path: string, worker: Proc): Promise<number> {
  const text = await waitFor(
    `the command to write its pid to ${path}: ${worker.describe()}`,
    async () => {
      try {
        const text = await Deno.readTextFile(path);
        return text.endsWith("\n") ? text : undefined;
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return undefined;
        throw error;
      }
    },
    { timeoutMs: WAIT_MS },
  );
  return Number(text.trim());
}

Deno.test("worker cancel: a cancelled command's process group is gone within a second", async () => {
  await withMasterProcess(async (master, client, dir) => {
    const pidFile = `${dir}/sleep.pid`;
    // The sleep is the shell's child, the worker's grandchild: the cancel must reach it too.
    await using worker = startShWorker(
      master,
      'if [ "$1" = sleep ]; then sleep 30 & echo $! > "$0"; wait; else echo "done $1"; fi',
      [pidFile, "{}"],
    );
    const tasks = client.queue("tasks");
    const id = await tasks.put("sleep");
    const pid = await pidIn(pidFile, worker);
    assert.ok(await alive(pid), "the sleep runs");
    const leased = await client.job(id);
    assert.equal(leased?.state, "leased");

    const start = Date.now();
    assert.deepEqual(await client.cancel(id), { cancelled: [id], missing: [] });
    await waitFor("the sleep to be gone", async () => !(await alive(pid)), {
      timeoutMs: WAIT_MS,
      intervalMs: 5,
    });
    const took = Date.now() - start;
    assert.ok(took <= GONE_WITHIN_MS, `the sleep was gone only after ${took} ms`);

    // The worker logs the cancel and goes on with the next item; the cancelled one never returns.
    await waitFor("the worker to log the cancel", () => /task cancelled/.test(worker.stderr), {
      timeoutMs: WAIT_MS,
    });
    const next = await tasks.put("next");
    await waitFor("the next item to be done", async () => {
      return (await client.job(next))?.state === "done";
    }, { timeoutMs: WAIT_MS });
    const info = await client.job(id);
    assert.equal(info?.state, "cancelled");
    assert.equal(info?.attempts, 1, "served once only");
    assert.deepEqual(await tasks.getMany(1, QUIET_MS), [], "nothing left in the queue");
    assert.equal((await client.stats("tasks")).queues[0].failed, 0, "not reported as failed");
    assert.doesNotMatch(worker.stderr, /lease lost|task failed/, worker.describe());
    worker.kill("SIGTERM");
    await worker.finished(WAIT_MS);
    assert.match(worker.stderr, /cancelled=1\b|"cancelled":1\b/, worker.describe());
  });
});

Deno.test("worker cancel: a progress line shows in job lookup, not in the error output", async () => {
  await withMasterProcess(async (master, client, dir) => {
    const go = `${dir}/go`;
    const done = `${dir}/done`;
    await using worker = startShWorker(
      master,
      [
        'echo "taskq-progress 42.5 halfway there" >&2',
        'echo "ordinary complaint" >&2',
        'while [ ! -e "$0" ]; do sleep 0.05; done',
        'echo "taskq-progress - wrapping up" >&2',
        'while [ ! -e "$1" ]; do sleep 0.05; done',
        'if [ "$2" = fail ]; then exit 3; fi',
        'echo "ok $2"',
      ].join("\n"),
      [go, done, "{}"],
    );
    const tasks = client.queue("tasks");
    const id = await tasks.put("work", { maxAttempts: 1 });
    const progress = await waitFor("the progress to reach the master", async () => {
      const info = await client.job(id);
      return info?.progress?.percent === 42.5 ? info.progress : undefined;
    }, { timeoutMs: WAIT_MS });
    assert.equal(progress.message, "halfway there");
    assert.equal((await client.job(id))?.state, "leased");
    await waitFor("the worker to log the progress", () => /task progress/.test(worker.stderr), {
      timeoutMs: WAIT_MS,
    });
    assert.match(worker.stderr, /halfway there/);

    await Deno.writeTextFile(go, "");
    const wrapping = await waitFor("the second progress line", async () => {
      const info = await client.job(id);
      return info?.progress?.message === "wrapping up" ? info.progress : undefined;
    }, { timeoutMs: WAIT_MS });
    assert.equal(wrapping.percent, undefined, "`-` reports no percent");
    await Deno.writeTextFile(done, "");
    await waitFor("the item to be done", async () => {
      return (await client.job(id))?.state === "done";
    }, { timeoutMs: WAIT_MS });

    // A failing command: its error keeps its other stderr lines, not the progress lines.
    const failing = await tasks.put("fail", { maxAttempts: 1 });
    await waitFor("the failing item to be dead", async () => {
      return (await client.job(failing))?.state === "dead";
    }, { timeoutMs: WAIT_MS });
    const dead = await client.job(failing);
    assert.match(dead?.error ?? "", /exited with code 3: ordinary complaint$/);
    assert.doesNotMatch(dead?.error ?? "", /taskq-progress/);
  });
});

Deno.test("worker cancel: a library handler's signal aborts with a JobCancelledError", async () => {
  const master = await serve({ listen: "127.0.0.1:0", authkey: TEST_KEY });
  const address = `127.0.0.1:${master.address.port}`;
  const client = await connect({ address, authkey: TEST_KEY });
  const other = await connect({ address, authkey: TEST_KEY });
  const stop = new AbortController();
  try {
    const tasks = other.queue("tasks");
    const id = await tasks.put("long");
    const started = Promise.withResolvers<LeasedJob>();
    const reasons: unknown[] = [];
    let runs = 0;
    const working = runWorker({
      client,
      queue: "tasks",
      signal: stop.signal,
      handler: async (job, signal) => {
        runs++;
        if (job.value !== "long") return "quick";
        assert.equal(await job.progress(10, "begun"), true);
        started.resolve(job);
        await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
        reasons.push(signal.reason);
        throw new Error("stopped");
      },
    });
    await withDeadline(started.promise, WAIT_MS, "the handler to start");
    assert.equal((await other.job(id))?.progress?.message, "begun");
    assert.deepEqual(await other.cancel(id), { cancelled: [id], missing: [] });
    await waitFor("the handler to see the cancel", () => reasons.length === 1);
    assert.ok(reasons[0] instanceof JobCancelledError, `got ${reasons[0]}`);
    assert.equal((reasons[0] as JobCancelledError).id, id);

    const next = await tasks.put("next");
    await waitFor(
      "the next item to be done",
      async () => (await other.job(next))?.state === "done",
    );
    stop.abort();
    const summary = await withDeadline(working, WAIT_MS, "the worker to stop");
    assert.deepEqual(summary, {
      done: 1,
      failed: 0,
      lost: 0,
      ackLost: 0,
      returned: 0,
      cancelled: 1,
    });
    assert.equal(runs, 2, "the cancelled item is never served again");
    const info = await other.job(id);
    assert.equal(info?.state, "cancelled");
    assert.equal(info?.error, undefined, "not failed");
    assert.equal((await other.stats("tasks")).queues[0].failed, 0);
  } finally {
    stop.abort();
    await client.close();
    await other.close();
    await master.close();
  }
});

Deno.test("worker cancel: a prefetched item cancelled before it starts is never run", async () => {
  const master = await serve({ listen: "127.0.0.1:0", authkey: TEST_KEY });
  const address = `127.0.0.1:${master.address.port}`;
  const client = await connect({ address, authkey: TEST_KEY });
  const other = await connect({ address, authkey: TEST_KEY });
  const stop = new AbortController();
  try {
    const tasks = other.queue("tasks");
    const [first, second] = await tasks.putMany(["first", "second"]);
    const release = Promise.withResolvers<void>();
    const ran: unknown[] = [];
    const working = runWorker({
      client,
      queue: "tasks",
      concurrency: 1,
      prefetch: 1,
      signal: stop.signal,
      handler: async (job) => {
        ran.push(job.value);
        if (job.value === "first") await release.promise;
      },
    });
    await waitFor("both items to be leased", async () => {
      return (await other.job(second))?.state === "leased" && ran.length === 1;
    });
    assert.deepEqual(await other.cancel(second), { cancelled: [second], missing: [] });
    release.resolve();
    await waitFor("the first item to be done", async () => {
      return (await other.job(first))?.state === "done";
    });
    stop.abort();
    const summary = await withDeadline(working, WAIT_MS, "the worker to stop");
    assert.deepEqual(ran, ["first"]);
    assert.equal(summary.cancelled, 1);
    assert.equal(summary.done, 1);
    assert.equal(summary.lost, 0);
    assert.equal((await other.job(second))?.state, "cancelled");
  } finally {
    stop.abort();
    await client.close();
    await other.close();
    await master.close();
  }
});

Deno.test("worker cancel: progress lines are parsed strictly", () => {
  const cases: [string, CommandProgress | undefined][] = [
    ["taskq-progress 0", { percent: 0 }],
    ["taskq-progress 100", { percent: 100 }],
    ["taskq-progress 42.5 resizing  images ", { percent: 42.5, message: "resizing  images" }],
    ["taskq-progress .5", { percent: 0.5 }],
    ["taskq-progress 7. x", { percent: 7, message: "x" }],
    ["taskq-progress\t- uploading\r", { message: "uploading" }],
    ["taskq-progress -", {}],
    ["taskq-progress 100.1", undefined],
    ["taskq-progress -5", undefined],
    ["taskq-progress 1e2", undefined],
    ["taskq-progress abc", undefined],
    ["taskq-progress", undefined],
    ["taskq-progress50", undefined],
    [" taskq-progress 50", undefined],
    ["TASKQ-PROGRESS 50", undefined],
    ["warning: taskq-progress 50", undefined],
  ];
  for (const [line, expected] of cases) {
    assert.deepEqual(parseProgressLine(line), expected, JSON.stringify(line));
  }
  const long = parseProgressLine(`taskq-progress 1 ${"m".repeat(5_000)}`);
  assert.equal(long?.message?.length, MAX_PROGRESS_MESSAGE, "a long message is cut");
});

Deno.test("worker cancel: runCommand reports progress lines and keeps them out of errors", async () => {
  const job = { id: 3, queue: "tasks", value: "x", attempt: 1 };
  const reports: CommandProgress[] = [];
  const script = [
    // Split across writes: the line is read whole.
    "printf 'taskq-progress 1' >&2; sleep 0.05; printf '0 first\\n' >&2",
    "echo 'taskq-progress bad' >&2",
    // Longer than any progress line may be: ordinary output.
    `printf 'taskq-progress 5 %s\\n' "$(printf '%5000s' '' | tr ' ' m)" >&2`,
    "echo 'real trouble' >&2",
    "printf 'taskq-progress 99 last' >&2",
    "exit 1",
  ].join("\n");
  const error = await runCommand(
    { command: "sh", args: ["-c", script] },
    job,
    undefined,
    (report) => reports.push(report),
  ).then(() => undefined, (error) => error);
  assert.ok(error instanceof CommandFailedError, `got ${error}`);
  assert.deepEqual([...reports], [{ percent: 10, message: "first" }, {
    percent: 99,
    message: "last",
  }]);
  assert.match(error.message, /exited with code 1: /);
  assert.match(error.message, /m{100}\nreal trouble$/, "a line too long stays output");
  assert.doesNotMatch(error.message, /first|last/);

  // A malformed progress line is ordinary output.
  const malformed = await runCommand(
    { command: "sh", args: ["-c", "echo 'taskq-progress bad' >&2; exit 2"] },
    job,
    undefined,
    (report) => reports.push(report),
  ).then(() => undefined, (error) => error);
  assert.match(String(malformed), /exited with code 2: taskq-progress bad$/);
  assert.equal(reports.length, 2);
});

Deno.test("worker cancel: runCommand stopped for a cancelled item says so", async () => {
  const job = { id: 4, queue: "tasks", value: "x", attempt: 1 };
  const abort = new AbortController();
  const running = runCommand({ command: "sleep", args: ["30"] }, job, abort.signal);
  const start = Date.now();
  abort.abort(new JobCancelledError(4));
  await assert.rejects(running, (error: unknown) => {
    assert.ok(error instanceof CommandFailedError, `got ${error}`);
    assert.match(error.message, /stopped: the item was cancelled/);
    return true;
  });
  assert.ok(Date.now() - start < GONE_WITHIN_MS);
});
