/**
 * Issue #13's acceptance, with real processes on loopback: a master process
 * (`main.ts master`), `taskq worker` processes running real commands, and
 * `taskq put` / `cancel` / `job` / `status` processes, as a user runs them.
 *
 * - a rate limit of 50/s holds within 10% across 4 workers over 10 s;
 * - a concurrency limit of 3 holds with 4 workers of concurrency 4: the
 *   master never leases a 4th (and does lease 3);
 * - two groups of 10,000 and 10 items: the small group's 10 are all among
 *   the first 30 deliveries;
 * - a unique key put 1,000 times at once, over 20 connections from 4
 *   processes, yields one item, and every put answers its id;
 * - `taskq cancel ID` of a running `sleep 30` command ends it (the whole
 *   process group) within a second, and the item is never served again.
 *
 * Every process is started here and stopped by its own handle; commands
 * write what they saw into a temp dir or onto a results queue, and the tests
 * poll for it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Client, connect } from "../lib/mod.ts";
import {
  type MasterProcess,
  MOD_URL,
  type Proc,
  processEnded,
  processInfo,
  type ResultRecord,
  runTaskq,
  spawnClient,
  startMaster,
  startTaskq,
  TEST_KEY,
  waitFor,
  WORKER_PERMISSIONS,
} from "./_helpers.ts";

/** Deadline of the slower waits (process start-up on a busy machine included), in ms. */
const WAIT_MS = 30_000;

/** How often the tests sample what they poll, in ms. */
const POLL_MS = 10;

/** Connects a client of the test itself to `master`. */
function client(master: MasterProcess): Promise<Client> {
  return connect({ address: master.address, authkey: TEST_KEY, reconnect: false });
}

/** Starts `taskq worker --connect MASTER ARGS` with `env` added to its environment. */
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

/** Stops every worker (SIGTERM: they finish what runs and give back the rest). */
async function stopAll(workers: readonly Proc[]): Promise<void> {
  await Promise.all(workers.map((worker) => worker.stop()));
  for (const worker of workers) await worker.dispose();
}

/** Waits until the master counts `count` connected clients (workers and the test's own). */
async function waitForClients(admin: Client, count: number, workers: readonly Proc[]) {
  await waitFor(`${count} clients connected`, async () => {
    for (const worker of workers) {
      if (worker.exited) throw new Error(`a worker exited early: ${worker.describe()}`);
    }
    return (await admin.stats()).clients >= count;
  }, { timeoutMs: WAIT_MS, intervalMs: POLL_MS * 5 });
}

/** One queue's figures from `admin`, or undefined when the master has no such queue. */
async function queueStats(admin: Client, queue: string) {
  return (await admin.stats(queue)).queues.find((q) => q.name === queue);
}

/** Runs `taskq ARGS --connect MASTER` and checks it succeeded; returns its stdout. */
async function taskq(master: MasterProcess, args: string[]): Promise<string> {
  const run = await runTaskq([...args, "--connect", master.address]);
  assert.equal(run.code, 0, `taskq ${args.join(" ")} failed:\n${run.stderr}`);
  return run.stdout;
}

/** The lines of a file, or none while it does not exist yet. */
async function fileLines(path: string): Promise<string[]> {
  try {
    return (await Deno.readTextFile(path)).split("\n").filter((line) => line !== "");
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

// ------------------------------------------------------------------ rate limit

/** The rate limit under test, per second. */
const RATE_PER_S = 50;
/** Workers sharing it, each its own process. */
const RATE_WORKERS = 4;
/** Deliveries before the window starts are start-up: the window opens this long after the first. */
const RATE_WINDOW_START_MS = 1_000;
/** The window's length, in ms. */
const RATE_WINDOW_MS = 10_000;
/** Collect until a delivery this long after the window closed has been seen, in ms. */
const RATE_SETTLE_MS = 1_000;
/** Tolerance on the window's count, as a fraction of the expected count. */
const RATE_TOLERANCE = 0.1;
/** Items put: more than the limit lets through until collection stops. */
const RATE_ITEMS = Math.ceil(
  RATE_PER_S * (RATE_WINDOW_START_MS + RATE_WINDOW_MS + RATE_SETTLE_MS) / 1_000 * 1.5,
);
/** Most deliveries seen in any one second: the limit plus slack for command start-up jitter. */
const RATE_MAX_PER_SECOND = Math.ceil(RATE_PER_S * 1.2);

Deno.test("a rate limit of 50/s holds within 10% across 4 workers over 10 s", async () => {
  await using master = await startMaster({ args: ["--queue-rate", `rated=${RATE_PER_S}/s`] });
  const admin = await client(master);
  // Each command prints when it ran (ms since the epoch): the item's delivery, give or take
  // the command's start-up, onto the results queue with the worker's name.
  const workers = Array.from({ length: RATE_WORKERS }, () =>
    startWorker(master, [
      ...["--queue", "rated", "--results", "rated.out", "--concurrency", "4", "--quiet"],
      ...["--", "date", "+%s%3N"],
    ]));
  try {
    await waitForClients(admin, RATE_WORKERS + 1, workers);
    await admin.queue("rated").putMany(Array.from({ length: RATE_ITEMS }, (_, i) => i));
    const results = admin.queue("rated.out");
    const stamps: { at: number; worker: string }[] = [];
    let first = Infinity;
    let last = -Infinity;
    const deadline = Date.now() + WAIT_MS;
    while (last < first + RATE_WINDOW_START_MS + RATE_WINDOW_MS + RATE_SETTLE_MS) {
      assert.ok(Date.now() < deadline, `only ${stamps.length} deliveries in time`);
      const jobs = await results.getMany<ResultRecord>(1_000, 1_000);
      if (jobs.length > 0) await results.ack(jobs);
      for (const { value } of jobs) {
        const at = Number(value.output);
        assert.ok(Number.isFinite(at), `a command printed ${JSON.stringify(value.output)}`);
        stamps.push({ at, worker: value.worker });
        first = Math.min(first, at);
        last = Math.max(last, at);
      }
    }
    const from = first + RATE_WINDOW_START_MS;
    const to = from + RATE_WINDOW_MS;
    const inWindow = stamps.filter(({ at }) => at >= from && at < to);
    const expected = RATE_PER_S * RATE_WINDOW_MS / 1_000;
    const perWorker = new Map<string, number>();
    for (const { worker } of inWindow) perWorker.set(worker, (perWorker.get(worker) ?? 0) + 1);
    const times = stamps.map(({ at }) => at).sort((a, b) => a - b);
    let busiestSecond = 0;
    for (let i = 0, j = 0; i < times.length; i++) {
      while (times[i] - times[j] >= 1_000) j++;
      busiestSecond = Math.max(busiestSecond, i - j + 1);
    }
    const summary = `${inWindow.length} deliveries in ${RATE_WINDOW_MS / 1000} s (expected ` +
      `${expected} ± ${RATE_TOLERANCE * 100}%), per worker ${JSON.stringify([...perWorker])}, ` +
      `busiest second ${busiestSecond}`;
    console.log(`  rate limit ${RATE_PER_S}/s: ${summary}`);
    assert.ok(
      Math.abs(inWindow.length - expected) <= expected * RATE_TOLERANCE,
      `rate limit not held: ${summary}`,
    );
    assert.equal(perWorker.size, RATE_WORKERS, `every worker took part: ${summary}`);
    assert.ok(busiestSecond <= RATE_MAX_PER_SECOND, `a burst over the limit: ${summary}`);
  } finally {
    await admin.close();
    await stopAll(workers);
  }
});

// ------------------------------------------------------------- concurrency limit

/** The concurrency limit under test. */
const CONCURRENCY_LIMIT = 3;
/** Workers, each its own process running this many commands at once. */
const CONCURRENCY_WORKERS = 4;
const CONCURRENCY_PER_WORKER = 4;
/** Items put; each command runs {@link CONCURRENCY_COMMAND_S}. */
const CONCURRENCY_ITEMS = 30;
const CONCURRENCY_COMMAND_S = 0.2;

/**
 * The most intervals open at once among `events` (time in ns, +1 for a start,
 * −1 for an end); an end at the very time of a start counts first.
 */
function maxOverlap(events: { at: bigint; delta: number }[]): number {
  events.sort((a, b) => a.at < b.at ? -1 : a.at > b.at ? 1 : a.delta - b.delta);
  let open = 0;
  let most = 0;
  for (const { delta } of events) {
    open += delta;
    most = Math.max(most, open);
  }
  return most;
}

Deno.test("a concurrency limit of 3 holds with 4 workers of concurrency 4", async () => {
  await using master = await startMaster({
    args: ["--queue-concurrency", `limited=${CONCURRENCY_LIMIT}`],
  });
  const dir = await Deno.makeTempDir({ prefix: "taskq-concurrency-" });
  const log = `${dir}/runs`;
  const admin = await client(master);
  // Each command logs its start and end (ns since the epoch) by appending one short line each.
  const script = `echo "$(date +%s%N) 1" >> "$LOG"; sleep ${CONCURRENCY_COMMAND_S}; ` +
    `echo "$(date +%s%N) -1" >> "$LOG"`;
  const workers = Array.from({ length: CONCURRENCY_WORKERS }, () =>
    startWorker(master, [
      ...["--queue", "limited", "--concurrency", String(CONCURRENCY_PER_WORKER), "--quiet"],
      ...["--", "sh", "-c", script],
    ], { LOG: log }));
  try {
    await waitForClients(admin, CONCURRENCY_WORKERS + 1, workers);
    await admin.queue("limited").putMany(Array.from({ length: CONCURRENCY_ITEMS }, (_, i) => i));
    // Sample the master's count of leased items as often as it answers, until all are acked.
    let mostLeased = 0;
    let samples = 0;
    await waitFor("every item done", async () => {
      const stats = await queueStats(admin, "limited");
      samples++;
      mostLeased = Math.max(mostLeased, stats?.leased ?? 0);
      assert.ok(
        mostLeased <= CONCURRENCY_LIMIT,
        `the master leased ${mostLeased} items at once (limit ${CONCURRENCY_LIMIT})`,
      );
      return stats?.acked === CONCURRENCY_ITEMS;
    }, { timeoutMs: WAIT_MS, intervalMs: 2 });
    const events = (await fileLines(log)).map((line) => {
      const [at, delta] = line.split(" ");
      return { at: BigInt(at), delta: Number(delta) };
    });
    assert.equal(events.length, 2 * CONCURRENCY_ITEMS, "each command ran once");
    const overlap = maxOverlap(events);
    console.log(
      `  concurrency limit ${CONCURRENCY_LIMIT}: at most ${mostLeased} leased in ${samples} ` +
        `samples, at most ${overlap} commands running at once`,
    );
    assert.ok(overlap <= CONCURRENCY_LIMIT, `${overlap} commands ran at once`);
    assert.equal(overlap, CONCURRENCY_LIMIT, "the limit is reached, not just held");
    assert.equal(mostLeased, CONCURRENCY_LIMIT, "the master leased up to the limit");
  } finally {
    await admin.close();
    await stopAll(workers);
    await Deno.remove(dir, { recursive: true });
  }
});

// ------------------------------------------------------------------ fair groups

/** The big group's items, put first, and the small group's, put after. */
const BIG_GROUP_ITEMS = 10_000;
const SMALL_GROUP_ITEMS = 10;
/** The small group's items must all be among this many first deliveries. */
const SMALL_GROUP_WITHIN = 30;
/** Workers taking one item at a time, so that commands start in delivery order. */
const GROUP_WORKERS = 2;

Deno.test("groups of 10,000 and 10 items: the 10 are among the first 30 deliveries", async () => {
  await using master = await startMaster();
  const dir = await Deno.makeTempDir({ prefix: "taskq-groups-" });
  const log = `${dir}/order`;
  const workers: Proc[] = [];
  const admin = await client(master);
  try {
    const big = Array.from({ length: BIG_GROUP_ITEMS }, (_, i) => `a-${i + 1}`);
    const putBig = await runTaskq(
      ["put", "--connect", master.address, "--queue", "fair", "--group", "tenant-a"],
      { stdin: big.join("\n") + "\n" },
    );
    assert.equal(putBig.code, 0, putBig.stderr);
    const small = Array.from({ length: SMALL_GROUP_ITEMS }, (_, i) => `b-${i + 1}`);
    await taskq(master, ["put", "--queue", "fair", "--group", "tenant-b", ...small]);
    assert.equal(
      (await queueStats(admin, "fair"))?.ready,
      BIG_GROUP_ITEMS + SMALL_GROUP_ITEMS,
      "everything put before any worker starts",
    );
    // Each command appends its item to the log: the order of deliveries, give or take a swap
    // between the two workers.
    for (let i = 0; i < GROUP_WORKERS; i++) {
      workers.push(startWorker(master, [
        ...["--queue", "fair", "--concurrency", "1", "--quiet"],
        ...["--", "sh", "-c", 'echo "$1" >> "$LOG"', "sh", "{}"],
      ], { LOG: log }));
    }
    const order = await waitFor("the first deliveries", async () => {
      const lines = await fileLines(log);
      return lines.length >= SMALL_GROUP_WITHIN ? lines : undefined;
    }, { timeoutMs: WAIT_MS });
    await stopAll(workers);
    const first = order.slice(0, SMALL_GROUP_WITHIN);
    const positions = small.map((item) => first.indexOf(item) + 1);
    console.log(`  groups: the small group's items came at deliveries ${positions.join(", ")}`);
    assert.deepEqual(
      small.filter((item) => !first.includes(item)),
      [],
      `the small group's items are not all among the first ${SMALL_GROUP_WITHIN}: ${
        first.join(" ")
      }`,
    );
    assert.ok(
      first.filter((item) => item.startsWith("a-")).length >= SMALL_GROUP_WITHIN / 2 - 1,
      `the big group kept its turns: ${first.join(" ")}`,
    );
  } finally {
    await admin.close();
    await stopAll(workers);
    await Deno.remove(dir, { recursive: true });
  }
});

// ------------------------------------------------------------------ unique keys

/** Processes putting the same key, connections per process, and puts per connection. */
const UNIQUE_PROCESSES = 4;
const UNIQUE_CONNECTIONS = 5;
const UNIQUE_PUTS = 50;

/**
 * A client process: opens its connections, prints "ready", waits for the go
 * file, then sends every put of the key at once (pipelined on each
 * connection) and prints one JSON line: each put's id and `existing`.
 */
const UNIQUE_PUTTER = `
import { connect } from ${JSON.stringify(MOD_URL)};
const [address, connections, puts, go, proc] = Deno.args;
const clients = await Promise.all(
  Array.from({ length: Number(connections) }, () => connect({ address, reconnect: false })),
);
console.log("ready");
for (;;) {
  try {
    Deno.statSync(go);
    break;
  } catch {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
const replies = await Promise.all(clients.flatMap((client, c) =>
  Array.from({ length: Number(puts) }, (_, i) =>
    client.queue("unique").putMany([{ proc: Number(proc), connection: c, put: i }], {
      keys: ["the-one-key"],
    }))
));
console.log(JSON.stringify(replies.map((ids) => ({ id: ids[0], existing: ids.existing ?? null }))));
await Promise.all(clients.map((client) => client.close()));
`;

Deno.test("a unique key put 1,000 times concurrently yields one item", async () => {
  await using master = await startMaster();
  const dir = await Deno.makeTempDir({ prefix: "taskq-unique-" });
  const go = `${dir}/go`;
  const putters: Proc[] = [];
  try {
    for (let p = 0; p < UNIQUE_PROCESSES; p++) {
      putters.push(
        await spawnClient(`unique-putter-${p}`, UNIQUE_PUTTER, {
          args: [master.address, String(UNIQUE_CONNECTIONS), String(UNIQUE_PUTS), go, String(p)],
          env: { TASKQ_AUTHKEY: TEST_KEY },
        }),
      );
    }
    await Promise.all(putters.map((putter) => putter.waitForLine(/^ready$/, WAIT_MS)));
    await Deno.writeTextFile(go, "");
    const replies: { id: number; existing: number[] | null }[] = [];
    for (const putter of putters) {
      const status = await putter.finished(WAIT_MS);
      assert.equal(status.code, 0, putter.describe());
      replies.push(...JSON.parse(putter.lines.at(-1)!));
    }
    const total = UNIQUE_PROCESSES * UNIQUE_CONNECTIONS * UNIQUE_PUTS;
    assert.equal(replies.length, total);
    const ids = new Set(replies.map((reply) => reply.id));
    assert.equal(ids.size, 1, `every put answers the same id, got ${[...ids].join(", ")}`);
    const [id] = ids;
    const added = replies.filter((reply) => reply.existing === null);
    assert.equal(added.length, 1, "exactly one put added the item, the others say it existed");
    assert.ok(
      replies.every((reply) => reply.existing === null || reply.existing.join() === "0"),
      "a put that added nothing lists its value as existing",
    );
    const admin = await client(master);
    try {
      const stats = await queueStats(admin, "unique");
      assert.equal(stats?.ready, 1, "one item");
      assert.equal(stats?.put, 1, "one item ever put");
    } finally {
      await admin.close();
    }
    // The CLI says the same, and `--ids` prints the existing item's id.
    const again = await taskq(master, [
      "put",
      "--queue",
      "unique",
      "--key",
      "the-one-key",
      "--ids",
      "x",
    ]);
    assert.equal(again.trim(), String(id));
    const job = JSON.parse(await taskq(master, ["job", String(id), "--json"]));
    assert.equal(job.id, id);
    assert.equal(job.queue, "unique");
    assert.equal(job.state, "ready");
    assert.equal(job.key, "the-one-key");
    console.log(
      `  unique key: ${total} concurrent puts over ${
        UNIQUE_PROCESSES * UNIQUE_CONNECTIONS
      } connections → item ${id}`,
    );
  } finally {
    for (const putter of putters) await putter.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

// ----------------------------------------------------------------- cancellation

/** A cancelled command must be gone within this long of `taskq cancel` returning, in ms. */
const CANCEL_WITHIN_MS = 1_000;

/** The command line of process `pid`, word by word (empty once it is gone). */
async function commandLine(pid: number): Promise<string[]> {
  return (await processInfo(pid))?.args.split(" ").filter((a) => a !== "") ?? [];
}

Deno.test("taskq cancel ends a running sleep 30 within a second; it is never served again", async () => {
  await using master = await startMaster({ args: ["--retry-backoff", "0.02"] });
  const dir = await Deno.makeTempDir({ prefix: "taskq-cancel-" });
  const workers: Proc[] = [];
  let sleepPid: number | undefined;
  try {
    const id = Number((await taskq(master, ["put", "--queue", "slow", "--ids", "long"])).trim());
    assert.ok(Number.isInteger(id), "put --ids prints the id");
    // The command starts `sleep 30` as its own child (not exec'd: the cancel must reach the
    // whole process group), notes its pid, logs that it started, and waits for it.
    const script = 'echo "$TASKQ_TASK_ID" >> "$DIR/starts"; sleep 30 & ' +
      'echo $! > "$DIR/pid.tmp"; mv "$DIR/pid.tmp" "$DIR/pid.$TASKQ_TASK_ID"; wait';
    workers.push(startWorker(master, [
      ...["--queue", "slow", "--results", "slow.out", "--concurrency", "1"],
      ...["--", "sh", "-c", script],
    ], { DIR: dir }));
    sleepPid = await waitFor("the command to start its sleep", async () => {
      const [line] = await fileLines(`${dir}/pid.${id}`);
      return line === undefined ? undefined : Number(line);
    }, { timeoutMs: WAIT_MS });
    assert.deepEqual(await commandLine(sleepPid), ["sleep", "30"]);
    const leased = JSON.parse(await taskq(master, ["job", String(id), "--json"]));
    assert.equal(leased.state, "leased");

    const cancel = await runTaskq(["cancel", "--connect", master.address, String(id)]);
    const cancelledAt = performance.now();
    assert.equal(cancel.code, 0, cancel.stderr);
    const pid = sleepPid;
    // Give up well past the bound, so a sleep left running fails here rather than at the deadline.
    await waitFor("the sleep to end after the cancel", () => processEnded(pid), {
      timeoutMs: CANCEL_WITHIN_MS * 3,
      intervalMs: 5,
    });
    const tookMs = Math.round(performance.now() - cancelledAt);
    console.log(`  cancel: the command's sleep ended ${tookMs} ms after taskq cancel returned`);
    assert.ok(tookMs <= CANCEL_WITHIN_MS, `the sleep ran on for ${tookMs} ms after the cancel`);

    const job = JSON.parse(await taskq(master, ["job", String(id), "--json"]));
    assert.equal(job.id, id);
    assert.equal(job.queue, "slow");
    assert.equal(job.state, "cancelled");
    assert.equal(job.attempts, 1);
    assert.ok(
      "error" in job && "result" in job,
      `job --json has error and result: ${JSON.stringify(job)}`,
    );

    // The worker carries on with the next item; had the cancelled one come back (even after a
    // retry backoff, 20 ms here), it would have come first.
    const [next] = (await taskq(master, ["put", "--queue", "slow", "--ids", "next"])).trim()
      .split("\n").map(Number);
    await waitFor("the next item to start", async () => {
      return (await fileLines(`${dir}/starts`)).includes(String(next));
    }, { timeoutMs: WAIT_MS });
    assert.deepEqual(await fileLines(`${dir}/starts`), [String(id), String(next)]);
    const nextPid = Number((await fileLines(`${dir}/pid.${next}`))[0]);
    await taskq(master, ["cancel", String(next)]);
    await waitFor("the second sleep to end", () => processEnded(nextPid), { timeoutMs: WAIT_MS });

    const status = JSON.parse(await taskq(master, ["status", "--json"]));
    const slow = status.queues.find((q: { name: string }) => q.name === "slow");
    assert.deepEqual(
      { ready: slow.ready, leased: slow.leased, delayed: slow.delayed, dead: slow.dead },
      { ready: 0, leased: 0, delayed: 0, dead: 0 },
      "nothing left to serve, nothing dead-lettered",
    );
    const dead = status.queues.find((q: { name: string }) => q.name === "slow.dead");
    assert.ok(dead === undefined || dead.ready === 0, "no dead letter");
    const out = status.queues.find((q: { name: string }) => q.name === "slow.out");
    assert.ok(out === undefined || out.ready === 0, "no result for a cancelled item");
    assert.equal(workers[0].exited, undefined, "the worker is still running");
    assert.equal(
      JSON.parse(await taskq(master, ["job", String(id), "--json"])).state,
      "cancelled",
      "still cancelled",
    );
  } finally {
    await stopAll(workers);
    // Should the test fail with the sleeps still running, end them: ours, by the pids they wrote.
    for (const line of await fileLines(`${dir}/starts`)) {
      const pid = Number((await fileLines(`${dir}/pid.${line}`))[0]);
      if (pid > 0 && (await commandLine(pid)).join(" ") === "sleep 30") Deno.kill(pid, "SIGKILL");
    }
    await Deno.remove(dir, { recursive: true });
  }
});
