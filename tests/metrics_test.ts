/**
 * Tests of `/metrics` (lib/http/metrics.ts) on a real durable master run as a
 * subprocess with `--http`: the text parses with a strict Prometheus
 * text-format parser (tests/_prometheus.ts), and its numbers match what
 * `taskq status --json` prints, from the queue port and from `--http`:
 * depths, totals, dead letters, clients. Also: error replies counted by code
 * (a wrong key, an oversized frame), the commit latency histogram filled by a
 * durable store, and label values escaped so any queue name survives.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AuthenticationError, connect } from "../lib/mod.ts";
import { httpToken } from "../lib/http/token.ts";
import { escapeLabel } from "../lib/http/metrics.ts";
import { parsePrometheus, type PromFamily, sampleValue } from "./_prometheus.ts";
import {
  frameOf,
  MASTER_PERMISSIONS,
  RawConn,
  runTaskq,
  startMaster,
  type TaskqRun,
  TEST_KEY,
  waitFor,
} from "./_helpers.ts";

const HTTP_LINE = /^taskq http listening on (\S+)$/;

/** A queue name that needs escaping in a label value. */
const ODD_QUEUE = 'odd "name" \\ with <tags>';

/** Runs a client command (`put`, `status`, …) with a client's permissions. */
function taskq(args: string[]): Promise<TaskqRun> {
  return runTaskq(args, { permissions: MASTER_PERMISSIONS });
}

async function scrape(base: string): Promise<Map<string, PromFamily>> {
  const response = await fetch(`${base}metrics`, {
    headers: { authorization: `Bearer ${httpToken(new TextEncoder().encode(TEST_KEY))}` },
  });
  const text = await response.text();
  assert.equal(response.status, 200, text);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parsePrometheus(text);
}

Deno.test("the strict parser refuses malformed exposition text", () => {
  const bad = [
    "x 1", // no final newline
    'x{a="1" 1\n',
    'x{a="\\q"} 1\n',
    "x one\n",
    "# TYPE x counter\nx -1\n",
    "x 1\n# TYPE x counter\n",
    "x 1\ny 1\nx 2\n",
    "x 1\nx 2\n",
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
  ];
  for (const text of bad) assert.throws(() => parsePrometheus(text), Error, JSON.stringify(text));
  const good = parsePrometheus('# HELP x a\n# TYPE x gauge\nx{q="a\\"b\\\\c\\nd"} 1.5\n');
  assert.equal(good.get("x")?.samples[0].labels.q, 'a"b\\c\nd');
  assert.equal(escapeLabel('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
});

Deno.test("/metrics parses strictly and matches taskq status --json", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "taskq-metrics-" });
  await using master = await startMaster({
    dataDir,
    args: ["--http", "127.0.0.1:0", "--max-attempts", "1", "--retry-backoff", "0"],
  });
  try {
    const base = (await master.proc.waitForLine(HTTP_LINE))[1];
    const connectArgs = ["--connect", master.address];
    assert.equal(
      (await taskq(["put", ...connectArgs, "--queue", "tasks", "--json", "1", "2", "3", "4", "5"]))
        .code,
      0,
    );
    assert.equal((await taskq(["put", ...connectArgs, "--queue", ODD_QUEUE, "x"])).code, 0);

    // A client that acks one item, fails one (dead-lettered: max attempts 1) and holds one.
    const client = await connect({ address: master.address, authkey: TEST_KEY, name: "holder" });
    try {
      const tasks = client.queue("tasks");
      const [a, b, c] = await tasks.getMany(3, 1000);
      await tasks.ack(a);
      await tasks.fail(b, "broken");
      assert.ok(c);

      // Error replies: a wrong key, and a frame bigger than a handshake allows.
      await assert.rejects(
        connect({ address: master.address, authkey: "wrong", reconnect: false }),
        AuthenticationError,
      );
      await using raw = await RawConn.open(master.address);
      await raw.write(frameOf(new Uint8Array(4096)));
      await raw.closedByPeer();

      const families = await waitFor("the error counters", async () => {
        const f = await scrape(base);
        const ok = sampleValue(f, "taskq_protocol_errors_total", { code: "frame_too_large" }) === 1;
        return ok ? f : undefined;
      });
      assert.equal(
        sampleValue(families, "taskq_protocol_errors_total", { code: "auth_failed" }),
        1,
      );
      assert.equal(
        sampleValue(families, "taskq_protocol_errors_total", { code: "bad_request" }),
        0,
      );
      assert.equal(families.get("taskq_protocol_errors_total")?.type, "counter");
      assert.equal(families.get("taskq_queue_items")?.type, "gauge");

      // The durable store committed the puts, acks and the failure: latencies were recorded.
      const commits = sampleValue(
        families,
        "taskq_store_commit_seconds",
        {},
        "taskq_store_commit_seconds_count",
      );
      assert.ok(commits >= 3, `commits recorded: ${commits}`);
      assert.ok(
        sampleValue(families, "taskq_store_commit_seconds", {}, "taskq_store_commit_seconds_sum") >
          0,
      );

      // Compare with taskq status --json from the queue port...
      const status = await taskq(["status", ...connectArgs, "--json"]);
      assert.equal(status.code, 0, status.stderr);
      const native = JSON.parse(status.stdout);
      // ...and from the HTTP side (which adds no connection of its own).
      const viaHttp = await taskq(["status", "--http", new URL(base).host, "--json"]);
      assert.equal(viaHttp.code, 0, viaHttp.stderr);
      const http = JSON.parse(viaHttp.stdout);
      const after = await scrape(base);

      const clients = sampleValue(after, "taskq_connected_clients");
      assert.equal(clients, 1, "the holder");
      assert.equal(native.clients, clients + 1, "status counts its own connection");
      assert.equal(http.clients, clients);
      assert.deepEqual(http.workers.map((w: { name: string }) => w.name), ["holder"]);

      assert.deepEqual(
        native.queues.map((q: { name: string }) => q.name).sort(),
        [
          ODD_QUEUE,
          "tasks",
        ].sort(),
      );
      for (const source of [native, http]) {
        for (const row of source.queues) {
          const q = { queue: row.name };
          const m = (family: string, labels = {}) =>
            sampleValue(after, family, { ...q, ...labels });
          assert.equal(m("taskq_queue_items", { state: "ready" }), row.ready, row.name);
          assert.equal(m("taskq_queue_items", { state: "leased" }), row.leased, row.name);
          assert.equal(m("taskq_queue_items", { state: "delayed" }), row.delayed, row.name);
          assert.equal(m("taskq_queue_dead_letters"), row.deadLetters, row.name);
          assert.equal(m("taskq_queue_waiting_gets"), row.waiting, row.name);
          assert.equal(m("taskq_items_put_total"), row.put, row.name);
          assert.equal(m("taskq_items_acked_total"), row.acked, row.name);
          assert.equal(m("taskq_items_nacked_total"), row.nacked, row.name);
          assert.equal(m("taskq_items_failed_total"), row.failed, row.name);
          assert.equal(m("taskq_lease_expiries_total"), row.expired, row.name);
          assert.equal(m("taskq_items_dead_lettered_total"), row.dead, row.name);
        }
      }
      const tasksRow = native.queues.find((q: { name: string }) => q.name === "tasks");
      assert.deepEqual(
        [tasksRow.ready, tasksRow.leased, tasksRow.deadLetters, tasksRow.put, tasksRow.acked],
        [2, 1, 1, 5, 1],
      );
      assert.equal(
        sampleValue(after, "taskq_queue_items", { queue: "tasks.dead", state: "ready" }),
        1,
      );
      assert.equal(sampleValue(after, "taskq_retries_total", { queue: "tasks" }), 0);
    } finally {
      await client.close();
    }
    await master.stop();
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
