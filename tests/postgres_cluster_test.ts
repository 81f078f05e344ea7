/**
 * Many masters on one PostgreSQL database (lib/broker/postgres/), as real
 * processes under faults, and several brokers racing for one queue:
 *
 * - 3 masters (`taskq master --store postgres://…` child processes) and 6
 *   worker processes (tests/fixtures/square_worker.ts, the library's worker
 *   loop, each given all three masters) square 20,000 items while the master
 *   most workers use is killed with SIGKILL and restarted on its address,
 *   twice: no item is lost, and every duplicate result is a redelivery;
 * - the PostgreSQL server is restarted mid-run (fast shutdown, a short
 *   outage, start): the masters and workers carry on by themselves, every
 *   item whose put was acknowledged gets its result, and every master still
 *   answers `taskq status`;
 * - 3 brokers in this process, several sessions each, hammer one queue with
 *   gets, acks, nacks and leases left to expire: no (item, attempt) is handed
 *   out twice, no item is handed to a new holder before the previous lease
 *   ended or was settled, the database never shows a lease the holders did
 *   not get or an acked item still there, and every item is acked exactly
 *   once;
 * - an ack whose lease ended (the item was served again) that reaches the
 *   database in the same batch as the new holder's ack is refused, and its
 *   result dropped.
 *
 * Every process is started here and killed here (by its own handle); every
 * test stops its processes and destroys its cluster in `finally`. Ignored,
 * saying why, when PostgreSQL's server binaries are missing.
 *
 * @module
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import { type Client, connect, ConnectionLostError, type Job, RemoteError } from "../lib/mod.ts";
import { openPostgresBroker, type PostgresBroker } from "../lib/broker/postgres/broker.ts";
import type { BrokerSession } from "../lib/broker/broker.ts";
import {
  freeLoopbackPort,
  keyEnv,
  pause,
  Proc,
  REPO_ROOT,
  runTaskq,
  TEST_KEY,
  waitFor,
  withDeadline,
} from "./_helpers.ts";
import { type PgCluster, POSTGRES_MISSING, postgresAvailable, startPostgres } from "./_postgres.ts";

const available = postgresAvailable();

/** The line a master prints once it serves. */
const LISTENING = /^taskq master listening on (\S+)$/;

/** The line the worker fixture prints on connecting and on each reconnection. */
const CONNECTED = /^worker (\S+) connected to (\S+)$/;

/** Time a master or worker process has to start. */
const START_MS = 30_000;

/** Poll interval while watching a run. */
const POLL_MS = 50;

/** The worker fixture. */
const WORKER_SCRIPT = `${REPO_ROOT}tests/fixtures/square_worker.ts`;

/** What the worker fixture puts on the results queue for each item. */
interface SquareResult {
  n: number;
  square: number;
  id: number;
  attempt: number;
  worker: string;
  t?: number;
}

/** A test's name, marked as skipped when PostgreSQL is missing. */
function testName(name: string): string {
  return available ? name : `${name} (SKIPPED: ${POSTGRES_MISSING})`;
}

/** Starts `taskq master` on `listen` over `url`, as `deno run -A main.ts master`. */
function spawnMaster(label: string, listen: string, url: string, extra: string[]): Proc {
  return new Proc(
    label,
    ["run", "-A", `${REPO_ROOT}main.ts`, "master", "--listen", listen, "--store", url, ...extra],
    keyEnv(TEST_KEY),
  );
}

/**
 * Starts a master on `listen` and waits until it serves. A port just freed by
 * a killed master may not be bindable for a moment: a start that fails is
 * tried again until the deadline.
 */
async function startPgMaster(
  label: string,
  listen: string,
  url: string,
  extra: string[],
): Promise<Proc> {
  const deadline = Date.now() + START_MS;
  for (;;) {
    const proc = spawnMaster(label, listen, url, extra);
    try {
      await proc.waitForLine(LISTENING, Math.max(1, deadline - Date.now()));
      return proc;
    } catch (error) {
      await proc.dispose();
      if (Date.now() >= deadline) throw error;
      await pause(200);
    }
  }
}

/** Starts a worker process given `addresses`, the `first`-th first. */
function spawnWorker(name: string, addresses: readonly string[], first: number): Proc {
  const rotated = [...addresses.slice(first), ...addresses.slice(0, first)];
  return new Proc(`worker ${name}`, [
    "run",
    "--allow-net",
    "--allow-env",
    "--allow-read",
    WORKER_SCRIPT,
    "--connect",
    rotated.join(","),
    "--name",
    name,
    "--concurrency",
    "4",
  ], keyEnv(TEST_KEY));
}

/** The master each worker uses now (by the last "connected to" line it printed). */
function masterOf(worker: Proc): string | undefined {
  let address: string | undefined;
  for (const line of worker.lines) {
    const match = line.match(CONNECTED);
    if (match) address = match[2];
  }
  return address;
}

/** Throws, with the process's output, if any of `procs` has exited. */
function assertRunning(procs: readonly Proc[], when: string): void {
  for (const proc of procs) {
    if (proc.exited) throw new Error(`${proc.label} exited ${when}: ${proc.describe()}`);
  }
}

/** A queue's figures through `client`, or undefined while its master cannot answer. */
async function queueFigures(
  client: Client,
  queue: string,
): Promise<{ ready: number; leased: number; delayed: number } | undefined> {
  try {
    const stats = await client.stats(queue);
    return stats.queues[0] ?? { ready: 0, leased: 0, delayed: 0 };
  } catch (error) {
    if (error instanceof ConnectionLostError || error instanceof RemoteError) return undefined;
    throw error;
  }
}

/** Takes and acks everything on `queue` (nothing else may take from it meanwhile). */
async function drain(client: Client, queue: string): Promise<Job<SquareResult>[]> {
  const all: Job<SquareResult>[] = [];
  const q = client.queue(queue);
  for (;;) {
    const jobs = await q.getMany<SquareResult>(1_000, 0, { leaseMs: 120_000 });
    if (jobs.length === 0) break;
    all.push(...jobs);
    await q.ack(jobs);
  }
  return all;
}

/**
 * Checks the results of items `expected` (n → whether a result is required):
 * each result is n² of an item put, every required n has one, and every
 * duplicate (a second result for the same n) is a redelivery (a later
 * attempt of the same task) or, when `tagged`, a put that was retried (another
 * tag). Returns the number of duplicates and of results of a redelivery.
 */
function checkResults(
  results: readonly SquareResult[],
  expected: ReadonlyMap<number, boolean>,
  tagged = false,
): { duplicates: number; ofOneTask: number; redelivered: number } {
  const byN = new Map<number, SquareResult[]>();
  for (const r of results) {
    assert.ok(expected.has(r.n), `a result for ${r.n}, which was never put: ${JSON.stringify(r)}`);
    assert.equal(r.square, r.n * r.n, `wrong square: ${JSON.stringify(r)}`);
    let list = byN.get(r.n);
    if (list === undefined) byN.set(r.n, list = []);
    list.push(r);
  }
  const missing = [...expected].filter(([n, required]) => required && !byN.has(n)).map(([n]) => n);
  assert.deepEqual(
    missing.slice(0, 20),
    [],
    `${missing.length} items acknowledged to the producer have no result`,
  );
  let duplicates = 0;
  let ofOneTask = 0;
  const seen = new Set<string>();
  for (const [n, list] of byN) {
    for (const r of list) {
      const key = `${r.id}/${r.attempt}`;
      assert.ok(!seen.has(key), `two results of task ${r.id} attempt ${r.attempt} (n=${n})`);
      seen.add(key);
    }
    if (list.length === 1) continue;
    duplicates += list.length - 1;
    const copies = [...list].sort((a, b) => a.id - b.id || a.attempt - b.attempt);
    for (let i = 1; i < copies.length; i++) {
      const [earlier, later] = [copies[i - 1], copies[i]];
      const redelivery = later.id === earlier.id && later.attempt > earlier.attempt;
      const retriedPut = tagged && later.id !== earlier.id && later.t !== earlier.t;
      if (later.id === earlier.id) ofOneTask++;
      assert.ok(
        redelivery || retriedPut,
        `a duplicate result for ${n} that no redelivery explains: ${JSON.stringify(copies)}`,
      );
    }
  }
  return { duplicates, ofOneTask, redelivered: results.filter((r) => r.attempt > 1).length };
}

// ---------------------------------------------------------------------------

/** Items of the 3-master run. */
const FLEET_ITEMS = 20_000;

/** Items per put of the 3-master run. */
const FLEET_BATCH = 1_000;

Deno.test({
  name: testName("3 masters, 6 workers, 20,000 items, one master killed -9 twice"),
  ignore: !available,
  fn: async () => {
    const started = Date.now();
    const cluster = await startPostgres();
    const masters: (Proc | undefined)[] = [];
    const workers: Proc[] = [];
    const dead: Proc[] = [];
    let client: Client | undefined;
    try {
      const addresses = [0, 1, 2].map(() => `127.0.0.1:${freeLoopbackPort()}`);
      const masterFlags = ["--master-timeout", "2", "--lease", "5"];
      const labels = ["master A", "master B", "master C"];
      masters.push(
        ...await Promise.all(
          addresses.map((a, i) => startPgMaster(labels[i], a, cluster.url, masterFlags)),
        ),
      );
      for (let i = 0; i < 6; i++) workers.push(spawnWorker(`w${i}`, addresses, i % 3));
      await Promise.all(workers.map((w) => w.waitForLine(CONNECTED, START_MS)));

      client = await connect({ address: addresses.join(","), authkey: TEST_KEY, name: "producer" });
      const c = client;
      const tasks = c.queue("tasks");
      for (let from = 0; from < FLEET_ITEMS; from += FLEET_BATCH) {
        await tasks.putMany(Array.from({ length: FLEET_BATCH }, (_, k) => from + k));
      }
      const live = () => [...masters.filter((m) => m !== undefined), ...workers];
      const resultsAtLeast = (n: number) =>
        waitFor(`${n} results`, async () => {
          assertRunning(live(), "during the run");
          return ((await queueFigures(c, "results"))?.ready ?? 0) >= n;
        }, { timeoutMs: 60_000, intervalMs: POLL_MS });

      /** Kills -9 the master most workers use, and starts it again on its address. */
      const killBusiest = async (when: string) => {
        const use = addresses.map((a) => workers.filter((w) => masterOf(w) === a).length);
        const victim = use.indexOf(Math.max(...use));
        const proc = masters[victim] as Proc;
        masters[victim] = undefined;
        proc.kill("SIGKILL");
        await proc.status;
        dead.push(proc);
        console.log(
          `${when}: killed -9 ${proc.label} (used by ${use[victim]} of the 6 workers)`,
        );
        masters[victim] = await startPgMaster(proc.label, addresses[victim], cluster.url, [
          ...masterFlags,
        ]);
      };

      await resultsAtLeast(FLEET_ITEMS / 4);
      await killBusiest(`at ${FLEET_ITEMS / 4} results`);
      await resultsAtLeast((FLEET_ITEMS * 3) / 5);
      await killBusiest(`at ${(FLEET_ITEMS * 3) / 5} results`);

      await waitFor("every item done and the tasks queue empty", async () => {
        assertRunning(live(), "after the kills");
        const results = await queueFigures(c, "results");
        const left = await queueFigures(c, "tasks");
        if (results === undefined || left === undefined) return false;
        return results.ready >= FLEET_ITEMS && left.ready + left.leased + left.delayed === 0;
      }, { timeoutMs: 60_000, intervalMs: POLL_MS });

      const results = (await drain(c, "results")).map((job) => job.value);
      const expected = new Map(Array.from({ length: FLEET_ITEMS }, (_, n) => [n, true]));
      const { duplicates, ofOneTask, redelivered } = checkResults(results, expected);
      const figures = await queueFigures(c, "results");
      assert.deepEqual(figures && figures.ready + figures.leased, 0, "results drained");
      console.log(
        `${results.length} results for ${FLEET_ITEMS} items: ${duplicates} duplicates ` +
          `(${ofOneTask} of one task, the same item served again), ` +
          `${redelivered} results of a redelivery, in ${Date.now() - started} ms`,
      );
    } finally {
      await client?.close();
      await Promise.all(
        [...workers, ...masters, ...dead].map((p) => p?.dispose()),
      );
      await cluster.destroy();
    }
  },
});

// ---------------------------------------------------------------------------

/** Items of the database-restart run put before the outage. */
const RESTART_FIRST = 2_000;

/** Items of the database-restart run put while the database is down (and after). */
const RESTART_SECOND = 1_000;

/** Items per put of the database-restart run. */
const RESTART_BATCH = 100;

/** How long the database stays down. */
const OUTAGE_MS = 1_500;

Deno.test({
  name: testName("PostgreSQL restarted mid-run"),
  ignore: !available,
  fn: async () => {
    const started = Date.now();
    const cluster = await startPostgres();
    const masters: Proc[] = [];
    const workers: Proc[] = [];
    const restarted: Proc[] = [];
    let client: Client | undefined;
    try {
      const addresses = [0, 1].map(() => `127.0.0.1:${freeLoopbackPort()}`);
      const masterFlags = ["--master-timeout", "2", "--lease", "5"];
      masters.push(
        ...await Promise.all(
          addresses.map((a, i) => startPgMaster(`master ${"AB"[i]}`, a, cluster.url, masterFlags)),
        ),
      );
      for (let i = 0; i < 2; i++) workers.push(spawnWorker(`w${i}`, addresses, i));
      await Promise.all(workers.map((w) => w.waitForLine(CONNECTED, START_MS)));

      client = await connect({ address: addresses.join(","), authkey: TEST_KEY, name: "producer" });
      const c = client;
      const tasks = c.queue("tasks");
      /** n → whether its put was acknowledged (a result is then required). */
      const expected = new Map<number, boolean>();
      /** Why puts failed while the database was down. */
      const refusals: string[] = [];
      let tag = 0;
      /** Puts items `from`..`to`-1, each batch tried again (with a new tag) until acknowledged. */
      const produce = async (from: number, to: number) => {
        for (let at = from; at < to; at += RESTART_BATCH) {
          const ns = Array.from({ length: Math.min(RESTART_BATCH, to - at) }, (_, k) => at + k);
          for (;;) {
            for (const n of ns) if (!expected.has(n)) expected.set(n, false);
            const t = ++tag;
            try {
              await tasks.putMany(ns.map((n) => ({ n, t })));
              for (const n of ns) expected.set(n, true);
              break;
            } catch (error) {
              if (!(error instanceof RemoteError || error instanceof ConnectionLostError)) {
                throw error;
              }
              refusals.push((error as Error).message);
              await pause(POLL_MS);
            }
          }
        }
      };

      /**
       * Workers whose loop gave up: each is recorded as a failure and started
       * again, so the rest of the run (no item lost) is still checked.
       */
      const gaveUp: string[] = [];
      const watchWorkers = () => {
        for (let i = 0; i < workers.length; i++) {
          const w = workers[i];
          if (!w.exited) continue;
          gaveUp.push(`${w.label} exited with code ${w.exited.code}: ${w.stderr.trim()}`);
          restarted.push(w);
          workers[i] = spawnWorker(`w${i}-again`, addresses, i);
        }
      };

      await produce(0, RESTART_FIRST);
      await waitFor("half of the results", async () => {
        assertRunning([...masters, ...workers], "before the outage");
        return ((await queueFigures(c, "results"))?.ready ?? 0) >= RESTART_FIRST / 2;
      }, { timeoutMs: 60_000, intervalMs: POLL_MS / 5 });

      await cluster.stop();
      const producing = produce(RESTART_FIRST, RESTART_FIRST + RESTART_SECOND);
      await pause(OUTAGE_MS); // the outage itself
      await cluster.start();
      await withDeadline(producing, 60_000, "the puts made during the outage");

      const total = RESTART_FIRST + RESTART_SECOND;
      await waitFor("every item done after the restart", async () => {
        assertRunning(masters, "after the database came back");
        watchWorkers();
        const results = await queueFigures(c, "results");
        const left = await queueFigures(c, "tasks");
        if (results === undefined || left === undefined) return false;
        return results.ready >= total && left.ready + left.leased + left.delayed === 0;
      }, { timeoutMs: 60_000, intervalMs: POLL_MS });

      for (const address of addresses) {
        const status = await runTaskq(["status", "--connect", address]);
        assert.equal(status.code, 0, `taskq status through ${address}: ${status.stderr}`);
      }
      assertRunning(masters, "at the end");

      const results = (await drain(c, "results")).map((job) => job.value);
      const { duplicates, ofOneTask, redelivered } = checkResults(results, expected, true);
      const acknowledged = [...expected.values()].filter(Boolean).length;
      console.log(
        `${results.length} results for ${acknowledged} acknowledged puts (${expected.size} ` +
          `tried): ${duplicates} duplicates (${ofOneTask} of one task, the rest of puts tried ` +
          `again), ${redelivered} results of a redelivery; ` +
          `${refusals.length} puts refused during the outage; ${Date.now() - started} ms`,
      );
      assert.deepEqual(
        gaveUp,
        [],
        "workers must ride out a database restart by themselves (they were started again " +
          "only so the rest of the run could be checked)",
      );
    } finally {
      await client?.close();
      await Promise.all([...workers, ...restarted, ...masters].map((p) => p.dispose()));
      await cluster.destroy();
    }
  },
});

// ---------------------------------------------------------------------------

/** Items of the race. */
const RACE_ITEMS = 3_000;

/** Brokers (masters) racing. */
const RACE_BROKERS = 3;

/** Sessions per broker. */
const RACE_SESSIONS = 4;

/** The queue raced for. */
const RACE_QUEUE = "race";

/** Clock slack allowed between this process and the database (same machine), in ms. */
const CLOCK_SLACK_MS = 5;

/** How often the database is looked at during the race, in ms. */
const SNAPSHOT_EVERY_MS = 100;

/** Time the race has to end. */
const RACE_MS = 45_000;

/** One delivery, as its holder saw it. */
interface Held {
  id: number;
  attempts: number;
  session: string;
  /** When the get was asked (the lease began after this). */
  askedAt: number;
  /** When the get answered. */
  gotAt: number;
  leaseMs: number;
}

/** One ack or nack of one item, as its holder saw it. */
interface Settled {
  kind: "ack" | "nack";
  id: number;
  session: string;
  /** The attempt the session's lease record held when asked (the fencing token sent). */
  attempt: number | undefined;
  askedAt: number;
  accepted: boolean;
}

/** What the database showed at one moment. */
interface Snapshot {
  /** Ids whose ack was accepted before the snapshot was taken. */
  ackedBefore: number[];
  live: Set<number>;
  leased: [number, number, string][];
}

Deno.test({
  name: testName(
    "masters racing for the same items never lease one item to two holders at once",
  ),
  ignore: !available,
  fn: async () => {
    const started = Date.now();
    const cluster: PgCluster = await startPostgres();
    const brokers: PostgresBroker[] = [];
    const sql = postgres(cluster.url, { max: 1, onnotice: () => {} });
    try {
      for (let i = 0; i < RACE_BROKERS; i++) {
        brokers.push(
          await openPostgresBroker({
            url: cluster.url,
            masterName: `racer ${i}`,
            defaultLeaseMs: 200,
            retry: { maxAttempts: 1_000_000 },
            pollMs: 50,
            poolSize: 4,
          }),
        );
      }
      const sessions: BrokerSession[] = [];
      for (const broker of brokers) {
        for (let k = 0; k < RACE_SESSIONS; k++) {
          sessions.push(await broker.open({ name: `racer ${sessions.length}`, address: "" }));
        }
      }
      const putIds: number[] = [];
      for (let from = 0; from < RACE_ITEMS; from += 500) {
        putIds.push(
          ...await sessions[0].put(RACE_QUEUE, Array.from({ length: 500 }, (_, k) => from + k)),
        );
      }

      const deliveries: Held[] = [];
      const settlements: Settled[] = [];
      const acceptedAcks = new Map<number, number>();
      const snapshots: Snapshot[] = [];
      const timers = new Set<Promise<void>>();
      const deadline = Date.now() + RACE_MS;
      let seed = 7;
      const random = () => {
        seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
        return seed / 2_147_483_648;
      };
      const done = () => acceptedAcks.size >= RACE_ITEMS;

      /** One session's part: get, then ack, nack, ack later, or let the lease run out. */
      const race = async (session: BrokerSession) => {
        /** The session's own record of its leases: what its acks will name (id → attempt). */
        const leases = (session as unknown as { leases: Map<number, { attempt: number }> }).leases;
        /** What this session holds now, by id (a newer delivery replaces an older one). */
        const holding = new Map<number, Held>();
        const settle = async (kind: "ack" | "nack", held: Held[]) => {
          const mine = held.filter((h) => holding.get(h.id) === h);
          if (mine.length === 0) return;
          const ids = mine.map((h) => h.id);
          const attempts = ids.map((id) => leases.get(id)?.attempt);
          const askedAt = Date.now();
          const refused = new Set(
            kind === "ack" ? await session.ack(ids) : await session.nack(ids),
          );
          ids.forEach((id, i) => {
            const accepted = !refused.has(id);
            settlements.push({
              kind,
              id,
              session: session.id,
              attempt: attempts[i],
              askedAt,
              accepted,
            });
            if (accepted && kind === "ack") acceptedAcks.set(id, (acceptedAcks.get(id) ?? 0) + 1);
            if (holding.get(id) === mine[i]) holding.delete(id);
          });
        };
        const later = (kind: "ack" | "nack", held: Held[], ms: number) => {
          const timer: Promise<void> = new Promise<void>((resolve) => setTimeout(resolve, ms))
            .then(() => settle(kind, held))
            .finally(() => timers.delete(timer));
          timers.add(timer);
        };
        while (!done()) {
          if (Date.now() > deadline) throw new Error("the race did not end in time");
          const leaseMs = 100 + Math.floor(random() * 200);
          const askedAt = Date.now();
          const got = await session.get(RACE_QUEUE, {
            max: 1 + Math.floor(random() * 20),
            timeoutMs: 20 + Math.floor(random() * 80),
            leaseMs,
          });
          const gotAt = Date.now();
          const now: Held[] = [];
          const back: Held[] = [];
          for (const d of got) {
            const held: Held = {
              id: d.id,
              attempts: d.attempts,
              session: session.id,
              askedAt,
              gotAt,
              leaseMs,
            };
            deliveries.push(held);
            holding.set(d.id, held);
            const choice = random();
            if (choice < 0.6) now.push(held);
            else if (choice < 0.7) back.push(held);
            else if (choice < 0.85) later("ack", [held], Math.floor(random() * leaseMs * 0.5));
            // Past its lease: usually refused (served again meanwhile), sometimes still held.
            else later("ack", [held], leaseMs + 10 + Math.floor(random() * 150));
          }
          await Promise.all([settle("ack", now), settle("nack", back)]);
        }
      };

      /** Looks at the database now and then while the race runs. */
      const watch = async () => {
        while (!done() && Date.now() < deadline) {
          const ackedBefore = [...acceptedAcks.keys()];
          const [row] = await sql.unsafe(
            `SELECT
               (SELECT coalesce(sum(put), 0) FROM taskq.counters WHERE queue = $1) AS put,
               (SELECT coalesce(sum(acked), 0) FROM taskq.counters WHERE queue = $1) AS acked,
               (SELECT coalesce(json_agg(id), '[]') FROM taskq.items WHERE queue = $1) AS live,
               (SELECT coalesce(json_agg(json_build_array(id, attempts, lease_owner)), '[]')
                  FROM taskq.items WHERE queue = $1 AND lease_owner IS NOT NULL) AS leased,
               (SELECT count(*) FROM taskq.items WHERE queue = $1 AND (
                  (lease_owner IS NULL) <> (lease_until IS NULL)
                  OR (lease_owner IS NULL) <> (lease_master IS NULL))) AS torn`,
            [RACE_QUEUE],
          );
          const live = new Set<number>((row.live as string[]).map(Number));
          assert.equal(Number(row.put), RACE_ITEMS, "items put, by the counters");
          assert.equal(
            live.size + Number(row.acked),
            RACE_ITEMS,
            "every item is either in the table or counted as acked, at every moment",
          );
          assert.equal(Number(row.torn), 0, "a row half leased");
          snapshots.push({
            ackedBefore,
            live,
            leased: (row.leased as [number, number, string][]).map((
              [id, attempts, owner],
            ) => [Number(id), Number(attempts), owner]),
          });
          await pause(SNAPSHOT_EVERY_MS);
        }
      };

      await Promise.all([...sessions.map(race), watch()]);
      while (timers.size > 0) await Promise.all([...timers]);

      // (a) From the holders' records.
      const byId = new Map<number, Held[]>();
      for (const d of deliveries) {
        let list = byId.get(d.id);
        if (list === undefined) byId.set(d.id, list = []);
        list.push(d);
      }
      const settlesOf = new Map<string, Settled[]>();
      for (const s of settlements) {
        if (!s.accepted) continue;
        assert.ok(s.attempt !== undefined, `accepted without a lease: ${JSON.stringify(s)}`);
        const key = `${s.id}/${s.attempt}`;
        let list = settlesOf.get(key);
        if (list === undefined) settlesOf.set(key, list = []);
        list.push(s);
      }
      const deliveryOf = new Map<string, Held>();
      for (const [id, list] of byId) {
        list.sort((a, b) => a.attempts - b.attempts);
        assert.deepEqual(
          list.map((d) => d.attempts),
          list.map((_, i) => i + 1),
          `item ${id}: each attempt handed out once, none skipped`,
        );
        for (const d of list) deliveryOf.set(`${d.id}/${d.attempts}`, d);
        for (let i = 1; i < list.length; i++) {
          const [prev, next] = [list[i - 1], list[i]];
          const settled = settlesOf.get(`${prev.id}/${prev.attempts}`) ?? [];
          assert.ok(
            settled.every((s) => s.kind === "nack"),
            `item ${id} attempt ${prev.attempts} was acked, yet served again (an ack told ` +
              `it was accepted although the item went to a new holder): ` +
              JSON.stringify({ settled, next }),
          );
          const leaseEnd = Math.min(
            prev.askedAt + prev.leaseMs,
            ...settled.map((s) => s.askedAt),
          );
          assert.ok(
            next.gotAt >= leaseEnd - CLOCK_SLACK_MS,
            `item ${id} went to ${next.session} (attempt ${next.attempts}, got by ` +
              `${next.gotAt}) while ${prev.session} still held attempt ${prev.attempts} ` +
              `(lease until at least ${leaseEnd})`,
          );
        }
      }
      for (const [key, list] of settlesOf) {
        const held = deliveryOf.get(key);
        assert.ok(held !== undefined, `a settlement of ${key}, never handed out`);
        for (const s of list) {
          assert.equal(s.session, held.session, `${key} settled by a session not holding it`);
        }
        assert.equal(list.length, 1, `${key} settled twice: ${JSON.stringify(list)}`);
      }
      for (const id of putIds) {
        assert.equal(acceptedAcks.get(id), 1, `item ${id} acked exactly once`);
        const last = byId.get(id)!.at(-1)!;
        assert.equal(
          settlesOf.get(`${id}/${last.attempts}`)?.[0]?.kind,
          "ack",
          `item ${id}: the ack accepted is its last delivery's`,
        );
      }
      assert.equal(acceptedAcks.size, RACE_ITEMS);

      // (b) From the database, as it was seen during the race and at its end.
      for (const snap of snapshots) {
        for (const id of snap.ackedBefore) {
          assert.ok(!snap.live.has(id), `item ${id} was still there after its ack was accepted`);
        }
        for (const [id, attempts, owner] of snap.leased) {
          assert.equal(
            deliveryOf.get(`${id}/${attempts}`)?.session,
            owner,
            `the database leased ${id} attempt ${attempts} to ${owner}, who never got it`,
          );
        }
      }
      const [end] = await sql.unsafe(
        `SELECT (SELECT count(*) FROM taskq.items WHERE queue = $1) AS live,
           (SELECT coalesce(sum(acked), 0) FROM taskq.counters WHERE queue = $1) AS acked`,
        [RACE_QUEUE],
      );
      assert.deepEqual([Number(end.live), Number(end.acked)], [0, RACE_ITEMS]);

      const redelivered = deliveries.filter((d) => d.attempts > 1).length;
      const refused = settlements.filter((s) => !s.accepted).length;
      const lateAccepted = settlements.filter((s) => {
        const held = deliveryOf.get(`${s.id}/${s.attempt}`);
        return s.accepted && held !== undefined && s.askedAt > held.gotAt + held.leaseMs;
      }).length;
      console.log(
        `${deliveries.length} deliveries of ${RACE_ITEMS} items to ${sessions.length} sessions ` +
          `on ${RACE_BROKERS} brokers (${redelivered} redeliveries), ${settlements.length} ` +
          `settlements (${refused} refused, ${lateAccepted} accepted after the lease's time), ` +
          `${snapshots.length} database snapshots, ${Date.now() - started} ms`,
      );
      assert.ok(redelivered > 0 && refused > 0, "leases ran out and late acks were refused");
    } finally {
      await Promise.all(brokers.map((b) => b.close()));
      await sql.end();
      await cluster.destroy();
    }
  },
});

Deno.test({
  name: testName("a stale ack batched with the holder's ack is refused, and its result dropped"),
  ignore: !available,
  fn: async () => {
    const cluster = await startPostgres();
    let broker: PostgresBroker | undefined;
    try {
      broker = await openPostgresBroker({ url: cluster.url, masterName: "stale acks", pollMs: 20 });
      const stale = await broker.open({ name: "stale", address: "" });
      const holder = await broker.open({ name: "holder", address: "" });
      const [id] = await stale.put("tasks", [7]);
      const [first] = await stale.get("tasks", { max: 1, timeoutMs: 0, leaseMs: 50 });
      assert.equal(first.id, id);
      // The lease runs out; the item is served again, to the holder.
      const [second] = await waitFor(
        "the item served again",
        () =>
          holder.get("tasks", { max: 1, timeoutMs: 100, leaseMs: 60_000 }).then((got) =>
            got.length > 0 ? got : undefined
          ),
        { timeoutMs: 10_000 },
      );
      assert.deepEqual([second.id, second.attempts], [id, 2]);
      // Both finish at once: their acks go to the database in one batch.
      const [staleRefused, holderRefused] = await Promise.all([
        stale.ack([id], { queue: "results", values: [{ by: "stale", attempt: 1 }] }),
        holder.ack([id], { queue: "results", values: [{ by: "holder", attempt: 2 }] }),
      ]);
      const results = await holder.get("results", { max: 10, timeoutMs: 0 });
      assert.deepEqual(
        {
          staleRefused,
          holderRefused,
          results: results.map((d) => d.value),
        },
        { staleRefused: [id], holderRefused: [], results: [{ by: "holder", attempt: 2 }] },
        "an ack of attempt 1, whose lease had ended, must be refused with its result",
      );
    } finally {
      await broker?.close();
      await cluster.destroy();
    }
  },
});
