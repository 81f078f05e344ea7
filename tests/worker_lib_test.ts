/**
 * Tests of lib/worker/worker.ts (runWorker, the worker loop as a library)
 * against a master served in this process (serve() on an ephemeral loopback
 * port, items in memory): results put and items acked; the concurrency limit;
 * a throwing handler's items failed and retried by the master's policy, then
 * dead-lettered; exitWhenIdleMs returning the summary; a stop with a grace
 * period (finished work acked, work still running then aborted and given
 * back); a lease lost while connected (the handler's signal aborted, its
 * result dropped, the item served again); and a master that goes away and
 * comes back on the same port (leases held on the old connection dropped,
 * the worker carrying on after it reconnects, whether busy or idle).
 *
 * Conditions are awaited by polling the master's engine with deadlines;
 * handlers that block wait on gates the tests open, and every test stops its
 * worker, closes its client and its masters, even when it fails.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Client,
  connect,
  type DeadLetter,
  type Job,
  type Master,
  type MasterOptions,
  serve,
} from "../lib/mod.ts";
import type { BrokerSession } from "../lib/broker/broker.ts";
import type { LocalBroker } from "../lib/broker/local.ts";
import { runWorker, type WorkerOptions, type WorkerSummary } from "../lib/worker/worker.ts";
import { TEST_KEY, waitFor, withDeadline } from "./_helpers.ts";

/** Longest any single test waits for a condition or for a worker to stop. */
const WAIT_MS = 15_000;

const NOTHING: WorkerSummary = {
  done: 0,
  failed: 0,
  lost: 0,
  ackLost: 0,
  returned: 0,
  cancelled: 0,
};

/** Serves a master on 127.0.0.1 (port 0 unless `port` is given) with the test key. */
function serveOn(port = 0, options: Partial<MasterOptions> = {}): Promise<Master> {
  return serve({ listen: `127.0.0.1:${port}`, authkey: TEST_KEY, ...options });
}

/** Connects a client to `master` (reconnecting by itself, the default). */
function connectTo(master: Master): Promise<Client> {
  return connect({
    address: `127.0.0.1:${master.address.port}`,
    authkey: TEST_KEY,
    name: "worker lib test",
  });
}

/** A worker loop started in the background, with its own stop signal. */
class BackgroundWorker<T> {
  readonly stopper = new AbortController();
  readonly finished: Promise<WorkerSummary>;
  #settled = false;

  constructor(options: Omit<WorkerOptions<T>, "signal">) {
    this.finished = runWorker<T>({ ...options, signal: this.stopper.signal });
    this.finished.then(() => this.#settled = true, () => this.#settled = true);
  }

  /** Whether runWorker has returned (or thrown). */
  get settled(): boolean {
    return this.#settled;
  }

  /** Stops it and returns its summary. */
  stop(): Promise<WorkerSummary> {
    this.stopper.abort();
    return withDeadline(this.finished, WAIT_MS, "the worker to stop");
  }

  /** Stops it, ignoring how it ends (for cleanup after a failure). */
  async dispose(): Promise<void> {
    this.stopper.abort();
    await this.finished.catch(() => {});
  }
}

/** A promise the test resolves by hand, to hold handlers until it is ready. */
function gate(): PromiseWithResolvers<void> {
  return Promise.withResolvers<void>();
}

/** Rejects with the signal's reason once it is aborted: a handler that honours its signal. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise<never>((_, reject) => {
    const abort = () => reject(new Error(`handler aborted: ${signal.reason}`));
    if (signal.aborted) abort();
    else signal.addEventListener("abort", abort, { once: true });
  });
}

/** One queue's statistics as the master's broker has them. */
async function stats(master: Master, queue: string) {
  return (await master.broker.stats(queue)).queues[0];
}

/** Takes (and acks) every item ready on `queue` right now. */
async function drain<T>(client: Client, queue: string): Promise<Job<T>[]> {
  const jobs = await client.queue(queue).getMany<T>(10_000, 0);
  if (jobs.length > 0) await client.queue(queue).ack(jobs);
  return jobs;
}

/**
 * Makes the master give up on every lease at once (as if they had all run
 * out) and hands the one item of "tasks" to a consumer made here, so the
 * worker's next renewal is refused. Returns that consumer: disconnect it to
 * have the item served again.
 */
async function expireAndSteal(master: Master): Promise<BrokerSession> {
  const broker = master.broker as LocalBroker;
  const thief = await broker.open({ name: "thief", address: "" });
  broker.tick(Date.now() + 3_600_000);
  const stolen = await thief.get("tasks", { max: 1, timeoutMs: 0, leaseMs: 3_600_000 });
  assert.equal(stolen.length, 1, "the expired item is ready for the thief");
  assert.equal(stolen[0].attempts, 2);
  return thief;
}

/** Runs `fn` with a master and a client, closed afterwards whatever happens. */
async function withMaster(
  fn: (client: Client, master: Master) => Promise<void>,
  options: Partial<MasterOptions> = {},
): Promise<void> {
  const master = await serveOn(0, options);
  let client: Client | undefined;
  try {
    client = await connectTo(master);
    await fn(client, master);
  } finally {
    await client?.close();
    await master.close();
  }
}

Deno.test("worker lib: every item's result is put on the results queue and the item acked", async () => {
  await withMaster(async (client, master) => {
    const values = Array.from({ length: 20 }, (_, i) => i);
    await client.queue("tasks").putMany(values);
    const summary = await withDeadline(
      runWorker<number>({
        client,
        queue: "tasks",
        results: "results",
        concurrency: 4,
        exitWhenIdleMs: 100,
        // Sync and async handlers alike.
        handler: (job) =>
          job.value % 2 === 0
            ? { n: job.value, square: job.value ** 2, attempt: job.attempt }
            : Promise.resolve({ n: job.value, square: job.value ** 2, attempt: job.attempt }),
      }),
      WAIT_MS,
      "the worker to go idle",
    );
    assert.deepEqual(summary, { ...NOTHING, done: 20 });
    const tasks = await stats(master, "tasks");
    assert.deepEqual([tasks.ready, tasks.leased, tasks.delayed, tasks.acked], [0, 0, 0, 20]);
    const results = await drain<{ n: number; square: number; attempt: number }>(client, "results");
    assert.deepEqual(
      results.map((job) => job.value).sort((a, b) => a.n - b.n),
      values.map((n) => ({ n, square: n * n, attempt: 1 })),
    );
  });
});

Deno.test("worker lib: without a results queue the handler's return value is dropped", async () => {
  await withMaster(async (client, master) => {
    await client.queue("tasks").putMany(["a", "b"]);
    const seen: string[] = [];
    const summary = await runWorker<string>({
      client,
      queue: "tasks",
      exitWhenIdleMs: 100,
      handler: (job) => {
        seen.push(job.value);
        return "ignored";
      },
    });
    assert.deepEqual(summary, { ...NOTHING, done: 2 });
    assert.deepEqual(seen, ["a", "b"], "one at a time, in order");
    assert.equal((await stats(master, "tasks")).acked, 2);
    assert.deepEqual((await master.broker.stats()).queues.map((q) => q.name), ["tasks"]);
  });
});

Deno.test("worker lib: exitWhenIdleMs returns the summary when no item comes", async () => {
  await withMaster(async (client, master) => {
    let calls = 0;
    const summary = await withDeadline(
      runWorker({ client, queue: "empty", exitWhenIdleMs: 50, handler: () => calls++ }),
      WAIT_MS,
      "the idle worker to return",
    );
    assert.deepEqual(summary, NOTHING);
    assert.equal(calls, 0);
    assert.equal((await stats(master, "empty")).waiting, 0, "no get is left waiting");
  });
});

Deno.test("worker lib: no more handlers run at once than the concurrency", async () => {
  await withMaster(async (client, master) => {
    await client.queue("tasks").putMany(Array.from({ length: 12 }, (_, i) => i));
    const release = gate();
    let active = 0;
    let peak = 0;
    const worker = new BackgroundWorker<number>({
      client,
      queue: "tasks",
      results: "results",
      concurrency: 3,
      prefetch: 0,
      handler: async (job) => {
        active++;
        peak = Math.max(peak, active);
        try {
          await release.promise;
          return job.value;
        } finally {
          active--;
        }
      },
    });
    try {
      await waitFor("three handlers to run", () => active === 3);
      // Without prefetch, the worker takes only what it has room for.
      const held = await stats(master, "tasks");
      assert.deepEqual([held.leased, held.ready], [3, 9]);
      release.resolve();
      await waitFor("every result", async () => (await stats(master, "results")).ready === 12);
      const summary = await worker.stop();
      assert.deepEqual(summary, { ...NOTHING, done: 12 });
      assert.equal(peak, 3);
      assert.equal((await stats(master, "tasks")).acked, 12);
    } finally {
      release.resolve();
      await worker.dispose();
    }
  });
});

Deno.test("worker lib: a throwing handler's item is retried by the master's policy, then dead-lettered", async () => {
  await withMaster(async (client, master) => {
    const ids = await client.queue("tasks").putMany(["ok", "flaky", "bad"]);
    const attempts = new Map<string, number[]>();
    const worker = new BackgroundWorker<string>({
      client,
      queue: "tasks",
      results: "results",
      concurrency: 2,
      handler: (job) => {
        attempts.set(job.value, [...attempts.get(job.value) ?? [], job.attempt]);
        if (job.value === "bad") throw new Error(`bad item, attempt ${job.attempt}`);
        if (job.value === "flaky" && job.attempt < 3) throw new Error("not yet");
        return `${job.value} at attempt ${job.attempt}`;
      },
    });
    try {
      await waitFor(
        "two results and one dead letter",
        async () =>
          (await stats(master, "results")).ready === 2 &&
          (await stats(master, "tasks.dead")).ready === 1,
      );
      const summary = await worker.stop();
      assert.deepEqual(summary, { ...NOTHING, done: 2, failed: 5 });
      assert.deepEqual(Object.fromEntries(attempts), {
        ok: [1],
        flaky: [1, 2, 3],
        bad: [1, 2, 3],
      });
      const tasks = await stats(master, "tasks");
      assert.deepEqual(
        [tasks.ready, tasks.leased, tasks.delayed, tasks.acked, tasks.failed, tasks.dead],
        [0, 0, 0, 2, 5, 1],
      );
      const results = (await drain<string>(client, "results")).map((job) => job.value).sort();
      assert.deepEqual(results, ["flaky at attempt 3", "ok at attempt 1"]);
      const [dead] = await drain<DeadLetter>(client, "tasks.dead");
      assert.deepEqual({ ...dead.value, failedAt: 0 }, {
        queue: "tasks",
        id: ids[2],
        value: "bad",
        attempts: 3,
        error: "bad item, attempt 3",
        failedAt: 0,
      });
      assert.ok(dead.value.failedAt > 0);
    } finally {
      await worker.dispose();
    }
  }, { retry: { backoffBaseMs: 10, maxAttempts: 3 } });
});

Deno.test("worker lib: a stop lets work finish within the grace, then aborts and returns the rest", async () => {
  await withMaster(async (client, master) => {
    await client.queue("tasks").putMany(["quick", "slow"]);
    const quickMayFinish = gate();
    const started = new Set<string>();
    const events: string[] = [];
    let slowReason: unknown;
    const worker = new BackgroundWorker<string>({
      client,
      queue: "tasks",
      results: "results",
      concurrency: 2,
      graceMs: 500,
      handler: async (job, signal) => {
        started.add(job.value);
        if (job.value === "quick") {
          await quickMayFinish.promise;
          events.push("quick finished");
          return "quick done";
        }
        try {
          return await untilAborted(signal);
        } finally {
          slowReason = signal.reason;
          events.push("slow aborted");
        }
      },
    });
    try {
      await waitFor("both handlers to start", () => started.size === 2);
      const stopping = worker.stop();
      quickMayFinish.resolve();
      const summary = await stopping;
      assert.deepEqual(summary, { ...NOTHING, done: 1, returned: 1 });
      assert.deepEqual(events, ["quick finished", "slow aborted"]);
      assert.equal(slowReason, "worker stopping");
      const tasks = await stats(master, "tasks");
      assert.deepEqual([tasks.ready, tasks.leased, tasks.acked, tasks.nacked], [1, 0, 1, 1]);
      assert.deepEqual((await drain(client, "results")).map((job) => job.value), ["quick done"]);
      // The item given back is served again, as its second attempt.
      const again = await client.queue("tasks").get<string>(0);
      assert.ok(again);
      assert.deepEqual([again.value, again.attempt], ["slow", 2]);
      await client.queue("tasks").ack(again);
    } finally {
      quickMayFinish.resolve();
      await worker.dispose();
    }
  });
});

Deno.test("worker lib: a stop with nothing running returns an empty summary", async () => {
  await withMaster(async (client) => {
    const worker = new BackgroundWorker({ client, queue: "tasks", handler: () => "x" });
    try {
      assert.deepEqual(await worker.stop(), NOTHING);
    } finally {
      await worker.dispose();
    }
  });
});

Deno.test("worker lib: a lease lost while connected aborts the handler; the item is served again", async () => {
  await withMaster(async (client, master) => {
    await client.queue("tasks").put("x");
    const firstStarted = gate();
    let firstReason: unknown;
    const worker = new BackgroundWorker<string>({
      client,
      queue: "tasks",
      results: "results",
      leaseMs: 300,
      handler: async (job, signal) => {
        if (job.attempt > 1) return `done at attempt ${job.attempt}`;
        firstStarted.resolve();
        try {
          return await untilAborted(signal);
        } finally {
          firstReason = signal.reason;
        }
      },
    });
    try {
      await firstStarted.promise;
      const thief = await expireAndSteal(master);
      await waitFor("the handler to be aborted", () => firstReason !== undefined);
      assert.equal(firstReason, "lease lost");
      await thief.close(); // the item is served again
      await waitFor(
        "the next attempt's result",
        async () => (await stats(master, "results")).ready === 1,
      );
      const summary = await worker.stop();
      assert.deepEqual(summary, { ...NOTHING, done: 1, lost: 1 });
      const [result] = await drain<string>(client, "results");
      assert.equal(result.value, "done at attempt 3");
      const tasks = await stats(master, "tasks");
      assert.deepEqual([tasks.expired, tasks.acked, tasks.failed], [2, 1, 0]);
      assert.deepEqual(await client.queue("tasks").getMany(10, 0), []);
    } finally {
      firstStarted.resolve();
      await worker.dispose();
    }
  });
});

Deno.test("worker lib: the result of work that outlived its lease is dropped", async () => {
  await withMaster(async (client, master) => {
    await client.queue("tasks").putMany(["x"]);
    const firstStarted = gate();
    const firstMayFinish = gate();
    let firstSignal: AbortSignal | undefined;
    const worker = new BackgroundWorker<string>({
      client,
      queue: "tasks",
      results: "results",
      leaseMs: 300,
      handler: async (job, signal) => {
        if (job.attempt > 1) return "fresh";
        firstSignal = signal;
        firstStarted.resolve();
        await firstMayFinish.promise; // ignores its signal
        return "stale";
      },
    });
    try {
      await firstStarted.promise;
      const thief = await expireAndSteal(master);
      await waitFor("the lost lease to be noticed", () => firstSignal?.aborted);
      firstMayFinish.resolve();
      await thief.close();
      await waitFor(
        "the second attempt's result",
        async () => (await stats(master, "results")).ready === 1,
      );
      const summary = await worker.stop();
      assert.deepEqual(summary, { ...NOTHING, done: 1, lost: 1 });
      assert.deepEqual((await drain(client, "results")).map((job) => job.value), ["fresh"]);
      assert.equal((await stats(master, "results")).put, 1, "the stale result was never put");
    } finally {
      firstStarted.resolve();
      firstMayFinish.resolve();
      await worker.dispose();
    }
  });
});

Deno.test("worker lib: the worker carries on when the master comes back on the same port", async () => {
  const masters: Master[] = [await serveOn()];
  const port = masters[0].address.port;
  let client: Client | undefined;
  let worker: BackgroundWorker<string> | undefined;
  const firstStarted = gate();
  const firstMayFinish = gate();
  try {
    client = await connectTo(masters[0]);
    const c = client;
    let firstJob: Job<string> | undefined;
    await c.queue("tasks").put("first");
    worker = new BackgroundWorker<string>({
      client: c,
      queue: "tasks",
      results: "results",
      handler: async (job) => {
        if (job.value !== "first") return `${job.value} done`;
        firstJob = job;
        firstStarted.resolve();
        await firstMayFinish.promise; // busy when the master goes away
        return "first done";
      },
    });

    // 1. The master goes away while the worker is busy.
    await firstStarted.promise;
    const job = firstJob as Job<string>;
    assert.ok(c.mayHoldLease(job));
    await masters[0].close();
    await waitFor("the client to notice the master is gone", () => !c.mayHoldLease(job));
    masters.push(await serveOn(port));
    firstMayFinish.resolve();
    // Waits for the reconnection; the worker takes it from the new master.
    await c.queue("tasks").put("second");
    await waitFor(
      "the second result",
      async () => (await stats(masters[1], "results")).ready === 1,
    );
    assert.equal((await stats(masters[1], "results")).put, 1, "the first result was dropped");
    assert.ok(c.sessionNumber >= 2);
    assert.equal(c.mayHoldLease(job), false, "a lease does not survive its connection");

    // 2. The master goes away while the worker waits for items.
    await waitFor(
      "the worker to wait for items",
      async () => (await stats(masters[1], "tasks")).waiting === 1,
    );
    const session = c.sessionNumber;
    await masters[1].close();
    // Requests sent before the client notices would fail with the connection.
    await waitFor("the client to notice the master is gone", () => !c.connected);
    masters.push(await serveOn(port));
    await c.queue("tasks").put("third");
    await waitFor("the third result", async () => (await stats(masters[2], "results")).ready === 1);
    assert.ok(c.sessionNumber > session);

    const summary = await worker.stop();
    assert.deepEqual(summary, { ...NOTHING, done: 2, lost: 1 });
    assert.deepEqual((await drain(c, "results")).map((j) => j.value), ["third done"]);
    assert.equal(worker.settled, true);
  } finally {
    firstStarted.resolve();
    firstMayFinish.resolve();
    await worker?.dispose();
    await client?.close();
    for (const master of masters) await master.close();
  }
});

Deno.test("worker lib: items delivered again to the same worker run once more, as their newest delivery", async () => {
  await withMaster(async (client, master) => {
    await client.queue("tasks").putMany(["a", "b"]);
    const firstMayFinish = gate();
    const runs: string[] = [];
    let firstSignal: AbortSignal | undefined;
    // One slot and room for three more: "a" runs, "b" waits in the buffer, and a get
    // stays open at the master for two more.
    const worker = new BackgroundWorker<string>({
      client,
      queue: "tasks",
      results: "results",
      concurrency: 1,
      prefetch: 3,
      leaseMs: 3_600_000,
      handler: async (job, signal) => {
        runs.push(`${job.value}#${job.attempt}`);
        if (job.attempt === 1) {
          firstSignal = signal;
          await firstMayFinish.promise;
        }
        return job.value;
      },
    });
    try {
      const broker = master.broker as LocalBroker;
      await waitFor(
        "a to run and b to wait",
        async () => runs.length === 1 && (await stats(master, "tasks")).leased === 2,
      );
      // Every lease runs out: the open get takes both items again, as attempt 2.
      broker.tick(Date.now() + 7_200_000);
      await waitFor(
        "the earlier delivery of a to be abandoned",
        () => firstSignal?.aborted === true,
      );
      firstMayFinish.resolve();
      await waitFor(
        "both results",
        async () => (await stats(master, "results")).ready === 2,
      );
      const summary = await worker.stop();
      // The first delivery of "a" ran, and its result was dropped; that of "b",
      // still in the buffer, never ran: its newer delivery did.
      assert.deepEqual(runs, ["a#1", "a#2", "b#2"]);
      assert.deepEqual(summary, { ...NOTHING, done: 2, lost: 1 });
      const results = await drain<string>(client, "results");
      assert.deepEqual(results.map((job) => job.value).sort(), ["a", "b"]);
      const tasks = await stats(master, "tasks");
      assert.deepEqual([tasks.expired, tasks.acked, tasks.leased, tasks.ready], [2, 2, 0, 0]);
    } finally {
      firstMayFinish.resolve();
      await worker.dispose();
    }
  });
});
