/**
 * Tests of the status rows (lib/model/status_rows.ts): a dead-letter queue is
 * always folded into its queue's row, and a real durable master restarted
 * with only `a.dead` holding items shows the same thing before and after the
 * restart in all three places people look: `taskq status` (table and JSON),
 * the dashboard's `GET /api/state`, and `/metrics`
 * (`taskq_queue_dead_letters{queue="a"}`, the series an alert watches). The
 * counters of a durable master survive the restart too.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "../lib/mod.ts";
import { httpToken } from "../lib/http/token.ts";
import { statusRows } from "../lib/model/status_rows.ts";
import { emptyQueueStats, type QueueStats } from "../lib/model/types.ts";
import { parsePrometheus, sampleValue } from "./_prometheus.ts";
import {
  MASTER_PERMISSIONS,
  type MasterProcess,
  runTaskq,
  startMaster,
  type TaskqRun,
  TEST_KEY,
} from "./_helpers.ts";

/** The line a master prints once its HTTP side listens. */
const HTTP_LINE = /^taskq http listening on (\S+)$/;

/** How long a get in this test waits for its item, in ms. */
const GET_WAIT_MS = 5_000;

/** A queue's stats with some fields set. */
function stats(name: string, fields: Partial<QueueStats> = {}): QueueStats {
  return { ...emptyQueueStats(name), ...fields };
}

/** Runs a client command with a client's permissions. */
function taskq(args: string[]): Promise<TaskqRun> {
  return runTaskq(args, { permissions: MASTER_PERMISSIONS });
}

Deno.test("a dead-letter queue whose queue is not listed gets an empty row of that queue", () => {
  const rows = statusRows([stats("a.dead", { ready: 2, delayed: 1 }), stats("b", { ready: 4 })]);
  assert.deepEqual(rows.map((r) => [r.name, r.ready, r.deadLetters]), [["a", 0, 3], ["b", 4, 0]]);
});

Deno.test("a queue and its dead letters make one row, in the order listed", () => {
  const rows = statusRows([
    stats("a", { ready: 1, put: 3 }),
    stats("a.dead", { ready: 2, leased: 1 }),
    stats("b.dead", { ready: 1 }),
    stats("c"),
  ]);
  assert.deepEqual(rows.map((r) => [r.name, r.ready, r.put, r.deadLetters]), [
    ["a", 1, 3, 3],
    ["b", 0, 0, 1],
    ["c", 0, 0, 0],
  ]);
});

Deno.test("a name made by hand from a dead-letter queue's keeps a row of its own", () => {
  const rows = statusRows([stats("a.dead.dead", { ready: 1 })]);
  assert.deepEqual(rows.map((r) => [r.name, r.ready, r.deadLetters]), [["a.dead.dead", 1, 0]]);
});

/** What one look at a master shows of queue `a` and its dead letters. */
interface Seen {
  /** `taskq status --json`'s row of `a`: its dead letters and put counter. */
  status: { deadLetters: number; put: number };
  /** Whether the status table or JSON has a row of its own for `a.dead`. */
  statusDeadRow: boolean;
  /** `GET /api/state`'s row of `a`: its dead letters. */
  state: { deadLetters: number };
  /** Whether `/api/state` has a row of its own for `a.dead`. */
  stateDeadRow: boolean;
  /** `taskq_queue_dead_letters{queue="a"}`. */
  metric: number;
  /** Whether `/metrics` has a `taskq_queue_dead_letters` sample for `a.dead`. */
  metricDeadRow: boolean;
}

/** Looks at `a` through `taskq status`, `/api/state` and `/metrics` of a running master. */
async function look(master: MasterProcess, base: string): Promise<Seen> {
  const connectArgs = ["--connect", master.address];
  const json = await taskq(["status", ...connectArgs, "--json"]);
  assert.equal(json.code, 0, json.stderr);
  const rows = JSON.parse(json.stdout).queues as {
    name: string;
    deadLetters: number;
    put: number;
  }[];
  const row = rows.find((r) => r.name === "a");
  assert.ok(row !== undefined, `taskq status --json lists a: ${json.stdout}`);
  const table = await taskq(["status", ...connectArgs]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^\s*a\s/m, `the table has a row for a:\n${table.stdout}`);
  const headers = {
    authorization: `Bearer ${httpToken(new TextEncoder().encode(TEST_KEY))}`,
  };
  const stateResponse = await fetch(`${base}api/state`, { headers });
  assert.equal(stateResponse.status, 200);
  const state = await stateResponse.json() as { queues: { name: string; deadLetters: number }[] };
  const stateRow = state.queues.find((r) => r.name === "a");
  assert.ok(stateRow !== undefined, `/api/state lists a: ${JSON.stringify(state.queues)}`);
  const metricsResponse = await fetch(`${base}metrics`, { headers });
  const text = await metricsResponse.text();
  assert.equal(metricsResponse.status, 200, text);
  const families = parsePrometheus(text);
  const deadSamples = families.get("taskq_queue_dead_letters")?.samples ?? [];
  return {
    status: { deadLetters: row.deadLetters, put: row.put },
    statusDeadRow: rows.some((r) => r.name === "a.dead") || /^\s*a\.dead\s/m.test(table.stdout),
    state: { deadLetters: stateRow.deadLetters },
    stateDeadRow: state.queues.some((r) => r.name === "a.dead"),
    metric: sampleValue(families, "taskq_queue_dead_letters", { queue: "a" }),
    metricDeadRow: deadSamples.some((s) => s.labels.queue === "a.dead"),
  };
}

/** Starts a durable master on `dataDir` with an HTTP side; resolves with it and its HTTP base URL. */
async function startDurable(dataDir: string): Promise<{ master: MasterProcess; base: string }> {
  const master = await startMaster({
    dataDir,
    args: ["--http", "127.0.0.1:0", "--max-attempts", "1", "--retry-backoff", "0"],
  });
  try {
    const base = (await master.proc.waitForLine(HTTP_LINE))[1];
    return { master, base };
  } catch (error) {
    await master.proc.dispose();
    throw error;
  }
}

Deno.test("after a restart a queue holding only dead letters still shows them in its own row", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "taskq-status-rows-" });
  try {
    let before: Seen;
    {
      const { master, base } = await startDurable(dataDir);
      await using _ = master;
      const client = await connect({ address: master.address, authkey: TEST_KEY, name: "failer" });
      try {
        const a = client.queue("a");
        await a.put("doomed");
        const [item] = await a.getMany(1, GET_WAIT_MS);
        assert.ok(item !== undefined, "the item was delivered");
        await a.fail(item, "broken"); // max attempts 1: dead-lettered
      } finally {
        await client.close();
      }
      before = await look(master, base);
      await master.stop();
    }
    assert.deepEqual(before, {
      status: { deadLetters: 1, put: 1 },
      statusDeadRow: false,
      state: { deadLetters: 1 },
      stateDeadRow: false,
      metric: 1,
      metricDeadRow: false,
    });
    const { master, base } = await startDurable(dataDir);
    await using _ = master;
    const after = await look(master, base);
    assert.deepEqual(after, before, "the same after the restart, counters included");
    await master.stop();
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
