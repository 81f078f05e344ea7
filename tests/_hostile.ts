/**
 * The harness of the hostile-input tests (tests/hostile_test.ts,
 * tests/hostile_more_test.ts): a real `taskq master` process with a small
 * memory budget, a good client whose put/get/ack round trips are timed during
 * and after an attack, the master's RSS (read through `cat`), the items it
 * acknowledged, and a restart that must find them again.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Client, connect } from "../lib/mod.ts";
import {
  type MasterProcess,
  pause,
  type Proc,
  startMaster,
  TEST_KEY,
  withDeadline,
} from "./_helpers.ts";

/** Bytes in a mebibyte. */
export const MIB = 1024 * 1024;

/** The master's `--max-memory` in every test. */
export const BUDGET_BYTES = 256 * MIB;

/**
 * What the runtime may take beyond `--max-memory` as the kernel counts it
 * (RSS also holds V8's code space, the Deno binary's touched pages, SQLite's
 * page cache and allocator slack that the budget's own model does not see).
 */
export const RUNTIME_ALLOWANCE_BYTES = 64 * MIB;

/** The bound on a good client's round trip. */
export const ROUND_TRIP_BOUND_MS = 1_000;

/** Items the good client puts (and has acknowledged) before each attack. */
export const KEPT = 300;

/** Of those, how many it takes and acks before the attack (they must stay gone). */
export const ACKED = 100;

/** A put/get/ack round trip taking longer than this is a failure, not just slow. */
export const ROUND_TRIP_GIVE_UP_MS = 10_000;

/** Deadline of an attacker process. */
export const ATTACK_MS = 60_000;

// ---------------------------------------------------------------------------
// Measuring the master

/**
 * The resident set size of process `pid`, in bytes (VmRSS of /proc/PID/status,
 * read by `cat`: Deno lets only fully privileged programs read /proc/PID).
 */
export function rssOf(pid: number): number {
  const out = new Deno.Command("cat", { args: [`/proc/${pid}/status`], stderr: "null" })
    .outputSync();
  const status = new TextDecoder().decode(out.stdout);
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** Bytes as MiB with one decimal, for messages and the log. */
export function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

/** Asserts the master is alive and within its memory budget plus the runtime allowance. */
export function assertWithinBudget(master: MasterProcess, when: string): number {
  assert.equal(master.proc.exited, undefined, `master died ${when}: ${master.proc.describe()}`);
  const rss = rssOf(master.proc.pid);
  assert.ok(
    rss <= BUDGET_BYTES + RUNTIME_ALLOWANCE_BYTES,
    `master RSS ${mib(rss)} ${when}: over ${mib(BUDGET_BYTES)} + ${mib(RUNTIME_ALLOWANCE_BYTES)}`,
  );
  return rss;
}

/** One put/get/ack round trip of the good client; resolves with its duration in ms. */
export async function roundTrip(client: Client): Promise<number> {
  const queue = client.queue("probe");
  const started = performance.now();
  const trip = (async () => {
    const id = await queue.put({ probe: started });
    // A round trip given up on earlier may have left its probe in the queue, ahead of ours.
    for (;;) {
      const job = await queue.get(ROUND_TRIP_GIVE_UP_MS);
      assert.ok(job !== null, "the probe item came back");
      await queue.ack(job);
      if (job.id === id) break;
      assert.ok(job.id < id, `only an earlier probe comes before ours, not ${job.id}`);
    }
  })();
  // Failing in time, it fails the round trip; failing after the round trip was given up on, it
  // must not surface as an uncaught error.
  trip.catch(() => {});
  await withDeadline(trip, ROUND_TRIP_GIVE_UP_MS, "a good client's put/get/ack round trip");
  return performance.now() - started;
}

/** What a {@link Watch} saw. */
export interface Watched {
  /** Duration of each round trip, in ms. */
  trips: number[];
  /** Highest RSS seen, in bytes. */
  peakRss: number;
}

/**
 * Watches a master during an attack: a good client's round trip, the master
 * being alive and its RSS, every {@link interval} ms until stopped.
 */
class Watch {
  readonly trips: number[] = [];
  peakRss = 0;
  #stopped = false;
  readonly #done: Promise<void>;

  constructor(
    readonly master: MasterProcess,
    readonly client: Client,
    readonly interval = 150,
  ) {
    // Held until stop() (or abandon()) awaits it: never an unhandled rejection.
    const done = this.#run();
    done.catch(() => {});
    this.#done = done;
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      this.peakRss = Math.max(this.peakRss, assertWithinBudget(this.master, "during the attack"));
      this.trips.push(await roundTrip(this.client));
      this.peakRss = Math.max(this.peakRss, assertWithinBudget(this.master, "during the attack"));
      await pause(this.interval);
    }
  }

  /** Stops watching; rejects with the first failed check. */
  async stop(): Promise<Watched> {
    this.#stopped = true;
    await this.#done;
    return { trips: this.trips, peakRss: this.peakRss };
  }

  /** Stops watching without raising (cleanup after another failure). */
  async abandon(): Promise<void> {
    this.#stopped = true;
    await this.#done.catch(() => {});
  }
}

/** Asserts every round trip was within the bound; returns the slowest. */
export function assertFast(trips: readonly number[], when: string): number {
  assert.ok(trips.length > 0, `no round trip ${when}`);
  const slowest = Math.max(...trips);
  assert.ok(
    slowest < ROUND_TRIP_BOUND_MS,
    `a round trip ${when} took ${slowest.toFixed(0)} ms: ${
      trips.map((t) => t.toFixed(0)).join(", ")
    }`,
  );
  return slowest;
}

// ---------------------------------------------------------------------------
// The good client and the acknowledged items

/** Connects a good client, retrying while the master refuses new connections. */
export async function goodClient(
  master: MasterProcess,
  deadlineMs = 20_000,
): Promise<{ client: Client; retries: number; reasons: string[] }> {
  const deadline = Date.now() + deadlineMs;
  const reasons: string[] = [];
  for (;;) {
    try {
      const client = await connect({
        address: master.address,
        authkey: TEST_KEY,
        timeoutMs: 3_000,
      });
      return { client, retries: reasons.length, reasons };
    } catch (error) {
      reasons.push(error instanceof Error ? error.message : String(error));
      if (Date.now() > deadline) {
        throw new Error(`no good connection in ${deadlineMs} ms: ${reasons.slice(-3).join("; ")}`);
      }
      await pause(50);
    }
  }
}

/** Puts {@link KEPT} items on "kept" (each acknowledged by the master), then takes and acks {@link ACKED}. */
export async function keepItems(client: Client): Promise<void> {
  const queue = client.queue("kept");
  const ids = await queue.putMany(Array.from({ length: KEPT }, (_, i) => ({ kept: i })));
  assert.equal(ids.length, KEPT);
  const jobs = await queue.getMany(ACKED, 1_000);
  assert.equal(jobs.length, ACKED);
  await queue.ack(jobs);
}

/** Asserts "kept" holds exactly the items put and not acked, none leased or lost. */
export async function assertKept(client: Client, when: string): Promise<void> {
  const [kept] = (await client.stats("kept")).queues;
  assert.ok(kept, `queue "kept" is gone ${when}`);
  assert.equal(kept.ready, KEPT - ACKED, `ready items of "kept" ${when}`);
  assert.equal(kept.leased + kept.delayed, 0, `leased or delayed items of "kept" ${when}`);
}

/**
 * Stops `master` with SIGTERM (it must exit 0), starts it again on the same
 * data dir, and checks the acknowledged items are there; `also` checks more.
 */
export async function restartAndCount(
  master: MasterProcess,
  dataDir: string,
  args: string[],
  also?: (client: Client) => Promise<void>,
): Promise<number> {
  await master.stop();
  const started = performance.now();
  await using again = await startMaster({ dataDir, args });
  const restartMs = performance.now() - started;
  const client = await connect({ address: again.address, authkey: TEST_KEY });
  try {
    await assertKept(client, "after the restart");
    await also?.(client);
    assertFast([await roundTrip(client)], "after the restart");
  } finally {
    await client.close();
  }
  await again.stop();
  return restartMs;
}

/** The flags of every test master: a small budget. */
export const BUDGET_ARGS = ["--max-memory", `${BUDGET_BYTES / MIB}MiB`];

/** What a test reports (printed as one line, for the record). */
export function report(name: string, figures: Record<string, unknown>): void {
  console.log(`[hostile] ${name}: ${JSON.stringify(figures)}`);
}

/**
 * Runs one attack scenario: a durable master with the budget (and `extra`
 * flags), the kept items, `attack` started (it returns the attacker process
 * and a promise of its end), a watch during it, checks after it, a restart.
 */
export async function scenario(
  name: string,
  extra: string[],
  attack: (master: MasterProcess, client: Client) => Promise<{
    attacker: Proc;
    finished: Promise<Record<string, unknown>>;
  }>,
  after?: (master: MasterProcess, client: Client) => Promise<Record<string, unknown>>,
  afterRestart?: (client: Client) => Promise<void>,
): Promise<void> {
  const started = performance.now();
  const dataDir = await Deno.makeTempDir({ prefix: "taskq-hostile-" });
  const args = [...BUDGET_ARGS, ...extra];
  try {
    await using master = await startMaster({ dataDir, args });
    const { client } = await goodClient(master);
    let figures: Record<string, unknown> = {};
    try {
      await keepItems(client);
      const baselineRss = assertWithinBudget(master, "before the attack");
      const before = assertFast([await roundTrip(client)], "before the attack");
      const { attacker, finished } = await attack(master, client);
      await using _attacker = attacker;
      const watch = new Watch(master, client);
      let outcome: Record<string, unknown>;
      let watched: Watched;
      try {
        outcome = await withDeadline(finished, ATTACK_MS, `the attacker (${attacker.describe()})`);
        watched = await watch.stop();
      } finally {
        await watch.abandon();
      }
      const status = await withDeadline(attacker.status, 10_000, "the attacker to exit");
      assert.equal(status.code, 0, attacker.describe());
      // After: the first round trip may reconnect, the next ones must be fast.
      const first = await roundTrip(client);
      const trips = [];
      for (let i = 0; i < 3; i++) trips.push(await roundTrip(client));
      const slowestAfter = assertFast(trips, "after the attack");
      const afterRss = assertWithinBudget(master, "after the attack");
      await assertKept(client, "after the attack");
      const more = await after?.(master, client) ?? {};
      figures = {
        ...outcome,
        ...more,
        baselineRss: mib(baselineRss),
        peakRss: mib(watched.peakRss),
        afterRss: mib(afterRss),
        tripsDuring: watched.trips.length,
        slowestDuringMs: Math.round(assertFast(watched.trips, "during the attack")),
        beforeMs: Math.round(before),
        firstAfterMs: Math.round(first),
        slowestAfterMs: Math.round(slowestAfter),
      };
    } finally {
      await client.close();
    }
    figures.restartMs = Math.round(await restartAndCount(master, dataDir, args, afterRestart));
    figures.totalMs = Math.round(performance.now() - started);
    report(name, figures);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
}

/** The fields of the `{"what":"done"}` line a process prints, once it does. */
export async function doneLine(proc: Proc): Promise<Record<string, unknown>> {
  const [line] = await proc.waitForLine(/^\{"what":"done".*\}$/, ATTACK_MS);
  const { what: _, ...fields } = JSON.parse(line);
  return fields;
}
