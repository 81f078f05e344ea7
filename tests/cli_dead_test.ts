/**
 * `taskq dead list|requeue|drop` as real processes (lib/cli/dead.ts): the
 * list pages (`--offset`, `--limit`) and filters by queue (`.dead`
 * optional), across every dead-letter queue by name without one, in text
 * and `--json`; the ids it shows are the ids requeue and drop take;
 * requeue by id and `--all` puts the items back on their queue (printing
 * the new ids); drop by id and `--all` removes them; ids that are not dead
 * letters exit 1 after handling the others; bad arguments exit 2.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Client, connect } from "../lib/client/client.ts";
import { runTaskq, startMaster, TEST_KEY } from "./_helpers.ts";

/** Exit code of a usage error. */
const EXIT_USAGE = 2;

/** Makes dead letters of `values` in `queue` (one attempt each, failed with `error`). */
async function makeDead(
  client: Client,
  queue: string,
  values: unknown[],
  error: string,
): Promise<void> {
  const q = client.queue(queue);
  await q.putMany(values, { maxAttempts: 1 });
  const jobs = await q.getMany(values.length, 1_000);
  assert.equal(jobs.length, values.length);
  await q.fail(jobs, error);
}

/** The JSON lines of a run's stdout. */
function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout.trimEnd().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
}

Deno.test("taskq dead list pages and filters; requeue and drop by id and all", async () => {
  await using master = await startMaster();
  const env = { TASKQ_ADDR: master.address };
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    await makeDead(client, "alpha", Array.from({ length: 5 }, (_, i) => `a${i}`), "alpha broke");
    await makeDead(client, "beta", ["b0", "b1", "b2"], "beta broke");

    // Every dead letter, by queue name, in pages.
    const first = await runTaskq(["dead", "list", "--limit", "4", "--json"], { env });
    assert.equal(first.code, 0, first.stderr);
    const page1 = jsonLines(first.stdout);
    assert.deepEqual(page1.map((r) => r.value), ["a0", "a1", "a2", "a3"]);
    assert.deepEqual(page1[0].queue, "alpha");
    assert.deepEqual(page1[0].deadQueue, "alpha.dead");
    assert.equal(page1[0].error, "alpha broke");
    assert.equal(page1[0].attempts, 1);
    assert.equal(page1[0].letter, true);
    const second = jsonLines(
      (await runTaskq(["dead", "list", "--offset", "4", "--limit", "3", "--json"], { env })).stdout,
    );
    assert.deepEqual(second.map((r) => r.value), ["a4", "b0", "b1"]);
    const text = await runTaskq(["dead", "list", "--limit", "2"], { env });
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.trimEnd().split("\n");
    assert.equal(lines[0], "8 dead letters; showing 1–2; --offset 2 for more");
    assert.match(lines[1], /^ID\s+QUEUE\s+ATTEMPTS\s+DIED\s+ERROR\s+VALUE$/);
    assert.match(lines[2], /^\s*\d+\s+alpha\s+1\s+\d+s ago\s+alpha broke\s+"a0"$/);

    // One queue's, with or without .dead.
    const beta = jsonLines((await runTaskq(["dead", "list", "beta", "--json"], { env })).stdout);
    assert.deepEqual(beta.map((r) => r.value), ["b0", "b1", "b2"]);
    const betaDead = await runTaskq(["dead", "list", "beta.dead", "--json"], { env });
    assert.deepEqual(jsonLines(betaDead.stdout), beta);

    // Requeue by the ids the list shows: they come back on their queue.
    const requeued = await runTaskq(
      ["dead", "requeue", "beta", String(beta[0].id), String(beta[2].id)],
      { env },
    );
    assert.equal(requeued.code, 0, requeued.stderr);
    const fresh = requeued.stdout.trimEnd().split("\n").map(Number);
    assert.equal(fresh.length, 2);
    assert.match(requeued.stderr, /re-queued 2 dead letters of beta\.dead/);
    assert.deepEqual((await client.job(fresh[0]))?.value, "b0");
    assert.equal((await client.job(fresh[0]))?.queue, "beta");
    assert.equal(await client.queue("beta").size(), 2);

    // An id that is not a dead letter: the others are handled, exit 1.
    const partly = await runTaskq(["dead", "requeue", "beta", String(beta[1].id), "999999"], {
      env,
    });
    assert.equal(partly.code, 1, partly.stderr);
    assert.match(
      partly.stderr,
      /re-queued 1 of 2 ids: the others are not dead letters of beta\.dead/,
    );
    assert.equal(await client.queue("beta").size(), 3);

    // Requeue all of a queue.
    const all = await runTaskq(["dead", "requeue", "alpha", "--all"], { env });
    assert.equal(all.code, 0, all.stderr);
    assert.equal(all.stdout.trimEnd().split("\n").length, 5);
    assert.equal(await client.queue("alpha").size(), 5);
    const none = await runTaskq(["dead", "list"], { env });
    assert.equal(none.stdout, "no dead letters\n");

    // Drop by id, then all.
    await makeDead(client, "gamma", ["g0", "g1", "g2"], "gamma broke");
    const gamma = jsonLines((await runTaskq(["dead", "list", "gamma", "--json"], { env })).stdout);
    const dropped = await runTaskq(["dead", "drop", "gamma", String(gamma[1].id)], { env });
    assert.equal(dropped.code, 0, dropped.stderr);
    assert.match(dropped.stderr, /dropped 1 dead letter of gamma\.dead/);
    const left = jsonLines((await runTaskq(["dead", "list", "gamma", "--json"], { env })).stdout);
    assert.deepEqual(left.map((r) => r.value), ["g0", "g2"]);
    const dropAll = await runTaskq(["dead", "drop", "gamma", "--all"], { env });
    assert.equal(dropAll.code, 0, dropAll.stderr);
    assert.match(dropAll.stderr, /dropped 2 dead letters of gamma\.dead/);
    assert.equal((await client.stats("gamma.dead")).queues[0].ready, 0);
    assert.equal(await client.queue("gamma").size(), 0, "dropped, not re-queued");
  } finally {
    await client.close();
  }
});

Deno.test("taskq dead refuses bad arguments with one line", async () => {
  const cases: [string[], RegExp][] = [
    [["dead"], /give list, requeue or drop/],
    [["dead", "show"], /unknown action "show"/],
    [["dead", "requeue"], /give the queue whose dead letters to requeue/],
    [["dead", "requeue", "q"], /give the ids of the dead letters to requeue, or --all/],
    [["dead", "drop", "q", "--all", "3"], /give --all or ids, not both/],
    [["dead", "drop", "q", "x"], /"x" is not a job id/],
    [["dead", "list", "a", "b"], /at most one queue name/],
    [["dead", "list", "--all"], /--all is for requeue and drop/],
    [["dead", "list", "--limit", "0"], /--limit must be a whole number from 1/],
  ];
  for (const [args, pattern] of cases) {
    const run = await runTaskq(args, { env: { TASKQ_ADDR: "127.0.0.1:1" } });
    assert.equal(run.code, EXIT_USAGE, `${args.join(" ")}: ${run.stderr}`);
    assert.equal(run.stderr.trimEnd().split("\n").length, 1, run.stderr);
    assert.match(run.stderr, pattern);
  }
  const help = await runTaskq(["dead", "--help"]);
  assert.match(help.stdout, /^Usage: taskq dead list \[QUEUE\]/);
});
