/**
 * `taskq peek QUEUE` as real processes (lib/cli/peek.ts): it shows ready,
 * delayed and leased items in their order, with `--count`, `--offset` and
 * `--json`, and takes nothing (no lease, no attempt counted); bad arguments
 * exit 2 with one line.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "../lib/client/client.ts";
import { runTaskq, startMaster, TEST_KEY } from "./_helpers.ts";

/** Exit code of a usage error. */
const EXIT_USAGE = 2;

Deno.test("taskq peek shows items without taking them", async () => {
  await using master = await startMaster();
  const env = { TASKQ_ADDR: master.address };
  const client = await connect({ address: master.address, authkey: TEST_KEY, name: "holder" });
  try {
    const q = client.queue("tasks");
    const ids = await q.putMany(Array.from({ length: 12 }, (_, i) => ({ n: i })));
    await q.put("later", { delayMs: 600_000 });

    const text = await runTaskq(["peek", "tasks"], { env });
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trimEnd().split("\n");
    assert.equal(lines[0], "tasks: 12 ready items; showing 1–10");
    assert.match(lines[1], /^ID\s+ATTEMPTS\s+PRIORITY\s+VALUE$/);
    assert.equal(lines.length, 12, "the default count is 10");
    assert.match(lines[2], new RegExp(`^\\s*${ids[0]}\\s+0\\s+0\\s+\\{"n":0\\}$`));

    const json = await runTaskq(["peek", "tasks", "--json", "--offset", "10", "--count", "5"], {
      env,
    });
    assert.equal(json.code, 0, json.stderr);
    const items = json.stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(items.map((i) => i.id), ids.slice(10));
    assert.deepEqual(items.map((i) => i.state), ["ready", "ready"]);
    assert.deepEqual(items[0].value, { n: 10 });

    // Nothing was taken: every item is still ready, never delivered.
    const [stats] = (await client.stats("tasks")).queues;
    assert.deepEqual([stats.ready, stats.leased, stats.delayed], [12, 0, 1]);
    assert.equal((await client.job(ids[0]))?.attempts, 0);

    const delayed = await runTaskq(["peek", "tasks", "--state", "delayed"], { env });
    assert.equal(delayed.code, 0, delayed.stderr);
    assert.match(delayed.stdout, /^tasks: 1 delayed item; showing 1–1\n/);
    assert.match(delayed.stdout, /ready in \d+m\d\ds\s+"later"/);

    const job = await q.get(1_000);
    assert.ok(job !== null);
    const leased = await runTaskq(["peek", "tasks", "--state", "leased", "--json"], { env });
    assert.equal(leased.code, 0, leased.stderr);
    const [held] = leased.stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
    assert.equal(held.id, job.id);
    assert.equal(held.holder.name, "holder");
    const leasedText = await runTaskq(["peek", "tasks", "--state", "leased"], { env });
    assert.match(leasedText.stdout, /HELD BY/);
    assert.match(leasedText.stdout, /holder, ends in \d+s/);

    const empty = await runTaskq(["peek", "nothing-here"], { env });
    assert.equal(empty.code, 0);
    assert.equal(empty.stdout, "nothing-here: 0 ready items\n");
  } finally {
    await client.close();
  }
});

Deno.test("taskq peek refuses bad arguments with one line", async () => {
  const cases: [string[], RegExp][] = [
    [["peek"], /give one queue name \(0 given/],
    [["peek", "a", "b"], /give one queue name \(2 given/],
    [["peek", "tasks", "--state", "done"], /--state must be ready, delayed, leased/],
    [["peek", "tasks", "--count", "0"], /--count must be a whole number from 1/],
    [["peek", "tasks", "--offset", "-1"], /--offset must be a whole number from 0/],
    [["peek", "tasks", "--bogus"], /Unknown option '--bogus'/],
  ];
  for (const [args, pattern] of cases) {
    const run = await runTaskq(args, { env: { TASKQ_ADDR: "127.0.0.1:1" } });
    assert.equal(run.code, EXIT_USAGE, `${args.join(" ")}: ${run.stderr}`);
    assert.equal(run.stderr.trimEnd().split("\n").length, 1, run.stderr);
    assert.match(run.stderr, pattern);
  }
  const help = await runTaskq(["peek", "--help"]);
  assert.match(help.stdout, /^Usage: taskq peek \[options\] QUEUE/);
});
