/**
 * What only the PostgreSQL broker has to prove about issue #13's features:
 * that they hold across masters sharing one database, not only within one
 * (the shared conformance suite runs each broker alone). Two
 * `PostgresBroker`s on one schema play two masters:
 *
 * - a concurrency limit of 3 holds across both (neither ever leases a 4th);
 * - a rate limit holds across both (GCRA, within its bound);
 * - a unique key put on both at once adds one item;
 * - groups take turns whichever master serves them;
 * - a limit changed on one wakes a getter waiting on the other at once;
 * - cancel on one reaches the holder on the other (its `onCancel` fires,
 *   its ack is refused);
 * - the history is pruned to its count and age in the table itself;
 * - a version 1 schema (the one before priorities, groups, keys, limits,
 *   history and progress) is migrated in place, its items served on;
 * - the new calls fail with `DatabaseUnavailableError` while the database
 *   is away, as the others do.
 *
 * Each test starts on a fresh schema of one throwaway cluster; the last one
 * stops and starts a cluster of its own. Ignored, saying why, when
 * PostgreSQL's server binaries are missing.
 *
 * @module
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import type { BrokerSession, Delivery } from "../lib/broker/broker.ts";
import { DatabaseUnavailableError, NotSavedError } from "../lib/broker/errors.ts";
import {
  openPostgresBroker,
  type PostgresBroker,
  type PostgresBrokerOptions,
} from "../lib/broker/postgres/broker.ts";
import { PG_SCHEMA_VERSION } from "../lib/broker/postgres/schema.ts";
import { encode } from "../lib/model/codec.ts";
import { DEFAULT_HISTORY_COUNT, RATE_BURST_MS } from "../lib/model/jobs.ts";
import { pause, waitFor } from "./_helpers.ts";
import { type PgCluster, POSTGRES_MISSING, postgresAvailable, startPostgres } from "./_postgres.ts";

const available = postgresAvailable();
if (!available) console.warn(`postgres feature tests ignored: ${POSTGRES_MISSING}`);

/**
 * How often a master polls without a hint, in these tests: long, so that
 * what a test sees arrive promptly came by a notification, not a poll.
 */
const SLOW_POLL_MS = 30_000;

/**
 * The least share of a rate limit that waiting getters must get (timers run
 * late on a busy machine, and the rate's clock restarts from a late claim).
 */
const SLOWEST_RATE_SHARE = 0.7;

/** Longest a test waits for something that should happen at once, in ms. */
const PROMPT_MS = 3_000;

let cluster: PgCluster | undefined;
let schemas = 0;

/** The cluster the tests share, started on first use. */
async function database(): Promise<PgCluster> {
  cluster ??= await startPostgres();
  return cluster;
}

/** Two masters on a fresh schema, and a plain connection to the same database. */
interface Pair extends AsyncDisposable {
  a: PostgresBroker;
  b: PostgresBroker;
  schema: string;
  sql: postgres.Sql;
}

/** Opens two brokers on a new schema of the shared cluster, with `options`. */
async function pair(options: Partial<PostgresBrokerOptions> = {}): Promise<Pair> {
  const url = (await database()).url;
  const schema = `features_${Deno.pid}_${++schemas}`;
  // History on (a PostgreSQL broker keeps none by default): lookups of finished jobs are tested.
  const open = () =>
    openPostgresBroker({
      url,
      schema,
      pollMs: SLOW_POLL_MS,
      poolSize: 4,
      historyCount: DEFAULT_HISTORY_COUNT,
      ...options,
    });
  const a = await open();
  const b = await open();
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  return {
    a,
    b,
    schema,
    sql,
    async [Symbol.asyncDispose]() {
      await Promise.all([a.close(), b.close()]);
      await sql.unsafe(`DROP SCHEMA "${schema}" CASCADE`);
      await sql.end();
    },
  };
}

/** A test that needs PostgreSQL, with the sanitizers of a test that starts a cluster. */
function pgTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name, ignore: !available, sanitizeResources: false, sanitizeOps: false, fn });
}

pgTest("a concurrency limit of 3 holds across two masters", async () => {
  await using p = await pair();
  await p.a.setLimits("work", { concurrency: 3 });
  const producer = await p.a.open({ name: "producer", address: "" });
  await producer.put("work", Array.from({ length: 24 }, (_, i) => i));
  let inFlight = 0;
  let most = 0;
  let done = 0;
  const worker = async (session: BrokerSession) => {
    while (done < 24) {
      const got = await session.get("work", { max: 2, timeoutMs: 500 });
      if (got.length === 0) continue;
      inFlight += got.length;
      most = Math.max(most, inFlight);
      await pause(30);
      inFlight -= got.length;
      assert.deepEqual(await session.ack(got.map((d) => d.id)), [], "the leases were held");
      done += got.length;
    }
  };
  const sessions: BrokerSession[] = [];
  for (let i = 0; i < 4; i++) {
    sessions.push(await p.a.open({ name: `a${i}`, address: "" }));
    sessions.push(await p.b.open({ name: `b${i}`, address: "" }));
  }
  await Promise.all(sessions.map(worker));
  assert.equal(done, 24, "every item was served");
  assert.ok(most <= 3, `at most 3 items were leased at once across both masters, saw ${most}`);
  assert.equal(most, 3, "the limit was reached, so the masters did serve at once");
});

pgTest("a rate limit holds across two masters, within the GCRA bound", async () => {
  await using p = await pair();
  const rate = 20; // per second: deliveries 50 ms apart, a burst of 1
  await p.b.setLimits("paced", { rateCount: rate, ratePeriodMs: 1_000 });
  const producer = await p.a.open({ name: "producer", address: "" });
  const count = 30;
  await producer.put("paced", Array.from({ length: count }, (_, i) => i));
  const times: number[] = [];
  const worker = async (session: BrokerSession) => {
    while (times.length < count) {
      const got = await session.get("paced", { max: 5, timeoutMs: 500 });
      for (const _ of got) times.push(performance.now());
      if (got.length > 0) await session.ack(got.map((d) => d.id));
    }
  };
  const sessions: BrokerSession[] = [];
  for (let i = 0; i < 2; i++) {
    sessions.push(await p.a.open({ name: `a${i}`, address: "" }));
    sessions.push(await p.b.open({ name: `b${i}`, address: "" }));
  }
  await Promise.all(sessions.map(worker));
  times.sort((x, y) => x - y);
  const burst = Math.max(1, Math.floor(rate * RATE_BURST_MS / 1_000));
  const span = times[count - 1] - times[0];
  const least = (count - burst) / rate * 1_000;
  // The clock that spaces them is the database's; allow a little for when each arrives here.
  assert.ok(span >= least - 100, `${count} deliveries took ${span} ms, at least ${least} ms`);
  // Waiting getters wake when the rate allows (a timer, no slack): the rate is not wasted.
  assert.ok(span <= least / SLOWEST_RATE_SHARE, `${count} deliveries took ${span} ms`);
  for (let i = 0; i < count; i++) {
    let j = i;
    while (j < count && times[j] - times[i] < 1_000) j++;
    assert.ok(j - i <= rate + burst + 1, `${j - i} deliveries within a second`);
  }
});

pgTest("a unique key put on two masters at once adds one item", async () => {
  await using p = await pair();
  const sessions: BrokerSession[] = [];
  for (let i = 0; i < 4; i++) {
    sessions.push(await p.a.open({ name: `a${i}`, address: "" }));
    sessions.push(await p.b.open({ name: `b${i}`, address: "" }));
  }
  const puts = [];
  for (let round = 0; round < 25; round++) {
    for (const session of sessions) puts.push(session.put("once", [round], { keys: ["k"] }));
  }
  const results = await Promise.all(puts);
  const ids = new Set(results.map((ids) => ids[0]));
  assert.equal(ids.size, 1, "every put answered the same item's id");
  const added = results.filter((ids) => ids.existing === undefined).length;
  assert.equal(added, 1, "exactly one put added it; the others say it existed");
  assert.equal((await p.b.stats("once")).queues[0].ready, 1, "one item is ready");
  const taker = await p.b.open({ name: "taker", address: "" });
  const [job] = await taker.get("once", { max: 10, timeoutMs: 0 });
  assert.equal(job.id, [...ids][0]);
  // Leased, the key stays taken on the other master too.
  const again = await sessions[0].put("once", ["again"], { keys: ["k"] });
  assert.deepEqual([...again], [job.id]);
  assert.deepEqual(again.existing, [0]);
  await taker.ack([job.id]);
  const fresh = await sessions[1].put("once", ["fresh"], { keys: ["k"] });
  assert.notEqual(fresh[0], job.id, "once acked, the key is free on both masters");
  assert.equal(fresh.existing, undefined);
});

pgTest("groups take turns whichever master serves them", async () => {
  await using p = await pair();
  const producer = await p.a.open({ name: "producer", address: "" });
  await producer.put("fair", Array.from({ length: 20 }, (_, i) => `big-${i}`), { group: "big" });
  await producer.put("fair", ["small-0", "small-1", "small-2"], { group: "small" });
  const takers = [
    await p.a.open({ name: "on a", address: "" }),
    await p.b.open({ name: "on b", address: "" }),
  ];
  const served: string[] = [];
  for (let i = 0; i < 8; i++) {
    const [job] = await takers[i % 2].get("fair", { max: 1, timeoutMs: 0 });
    served.push(job.value as string);
  }
  assert.deepEqual(served.slice(0, 6).filter((v) => v.startsWith("small")), [
    "small-0",
    "small-1",
    "small-2",
  ], `the small group is served every other time: ${served.join(", ")}`);
  for (let i = 1; i < 6; i++) {
    assert.notEqual(served[i].split("-")[0], served[i - 1].split("-")[0], served.join(", "));
  }
  // One get takes as many as it asks for, in rotation, past each group's share of it.
  await producer.put("many", ["a-0", "a-1", "a-2"], { group: "a" });
  await producer.put("many", Array.from({ length: 50 }, (_, i) => `b-${i}`), { group: "b" });
  await producer.put("many", ["u-0"]);
  const got = (await takers[1].get("many", { max: 40, timeoutMs: 0 })).map((d) => d.value);
  assert.equal(got.length, 40, "all 40 asked for");
  assert.deepEqual(got.slice(0, 7), ["a-0", "b-0", "u-0", "a-1", "b-1", "a-2", "b-2"]);
  assert.deepEqual(got.slice(7), Array.from({ length: 33 }, (_, i) => `b-${i + 3}`));
});

pgTest("a limit raised on one master wakes a getter waiting on the other at once", async () => {
  await using p = await pair();
  await p.a.setLimits("slots", { concurrency: 1 });
  const producer = await p.a.open({ name: "producer", address: "" });
  await producer.put("slots", [1, 2]);
  const first = await p.a.open({ name: "first", address: "" });
  const [held] = await first.get("slots", { max: 1, timeoutMs: 0 });
  assert.ok(held !== undefined);
  const waiter = await p.b.open({ name: "waiter", address: "" });
  const waiting = waiter.get("slots", { max: 1, timeoutMs: 20_000 });
  await pause(300);
  const started = performance.now();
  await p.a.setLimits("slots", { concurrency: 2 });
  const got = await waiting;
  assert.equal(got.length, 1, "the waiter got the second item");
  assert.ok(performance.now() - started < PROMPT_MS, "woken by the change, not a poll");
  // An ack on one master frees a slot for a getter waiting on the other.
  const more = await p.b.open({ name: "more", address: "" });
  await producer.put("slots", [3]);
  const third = more.get("slots", { max: 1, timeoutMs: 20_000 });
  await pause(300);
  const acked = performance.now();
  await first.ack([held.id]);
  assert.equal((await third).length, 1, "a lease's end on master a serves master b's waiter");
  assert.ok(performance.now() - acked < PROMPT_MS, "woken by the ack, not a poll");
});

pgTest("cancel on one master reaches the holder on the other", async () => {
  await using p = await pair();
  const producer = await p.a.open({ name: "producer", address: "" });
  const [id, other] = await producer.put("jobs", ["long", "other"]);
  const holder = await p.b.open({ name: "holder", address: "" });
  const told: number[][] = [];
  holder.onCancel = (ids) => told.push(ids);
  const got: readonly Delivery[] = await holder.get("jobs", { max: 2, timeoutMs: 0 });
  assert.deepEqual(got.map((d) => d.id), [id, other]);
  const started = performance.now();
  assert.deepEqual(await p.a.cancel([id, 999_999]), { cancelled: [id], missing: [999_999] });
  await waitFor("the holder is told", () => told.length > 0, { timeoutMs: PROMPT_MS });
  assert.ok(performance.now() - started < PROMPT_MS);
  assert.deepEqual(told, [[id]], "told once, of the cancelled item only");
  assert.deepEqual(await holder.ack([id, other]), [id], "the cancelled lease is refused");
  assert.equal(await holder.progress(id, { percent: 5 }, 1_000), false);
  for (const broker of [p.a, p.b]) {
    const job = await broker.job(id);
    assert.equal(job?.state, "cancelled");
    assert.equal(job?.value, "long");
  }
  assert.equal((await p.a.job(other))?.state, "done");
  assert.deepEqual(await p.b.cancel([id]), { cancelled: [], missing: [id] });
  const stats = (await p.a.stats("jobs")).queues[0];
  assert.equal(stats.ready + stats.leased + stats.delayed, 0, "nothing is left");
});

pgTest(
  "control on one master reaches a session of the other; both list what it holds",
  async () => {
    await using p = await pair();
    const producer = await p.a.open({ name: "producer", address: "" });
    const ids = await producer.put("jobs", ["a", "b"]);
    const worker = await p.b.open({ name: "worker", address: "" });
    const heard: string[] = [];
    worker.onControl((action) => heard.push(action));
    assert.equal((await worker.get("jobs", { max: 2, timeoutMs: 0 })).length, 2);
    const started = performance.now();
    assert.equal(await p.a.control(worker.id, "quiet"), true);
    await waitFor("the worker hears it", () => heard.length > 0, { timeoutMs: PROMPT_MS });
    assert.ok(performance.now() - started < PROMPT_MS, "by notification, not a poll");
    assert.deepEqual(heard, ["quiet"]);
    assert.equal(await p.a.control("no-such-session", "stop"), false);
    for (const broker of [p.a, p.b]) {
      const view = (await broker.sessions()).find((v) => v.id === worker.id);
      assert.deepEqual(view?.holding.map((h) => [h.id, h.queue]), [[ids[0], "jobs"], [
        ids[1],
        "jobs",
      ]]);
      assert.equal(view?.controlled, "quiet", "the sender and the holder's master both know");
    }
    const leased = await p.a.items("jobs", { state: "leased" });
    assert.deepEqual(leased.items.map((i) => i.holder?.name), ["worker", "worker"]);
  },
);

pgTest("the history is pruned to its count and its age in the table", async () => {
  await using p = await pair({ historyCount: 5 });
  const session = await p.a.open({ name: "s", address: "" });
  const ids = await session.put("h", Array.from({ length: 20 }, (_, i) => i));
  for (const id of ids) {
    const [job] = await session.get("h", { max: 1, timeoutMs: 0 });
    assert.equal(job.id, id);
    await session.ack([id]);
  }
  // Lookups keep to the bound at once, whether or not the prune ran.
  assert.equal(await p.b.job(ids[14]), undefined);
  assert.equal((await p.b.job(ids[15]))?.state, "done");
  const table = `"${p.schema}".finished`;
  await waitFor("the prune leaves 5 records", async () => {
    const [row] = await p.sql.unsafe(`SELECT count(*)::int AS n FROM ${table}`);
    return row.n === 5;
  }, { timeoutMs: 10_000 });
  const kept = await p.sql.unsafe(`SELECT id FROM ${table} ORDER BY id`);
  assert.deepEqual(kept.map((r) => Number(r.id)), ids.slice(15));

  await using q = await pair({ historyMs: 300 });
  const other = await q.a.open({ name: "s", address: "" });
  const [one] = await other.put("h", ["x"]);
  await other.get("h", { max: 1, timeoutMs: 0 });
  await other.ack([one]);
  assert.equal((await q.b.job(one))?.state, "done");
  await waitFor("the record goes after historyMs", async () => {
    const [row] = await q.sql.unsafe(`SELECT count(*)::int AS n FROM "${q.schema}".finished`);
    return row.n === 0;
  }, { timeoutMs: 10_000 });
  assert.equal(await q.a.job(one), undefined);
});

/** The schema of taskq's PostgreSQL broker at version 1, as that release created it. */
function version1Sql(s: string): string {
  return `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE ${s}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE SEQUENCE ${s}.ids;
CREATE SEQUENCE ${s}.fronts;
CREATE TABLE ${s}.items (
  id bigint PRIMARY KEY, queue text NOT NULL, ready_at bigint NOT NULL, seq bigint NOT NULL,
  attempts integer NOT NULL DEFAULT 0, max_attempts integer NOT NULL DEFAULT 0, last_error text,
  lease_owner text, lease_master bigint, lease_until bigint, taken bigint, value bytea NOT NULL
) WITH (fillfactor = 90);
CREATE INDEX items_claimable ON ${s}.items (queue, ready_at, seq) WHERE lease_owner IS NULL;
CREATE INDEX items_leased ON ${s}.items (lease_until) WHERE lease_owner IS NOT NULL;
CREATE TABLE ${s}.queues (name text PRIMARY KEY);
CREATE TABLE ${s}.paused (name text PRIMARY KEY);
CREATE TABLE ${s}.counters (
  queue text NOT NULL, master bigint NOT NULL, lane smallint NOT NULL DEFAULT 0,
  put bigint NOT NULL DEFAULT 0, acked bigint NOT NULL DEFAULT 0, nacked bigint NOT NULL DEFAULT 0,
  expired bigint NOT NULL DEFAULT 0, failed bigint NOT NULL DEFAULT 0,
  dead bigint NOT NULL DEFAULT 0, bytes bigint NOT NULL DEFAULT 0,
  removed bigint NOT NULL DEFAULT 0, PRIMARY KEY (queue, master, lane)
);
CREATE TABLE ${s}.masters (
  id bigserial PRIMARY KEY, name text NOT NULL, started_at bigint NOT NULL,
  seen_at bigint NOT NULL, waiting jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE ${s}.sessions (
  id text PRIMARY KEY, master bigint NOT NULL, name text NOT NULL, address text NOT NULL,
  connected_at bigint NOT NULL, last_seen bigint NOT NULL, waiting integer NOT NULL DEFAULT 0
);
CREATE INDEX sessions_master ON ${s}.sessions (master);
CREATE OR REPLACE FUNCTION ${s}.now_ms() RETURNS bigint LANGUAGE sql VOLATILE
  AS 'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint';
INSERT INTO ${s}.meta (key, value) VALUES ('version', '1');
`;
}

pgTest("a version 1 schema is migrated in place and its items are served on", async () => {
  const url = (await database()).url;
  const schema = `features_${Deno.pid}_v1`;
  const s = `"${schema}"`;
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(version1Sql(s));
    // Items as version 1 put them: three ready, one delayed by a minute.
    const values = ["one", "two", "three", "later"].map((v) => encode(v));
    for (let i = 0; i < values.length; i++) {
      await sql.unsafe(
        `INSERT INTO ${s}.items (id, queue, ready_at, seq, value)
         VALUES (nextval('${s}.ids'), 'old', ${s}.now_ms() + $1, currval('${s}.ids'), $2)`,
        [i === 3 ? 60_000 : 0, values[i]],
      );
    }
    const bytes = values.reduce((n, v) => n + v.length, 0);
    await sql.unsafe(
      `INSERT INTO ${s}.counters (queue, master, lane, put, bytes) VALUES ('old', 0, 0, 4, $1)`,
      [bytes],
    );
    await sql.unsafe(`INSERT INTO ${s}.queues (name) VALUES ('old')`);

    // Two masters start at once: one migrates, the other finds it done.
    const options = { url, schema, pollMs: SLOW_POLL_MS, historyCount: DEFAULT_HISTORY_COUNT };
    const [a, b] = await Promise.all([openPostgresBroker(options), openPostgresBroker(options)]);
    try {
      const [version] = await sql.unsafe(`SELECT value FROM ${s}.meta WHERE key = 'version'`);
      assert.equal(version.value, String(PG_SCHEMA_VERSION));
      const stats = (await a.stats("old")).queues[0];
      assert.deepEqual([stats.ready, stats.delayed, stats.put], [3, 1, 4]);
      const delayed = await b.job(4);
      assert.equal(delayed?.state, "delayed");
      assert.equal(delayed?.priority, 0);
      assert.ok((delayed?.createdAt ?? 0) > 0, "a migrated item gets a creation time");
      const session = await a.open({ name: "s", address: "" });
      // A new item with a priority goes before the migrated ones, which keep their order.
      await session.put("old", ["urgent"], { priority: 5 });
      const got = await session.get("old", { max: 10, timeoutMs: 0 });
      assert.deepEqual(got.map((d) => d.value), ["urgent", "one", "two", "three"]);
      await session.ack(got.map((d) => d.id));
      assert.equal((await b.job(1))?.state, "done");
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
    // Reopened, the migrated schema is taken as it is.
    const again = await openPostgresBroker({ url, schema, pollMs: SLOW_POLL_MS });
    try {
      assert.equal((await again.stats("old")).queues[0].delayed, 1);
    } finally {
      await again.close();
    }
  } finally {
    await sql.unsafe(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
    await sql.end();
  }
});

pgTest("the new calls fail with DatabaseUnavailableError while the database is away", async () => {
  const own = await startPostgres();
  const broker = await openPostgresBroker({ url: own.url, schema: "away", pollMs: SLOW_POLL_MS });
  try {
    const session = await broker.open({ name: "s", address: "" });
    await session.put("q", [1, 2]);
    const [job] = await session.get("q", { max: 1, timeoutMs: 0 });
    await own.stop();
    const calls: [string, () => Promise<unknown>][] = [
      ["cancel", () => broker.cancel([job.id])],
      ["job", () => broker.job(job.id)],
      ["setLimits", () => broker.setLimits("q", { concurrency: 2 })],
      ["limits", () => broker.limits()],
      ["progress", () => session.progress(job.id, { percent: 50 }, 10_000)],
    ];
    for (const [name, call] of calls) {
      await assert.rejects(call, DatabaseUnavailableError, `${name} rejects as unavailable`);
    }
    await assert.rejects(
      () => session.put("q", [3], { keys: ["k"] }),
      (error: unknown) =>
        error instanceof NotSavedError && error.cause instanceof DatabaseUnavailableError,
      "a put with a key is not saved, the database being unavailable",
    );
    await own.start();
    await waitFor("the database is back", async () => {
      try {
        return (await broker.limits("q")).length === 1;
      } catch {
        return false;
      }
    }, { timeoutMs: 20_000 });
    assert.equal(await session.progress(job.id, { percent: 50, message: "half" }, 10_000), true);
    const info = await broker.job(job.id);
    assert.equal(info?.progress?.percent, 50);
    assert.equal(info?.progress?.message, "half");
  } finally {
    await broker.close();
    await own.destroy();
  }
});

Deno.test({
  name: "postgres features: (the throwaway cluster stops)",
  ignore: !available,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await cluster?.destroy();
  },
});
