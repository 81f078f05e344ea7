/**
 * Issue #12, "everything else works on it": the front-ends and admin tools
 * over the PostgreSQL broker (lib/broker/postgres/), with two masters sharing
 * one database. Each master is `serve()` in this process with the HTTP side
 * (and, for the Python test, the Python front-end) on ephemeral loopback
 * ports; one throwaway cluster (tests/_postgres.ts) serves the whole file and
 * every scenario runs in a fresh schema, dropped afterwards.
 *
 * - State is read from the database, so any master shows the whole picture:
 *   items put through master A show in master B's `/api/state`, `/metrics`
 *   and `taskq status --connect B`, A's clients in B's client list, and A's
 *   waiting get in B's waiting count once A has heartbeated.
 * - Pause is kept in the database: paused through A's HTTP API, B serves no
 *   gets (and shows the queue paused); resumed through B, A's waiting get is
 *   served.
 * - Dead letters: an item failed to death on A is in `q.dead` on B (in B's
 *   dashboard state, with its error); re-queued through B's HTTP API it is got
 *   on A; dropped through B it is gone on A.
 * - Python: a real `python3` (multiprocessing.managers) puts ints through A's
 *   Python port, a native worker on B takes them and acks with results, and
 *   the results come back to the Python program through A; Python's `join()`
 *   on A returns once B has acked everything. Values whose exact Python form
 *   the master keeps beside the plain one (a tuple, `7.0`, `2**70`) come back
 *   to Python exactly through the master they were put through.
 *
 * Ignored, saying why, when PostgreSQL's server binaries are missing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Client, connect, type Master, serve } from "../lib/mod.ts";
import { httpFrontEnd } from "../lib/http/server.ts";
import { httpToken } from "../lib/http/token.ts";
import type { DashboardState, QueueRow } from "../lib/http/state.ts";
import { pythonFrontEnd } from "../lib/python/frontend.ts";
import type { FrontEndFactory } from "../lib/server/front_end.ts";
import type { RetryPolicy } from "../lib/model/types.ts";
import { formatAddress } from "../lib/config.ts";
import { MASTER_PERMISSIONS, runTaskq, TEST_KEY, waitFor, withDeadline } from "./_helpers.ts";
import {
  dropSchema,
  type PgCluster,
  POSTGRES_MISSING,
  postgresAvailable,
  startPostgres,
} from "./_postgres.ts";
import { parsePrometheus, sampleValue } from "./_prometheus.ts";
import { managerPreamble, type Python, PYTHONS, runPython } from "./_python.ts";

const available = postgresAvailable();
if (!available) console.log(`SKIPPED PostgreSQL front-end tests: ${POSTGRES_MISSING}`);

const KEY = new TextEncoder().encode(TEST_KEY);
const TOKEN = httpToken(KEY);

/** How long a get held back by a pause is given to (wrongly) be served: past two polls. */
const HELD_BACK_MS = 1_200;

/** Deadline of the Python program. */
const PYTHON_RUN_MS = 20_000;

/** A master of a pair: in this process, on the shared database. */
interface Node {
  master: Master;
  /** `HOST:PORT` of its native listener. */
  address: string;
  /** Its HTTP side, without the trailing slash. */
  http: string;
  /** Its Python port (`HOST:PORT`), when started with one. */
  python?: string;
}

/** Options of one master of a pair. */
interface NodeOptions {
  retry?: Partial<RetryPolicy>;
  python?: boolean;
}

/** Starts a master on `schema` of `cluster`, with the HTTP side (and Python's when asked). */
async function startNode(
  cluster: PgCluster,
  schema: string,
  options: NodeOptions = {},
): Promise<Node> {
  const frontEnds: FrontEndFactory[] = [httpFrontEnd({ listen: "127.0.0.1:0", sampleMs: 200 })];
  if (options.python) {
    frontEnds.push(
      pythonFrontEnd({ listen: "127.0.0.1:0", queues: { get_native_queue: "native" } }),
    );
  }
  const master = await serve({
    listen: "127.0.0.1:0",
    authkey: KEY,
    store: { postgres: cluster.url, schema },
    retry: options.retry,
    frontEnds,
  });
  return {
    master,
    address: formatAddress(master.address),
    http: master.frontEnds[0].address.replace(/\/$/, ""),
    python: options.python ? master.frontEnds[1].address : undefined,
  };
}

let schemas = 0;

/**
 * Runs `body` with two masters, A and B, on a fresh schema of `cluster`;
 * closes them and drops the schema afterwards, whatever happened.
 */
async function withPair(
  cluster: PgCluster,
  options: NodeOptions,
  body: (a: Node, b: Node) => Promise<void>,
): Promise<void> {
  const schema = `frontends_${Deno.pid}_${++schemas}`;
  const nodes: Node[] = [];
  try {
    nodes.push(await startNode(cluster, schema, options));
    nodes.push(await startNode(cluster, schema, options));
    await body(nodes[0], nodes[1]);
  } finally {
    for (const node of nodes.reverse()) await node.master.close();
    await dropSchema(cluster, schema);
  }
}

/** A native client of `node`, named `name`. */
function client(node: Node, name: string): Promise<Client> {
  return connect({ address: node.address, authkey: KEY, name });
}

/** GETs `path` of `node`'s HTTP side with the token; the body as text. */
async function read(node: Node, path: string): Promise<string> {
  const reply = await fetch(`${node.http}${path}`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  const body = await reply.text();
  assert.equal(reply.status, 200, `GET ${path}: ${body}`);
  return body;
}

/** `node`'s dashboard state. */
async function state(node: Node): Promise<DashboardState> {
  return JSON.parse(await read(node, "/api/state"));
}

/** The row of `queue` in `node`'s dashboard state, if it has one. */
async function row(node: Node, queue: string): Promise<QueueRow | undefined> {
  return (await state(node)).queues.find((q) => q.name === queue);
}

/** `node`'s `/metrics`, strictly parsed. */
async function metrics(node: Node) {
  return parsePrometheus(await read(node, "/metrics"));
}

/** POSTs an action to `node`'s HTTP side; the reply's status and JSON body. */
async function act(
  node: Node,
  path: string,
  body: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const reply = await fetch(`${node.http}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: reply.status, body: await reply.json() };
}

/** The first Python 3 installed (pyenv's, as the other Python tests use), if any. */
function python3(): Python | undefined {
  return PYTHONS.find((p) => p.available);
}

Deno.test({
  name: "postgres front-ends: two masters on one database",
  ignore: !available,
  fn: async (t) => {
    const cluster = await startPostgres();
    try {
      await t.step(
        "items put through A show in B's /api/state, /metrics and taskq status; A's waiting get in B's stats",
        () =>
          withPair(cluster, {}, async (a, b) => {
            const producer = await client(a, "producer-on-a");
            const waiter = await client(a, "waiter-on-a");
            let waiting: Promise<unknown> | undefined;
            try {
              await producer.queue("jobs").putMany([1, 2, 3]);
              await producer.queue("jobs").put("later", { delayMs: 60_000 });

              // B's JSON state: A's items, and A's clients among the connected ones.
              const seen = await state(b);
              const jobs = seen.queues.find((q) => q.name === "jobs");
              assert.ok(jobs, `B's state lists the queue put through A: ${JSON.stringify(seen)}`);
              assert.deepEqual([jobs.ready, jobs.leased, jobs.delayed, jobs.put], [3, 0, 1, 4]);
              assert.equal(seen.clients, 2, "both clients of A count on B");
              assert.deepEqual(
                seen.workers.map((w) => w.name).sort(),
                ["producer-on-a", "waiter-on-a"],
              );

              // B's /metrics: the queue depth gauges.
              const families = await metrics(b);
              const depth = (state: string) =>
                sampleValue(families, "taskq_queue_items", { queue: "jobs", state });
              assert.deepEqual([depth("ready"), depth("leased"), depth("delayed")], [3, 0, 1]);
              assert.equal(
                sampleValue(families, "taskq_items_put_total", { queue: "jobs" }),
                4,
              );
              assert.equal(sampleValue(families, "taskq_connected_clients"), 2);

              // B's throughput history counts A's puts (its rates come from the database's counters).
              await waitFor(
                "B's history to show A's puts",
                async () => (await state(b)).history.put.some((rate) => rate > 0),
                { timeoutMs: 5_000, intervalMs: 50 },
              );

              // taskq status --connect B, as a table and as JSON.
              const table = await runTaskq(["status", "--connect", b.address], {
                permissions: MASTER_PERMISSIONS,
              });
              assert.equal(table.code, 0, table.stderr);
              assert.match(table.stdout, /^jobs\s+3\s+0\s+1\s+0\s+0\s+4\s+0$/m, table.stdout);
              const json = await runTaskq(["status", "--connect", b.address, "--json"], {
                permissions: MASTER_PERMISSIONS,
              });
              assert.equal(json.code, 0, json.stderr);
              const status = JSON.parse(json.stdout);
              const statusRow = status.queues.find((q: { name: string }) => q.name === "jobs");
              assert.deepEqual(
                [statusRow?.ready, statusRow?.delayed, statusRow?.put],
                [3, 1, 4],
                json.stdout,
              );
              assert.equal(status.clients, 3, "A's two clients and the status command itself");

              // An item leased on A shows as leased, and held by A's client, on B.
              const held = await producer.queue("jobs").get(5_000);
              assert.equal(held?.value, 1);
              const leasedOnB = await state(b);
              assert.equal(leasedOnB.queues.find((q) => q.name === "jobs")?.leased, 1);
              assert.equal(
                leasedOnB.workers.find((w) => w.name === "producer-on-a")?.held,
                1,
                JSON.stringify(leasedOnB.workers),
              );
              await producer.queue("jobs").ack(held!);

              // A get waiting on A shows in B's waiting count once A has heartbeated (~1 s).
              waiting = waiter.queue("idle").get(15_000);
              await waitFor(
                "B's state to show A's waiting get",
                async () => (await row(b, "idle"))?.waiting === 1,
                { timeoutMs: 5_000, intervalMs: 100 },
              );
              assert.equal(
                sampleValue(await metrics(b), "taskq_queue_waiting_gets", { queue: "idle" }),
                1,
              );
              const reader = await client(b, "stats-on-b");
              try {
                const stats = await reader.stats("idle");
                assert.equal(stats.queues[0].waiting, 1, "B's stats (native) count it too");
              } finally {
                await reader.close();
              }

              // Served from B's put: the waiting get on A gets it.
              const feeder = await client(b, "feeder-on-b");
              try {
                await feeder.queue("idle").put("wake");
              } finally {
                await feeder.close();
              }
              const job = await withDeadline(waiting, 5_000, "A's waiting get to be served");
              waiting = undefined;
              assert.equal((job as { value: unknown } | null)?.value, "wake");
              await waitFor(
                "B's state to drop A's served get from the waiting count",
                async () => (await row(b, "idle"))?.waiting === 0,
                { timeoutMs: 5_000, intervalMs: 100 },
              );
            } finally {
              await producer.close();
              await waiter.close();
              await waiting?.catch(() => {});
            }
          }),
      );

      await t.step(
        "pause through A holds back gets on B; resume through B serves A's waiting get",
        () =>
          withPair(cluster, {}, async (a, b) => {
            const onA = await client(a, "getter-on-a");
            const onB = await client(b, "getter-on-b");
            let waiting: Promise<unknown> | undefined;
            try {
              const paused = await act(a, "/api/queues/pause", { queue: "work" });
              assert.equal(paused.status, 200, JSON.stringify(paused.body));
              assert.equal(paused.body.paused, true);
              await onA.queue("work").putMany(["first", "second"]);

              // B knows the queue is paused (the pause is in the database)...
              const shown = await row(b, "work");
              assert.equal(shown?.paused, true, "B's state shows the queue paused");
              assert.equal(shown?.ready, 2);
              assert.equal(
                sampleValue(await metrics(b), "taskq_queue_paused", { queue: "work" }),
                1,
              );
              // ...and serves no gets from it: neither at once nor within two polls.
              assert.equal(await onB.queue("work").get(0), null, "an immediate get on B");
              assert.equal(
                await onB.queue("work").get(HELD_BACK_MS),
                null,
                "a waiting get on B while A paused the queue",
              );

              // A waits; B resumes; A's get goes through.
              waiting = onA.queue("work").get(15_000);
              await waitFor(
                "A's get to wait (seen on B)",
                async () => (await row(b, "work"))?.waiting === 1,
                { timeoutMs: 5_000, intervalMs: 100 },
              );
              // taskq status --http B shows it paused too.
              const table = await runTaskq(["status", "--http", new URL(b.http).host], {
                permissions: MASTER_PERMISSIONS,
              });
              assert.equal(table.code, 0, table.stderr);
              assert.match(
                table.stdout,
                /^work\s+2\s+0\s+0\s+0\s+1\s+2\s+0\s.*paused$/m,
                table.stdout,
              );
              assert.match(table.stdout, /^getter-on-a\s/m, table.stdout);

              const resumed = await act(b, "/api/queues/resume", { queue: "work" });
              assert.equal(resumed.status, 200, JSON.stringify(resumed.body));
              assert.equal(resumed.body.paused, false);
              const job = await withDeadline(waiting, 5_000, "A's waiting get after B's resume");
              waiting = undefined;
              assert.equal((job as { value: unknown } | null)?.value, "first");
              assert.equal((await row(a, "work"))?.paused, false, "A sees it resumed");
              const next = await onB.queue("work").get(5_000);
              assert.equal(next?.value, "second", "B serves the queue again");
            } finally {
              await onA.close();
              await onB.close();
              await waiting?.catch(() => {});
            }
          }),
      );

      await t.step(
        "a dead letter of A is in q.dead on B; re-queued through B it is got on A; dropped through B it is gone",
        () =>
          withPair(cluster, { retry: { maxAttempts: 1, backoffBaseMs: 0 } }, async (a, b) => {
            const onA = await client(a, "worker-on-a");
            try {
              const q = onA.queue("q");
              await q.putMany(["doomed", "dropped"]);
              for (const error of ["boom: exit code 3", "boom again"]) {
                const job = await q.get(5_000);
                assert.ok(job, "A serves the item");
                await q.fail(job, error);
              }

              // B sees both dead letters: its stats, its dashboard state and /metrics.
              const seen = await state(b);
              const dead = seen.dead.items.filter((d) => d.queue === "q.dead");
              assert.equal(seen.dead.total, 2, JSON.stringify(seen.dead));
              assert.deepEqual(
                dead.map((d) => [d.letter, d.failedIn, d.attempts, d.value, d.error]),
                [
                  [true, "q", 1, '"doomed"', "boom: exit code 3"],
                  [true, "q", 1, '"dropped"', "boom again"],
                ],
              );
              assert.equal(seen.queues.find((r) => r.name === "q")?.deadLetters, 2);
              const families = await metrics(b);
              assert.equal(sampleValue(families, "taskq_queue_dead_letters", { queue: "q" }), 2);
              assert.equal(
                sampleValue(families, "taskq_items_dead_lettered_total", { queue: "q" }),
                2,
              );
              const reader = await client(b, "reader-on-b");
              try {
                assert.equal((await reader.stats("q.dead")).queues[0].ready, 2);
              } finally {
                await reader.close();
              }

              // Re-queue the first through B's HTTP API: A gets it, as a new item.
              const requeued = await act(b, "/api/dead/requeue", {
                queue: "q.dead",
                ids: [dead[0].id],
              });
              assert.equal(requeued.status, 200, JSON.stringify(requeued.body));
              assert.equal(requeued.body.requeued, 1);
              const again = await q.get(5_000);
              assert.equal(again?.value, "doomed");
              assert.equal(again?.attempt, 1);
              assert.deepEqual(requeued.body.ids, [again?.id]);
              await q.ack(again!);

              // Drop the second through B: gone for A too.
              const dropped = await act(b, "/api/dead/drop", {
                queue: "q.dead",
                ids: [dead[1].id],
              });
              assert.equal(dropped.status, 200, JSON.stringify(dropped.body));
              assert.equal(dropped.body.dropped, 1);
              const after = (await onA.stats("q.dead")).queues[0];
              assert.deepEqual([after.ready, after.leased, after.delayed], [0, 0, 0]);
              assert.equal((await state(a)).dead.total, 0);
              // Taken already: a second re-queue of the same letter is refused.
              const twice = await act(b, "/api/dead/requeue", {
                queue: "q.dead",
                ids: [dead[0].id],
              });
              assert.equal(twice.status, 404, JSON.stringify(twice.body));
            } finally {
              await onA.close();
            }
          }),
      );

      const python = python3();
      await t.step({
        name:
          "Python puts ints through A; a native worker on B answers; results reach Python via A",
        ignore: python === undefined,
        fn: () =>
          withPair(cluster, { python: true }, async (a, b) => {
            const numbers = [3, 1, 4, 1, 5, 9, 2, 6];
            const program = await runPython(
              python!,
              "producer on A",
              managerPreamble(a.python!, TEST_KEY) + `
import json
NUMBERS = ${JSON.stringify(numbers)}
m = QueueManager(address=ADDRESS, authkey=KEY)
m.connect()
task = m.get_task_queue()
result = m.get_result_queue()
for n in NUMBERS:
    task.put(n)
print('put %d' % len(NUMBERS))
task.join()  # until the worker on B has acked them all
print('joined')
for _ in NUMBERS:
    r = result.get(timeout=15)
    print('result ' + json.dumps(r, sort_keys=True))
# Values whose exact Python form a memory master keeps beside the plain one:
# put by Python and taken back by Python through the same master.
native = m.get_native_queue()
for value in [(1, 2.5, 'x'), 7.0, 2**70, {'k': (1,)}]:
    native.put(value)
    back = native.get(timeout=5)
    print('echo %s %r -> %s %r' % (type(value).__name__, value, type(back).__name__, back))
print('done')
`,
            );
            try {
              // The native worker on B: squares each item and acks with its result.
              const worker = await client(b, "worker-on-b");
              const taken: unknown[] = [];
              try {
                const tasks = worker.queue("tasks");
                while (taken.length < numbers.length) {
                  const job = await tasks.get<number>(PYTHON_RUN_MS);
                  assert.ok(job, `B's worker gets the items Python put: ${program.describe()}`);
                  taken.push(job.value);
                  await tasks.ack(job, {
                    results: {
                      queue: "results",
                      values: [{ n: job.value, square: job.value * job.value, by: "b" }],
                    },
                  });
                }
              } finally {
                await worker.close();
              }
              assert.deepEqual(taken, numbers, "B takes Python's ints, in order, as numbers");

              const status = await program.finished(PYTHON_RUN_MS);
              assert.equal(status.code, 0, program.describe());
              const lines = program.lines;
              assert.deepEqual(
                lines.slice(0, 2),
                [`put ${numbers.length}`, "joined"],
                program.describe(),
              );
              assert.deepEqual(
                lines.filter((l) => l.startsWith("result ")),
                numbers.map((n) => `result {"by": "b", "n": ${n}, "square": ${n * n}}`),
                program.describe(),
              );
              const echoes = lines.filter((l) => l.startsWith("echo "));
              assert.equal(echoes.length, 4, program.describe());
              assert.equal(lines.at(-1), "done");
              // Put by Python and taken by Python through the same master: exactly as put (the
              // master that put an item keeps its exact Python form, docs/PYTHON.md, "Values").
              for (const echo of echoes) {
                const [put, back] = echo.slice("echo ".length).split(" -> ");
                assert.equal(back, put, echo);
              }

              const tasks = (await state(b)).queues.find((q) => q.name === "tasks");
              assert.deepEqual([tasks?.put, tasks?.acked, tasks?.ready], [
                numbers.length,
                numbers.length,
                0,
              ]);
            } finally {
              await program.dispose();
            }
          }),
      });
    } finally {
      await cluster.destroy();
    }
  },
});
