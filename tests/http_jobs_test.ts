/**
 * Tests of the HTTP side's jobs and limits (lib/http/server.ts, jobs.ts,
 * metrics.ts, state.ts), in this process over real loopback sockets: a
 * master from `serve()` with `serveHttp()` beside it on ephemeral ports, as
 * `taskq master --http` runs them. Items are put, taken, progressed, acked,
 * failed and cancelled through broker sessions of that master, each named
 * like a connection, so a lookup has a holder to show. Every case runs on
 * the local broker (in memory) and, when PostgreSQL's binaries are here, on
 * the PostgreSQL broker (a throwaway cluster, a fresh schema per case), where
 * one more case cancels through one master's HTTP side a job that a session
 * of another master holds.
 *
 * Job lookup (`GET /api/jobs/ID`): every state (ready, delayed, leased with
 * holder, lease times and progress, done with its result, dead with its
 * error, cancelled), values as shortened JSON text, 404 for an unknown id and
 * 400 for a malformed one. Cancellation (`POST /api/jobs/cancel`): ready,
 * delayed and leased items go (the holder is told, its lease revoked),
 * finished and unknown ids are missing. Limits (`GET /api/limits`,
 * `?queue=NAME`, `POST /api/limits`): set at start and at run time, in force
 * at once, lifted with zeros, shown in `/api/state` and `/metrics`. Every
 * read and write needs the token; writes refuse forms and other origins.
 * Malformed requests of every kind are answered 400 (or 404, 405, 413)
 * with a JSON reason, never 500.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Master, serve } from "../lib/mod.ts";
import { type HttpServer, MAX_ACTION_IDS, serveHttp } from "../lib/http/server.ts";
import { httpToken } from "../lib/http/token.ts";
import { JOB_VALUE_CHARS, type JobView, type LimitsView } from "../lib/http/jobs.ts";
import type { DashboardState } from "../lib/http/state.ts";
import type { BrokerSession } from "../lib/broker/broker.ts";
import { MAX_CONCURRENCY } from "../lib/model/jobs.ts";
import { TEST_KEY, waitFor } from "./_helpers.ts";
import { POSTGRES_MISSING, postgresAvailable, startPostgres, withSchema } from "./_postgres.ts";

const KEY = new TextEncoder().encode(TEST_KEY);

/** Lease of the items the tests take, in ms: long enough never to run out during a test. */
const LEASE_MS = 60_000;

/** Delay of the delayed items, in ms: they stay delayed for the whole test. */
const DELAY_MS = 600_000;

/** Slack allowed between this process's clock readings and the master's (same process), in ms. */
const CLOCK_SLACK_MS = 5_000;

interface Rig extends AsyncDisposable {
  master: Master;
  http: HttpServer;
  token: string;
  base: string;
  /** A session of the master, named like a worker's connection. */
  worker: BrokerSession;
}

/** Where a rig's master keeps its items: in memory, or a schema of a PostgreSQL cluster. */
type Store = "memory" | { postgres: string; schema: string };

/** Starts a master on `store` with the HTTP side beside it. */
async function rig(store: Store): Promise<Rig> {
  const master = await serve({
    listen: "127.0.0.1:0",
    authkey: KEY,
    store,
    retry: { maxAttempts: 1, backoffBaseMs: 0 },
    // Finished jobs are kept (PostgreSQL keeps none unless told, as with --keep-jobs).
    jobs: { historyCount: 1_000, limits: { mail: { rateCount: 50, ratePeriodMs: 1_000 } } },
  });
  try {
    const http = await serveHttp({ source: master, listen: "127.0.0.1:0", authkey: KEY });
    const worker = await master.broker.open({ name: "worker-9", address: "10.1.2.3:4567" });
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
  headers: Headers;
  body: string;
}

async function request(url: string, init: RequestInit = {}): Promise<Reply> {
  const response = await fetch(url, init);
  return { status: response.status, headers: response.headers, body: await response.text() };
}

function auth(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${token}`, ...extra };
}

function get(r: Rig, path: string): Promise<Reply> {
  return request(`${r.base}${path}`, { headers: auth(r.token) });
}

function post(r: Rig, path: string, body: unknown, headers = auth(r.token)): Promise<Reply> {
  return request(`${r.base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** The cases every broker runs, by name. */
const cases: Array<[string, (r: Rig) => Promise<void>]> = [];

/** `GET /api/jobs/ID`, which must answer 200. */
async function job(r: Rig, id: number): Promise<JobView> {
  const reply = await get(r, `/api/jobs/${id}`);
  assert.equal(reply.status, 200, reply.body);
  assert.match(reply.headers.get("content-type") ?? "", /^application\/json/);
  return JSON.parse(reply.body);
}

/** Asserts that a reply is an error of `status` with a JSON reason. */
function assertError(reply: Reply, status: number, what: string): string {
  assert.equal(reply.status, status, `${what}: ${reply.body}`);
  const body = JSON.parse(reply.body);
  assert.equal(typeof body.error, "string", what);
  assert.ok(body.error.length > 0, what);
  return body.error;
}

/** Puts one item and returns its id. */
async function putOne(
  session: BrokerSession,
  queue: string,
  value: unknown,
  options: Parameters<BrokerSession["put"]>[2] = {},
): Promise<number> {
  const [id] = await session.put(queue, [value], options);
  return id;
}

/** Takes the one ready item of `queue`, which must be `id`. */
async function take(session: BrokerSession, queue: string, id: number): Promise<void> {
  const [delivery] = await session.get(queue, { max: 1, timeoutMs: 0, leaseMs: LEASE_MS });
  assert.equal(delivery?.id, id, `the item of ${queue} is taken`);
}

cases.push([
  "a job is looked up in each state, with its holder, progress, error and result",
  async (r) => {
    const before = Date.now();
    const ready = await putOne(r.worker, "jobs", { n: 1 }, {
      priority: 5,
      group: "acme",
      keys: ["invoice-1"],
    });
    const readyView = await job(r, ready);
    assert.equal(readyView.id, ready);
    assert.equal(readyView.queue, "jobs");
    assert.equal(readyView.state, "ready");
    assert.equal(readyView.attempts, 0);
    assert.equal(readyView.priority, 5);
    assert.equal(readyView.group, "acme");
    assert.equal(readyView.key, "invoice-1");
    assert.equal(readyView.value, '{"n":1}', "the value as JSON text, as the API shows items");
    assert.equal(readyView.error, null);
    assert.equal(readyView.result, null);
    assert.ok(readyView.createdAt >= before - CLOCK_SLACK_MS && readyView.createdAt <= Date.now());
    for (const absent of ["holder", "leasedAt", "leaseExpiresAt", "finishedAt", "progress"]) {
      assert.equal(absent in readyView, false, `a ready job has no ${absent}`);
    }

    const delayed = await putOne(r.worker, "later", "wait", { delayMs: DELAY_MS });
    const delayedView = await job(r, delayed);
    assert.equal(delayedView.state, "delayed");
    assert.equal(delayedView.priority, 0, "the default priority");
    assert.equal("group" in delayedView || "key" in delayedView, false);
    assert.ok(
      delayedView.readyAt !== undefined &&
        Math.abs(delayedView.readyAt - (delayedView.createdAt + DELAY_MS)) < CLOCK_SLACK_MS,
      JSON.stringify(delayedView),
    );

    // Leased, then progressing.
    await take(r.worker, "jobs", ready);
    const leased = await job(r, ready);
    assert.equal(leased.state, "leased");
    assert.equal(leased.attempts, 1);
    assert.deepEqual(leased.holder, {
      session: r.worker.id,
      name: "worker-9",
      address: "10.1.2.3:4567",
    });
    assert.ok(leased.leasedAt !== undefined && leased.leaseExpiresAt !== undefined);
    assert.ok(Math.abs(leased.leaseExpiresAt - leased.leasedAt - LEASE_MS) < CLOCK_SLACK_MS);
    assert.equal(
      await r.worker.progress(ready, { percent: 42.5, message: "halfway" }, LEASE_MS),
      true,
    );
    const progressed = await job(r, ready);
    assert.equal(progressed.progress?.percent, 42.5);
    assert.equal(progressed.progress?.message, "halfway");
    assert.ok(progressed.progress!.at >= leased.leasedAt);
    assert.ok(progressed.leaseExpiresAt! >= leased.leaseExpiresAt, "progress renews the lease");

    // Done, with the result its ack carried.
    assert.deepEqual(
      await r.worker.ack([ready], { queue: "jobs.results", values: [{ total: 3 }] }),
      [],
    );
    const done = await job(r, ready);
    assert.equal(done.state, "done");
    assert.equal(done.result, '{"total":3}');
    assert.equal(done.error, null);
    assert.equal(done.value, '{"n":1}');
    assert.ok(done.finishedAt !== undefined && done.finishedAt >= done.createdAt);
    assert.equal("holder" in done, false, "a finished job has no holder");

    // Dead, with its error (max attempts 1).
    const failing = await putOne(r.worker, "jobs", "poison");
    await take(r.worker, "jobs", failing);
    await r.worker.fail([failing], "boom:\nstack trace");
    const dead = await job(r, failing);
    assert.equal(dead.state, "dead");
    assert.equal(dead.error, "boom:\nstack trace");
    assert.equal(dead.result, null);
    assert.ok(dead.finishedAt !== undefined);

    // Binary values show as their size; long ones are shortened.
    const binary = await putOne(r.worker, "odd", new Uint8Array(10));
    assert.equal((await job(r, binary)).value, '"<10 bytes>"');
    const long = await putOne(r.worker, "odd", "x".repeat(JOB_VALUE_CHARS * 2));
    const longView = await job(r, long);
    assert.equal(longView.value?.length, JOB_VALUE_CHARS);
    assert.ok(longView.value?.endsWith("…"));

    // HEAD answers without a body.
    const head = await fetch(`${r.base}/api/jobs/${ready}`, {
      method: "HEAD",
      headers: auth(r.token),
    });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");
  },
]);

cases.push([
  "an unknown job is a 404 and a malformed id a 400, both with a JSON reason",
  async (r) => {
    const id = await putOne(r.worker, "jobs", 1);
    assertError(await get(r, `/api/jobs/${id + 1000}`), 404, "an unknown id");
    assert.match(
      assertError(await get(r, `/api/jobs/${id + 1}`), 404, "the next id"),
      /no job \d+/,
    );
    for (const bad of ["abc", "0", "-1", "1.5", "1e3", "0x10", "%31", "99999999999999999999", ""]) {
      assertError(await get(r, `/api/jobs/${bad}`), 400, `id "${bad}"`);
    }
    assertError(await get(r, `/api/jobs/${id}/more`), 404, "a deeper path");
    assertError(
      await request(`${r.base}/api/jobs/${id}`, { method: "POST", headers: auth(r.token) }),
      405,
      "a job is read, not posted",
    );
  },
]);

cases.push([
  "cancel removes ready and delayed jobs, revokes a leased one, and names the missing",
  async (r) => {
    const told: number[] = [];
    r.worker.onCancel = (ids) => told.push(...ids);
    const leased = await putOne(r.worker, "jobs", "b");
    await take(r.worker, "jobs", leased);
    const ready = await putOne(r.worker, "jobs", "a");
    const delayed = await putOne(r.worker, "jobs", "c", { delayMs: DELAY_MS });
    const finished = await putOne(r.worker, "other", "d");
    await take(r.worker, "other", finished);
    await r.worker.ack([finished]);
    assert.equal((await job(r, leased)).state, "leased");
    assert.equal((await job(r, ready)).state, "ready");

    const unknown = delayed + 1000;
    const reply = await post(r, "/api/jobs/cancel", {
      ids: [ready, leased, delayed, finished, unknown],
    });
    assert.equal(reply.status, 200, reply.body);
    const outcome = JSON.parse(reply.body);
    assert.equal(outcome.ok, true);
    assert.deepEqual([...outcome.cancelled].sort(), [ready, leased, delayed].sort());
    assert.deepEqual([...outcome.missing].sort(), [finished, unknown].sort());
    for (const id of [ready, leased, delayed]) {
      const view = await job(r, id);
      assert.equal(view.state, "cancelled", `item ${id}`);
      assert.ok(view.finishedAt !== undefined);
      assert.equal("holder" in view, false);
    }
    assert.equal((await job(r, finished)).state, "done");
    await waitFor("the holder to be told", () => told.includes(leased));
    assert.deepEqual(await r.worker.ack([leased]), [leased], "the lease is revoked");
    const stats = (await r.master.broker.stats("jobs")).queues[0];
    assert.equal(stats.ready + stats.leased + stats.delayed, 0, "nothing is left in the queue");
    assert.equal((await r.master.broker.stats("jobs.dead")).queues[0]?.ready ?? 0, 0);

    // A second cancel finds nothing.
    const again = await post(r, "/api/jobs/cancel", { ids: [ready] });
    assert.equal(again.status, 200, again.body);
    assert.deepEqual(JSON.parse(again.body), { ok: true, cancelled: [], missing: [ready] });
  },
]);

cases.push([
  "limits are read, set, lifted, in force at once, and shown in the state and metrics",
  async (r) => {
    // Set at start (`--queue-rate mail=50/s`).
    const all = await get(r, "/api/limits");
    assert.equal(all.status, 200, all.body);
    assert.deepEqual(JSON.parse(all.body), {
      limits: [{
        queue: "mail",
        rateCount: 50,
        ratePeriodMs: 1_000,
        concurrency: 0,
        groupConcurrency: 0,
        rate: "50/s",
      }],
    });
    const none = await get(r, `/api/limits?queue=${encodeURIComponent("tasks/a b")}`);
    assert.equal(none.status, 200, none.body);
    assert.deepEqual(JSON.parse(none.body), {
      queue: "tasks/a b",
      rateCount: 0,
      ratePeriodMs: 1_000,
      concurrency: 0,
      groupConcurrency: 0,
      rate: "none",
    });

    // Set at run time: the rate as the CLI writes it, and a concurrency.
    for (let i = 0; i < 3; i++) await putOne(r.worker, "tasks", i);
    const set = await post(r, "/api/limits", { queue: "tasks", rate: "10/5s", concurrency: 1 });
    assert.equal(set.status, 200, set.body);
    const expected: LimitsView = {
      queue: "tasks",
      rateCount: 10,
      ratePeriodMs: 5_000,
      concurrency: 1,
      groupConcurrency: 0,
      rate: "10/5s",
    };
    assert.deepEqual(JSON.parse(set.body), { ok: true, ...expected });
    const { rate: _rate, ...numbers } = expected;
    assert.deepEqual(await r.master.broker.limits("tasks"), [numbers]);
    const one = await get(r, "/api/limits?queue=tasks");
    assert.deepEqual(JSON.parse(one.body), expected);
    // In force at once: one item leased at most.
    const taken = await r.worker.get("tasks", { max: 3, timeoutMs: 0, leaseMs: LEASE_MS });
    assert.equal(taken.length, 1, "a concurrency of 1 leases one item");

    // Fields left out stay; the numeric form works too.
    const more = await post(r, "/api/limits", {
      queue: "tasks",
      rateCount: 120,
      ratePeriodMs: 60_000,
      groupConcurrency: 2,
    });
    assert.equal(more.status, 200, more.body);
    assert.deepEqual(JSON.parse(more.body), {
      ok: true,
      ...expected,
      rateCount: 120,
      ratePeriodMs: 60_000,
      groupConcurrency: 2,
      rate: "120/min",
    });

    // The state shows limits on the rows of queues that have them.
    const state: DashboardState = JSON.parse((await get(r, "/api/state")).body);
    const row = state.queues.find((q) => q.name === "tasks")!;
    assert.equal(row.limits?.rate, "120/min");
    assert.equal(row.limits?.concurrency, 1);
    assert.equal(row.limits?.groupConcurrency, 2);
    await putOne(r.worker, "plain", 1);
    const plain = JSON.parse((await get(r, "/api/state")).body) as DashboardState;
    assert.equal("limits" in plain.queues.find((q) => q.name === "plain")!, false);

    // And /metrics has a gauge per limit, for the queues that have it only.
    const metrics = (await get(r, "/metrics")).body;
    assert.match(metrics, /^# TYPE taskq_queue_rate_limit gauge$/m);
    assert.match(metrics, /^taskq_queue_rate_limit\{queue="tasks"\} 2$/m, "120/min is 2/s");
    assert.match(metrics, /^taskq_queue_rate_limit\{queue="mail"\} 50$/m);
    assert.match(metrics, /^taskq_queue_concurrency_limit\{queue="tasks"\} 1$/m);
    assert.match(metrics, /^taskq_queue_group_concurrency_limit\{queue="tasks"\} 2$/m);
    assert.doesNotMatch(metrics, /^taskq_queue_concurrency_limit\{queue="mail"\}/m);
    assert.doesNotMatch(metrics, /^taskq_queue_\w+_limit\{queue="plain"\}/m);

    // Zeros lift them: the waiting items are served and the queue leaves the list.
    const lifted = await post(r, "/api/limits", {
      queue: "tasks",
      rate: "0",
      concurrency: 0,
      groupConcurrency: 0,
    });
    assert.equal(lifted.status, 200, lifted.body);
    assert.equal(JSON.parse(lifted.body).rate, "none");
    const rest = await r.worker.get("tasks", { max: 3, timeoutMs: 0, leaseMs: LEASE_MS });
    assert.equal(rest.length, 2, "no limit: the rest are leased");
    assert.deepEqual(
      JSON.parse((await get(r, "/api/limits")).body).limits.map((l: LimitsView) => l.queue),
      ["mail"],
    );
    assert.doesNotMatch(
      (await get(r, "/metrics")).body,
      /^taskq_queue_\w+_limit\{queue="tasks"\}/m,
    );
    const after = JSON.parse((await get(r, "/api/state")).body) as DashboardState;
    assert.equal("limits" in after.queues.find((q) => q.name === "tasks")!, false);
  },
]);

cases.push([
  "reads and writes of jobs and limits need the token; writes refuse forms and other origins",
  async (r) => {
    const id = await putOne(r.worker, "jobs", "secret-value");
    const reads = [`/api/jobs/${id}`, "/api/limits", "/api/limits?queue=mail"];
    for (const path of reads) {
      const none = await request(`${r.base}${path}`);
      assertError(none, 401, `${path} without a token`);
      assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
      assert.doesNotMatch(none.body, /secret-value|mail/);
      assertError(await request(`${r.base}${path}`, { headers: auth("0".repeat(64)) }), 401, path);
    }
    const writes: Array<[string, unknown]> = [
      ["/api/jobs/cancel", { ids: [id] }],
      ["/api/limits", { queue: "jobs", concurrency: 1 }],
    ];
    for (const [path, body] of writes) {
      assertError(await post(r, path, body, {}), 401, `${path} without a token`);
      assertError(await post(r, path, body, auth("f".repeat(64))), 401, `${path}, wrong token`);
      assertError(await post(r, path, body, auth(TEST_KEY)), 401, `${path}, the raw key`);
      const form = await request(`${r.base}${path}`, {
        method: "POST",
        headers: auth(r.token, { "content-type": "application/x-www-form-urlencoded" }),
        body: "ids=1&queue=jobs",
      });
      assertError(form, 415, `${path} as a form`);
      const crossOrigin = await post(r, path, body, {
        ...auth(r.token),
        origin: "http://evil.example",
      });
      assertError(crossOrigin, 403, `${path} from another origin`);
      const crossSite = await post(r, path, body, {
        ...auth(r.token),
        "sec-fetch-site": "cross-site",
      });
      assertError(crossSite, 403, `${path} from another site`);
    }
    assert.equal((await job(r, id)).state, "ready", "nothing was cancelled");
    assert.deepEqual((await r.master.broker.limits("jobs"))[0].concurrency, 0, "nor limited");
    assert.equal(r.http.refused.get("token"), reads.length * 2 + writes.length * 3);
  },
]);

cases.push([
  "malformed requests are answered 400 (or 404, 405, 413) with a reason, never 500",
  async (r) => {
    const id = await putOne(r.worker, "jobs", 1);
    const cases: Array<[string, unknown, number]> = [
      // Cancel.
      ["/api/jobs/cancel", "{", 400],
      ["/api/jobs/cancel", "", 400],
      ["/api/jobs/cancel", "null", 400],
      ["/api/jobs/cancel", [id], 400],
      ["/api/jobs/cancel", {}, 400],
      ["/api/jobs/cancel", { ids: id }, 400],
      ["/api/jobs/cancel", { ids: String(id) }, 400],
      ["/api/jobs/cancel", { ids: [] }, 400],
      ["/api/jobs/cancel", { ids: [0] }, 400],
      ["/api/jobs/cancel", { ids: [-1] }, 400],
      ["/api/jobs/cancel", { ids: [1.5] }, 400],
      ["/api/jobs/cancel", { ids: [String(id)] }, 400],
      ["/api/jobs/cancel", { ids: [null] }, 400],
      ["/api/jobs/cancel", { ids: [2 ** 60] }, 400],
      ["/api/jobs/cancel", { ids: Array(MAX_ACTION_IDS + 1).fill(id) }, 400],
      ["/api/jobs/cancel", { ids: [id], queue: "jobs" }, 400],
      // Limits.
      ["/api/limits", "{", 400],
      ["/api/limits", ["jobs"], 400],
      ["/api/limits", {}, 400],
      ["/api/limits", { queue: "jobs" }, 400],
      ["/api/limits", { queue: "", concurrency: 1 }, 400],
      ["/api/limits", { queue: 5, concurrency: 1 }, 400],
      ["/api/limits", { queue: "x".repeat(10_000), concurrency: 1 }, 400],
      ["/api/limits", { queue: "bad\u0000name", concurrency: 1 }, 400],
      ["/api/limits", { queue: "jobs", rate: 50 }, 400],
      ["/api/limits", { queue: "jobs", rate: "fast" }, 400],
      ["/api/limits", { queue: "jobs", rate: "50/fortnight" }, 400],
      ["/api/limits", { queue: "jobs", rate: "-5/s" }, 400],
      ["/api/limits", { queue: "jobs", rate: "99999999/s" }, 400],
      ["/api/limits", { queue: "jobs", rate: "/s" }, 400],
      ["/api/limits", { queue: "jobs", rate: null }, 400],
      ["/api/limits", { queue: "jobs", rate: "50/s", rateCount: 5 }, 400],
      ["/api/limits", { queue: "jobs", rate: "50/s", ratePeriodMs: 5 }, 400],
      ["/api/limits", { queue: "jobs", concurrency: -1 }, 400],
      ["/api/limits", { queue: "jobs", concurrency: 1.5 }, 400],
      ["/api/limits", { queue: "jobs", concurrency: "3" }, 400],
      ["/api/limits", { queue: "jobs", concurrency: null }, 400],
      ["/api/limits", { queue: "jobs", concurrency: true }, 400],
      ["/api/limits", { queue: "jobs", concurrency: [1] }, 400],
      ["/api/limits", { queue: "jobs", concurrency: MAX_CONCURRENCY + 1 }, 400],
      ["/api/limits", { queue: "jobs", groupConcurrency: -2 }, 400],
      ["/api/limits", { queue: "jobs", rateCount: 1e300 }, 400],
      ["/api/limits", { queue: "jobs", ratePeriodMs: 0 }, 400],
      ["/api/limits", { queue: "jobs", ratePeriodMs: 2 ** 40 }, 400],
      ["/api/limits", { queue: "jobs", concurrency: 1, extra: true }, 400],
      ["/api/limits", '{"queue":"jobs","__proto__":{"concurrency":1}}', 400],
      ["/api/limits", '{"queue":"jobs","concurrency":1,"concurrency":-1}', 400],
    ];
    for (const [path, body, status] of cases) {
      assertError(await post(r, path, body), status, `${path} ${JSON.stringify(body)}`);
    }
    assert.deepEqual((await r.master.broker.limits("jobs"))[0], {
      queue: "jobs",
      rateCount: 0,
      ratePeriodMs: 1_000,
      concurrency: 0,
      groupConcurrency: 0,
    }, "no malformed request changed a limit");
    assert.equal((await job(r, id)).state, "ready", "nor cancelled anything");

    // Reads with bad parameters, and methods not served.
    for (
      const query of ["?queue=", "?queue=%00", "?queue=a&queue=b", "?name=jobs", "?queue=jobs&x"]
    ) {
      assertError(await get(r, `/api/limits${query}`), 400, `/api/limits${query}`);
    }
    const methods: Array<[string, string, string]> = [
      ["GET", "/api/jobs/cancel", "POST"],
      ["PUT", "/api/limits", "GET, POST"],
      ["DELETE", `/api/jobs/${id}`, "GET"],
    ];
    for (const [method, path, allow] of methods) {
      const reply = await request(`${r.base}${path}`, {
        method,
        headers: auth(r.token, { "content-type": "application/json" }),
        body: method === "GET" ? undefined : "{}",
      });
      assertError(reply, 405, `${method} ${path}`);
      assert.equal(reply.headers.get("allow"), allow);
    }
    assertError(
      await post(r, "/api/limits", { queue: "jobs", pad: "x".repeat(70_000) }),
      413,
      "a body too large",
    );

    // Odd JSON of every shape: whatever the field holds, never a 500.
    const odd: unknown[] = [
      null,
      true,
      0,
      -0.5,
      1e308,
      "",
      "0",
      "50/s",
      "\u202e",
      [],
      [1, [2]],
      {},
      { a: 1 },
      "x".repeat(5_000),
    ];
    for (const value of odd) {
      for (
        const field of ["ids", "queue", "rate", "rateCount", "concurrency", "groupConcurrency"]
      ) {
        for (const path of ["/api/jobs/cancel", "/api/limits"]) {
          const body = path === "/api/limits" && field !== "queue"
            ? { queue: "odd", [field]: value }
            : { [field]: value };
          const reply = await post(r, path, body);
          assert.ok(
            [200, 400].includes(reply.status),
            `${path} ${JSON.stringify(body).slice(0, 80)}: ${reply.status} ${reply.body}`,
          );
          assert.equal(typeof JSON.parse(reply.body), "object");
        }
      }
    }
  },
]);

for (const [name, fn] of cases) {
  Deno.test(`${name} (memory)`, async () => {
    await using r = await rig("memory");
    await fn(r);
  });
}

const pgAvailable = postgresAvailable();
if (!pgAvailable) console.log(`SKIPPED PostgreSQL HTTP jobs tests: ${POSTGRES_MISSING}`);

Deno.test({
  name: "jobs and limits over HTTP on the PostgreSQL broker",
  ignore: !pgAvailable,
  fn: async (t) => {
    const cluster = await startPostgres();
    try {
      for (const [name, fn] of cases) {
        await t.step(name, () =>
          withSchema(cluster, "http_jobs", async (schema) => {
            await using r = await rig({ postgres: cluster.url, schema });
            await fn(r);
          }));
      }
      await t.step(
        "a job leased through one master is looked up and cancelled through another's HTTP side",
        () =>
          withSchema(cluster, "http_jobs", async (schema) => {
            await using a = await rig({ postgres: cluster.url, schema });
            await using b = await rig({ postgres: cluster.url, schema });
            const told: number[] = [];
            b.worker.onCancel = (ids) => told.push(...ids);
            const id = await putOne(a.worker, "jobs", "far away");
            await take(b.worker, "jobs", id);
            const seen = await job(a, id);
            assert.equal(seen.state, "leased");
            assert.equal(seen.holder?.session, b.worker.id, "A sees B's session hold it");
            const reply = await post(a, "/api/jobs/cancel", { ids: [id] });
            assert.equal(reply.status, 200, reply.body);
            assert.deepEqual(JSON.parse(reply.body).cancelled, [id]);
            await waitFor("B's holder to be told", () => told.includes(id));
            assert.deepEqual(await b.worker.ack([id]), [id], "B's lease is revoked");
            assert.equal((await job(b, id)).state, "cancelled");
            // Limits set through B's HTTP side are A's too.
            const set = await post(b, "/api/limits", { queue: "jobs", concurrency: 4 });
            assert.equal(set.status, 200, set.body);
            const onA = JSON.parse((await get(a, "/api/limits?queue=jobs")).body) as LimitsView;
            assert.equal(onA.concurrency, 4);
          }),
      );
    } finally {
      await cluster.destroy();
    }
  },
});
