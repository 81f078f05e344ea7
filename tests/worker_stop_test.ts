/**
 * Stopping `taskq worker` (lib/cli/worker.ts, lib/worker/shutdown.ts,
 * lib/worker/worker.ts, lib/python/worker.ts), with real master, worker and
 * command processes:
 *
 * - SIGTERM while the master is down (killed with SIGKILL), with commands
 *   running that ignore SIGTERM: the worker exits within `--grace` plus a
 *   second, and its commands are gone (SIGTERM at the grace's end, SIGKILL
 *   after);
 * - SIGINT while the master is down and nothing runs: the worker exits at once;
 * - `--exit-when-idle` while the master is down, for a native worker (one
 *   WARN line for the outage) and for a `--python-master` worker;
 * - a `--python-master` worker stopped with SIGTERM while its master is
 *   gone, a command running: within `--grace` plus a second;
 * - remote control through the master (`Client.control`, as `taskq quiet` /
 *   `taskq stop` send it): "quiet" lets the running command finish, takes
 *   nothing more and exits 0; "stop" ends the worker within its grace and the
 *   item goes back to the queue.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "../lib/mod.ts";
import { STOP_MARGIN_MS } from "../lib/worker/shutdown.ts";
import {
  freeLoopbackPort,
  type MasterProcess,
  type Proc,
  processEnded,
  startMaster,
  startTaskq,
  TEST_KEY,
  waitFor,
  WORKER_PERMISSIONS,
} from "./_helpers.ts";
import { PYTHON_LISTENING } from "./_python.ts";

/** Longest any wait here may take (processes start slowly on a busy machine). */
const WAIT_MS = 30_000;

/**
 * Time allowed beyond the promise (grace plus {@link STOP_MARGIN_MS}) for a
 * signal to reach the worker and its exit to reach the test, in ms.
 */
const SCHEDULING_SLACK_MS = 700;

/** The grace period these workers get, in seconds. */
const GRACE_S = 1;

/** Starts `taskq worker ARGS` with the test key and worker permissions. */
function startWorker(args: string[], env: Record<string, string> = {}): Proc {
  return startTaskq("worker", ["worker", ...args], { env, permissions: WORKER_PERMISSIONS });
}

/** The pids the commands wrote in `dir` (one file per item, holding the command's pid). */
async function commandPids(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const text = (await Deno.readTextFile(`${dir}/${entry.name}`)).trim();
    if (text !== "") pids.push(Number(text));
  }
  return pids;
}

/** Sends `signal` and resolves with how long the process took to exit, in ms. */
async function timeToExit(proc: Proc, signal: Deno.Signal): Promise<number> {
  const sent = Date.now();
  proc.kill(signal);
  const status = await proc.finished(WAIT_MS);
  assert.equal(status.code, 0, proc.describe());
  return Date.now() - sent;
}

/** Kills the master with SIGKILL (a crash) and waits for the worker to notice. */
async function crash(master: MasterProcess, worker: Proc): Promise<void> {
  master.proc.kill("SIGKILL");
  await master.proc.finished(WAIT_MS);
  await waitFor(
    "the worker to notice the master is gone",
    () => /lost the master/.test(worker.stderr),
    {
      timeoutMs: WAIT_MS,
    },
  );
}

Deno.test("SIGTERM with the master down: out within --grace plus a second, commands killed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "taskq-stop-" });
  try {
    await using master = await startMaster();
    const client = await connect({ address: master.address, authkey: TEST_KEY });
    await client.queue("tasks").putMany(["a", "b"]);
    await client.close();
    // Each command notes its pid and ignores SIGTERM: only SIGKILL ends it.
    await using worker = startWorker([
      "--connect",
      master.address,
      "--queue",
      "tasks",
      "--concurrency",
      "2",
      "--grace",
      String(GRACE_S),
      "--",
      "sh",
      "-c",
      'trap "" TERM; echo $$ > "$MARKS/$1"; while :; do sleep 0.05; done',
      "sh",
      "{}",
    ], { MARKS: dir });
    const pids = await waitFor("both commands to start", async () => {
      const found = await commandPids(dir);
      return found.length === 2 ? found : undefined;
    }, { timeoutMs: WAIT_MS });
    await crash(master, worker);
    const took = await timeToExit(worker, "SIGTERM");
    const promised = GRACE_S * 1000 + STOP_MARGIN_MS;
    assert.ok(took >= GRACE_S * 1000, `the commands had their grace (${took} ms)`);
    assert.ok(
      took <= promised + SCHEDULING_SLACK_MS,
      `stopped in ${took} ms: ${worker.describe()}`,
    );
    for (const pid of pids) {
      await waitFor(`command ${pid} to be gone`, () => processEnded(pid), { timeoutMs: 2_000 });
    }
    assert.match(worker.stderr, /grace period over; stopping the work still running/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SIGINT with the master down and nothing running: out at once", async () => {
  await using master = await startMaster();
  await using worker = startWorker([
    "--connect",
    master.address,
    "--queue",
    "tasks",
    "--grace",
    "30",
    "--",
    "true",
  ]);
  await waitFor("the worker to start", () => /worker started/.test(worker.stderr), {
    timeoutMs: WAIT_MS,
  });
  await crash(master, worker);
  const took = await timeToExit(worker, "SIGINT");
  assert.ok(took <= STOP_MARGIN_MS + SCHEDULING_SLACK_MS, `stopped in ${took} ms`);
});

Deno.test("--exit-when-idle fires while the master is down; the outage is one WARN line", async () => {
  await using master = await startMaster();
  await using worker = startWorker([
    "--connect",
    master.address,
    "--queue",
    "tasks",
    "--exit-when-idle",
    "2",
    "--",
    "true",
  ]);
  await waitFor("the worker to start", () => /worker started/.test(worker.stderr), {
    timeoutMs: WAIT_MS,
  });
  await crash(master, worker);
  const status = await worker.finished(WAIT_MS);
  assert.equal(status.code, 0, worker.describe());
  assert.match(worker.stderr, /no item came for a while; exiting/);
  const warnings = worker.stderr.split("\n").filter((line) => / WARN /.test(line));
  assert.equal(warnings.length, 1, `one warning for the outage:\n${worker.stderr}`);
  assert.match(warnings[0], /lost the master; reconnecting/);
});

Deno.test("a --python-master worker: --exit-when-idle fires while its master is away", async () => {
  const address = `127.0.0.1:${freeLoopbackPort()}`; // nothing listens there
  const started = Date.now();
  await using worker = startWorker([
    "--python-master",
    address,
    "--python-queue",
    "get_task_queue",
    "--exit-when-idle",
    "1",
    "--concurrency",
    "3",
    "--",
    "true",
  ]);
  const status = await worker.finished(WAIT_MS);
  assert.equal(status.code, 0, worker.describe());
  assert.ok(Date.now() - started < WAIT_MS);
  assert.match(worker.stderr, /no item came for a while; exiting/);
  const warnings = worker.stderr.split("\n").filter((line) => / WARN /.test(line));
  assert.equal(warnings.length, 1, `one warning, not one per slot or attempt:\n${worker.stderr}`);
  assert.match(warnings[0], /the Python master cannot be reached; waiting for it/);
});

Deno.test("a --python-master worker: SIGTERM with its master gone, within --grace plus a second", async () => {
  const dir = await Deno.makeTempDir({ prefix: "taskq-stop-py-" });
  try {
    // taskq's own Python front-end stands in for a Python master.
    const pythonPort = freeLoopbackPort();
    await using master = await startMaster({ args: ["--python", `127.0.0.1:${pythonPort}`] });
    await master.proc.waitForLine(PYTHON_LISTENING, WAIT_MS);
    const client = await connect({ address: master.address, authkey: TEST_KEY });
    await client.queue("tasks").put("x");
    await client.close();
    await using worker = startWorker([
      "--python-master",
      `127.0.0.1:${pythonPort}`,
      "--python-queue",
      "get_task_queue",
      "--grace",
      String(GRACE_S),
      "--",
      "sh",
      "-c",
      'trap "" TERM; echo $$ > "$MARKS/$1"; while :; do sleep 0.05; done',
      "sh",
      "{}",
    ], { MARKS: dir });
    const [pid] = await waitFor("the command to start", async () => {
      const found = await commandPids(dir);
      return found.length === 1 ? found : undefined;
    }, { timeoutMs: WAIT_MS });
    master.proc.kill("SIGKILL");
    await master.proc.finished(WAIT_MS);
    const took = await timeToExit(worker, "SIGTERM");
    assert.ok(
      took <= GRACE_S * 1000 + STOP_MARGIN_MS + SCHEDULING_SLACK_MS,
      `stopped in ${took} ms: ${worker.describe()}`,
    );
    await waitFor("the command to be gone", () => processEnded(pid), { timeoutMs: 2_000 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The session id of the client named `name`, once it is connected. */
async function sessionOf(master: MasterProcess, name: string): Promise<string> {
  const admin = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    return await waitFor(`a session named ${name}`, async () => {
      const sessions = await admin.sessions();
      return sessions.find((session) => session.name === name)?.id;
    }, { timeoutMs: WAIT_MS });
  } finally {
    await admin.close();
  }
}

Deno.test("remote quiet: the running command finishes, nothing more is taken, exit 0", async () => {
  const dir = await Deno.makeTempDir({ prefix: "taskq-quiet-" });
  try {
    await using master = await startMaster();
    const client = await connect({ address: master.address, authkey: TEST_KEY });
    try {
      await client.queue("tasks").put("first");
      await using worker = startWorker([
        "--connect",
        master.address,
        "--queue",
        "tasks",
        "--results",
        "results",
        "--name",
        "quiet-me",
        "--",
        "sh",
        "-c",
        // Runs until released, so the quiet comes while it runs.
        'touch "$MARKS/started"; while [ ! -e "$MARKS/release" ]; do sleep 0.05; done; echo "did $1"',
        "sh",
        "{}",
      ], { MARKS: dir });
      const session = await sessionOf(master, "quiet-me");
      await waitFor(
        "the command to start",
        () => Deno.stat(`${dir}/started`).then(() => true, () => false),
        {
          timeoutMs: WAIT_MS,
        },
      );
      assert.equal(await client.control(session, "quiet"), true);
      await waitFor("the worker to go quiet", () => /going quiet/.test(worker.stderr), {
        timeoutMs: WAIT_MS,
      });
      await client.queue("tasks").put("second");
      await Deno.writeTextFile(`${dir}/release`, "");
      const status = await worker.finished(WAIT_MS);
      assert.equal(status.code, 0, worker.describe());
      const [result] = await client.queue("results").getMany(1, WAIT_MS);
      assert.equal((result.value as { output: string }).output, "did first");
      await client.queue("results").ack(result);
      const stats = (await client.stats("tasks")).queues[0];
      assert.equal(stats.ready, 1, "the second item was not taken");
      assert.equal(stats.leased, 0);
    } finally {
      await client.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("remote stop: the worker stops within its grace; the item goes back", async () => {
  const dir = await Deno.makeTempDir({ prefix: "taskq-remote-stop-" });
  try {
    await using master = await startMaster();
    const client = await connect({ address: master.address, authkey: TEST_KEY });
    try {
      await client.queue("tasks").put("long");
      await using worker = startWorker([
        "--connect",
        master.address,
        "--queue",
        "tasks",
        "--name",
        "stop-me",
        "--grace",
        String(GRACE_S),
        "--",
        "sh",
        "-c",
        'echo $$ > "$MARKS/pid"; exec sleep 300',
      ], { MARKS: dir });
      const session = await sessionOf(master, "stop-me");
      const pid = await waitFor("the command to start", async () => {
        const text = await Deno.readTextFile(`${dir}/pid`).catch(() => "");
        return text.trim() === "" ? undefined : Number(text);
      }, { timeoutMs: WAIT_MS });
      const sent = Date.now();
      assert.equal(await client.control(session, "stop"), true);
      const status = await worker.finished(WAIT_MS);
      const took = Date.now() - sent;
      assert.equal(status.code, 0, worker.describe());
      assert.ok(took <= GRACE_S * 1000 + STOP_MARGIN_MS + SCHEDULING_SLACK_MS, `took ${took} ms`);
      assert.match(worker.stderr, /stopping: finishing running commands.*taskq stop/);
      await waitFor("the command to be gone", () => processEnded(pid), { timeoutMs: 2_000 });
      const stats = (await client.stats("tasks")).queues[0];
      assert.equal(stats.ready, 1, "the item is back in the queue");
    } finally {
      await client.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
