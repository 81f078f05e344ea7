/**
 * Tests of the operations console's API (lib/http/server.ts, state.ts,
 * metrics.ts), in this process over real loopback sockets: a master from
 * `serve()` with `serveHttp()` beside it on ephemeral ports, as `taskq master
 * --http` runs them, and broker sessions named like connections. Every case
 * runs on the local broker (in memory) and, when PostgreSQL's binaries are
 * here, on the PostgreSQL broker (a throwaway cluster, a fresh schema per case).
 *
 * - `GET /api/queues/items`: a queue's ready (serve order), delayed and
 *   leased items page by page, as job views with holder and times; bad
 *   parameters refused with 400.
 * - `GET /api/dead`: dead letters of every queue or of one (`NAME` or
 *   `NAME.dead`) page by page; the `id` it lists is what `POST
 *   /api/dead/requeue` and `/drop` take (the "no such dead letter" bug), and
 *   both take `all: true`.
 * - `GET /api/sessions` and `POST /api/sessions/control`: what each client
 *   holds and since when; quiet and stop reach the session's handler; an
 *   unknown session is 404.
 * - `POST /api/queues/purge`: ready and delayed items go, leased ones stay.
 * - `GET /api/state?offset=&limit=&filter=`: one page of rows, totals of all.
 * - `/metrics`: the oldest ready item's age per queue, the job run-time
 *   histogram, `taskq_build_info` (its version deno.json's), process figures,
 *   the start time, and counters labelled as counted since the start.
 * - Every new route needs the token; every new action refuses form bodies and
 *   other origins.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Master, serve } from "../lib/mod.ts";
import { type DeadReply, type HttpServer, type ItemsReply, serveHttp } from "../lib/http/server.ts";
import { httpToken } from "../lib/http/token.ts";
import type { ClientRow, DashboardState } from "../lib/http/state.ts";
import type { BrokerSession, ControlAction } from "../lib/broker/broker.ts";
import { TASKQ_VERSION } from "../lib/http/version.ts";
import { TEST_KEY, waitFor } from "./_helpers.ts";
import { POSTGRES_MISSING, postgresAvailable, startPostgres, withSchema } from "./_postgres.ts";
import denoJson from "../deno.json" with { type: "json" };

const KEY = new TextEncoder().encode(TEST_KEY);

/** Lease of the items the tests take, in ms: never runs out during a test. */
const LEASE_MS = 60_000;

/** Delay of the delayed items, in ms: they stay delayed for the whole test. */
const DELAY_MS = 600_000;

interface Rig extends AsyncDisposable {
  master: Master;
  http: HttpServer;
  token: string;
  base: string;
  /** A session of the master, named like a worker's connection. */
  worker: BrokerSession;
}

/** Where a rig's master keeps its items. */
type Store = "memory" | { postgres: string; schema: string };

async function rig(store: Store): Promise<Rig> {
  const master = await serve({
    listen: "127.0.0.1:0",
    authkey: KEY,
    store,
    retry: { maxAttempts: 1, backoffBaseMs: 0 },
  });
  try {
    const http = await serveHttp({ source: master, listen: "127.0.0.1:0", authkey: KEY });
    const worker = await master.broker.open({ name: "worker-1", address: "10.0.0.1:4000" });
    return {
      master,
      http,
      worker,
      token: httpToken(KEY),
      base: http.url.replace(/\/$/, ""),
      async [Symbol.asyncDispose]() {
        await worker.close();
        await http.close();
        await master.close();
      },
    };
  } catch (error) {
    await master.close();
    throw error;
  }
}

interface Reply {
  status: number;
  body: string;
}

async function request(url: string, init: RequestInit = {}): Promise<Reply> {
  const response = await fetch(url, init);
  return { status: response.status, body: await response.text() };
}

function auth(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

function get(r: Rig, path: string): Promise<Reply> {
  return request(`${r.base}${path}`, { headers: auth(r.token) });
}

async function getJson<T>(r: Rig, path: string): Promise<T> {
  const reply = await get(r, path);
  assert.equal(reply.status, 200, `${path}: ${reply.body}`);
  return JSON.parse(reply.body) as T;
}

function post(
  r: Rig,
  path: string,
  body: unknown,
  headers: Record<string, string> = auth(r.token),
): Promise<Reply> {
  return request(`${r.base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

async function postJson(r: Rig, path: string, body: unknown): Promise<Record<string, unknown>> {
  const reply = await post(r, path, body);
  assert.equal(reply.status, 200, `${path} ${JSON.stringify(body)}: ${reply.body}`);
  return JSON.parse(reply.body);
}

function assertError(reply: Reply, status: number, what: string): void {
  assert.equal(reply.status, status, `${what}: ${reply.body}`);
  assert.equal(typeof JSON.parse(reply.body).error, "string", what);
}

/** Makes `count` dead letters of `queue` (each put, taken and failed once: max attempts 1). */
async function makeDead(r: Rig, queue: string, count: number, error = "boom"): Promise<number[]> {
  const ids = await r.worker.put(queue, Array.from({ length: count }, (_, i) => `${queue}-${i}`));
  const taken = await r.worker.get(queue, { max: count, timeoutMs: 0, leaseMs: LEASE_MS });
  assert.equal(taken.length, count);
  assert.deepEqual(await r.worker.fail(taken.map((d) => d.id), error), []);
  return ids;
}

const cases: Array<[string, (r: Rig) => Promise<void>]> = [];

cases.push(["a queue's ready, delayed and leased items, page by page", async (r) => {
  const ready = await r.worker.put("jobs", Array.from({ length: 7 }, (_, i) => ({ n: i })));
  const delayed = await r.worker.put("jobs", ["later-1", "later-2"], { delayMs: DELAY_MS });
  const [urgent] = await r.worker.put("jobs", ["urgent"], { priority: 9 });
  const taken = await r.worker.get("jobs", { max: 2, timeoutMs: 0, leaseMs: LEASE_MS });
  assert.deepEqual(taken.map((d) => d.id), [urgent, ready[0]], "priority first, then FIFO");

  const first = await getJson<ItemsReply>(r, "/api/queues/items?queue=jobs&limit=3");
  assert.equal(first.state, "ready", "ready by default");
  assert.equal(first.total, 6);
  assert.deepEqual(first.items.map((i) => i.id), ready.slice(1, 4), "in serve order");
  assert.equal(first.items[0].value, '{"n":1}');
  assert.equal(first.items[0].state, "ready");
  const second = await getJson<ItemsReply>(
    r,
    "/api/queues/items?queue=jobs&state=ready&offset=3&limit=3",
  );
  assert.deepEqual(second.items.map((i) => i.id), ready.slice(4, 7));
  const past = await getJson<ItemsReply>(r, "/api/queues/items?queue=jobs&offset=50");
  assert.deepEqual([past.items, past.total], [[], 6]);

  const later = await getJson<ItemsReply>(r, "/api/queues/items?queue=jobs&state=delayed");
  assert.equal(later.total, 2);
  assert.deepEqual(later.items.map((i) => i.id).sort((a, b) => a - b), delayed);
  assert.ok(later.items.every((i) => i.state === "delayed" && (i.readyAt ?? 0) > Date.now()));

  const leased = await getJson<ItemsReply>(r, "/api/queues/items?queue=jobs&state=leased");
  assert.equal(leased.total, 2);
  assert.deepEqual(
    leased.items.map((i) => i.id).sort((a, b) => a - b),
    [ready[0], urgent].sort((a, b) => a - b),
  );
  for (const item of leased.items) {
    assert.equal(item.holder?.name, "worker-1");
    assert.equal(item.holder?.address, "10.0.0.1:4000");
    assert.ok((item.leaseExpiresAt ?? 0) > Date.now());
    assert.ok((item.leasedAt ?? 0) <= Date.now());
  }
  const none = await getJson<ItemsReply>(r, "/api/queues/items?queue=never-used");
  assert.deepEqual([none.items, none.total], [[], 0], "an unknown queue is an empty one");

  // Long values are shortened in a listing; the job's own page shows more.
  await r.worker.put("long", ["x".repeat(5_000)]);
  const long = await getJson<ItemsReply>(r, "/api/queues/items?queue=long");
  assert.ok((long.items[0].value ?? "").length <= 200, "a listing shortens values");

  for (
    const [query, what] of [
      ["", "no queue"],
      ["?queue=jobs&state=done", "a state it does not list"],
      ["?queue=jobs&limit=0", "limit 0"],
      ["?queue=jobs&limit=501", "limit above the most"],
      ["?queue=jobs&offset=-1", "a negative offset"],
      ["?queue=jobs&offset=1e3", "an offset not in digits"],
      ["?queue=jobs&queue=other", "two queues"],
      ["?queue=jobs&color=red", "an unknown parameter"],
      ["?queue=", "an empty name"],
    ]
  ) {
    assertError(await get(r, `/api/queues/items${query}`), 400, what);
  }
}]);

cases.push([
  "dead letters list with paging and a filter, and the listed id is the one to post",
  async (r) => {
    const failedInA = await makeDead(r, "a", 3, "a failed");
    await makeDead(r, "b", 2, "b failed");
    const all = await getJson<DeadReply>(r, "/api/dead?limit=2");
    assert.equal(all.total, 5);
    assert.equal(all.queue, null);
    assert.deepEqual(all.queues.map((q) => [q.queue, q.failedIn, q.count]), [
      ["a.dead", "a", 3],
      ["b.dead", "b", 2],
    ]);
    assert.equal(all.items.length, 2);
    const rest = await getJson<DeadReply>(r, "/api/dead?offset=2&limit=10");
    assert.equal(rest.items.length, 3, "the page goes on across queues");
    const listed = [...all.items, ...rest.items];
    assert.deepEqual(listed.map((d) => d.queue), [
      "a.dead",
      "a.dead",
      "a.dead",
      "b.dead",
      "b.dead",
    ]);
    assert.equal(new Set(listed.map((d) => d.id)).size, 5);
    const first = listed[0];
    assert.equal(first.letter, true);
    assert.equal(first.failedIn, "a");
    assert.ok(failedInA.includes(first.failedId), "failedId is its id in the queue it failed in");
    assert.notEqual(first.id, first.failedId, "the letter is an item of its own in a.dead");
    assert.equal(first.error, "a failed");
    assert.equal(first.attempts, 1);

    // The filter: by the queue's name or by its dead-letter queue's.
    for (const name of ["b", "b.dead"]) {
      const only = await getJson<DeadReply>(r, `/api/dead?queue=${name}`);
      assert.equal(only.queue, "b.dead");
      assert.equal(only.total, 2);
      assert.ok(only.items.every((d) => d.failedIn === "b"));
    }
    // The state's dead letters carry the same ids.
    const state = await getJson<DashboardState>(r, "/api/state");
    assert.deepEqual(
      state.dead.items.map((d) => d.id).sort((x, y) => x - y),
      listed.map((d) => d.id).sort((x, y) => x - y),
    );

    // The listed id is what requeue takes (it answered "no such dead letter" for failedId).
    const requeued = await postJson(r, "/api/dead/requeue", { queue: "a.dead", ids: [first.id] });
    assert.equal(requeued.requeued, 1);
    assert.equal((await r.master.broker.stats("a")).queues[0].ready, 1, "back in a");
    // And by the queue's own name.
    const second = listed[1];
    const dropped = await postJson(r, "/api/dead/drop", { queue: "a", ids: [second.id] });
    assert.deepEqual([dropped.queue, dropped.dropped], ["a.dead", 1]);
    assertError(
      await post(r, "/api/dead/requeue", { queue: "a.dead", ids: [first.id] }),
      404,
      "a letter re-queued already",
    );

    // All at once.
    const allBack = await postJson(r, "/api/dead/requeue", { queue: "b", all: true });
    assert.equal(allBack.requeued, 2);
    assert.equal((allBack.ids as number[]).length, 2);
    assert.equal((await r.master.broker.stats("b")).queues[0].ready, 2);
    const allGone = await postJson(r, "/api/dead/drop", { queue: "a.dead", all: true });
    assert.equal(allGone.dropped, 1);
    const empty = await getJson<DeadReply>(r, "/api/dead");
    assert.deepEqual([empty.total, empty.items, empty.queues], [0, [], []]);
    const nothing = await postJson(r, "/api/dead/requeue", { queue: "a", all: true });
    assert.equal(nothing.requeued, 0, "all of none is nothing to do, not an error");

    for (
      const [body, what] of [
        [{ queue: "a.dead" }, "neither ids nor all"],
        [{ queue: "a.dead", ids: [1], all: true }, "both ids and all"],
        [{ queue: "a.dead", all: 1 }, "all not true"],
        [{ queue: "a.dead", ids: [0] }, "a zero id"],
        [{ queue: "a.dead", ids: [], extra: 1 }, "an unknown field"],
      ] as const
    ) {
      assertError(await post(r, "/api/dead/requeue", body), 400, what);
    }
    assertError(await get(r, "/api/dead?limit=1000"), 400, "limit above the most");
    assertError(await get(r, "/api/dead?state=ready"), 400, "an unknown parameter");
  },
]);

cases.push(["sessions list what they hold; quiet and stop reach the session", async (r) => {
  const ids = await r.worker.put("work", ["one", "two", "three"]);
  const before = Date.now();
  await r.worker.get("work", { max: 2, timeoutMs: 0, leaseMs: LEASE_MS });
  const actions: ControlAction[] = [];
  r.worker.onControl((action) => actions.push(action));
  const { sessions } = await getJson<{ sessions: ClientRow[] }>(r, "/api/sessions");
  const mine = sessions.find((s) => s.id === r.worker.id);
  assert.ok(mine, JSON.stringify(sessions));
  assert.equal(mine.name, "worker-1");
  assert.equal(mine.held, 2);
  assert.deepEqual(mine.holding?.map((h) => h.id), ids.slice(0, 2), "oldest lease first");
  for (const held of mine.holding ?? []) {
    assert.equal(held.queue, "work");
    assert.ok(held.leasedAt >= before - 1_000 && held.leasedAt <= Date.now());
    assert.ok(held.leaseExpiresAt > Date.now());
  }
  const state = await getJson<DashboardState>(r, "/api/state");
  assert.deepEqual(
    state.workers.find((w) => w.id === r.worker.id)?.holding?.map((h) => h.id),
    ids.slice(0, 2),
    "the state's client rows hold the same",
  );

  const quiet = await postJson(r, "/api/sessions/control", {
    session: r.worker.id,
    action: "quiet",
  });
  assert.deepEqual(quiet, { ok: true, session: r.worker.id, action: "quiet", found: true });
  await postJson(r, "/api/sessions/control", { session: r.worker.id, action: "stop" });
  await waitFor("both actions to reach the session", () => actions.length === 2);
  assert.deepEqual(actions, ["quiet", "stop"]);
  const after = await getJson<{ sessions: ClientRow[] }>(r, "/api/sessions");
  assert.equal(after.sessions.find((s) => s.id === r.worker.id)?.controlled, "stop");

  assertError(
    await post(r, "/api/sessions/control", { session: "no-such-session", action: "quiet" }),
    404,
    "an unknown session",
  );
  for (
    const [body, what] of [
      [{ session: r.worker.id, action: "pause" }, "an unknown action"],
      [{ session: r.worker.id }, "no action"],
      [{ session: 7, action: "quiet" }, "a session that is not text"],
      [{ session: "x".repeat(201), action: "quiet" }, "a session id too long"],
      [{ session: r.worker.id, action: "quiet", now: true }, "an unknown field"],
    ] as const
  ) {
    assertError(await post(r, "/api/sessions/control", body), 400, what);
  }
}]);

cases.push(["purge takes a queue's ready and delayed items, and leaves the leased", async (r) => {
  await r.worker.put("bulk", ["a", "b", "c", "d"]);
  await r.worker.put("bulk", ["e"], { delayMs: DELAY_MS });
  const [held] = await r.worker.get("bulk", { max: 1, timeoutMs: 0, leaseMs: LEASE_MS });
  const reply = await postJson(r, "/api/queues/purge", { queue: "bulk" });
  assert.deepEqual(reply, { ok: true, queue: "bulk", purged: 4 });
  const [stats] = (await r.master.broker.stats("bulk")).queues;
  assert.deepEqual([stats.ready, stats.delayed, stats.leased], [0, 0, 1]);
  assert.deepEqual(await r.worker.ack([held.id]), [], "the leased one finishes as usual");
  assert.equal((await postJson(r, "/api/queues/purge", { queue: "bulk" })).purged, 0);
  assertError(await post(r, "/api/queues/purge", { queue: "" }), 400, "an empty name");
  assertError(await post(r, "/api/queues/purge", { queue: "bulk", all: true }), 400, "extra field");
}]);

cases.push(["the state lists one page of rows and adds up all of them", async (r) => {
  for (let i = 0; i < 12; i++) {
    await r.worker.put(`q-${String(i).padStart(2, "0")}`, Array.from({ length: i + 1 }, () => i));
  }
  await r.worker.put("other", ["x"]);
  await makeDead(r, "q-03", 1);
  const first = await getJson<DashboardState>(r, "/api/state?limit=5");
  assert.equal(first.queues.length, 5);
  assert.deepEqual(first.page, { offset: 0, limit: 5, total: 13, filter: "" });
  assert.equal(first.totals.rows, 13, "q-03.dead folds into q-03's row");
  // 1 + 2 + ... + 12 items, one more in "other"; q-03's dead letter is no longer ready.
  assert.equal(first.totals.ready, 78 + 1, "every row's ready items, paged or not");
  assert.equal(first.totals.deadLetters, 1);
  const middle = await getJson<DashboardState>(r, "/api/state?limit=5&offset=5");
  const later = await getJson<DashboardState>(r, "/api/state?limit=5&offset=10");
  assert.equal(later.queues.length, 3);
  const names = [...first.queues, ...middle.queues, ...later.queues].map((q) => q.name);
  assert.equal(new Set(names).size, 13, `the pages cover every row once: ${names}`);
  const filtered = await getJson<DashboardState>(r, "/api/state?filter=Q-0&limit=100");
  assert.equal(filtered.page.total, 10, "case-insensitive, names holding the text");
  assert.ok(filtered.queues.every((q) => q.name.startsWith("q-0")));
  const noDead = await getJson<DashboardState>(r, "/api/state?dead=0");
  assert.deepEqual([noDead.dead.total, noDead.dead.items], [1, []], "counted, not listed");
  assert.ok(Array.isArray(first.history.long.put), "the coarse history is there");
  for (
    const query of [
      "limit=0",
      "limit=1001",
      "offset=x",
      "dead=101",
      "filter=" + "x".repeat(201),
      "page=2",
    ]
  ) {
    assertError(await get(r, `/api/state?${query}`), 400, query);
  }
}]);

cases.push(["metrics: oldest ready age, run times, build, process and start time", async (r) => {
  await r.worker.put("old", ["first"]);
  const putAt = Date.now();
  await r.worker.put("old", ["second"]);
  await r.worker.put("empty", ["gone"]);
  const [gone] = await r.worker.get("empty", { max: 1, timeoutMs: 0, leaseMs: LEASE_MS });
  await new Promise((resolve) => setTimeout(resolve, 50)); // a run time measurably above 0
  assert.deepEqual(await r.worker.ack([gone.id]), []);
  const text = (await get(r, "/metrics")).body;
  const age = Number(
    /^taskq_queue_oldest_ready_age_seconds\{queue="old"\} (\S+)$/m.exec(text)?.[1],
  );
  assert.ok(age >= 0 && age <= (Date.now() - putAt) / 1000 + 5, `the age of the first: ${age}`);
  assert.match(text, /^taskq_queue_oldest_ready_age_seconds\{queue="empty"\} 0$/m);
  assert.match(text, /^# TYPE taskq_job_duration_seconds histogram$/m);
  const count = Number(/^taskq_job_duration_seconds_count (\S+)$/m.exec(text)?.[1]);
  const sum = Number(/^taskq_job_duration_seconds_sum (\S+)$/m.exec(text)?.[1]);
  if (r.master.broker.constructor.name === "LocalBroker") {
    assert.equal(count, 1, "the acked job's run time");
    assert.ok(sum >= 0.04 && sum < 30, `its run time: ${sum}`);
  }
  assert.equal(TASKQ_VERSION, denoJson.version, "version.ts says what deno.json says");
  assert.match(
    text,
    new RegExp(
      `^taskq_build_info\\{version="${TASKQ_VERSION}",deno="${Deno.version.deno}"\\} 1$`,
      "m",
    ),
  );
  const start = Number(/^taskq_start_time_seconds (\S+)$/m.exec(text)?.[1]);
  assert.ok(start > Date.now() / 1000 - 600 && start <= Date.now() / 1000 + 1, `start: ${start}`);
  assert.ok(Number(/^process_resident_memory_bytes (\S+)$/m.exec(text)?.[1]) > 1_000_000);
  assert.ok(Number(/^process_cpu_seconds_total (\S+)$/m.exec(text)?.[1]) > 0);
  assert.ok(Number(/^process_start_time_seconds (\S+)$/m.exec(text)?.[1]) <= Date.now() / 1000);
  assert.match(text, /^# HELP taskq_items_put_total .*since this master started/m);
  assert.match(text, /^# HELP taskq_items_acked_total .*since this master started/m);
}]);

cases.push([
  "the new routes need the token, and their actions refuse forms and other origins",
  async (r) => {
    for (const path of ["/api/queues/items?queue=q", "/api/dead", "/api/sessions"]) {
      assertError(await request(`${r.base}${path}`), 401, `${path} without a token`);
    }
    const actions: Array<[string, unknown]> = [
      ["/api/queues/purge", { queue: "q" }],
      ["/api/dead/requeue", { queue: "q", all: true }],
      ["/api/dead/drop", { queue: "q", all: true }],
      ["/api/sessions/control", { session: r.worker.id, action: "stop" }],
    ];
    const told: ControlAction[] = [];
    r.worker.onControl((action) => told.push(action));
    await r.worker.put("q", ["keep me"]);
    for (const [path, body] of actions) {
      assertError(await post(r, path, body, {}), 401, `${path} without a token`);
      const form = await request(`${r.base}${path}`, {
        method: "POST",
        headers: { ...auth(r.token), "content-type": "application/x-www-form-urlencoded" },
        body: "queue=q",
      });
      assertError(form, 415, `${path} as a form`);
      const foreign = await post(r, path, body, {
        ...auth(r.token),
        origin: "http://evil.example",
      });
      assertError(foreign, 403, `${path} from another origin`);
      assertError(
        await request(`${r.base}${path}`, { headers: auth(r.token) }),
        405,
        `${path} as a GET`,
      );
    }
    assert.equal((await r.master.broker.stats("q")).queues[0].ready, 1, "nothing was purged");
    assert.deepEqual(told, [], "no control reached the session");
  },
]);

for (const [name, fn] of cases) {
  Deno.test(`${name} (memory)`, async () => {
    await using r = await rig("memory");
    await fn(r);
  });
}

const pgAvailable = postgresAvailable();
if (!pgAvailable) console.log(`SKIPPED PostgreSQL console tests: ${POSTGRES_MISSING}`);

Deno.test({
  name: "the console's API on the PostgreSQL broker",
  ignore: !pgAvailable,
  fn: async (t) => {
    const cluster = await startPostgres();
    try {
      for (const [name, fn] of cases) {
        await t.step(name, () =>
          withSchema(cluster, "http_console", async (schema) => {
            await using r = await rig({ postgres: cluster.url, schema });
            await fn(r);
          }));
      }
    } finally {
      await cluster.destroy();
    }
  },
});
