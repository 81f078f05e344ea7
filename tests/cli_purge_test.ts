/**
 * `taskq purge QUEUE` as real processes (lib/cli/purge.ts): it removes every
 * ready and delayed item, says how many, and leaves leased items to finish.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "../lib/client/client.ts";
import { runTaskq, startMaster, TEST_KEY } from "./_helpers.ts";

Deno.test("taskq purge removes ready and delayed items, not leased ones", async () => {
  await using master = await startMaster();
  const env = { TASKQ_ADDR: master.address };
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    const q = client.queue("tasks");
    await q.putMany([1, 2, 3, 4]);
    await q.put(5, { delayMs: 600_000 });
    const job = await q.get(1_000);
    assert.ok(job !== null);
    const run = await runTaskq(["purge", "tasks"], { env });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "purged 4 items from tasks\n");
    const [stats] = (await client.stats("tasks")).queues;
    assert.deepEqual([stats.ready, stats.delayed, stats.leased], [0, 0, 1]);
    await q.ack(job);
    const again = await runTaskq(["purge", "tasks"], { env });
    assert.equal(again.stdout, "purged 0 items from tasks\n");
    const usage = await runTaskq(["purge"], { env });
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /give one queue name/);
  } finally {
    await client.close();
  }
});
