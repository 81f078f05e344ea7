/**
 * Recovery of a deep durable queue, with real processes: a master keeping
 * its items in a data directory (`--data`) is filled with
 * {@link DEEP_ITEMS} items over the wire, killed with SIGKILL, and started
 * again on the same directory. The restarted master answers its first get
 * (how long it took is printed, not asserted: timings on shared machines
 * move), and then serves every item exactly once, in the order put; a queue
 * with priorities comes back served highest first, first in first out
 * within a priority, and an item that was leased at the kill is served again.
 *
 * The store reads its items a page at a time (lib/store/sqlite.ts), so
 * {@link DEEP_ITEMS} spans many pages.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Client, connect } from "../lib/mod.ts";
import { type MasterProcess, startMaster, TEST_KEY } from "./_helpers.ts";

/** Items of the deep queue: many pages of the store's streaming load. */
const DEEP_ITEMS = 200_000;

/** Items per put request while filling. */
const PUT_BATCH = 5_000;

/** Items per get (and per ack) while draining. */
const GET_BATCH = 5_000;

/** Generous deadline for anything that waits on the master. */
const WAIT_MS = 60_000;

/** The lease of drained items: longer than the test, so none is served twice. */
const LEASE_MS = 120_000;

/** Runs `body` with a fresh data directory, removed afterwards whatever happens. */
async function withDataDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "taskq-recovery-test-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Connects to `master` without reconnecting (a drop is a failure here). */
function connectTo(master: MasterProcess): Promise<Client> {
  return connect({ address: master.address, authkey: TEST_KEY, reconnect: false });
}

/** The value of the deep queue's `i`th item: mostly numbers, some strings and arrays. */
function deepValue(i: number): unknown {
  if (i % 97 === 0) return `item ${i}`;
  if (i % 1_001 === 0) return [i, { at: i }];
  return i;
}

/** Takes every item of `queue` (until a get times out), acking each batch; their values in order. */
async function drain(client: Client, queue: string): Promise<unknown[]> {
  const values: unknown[] = [];
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const jobs = await client.queue(queue).getMany(GET_BATCH, 200, { leaseMs: LEASE_MS });
    if (jobs.length === 0) break;
    for (const job of jobs) values.push(job.value);
    await client.queue(queue).ack(jobs);
    assert.ok(Date.now() < deadline, `draining ${queue} took over ${WAIT_MS} ms`);
  }
  return values;
}

Deno.test("recovery: a deep durable queue survives kill -9, served once each, in order", async () => {
  await withDataDir(async (dir) => {
    const first = await startMaster({ dataDir: dir });
    try {
      const client = await connectTo(first);
      try {
        const deep = client.queue("deep");
        for (let at = 0; at < DEEP_ITEMS; at += PUT_BATCH) {
          const values = Array.from(
            { length: Math.min(PUT_BATCH, DEEP_ITEMS - at) },
            (_, k) => deepValue(at + k),
          );
          await deep.putMany(values);
        }
        const prio = client.queue("prio");
        await prio.putMany(["low 1", "low 2"]);
        await prio.putMany(["high 1", "high 2"], { priority: 5 });
        await prio.putMany(["low 3"]);
        await prio.putMany(["higher"], { priority: 9 });
        // Leased at the kill: served again after the restart.
        await client.queue("leased").putMany(["held"]);
        const held = await client.queue("leased").get(WAIT_MS, { leaseMs: LEASE_MS });
        assert.equal(held?.value, "held");
        assert.equal(await deep.size(), DEEP_ITEMS);
      } finally {
        await client.close().catch(() => {});
      }
      const status = await first.proc.stop("SIGKILL");
      assert.equal(status.signal, "SIGKILL", first.proc.describe());
    } finally {
      await first.proc.dispose();
    }

    const started = performance.now();
    const second = await startMaster({ dataDir: dir });
    try {
      const listening = performance.now() - started;
      const client = await connectTo(second);
      try {
        const job = await client.queue("deep").get(WAIT_MS, { leaseMs: LEASE_MS });
        const firstGet = performance.now() - started;
        console.log(
          `restart with ${DEEP_ITEMS.toLocaleString("en-US")} durable items: listening after ` +
            `${listening.toFixed(0)} ms, first get after ${firstGet.toFixed(0)} ms`,
        );
        assert.deepEqual(job?.value, deepValue(0), "the first item put is served first");
        await client.queue("deep").ack(job!);
        const rest = await drain(client, "deep");
        assert.equal(rest.length, DEEP_ITEMS - 1, "every item once");
        for (let i = 1; i < DEEP_ITEMS; i++) {
          if (JSON.stringify(rest[i - 1]) !== JSON.stringify(deepValue(i))) {
            assert.fail(`item ${i} out of order: got ${JSON.stringify(rest[i - 1])}`);
          }
        }
        assert.deepEqual(await drain(client, "prio"), [
          "higher",
          "high 1",
          "high 2",
          "low 1",
          "low 2",
          "low 3",
        ]);
        assert.deepEqual(await drain(client, "leased"), ["held"], "served again");
        assert.equal(await client.queue("deep").size(), 0);
      } finally {
        await client.close().catch(() => {});
      }
      await second.stop();
    } finally {
      await second.proc.dispose();
    }
  });
});
