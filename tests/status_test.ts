/**
 * Tests of `taskq status` (lib/cli/status.ts) and `taskq http-token`
 * (lib/cli/http_token.ts): the table with rates and states, rates from two
 * snapshots, the clients table; end to end, `--watch` refreshing with rates
 * until interrupted (exit 0), `--http` reading the master's HTTP side (paused
 * queues and connected clients included), and the token the CLI prints being
 * the one the HTTP side accepts.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  clientsTable,
  formatAge,
  type Snapshot,
  statusTable,
  withRates,
} from "../lib/cli/status.ts";
import { statusRows } from "../lib/model/status_rows.ts";
import type { QueueStats } from "../lib/wire/messages.ts";
import { emptyQueueStats } from "../lib/model/types.ts";
import { httpToken } from "../lib/http/token.ts";
import { connect } from "../lib/mod.ts";
import {
  MASTER_PERMISSIONS,
  runTaskq,
  startMaster,
  startTaskq,
  type TaskqRun,
  TEST_KEY,
  waitFor,
} from "./_helpers.ts";

const HTTP_LINE = /^taskq http listening on (\S+)$/;

function stats(name: string, fields: Partial<QueueStats> = {}): QueueStats {
  return { ...emptyQueueStats(name), ...fields };
}

/** Runs a client command (`status`, …) with a client's permissions. */
function taskq(args: string[], key: string = TEST_KEY): Promise<TaskqRun> {
  return runTaskq(args, { key, permissions: MASTER_PERMISSIONS });
}

Deno.test("dead-letter queues fold into their queue's row, delayed letters included", () => {
  const rows = statusRows([
    stats("a", { ready: 1 }),
    stats("a.dead", { ready: 2, leased: 1, delayed: 1 }),
    stats("orphan.dead", { ready: 5 }),
  ]);
  // A dead-letter queue whose queue is not listed (after a restart) gets an empty row of that queue.
  assert.deepEqual(rows.map((r) => [r.name, r.deadLetters]), [["a", 4], ["orphan", 5]]);
  assert.equal(rows[1].ready, 0);
});

Deno.test("the table adds rate and state columns when it knows them", () => {
  const plain = statusTable(statusRows([stats("q", { ready: 3, put: 10, acked: 7 })]), 2);
  assert.equal(
    plain,
    "QUEUE  READY  LEASED  DELAYED  DEAD  WAITING  PUT  ACKED\n" +
      "q          3       0        0     0        0   10      7\n\nclients connected: 2",
  );
  const rich = statusTable([
    { ...statusRows([stats("work")])[0], paused: true, rates: { put: 12.5, done: 3, failed: 0 } },
  ], 1);
  assert.match(rich, /^QUEUE .* PUT\/S {2}DONE\/S {2}FAILED\/S {2}STATE$/m);
  assert.match(rich, /^work .* 13 {5}3\.0 {9}0 {2}paused$/m);
  assert.match(statusTable([], 0), /\(no queues yet\)/);
});

Deno.test("rates come from two snapshots; the clients table shows ages", () => {
  const before: Snapshot = {
    now: 1000,
    clients: 1,
    queues: statusRows([stats("q", { put: 10, acked: 5, failed: 1 })]),
  };
  const after: Snapshot = {
    now: 3000,
    clients: 1,
    queues: statusRows([stats("q", { put: 30, acked: 9, failed: 1 }), stats("new", { put: 4 })]),
  };
  const rated = withRates(after, before);
  assert.deepEqual(rated.queues.map((q) => q.rates), [
    { put: 10, done: 2, failed: 0 },
    { put: 2, done: 0, failed: 0 },
  ]);
  assert.equal(withRates(after, undefined), after);
  assert.equal(formatAge(59_999), "59s");
  assert.equal(formatAge(61_000), "1m01s");
  assert.equal(formatAge(7_260_000), "2h01m");
  const table = clientsTable([
    {
      id: "1",
      name: "w1",
      address: "127.0.0.1:5",
      held: 2,
      connectedAt: 0,
      lastSeenAt: 9_000,
    },
  ], 10_000);
  assert.equal(
    table,
    "CLIENT  ADDRESS      HELD  CONNECTED  LAST SEEN\nw1      127.0.0.1:5     2        10s     1s ago",
  );
  assert.equal(clientsTable([], 0), "(no client connected)");
});

Deno.test("status --watch refreshes with rates until interrupted", async () => {
  await using master = await startMaster();
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  const watch = startTaskq(
    "status --watch",
    ["status", "--connect", master.address, "--watch", "--interval", "0.2"],
    { permissions: MASTER_PERMISSIONS },
  );
  try {
    await watch.waitForLine(/^taskq status at /);
    await client.queue("w").putMany([1, 2, 3]);
    await watch.waitForLine(/^w\s+3\s+0\s+0\s+0\s+0\s+3\s+0\s+[\d.]+\s+0\s+0$/);
    await waitFor("three refreshes", () => watch.stdout.split("taskq status at ").length > 3);
    assert.match(watch.stdout, /^QUEUE .* PUT\/S {2}DONE\/S {2}FAILED\/S$/m);
    const status = await watch.stop("SIGINT");
    assert.equal(status.code, 0, watch.describe());
    assert.ok(!watch.stdout.includes("\x1b["), "no screen control codes on a pipe");
  } finally {
    await watch.dispose();
    await client.close();
  }
});

Deno.test("status --http shows paused queues and the connected clients; http-token fits", async () => {
  await using master = await startMaster({ args: ["--http", "127.0.0.1:0"] });
  const base = (await master.proc.waitForLine(HTTP_LINE))[1];
  const host = new URL(base).host;
  const token = await taskq(["http-token"]);
  assert.equal(token.code, 0, token.stderr);
  assert.equal(token.stdout.trim(), httpToken(new TextEncoder().encode(TEST_KEY)));
  const url = await taskq(["http-token", "--url", base]);
  assert.equal(url.stdout.trim(), `${base}#token=${token.stdout.trim()}`);

  const client = await connect({ address: master.address, authkey: TEST_KEY, name: "wrk-1" });
  try {
    await client.queue("jobs").put("x");
    const pause = await fetch(`${base}api/queues/pause`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token.stdout.trim()}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({ queue: "jobs" }),
    });
    assert.equal(pause.status, 200, await pause.text());

    const table = await taskq(["status", "--http", host]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^QUEUE .* STATE$/m);
    assert.match(table.stdout, /^jobs\s+1\s+0\s+0\s+0\s+0\s+1\s+0\s+.*paused$/m);
    assert.match(table.stdout, /^CLIENT\s+ADDRESS\s+HELD\s+CONNECTED\s+LAST SEEN$/m);
    assert.match(table.stdout, /^wrk-1\s+127\.0\.0\.1:\d+\s+0\s+\d+s\s+\d+s ago$/m);

    const json = JSON.parse((await taskq(["status", "--http", host, "--json"])).stdout);
    assert.equal(json.queues[0].paused, true);
    assert.equal(json.clients, 1);

    const wrongKey = await taskq(["status", "--http", host], "not-the-key");
    assert.equal(wrongKey.code, 1);
    assert.match(wrongKey.stderr, /refused the token/);
  } finally {
    await client.close();
  }
});
