/**
 * The broker conformance suite: one set of tests, parameterized by a
 * {@link BrokerFactory}, that every implementation of the {@link Broker}
 * interface (lib/broker/broker.ts) must pass unchanged.
 *
 * It speaks only the `Broker` / `BrokerSession` interface (never an engine or
 * a store), in real time (no injected clock: an implementation over a database
 * uses the database's clock), with short leases, delays and backoffs. A
 * condition that must come about is polled with a deadline ({@link waitFor});
 * the suite sleeps only to show that something does NOT happen within a short
 * window, and it asserts no upper bound on how long anything takes. A lower
 * bound ("not before the delay") allows {@link SLACK_MS} for timer granularity.
 *
 * Each test gets a broker on fresh, empty data from the factory and closes its
 * sessions and the broker in `finally`, then lets the factory clean up.
 *
 * Covered, one focused test each: ids; FIFO order and batches; values round
 * trip; gets that do not wait, wait, time out, and are served first come first
 * served; leases (not redelivered while held, ack, expiry back to the front in
 * put order with attempts counted, late and foreign settlements refused,
 * extend, default lease length); a closing session (its items back to the
 * front at once in the order taken, its waiting gets and puts ended, nothing
 * done after); retries (backoff, doubling, cap, dead letters and their fields,
 * per-put and per-queue max attempts, dead-lettering on expiry and on close,
 * dead letters that die again); nack (back of the queue, with a delay, never
 * dead-letters); delays; results committed with the ack; back-pressure by
 * `maxQueueLength` (held puts, first come first served, the limit holds,
 * `roomTimeoutMs`, items the broker puts itself never held); pause and resume;
 * the admin calls (peek, drop, requeueDead, stats, sessions, waitEmpty); the
 * limits (reads create no queue, the queue cap, the memory budget);
 * concurrent consumers; and, for a durable factory that can reopen its data,
 * durability across close and reopen.
 *
 * And what job-queue users ask for beyond that (issue #13, model/jobs.ts):
 * priorities (order, bounds, where a nacked, expired or retried item rejoins);
 * fair groups (round-robin, the group of items without one, priority first,
 * `groupConcurrency`); unique keys (taken while ready, delayed or leased,
 * within one put, freed by ack, dead-lettering, drop and cancel, `keyHoldMs`,
 * scoped to a queue, concurrent puts); per-queue concurrency and rate limits
 * (the caps, waiting getters served in order as leases end or the rate allows,
 * limit changes waking them, `limits()`, limits given at start); cancellation
 * (ready, delayed and leased items, the holder told, missing ids, what a
 * cancelled item frees); job lookup in every state, with the history's count,
 * age and value bounds; and progress (recorded, renewing the lease, refused
 * when not held).
 *
 * @example
 * ```ts ignore
 * import { brokerConformance } from "./broker_conformance.ts";
 * import { openLocalBroker } from "../lib/broker/local.ts";
 * brokerConformance({
 *   name: "local broker (memory)",
 *   durable: false,
 *   open: (options) => openLocalBroker({ store: "memory", ...options }),
 * });
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Broker,
  type BrokerSession,
  type ControlAction,
  type Delivery,
  type GetOptions,
  type JobOptions,
  MAX_HELD_LISTED,
  MAX_ITEMS_PAGE,
  type PutIds,
} from "../lib/broker/broker.ts";
import {
  BrokerClosedError,
  MemoryFullError,
  QueueFullError,
  SessionClosedError,
  TooManyQueuesError,
} from "../lib/broker/errors.ts";
import {
  type DeadLetter,
  emptyQueueStats,
  type QueueStats,
  type RetryPolicy,
} from "../lib/model/types.ts";
import {
  type JobInfo,
  type LimitChanges,
  MAX_HISTORY_VALUE_BYTES,
  MAX_PRIORITY,
  MIN_PRIORITY,
  type NamedQueueLimits,
  NO_LIMITS,
  type QueueLimits,
  RATE_BURST_MS,
} from "../lib/model/jobs.ts";

/**
 * What a test needs its broker opened with; the {@link JobOptions} fields
 * (`historyCount`, `historyMs`, `limits`) only when a test sets them.
 */
export interface ConformanceOptions extends JobOptions {
  /** Lease length for gets that name none, in ms. */
  defaultLeaseMs: number;
  /** How failed items are retried and when they are dead-lettered. */
  retry: RetryPolicy;
  /** Items a queue may hold before puts to it wait (0: no limit). */
  maxQueueLength: number;
  /** The memory budget in bytes, when a test sets one (puts near it are refused). */
  maxMemoryBytes?: number;
  /** Most queues the broker holds, when a test sets it. */
  maxQueues?: number;
}

/** How the suite gets brokers of the implementation under test. */
export interface BrokerFactory {
  /** Prefix of every test's name, e.g. `local broker (memory)`. */
  readonly name: string;
  /** Whether items outlive a close (the durability tests also need {@link reopen}). */
  readonly durable: boolean;
  /** Opens a broker with `options` on fresh, empty data (no items, no queues). */
  open(options: ConformanceOptions): Promise<Broker>;
  /**
   * Opens a new broker, with the same options, on the data of `closed`: a broker
   * this factory returned (from {@link open} or an earlier reopen) that the suite
   * has closed.
   */
  reopen?(closed: Broker): Promise<Broker>;
  /**
   * Removes the data of `opened`, a broker {@link open} returned, once it and
   * every broker reopened from it are closed.
   */
  cleanup?(opened: Broker): Promise<void>;
}

/** Options every test starts from: leases that never run out unless a test asks. */
export const BASE_OPTIONS: ConformanceOptions = {
  defaultLeaseMs: 30_000,
  retry: { maxAttempts: 5, backoffBaseMs: 50, backoffMaxMs: 1_000 },
  maxQueueLength: 0,
};

/** Deadline for a condition that must come about. */
const WAIT_MS = 5_000;

/** Interval between polls of {@link waitFor}. */
const POLL_MS = 10;

/** Timer granularity tolerated when checking that something did not happen too soon. */
export const SLACK_MS = 20;

/** Window in which something must NOT happen. */
const QUIET_MS = 150;

/** A short lease, for tests that let leases run out. */
const SHORT_LEASE_MS = 200;

/** Tolerated difference between this process's clock and the broker's. */
const CLOCK_TOLERANCE_MS = 2_000;

/** An id no broker has handed out in a fresh test. */
const UNKNOWN_ID = 2 ** 40;

/** How long a key stays taken after its item finished, in tests of `keyHoldMs`. */
const KEY_HOLD_MS = 200;

/** How long finished jobs are kept, in the test of `historyMs`. */
const HISTORY_MS = 300;

/** How long the rate limit test keeps getting, in ms. */
const RATE_WINDOW_MS = 500;

/**
 * The rate limit test's lower bound: at least this share of the deliveries a
 * rate allows must happen (timers run late on a busy machine).
 */
const RATE_FLOOR_SHARE = 1 / 3;

/**
 * A lease that outlasts a few calls even on a busy machine, yet runs out soon,
 * for tests that show something holds past a lease's end.
 */
const MEDIUM_LEASE_MS = 500;

/** A backoff that outlasts a few calls even on a busy machine, in ms. */
const MEDIUM_BACKOFF_MS = 300;

/** A lease long enough for a test to look at it, in ms. */
const LOOK_LEASE_MS = 10_000;

/** Tolerated difference, in ms, between a lease's length and its end less its start. */
const LEASE_SKEW_MS = 100;

/** What a test may change of {@link BASE_OPTIONS}. */
interface Overrides {
  defaultLeaseMs?: number;
  retry?: Partial<RetryPolicy>;
  maxQueueLength?: number;
  maxMemoryBytes?: number;
  maxQueues?: number;
  historyCount?: number;
  historyMs?: number;
  limits?: Readonly<Record<string, LimitChanges>>;
}

/** Resolves after `ms`; only used to show that something does NOT happen meanwhile. */
function idle(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `predicate` until it returns a truthy value, and returns that value.
 * @throws {Error} naming `what` when `timeoutMs` passes first.
 */
export async function waitFor<T>(
  what: string,
  predicate: () => T | Promise<T>,
  timeoutMs: number = WAIT_MS,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (performance.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await idle(POLL_MS);
  }
}

/**
 * Awaits `promise`, failing instead of hanging when `timeoutMs` passes first;
 * the timer is always cleared.
 */
async function within<T>(
  what: string,
  promise: Promise<T>,
  timeoutMs: number = WAIT_MS,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out after ${timeoutMs} ms: ${what}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A promise watched for settling (its rejection counts as handled until awaited). */
interface Tracked<T> {
  readonly promise: Promise<T>;
  readonly settled: boolean;
}

/** Watches `promise`, so a test can check that it is still pending. */
function track<T>(promise: Promise<T>): Tracked<T> {
  const tracked = { promise, settled: false };
  promise.then(() => tracked.settled = true, () => tracked.settled = true);
  return tracked;
}

/** Milliseconds since `start` (a `performance.now()` reading). */
function since(start: number): number {
  return performance.now() - start;
}

/** Asserts that at least `ms` (less {@link SLACK_MS}) passed since `start`. */
function assertNotBefore(start: number, ms: number, what: string): void {
  const elapsed = since(start);
  assert.ok(elapsed >= ms - SLACK_MS, `${what} after ${elapsed.toFixed(1)} ms, before ${ms} ms`);
}

const idsOf = (deliveries: readonly Delivery[]): number[] => deliveries.map((d) => d.id);
const valuesOf = (deliveries: readonly Delivery[]): unknown[] => deliveries.map((d) => d.value);
const attemptsOf = (deliveries: readonly Delivery[]): number[] => deliveries.map((d) => d.attempts);
const ascending = (ids: readonly number[]): number[] => [...ids].sort((a, b) => a - b);

/** Leases up to `max` ready items of `queue` without waiting. */
function getNow(
  session: BrokerSession,
  queue: string,
  max = 1,
  leaseMs?: number,
): Promise<readonly Delivery[]> {
  const options: GetOptions = { max, timeoutMs: 0 };
  if (leaseMs !== undefined) options.leaseMs = leaseMs;
  return session.get(queue, options);
}

/** Leases exactly one item of `queue`, which must be ready. */
async function takeOne(session: BrokerSession, queue: string, leaseMs?: number): Promise<Delivery> {
  const got = await getNow(session, queue, 1, leaseMs);
  assert.equal(got.length, 1, `expected an item ready on ${queue}`);
  return got[0];
}

/** Leases one item of `queue`, waiting for it up to the suite's deadline. */
async function awaitOne(
  session: BrokerSession,
  queue: string,
  leaseMs?: number,
): Promise<Delivery> {
  const options: GetOptions = { max: 1, timeoutMs: WAIT_MS };
  if (leaseMs !== undefined) options.leaseMs = leaseMs;
  const got = await session.get(queue, options);
  assert.equal(got.length, 1, `expected an item of ${queue} within ${WAIT_MS} ms`);
  return got[0];
}

/** Checks a dead letter, with its `failedAt` between `before` and `after` (this process's clock). */
function assertDeadLetter(
  value: unknown,
  expected: Omit<DeadLetter, "failedAt">,
  before: number,
  after: number,
): void {
  const letter = value as DeadLetter;
  assert.equal(typeof letter?.failedAt, "number", "a dead letter carries failedAt");
  assert.ok(
    letter.failedAt >= before - CLOCK_TOLERANCE_MS && letter.failedAt <= after + CLOCK_TOLERANCE_MS,
    `failedAt ${letter.failedAt} is not between ${before} and ${after}`,
  );
  assert.deepEqual({ ...letter, failedAt: 0 }, { ...expected, failedAt: 0 });
}

/** Values of every kind the protocol carries (§4 of docs/PROTOCOL.md). */
const SAMPLE_VALUES: readonly unknown[] = [
  null,
  true,
  false,
  0,
  -7,
  2 ** 40,
  3.25,
  "",
  "héllo ✓ 𝄞",
  [1, [2, [3, []]]],
  { a: 1, b: { c: [null, "x"] }, "": {} },
  new Uint8Array([0, 1, 127, 255]),
  new Date(1_700_000_000_123),
];

/** Values `GROUP:TAGi` for i from 0 to `count` − 1: items that name their group (empty: none). */
function labelled(group: string, count: number, tag = ""): string[] {
  return Array.from({ length: count }, (_, i) => `${group}:${tag}${i}`);
}

/** The group a {@link labelled} value names. */
function groupOf(value: unknown): string {
  return String(value).split(":")[0];
}

/**
 * Asserts that deliveries went round-robin across groups, given the group of
 * each delivery in order (nothing put meanwhile): between two deliveries of one
 * group, every other group that still had items (delivered later) was served.
 */
function assertRoundRobin(groups: readonly string[], what: string): void {
  for (let i = 1; i < groups.length; i++) {
    const previous = groups.lastIndexOf(groups[i], i - 1);
    if (previous < 0) continue;
    const between = new Set(groups.slice(previous + 1, i));
    for (const other of new Set(groups.slice(previous + 1))) {
      assert.ok(
        other === groups[i] || between.has(other),
        `${what}: group "${groups[i]}" was served twice (deliveries ${previous} and ${i}) ` +
          `while group "${other}" had items: ${groups.join(" ")}`,
      );
    }
  }
}

/** The four limit fields of `limits` (a row's queue name left out). */
function limitFields(limits: QueueLimits): QueueLimits {
  const { rateCount, ratePeriodMs, concurrency, groupConcurrency } = limits;
  return { rateCount, ratePeriodMs, concurrency, groupConcurrency };
}

/** The limits of a queue whose only changes from none are `changes`. */
function limitsWith(changes: LimitChanges): QueueLimits {
  return { ...NO_LIMITS, ...changes };
}

/** The row `limits()` reports for `queue` when its only changes from none are `changes`. */
function limitsRow(queue: string, changes: LimitChanges): NamedQueueLimits {
  return { queue, ...limitsWith(changes) };
}

/** Rows of `limits()` in queue order, for deep comparisons. */
function byQueue(rows: readonly NamedQueueLimits[]): NamedQueueLimits[] {
  return [...rows].sort((x, y) => x.queue < y.queue ? -1 : x.queue > y.queue ? 1 : 0);
}

/** Asserts what a put resolved with: the ids, and the indexes of those that added nothing. */
function assertPutIds(
  ids: PutIds,
  expected: readonly number[],
  existing: readonly number[] | undefined,
  what: string,
): void {
  assert.deepEqual([...ids], expected, `${what}: the ids`);
  assert.deepEqual(ids.existing, existing, `${what}: existing (absent when all were added)`);
}

/** Asserts that `info` holds no field set to `undefined` (absent fields are omitted). */
function assertNoUndefined(info: JobInfo): void {
  const nested = [info, info.holder ?? {}, info.progress ?? {}] as Record<string, unknown>[];
  for (const record of nested) {
    for (const [field, value] of Object.entries(record)) {
      assert.notEqual(value, undefined, `job ${info.id}: field ${field} is undefined, not omitted`);
    }
  }
}

/** Asserts that `info` has none of `fields`. */
function assertAbsent(info: JobInfo, fields: readonly (keyof JobInfo)[], what: string): void {
  for (const field of fields) {
    assert.ok(!(field in info), `${what}: job ${info.id} has ${field} ${String(info[field])}`);
  }
}

/** Some fields of `info`, for deep comparisons. */
function pick(info: JobInfo, fields: readonly (keyof JobInfo)[]): Partial<JobInfo> {
  const out: Record<string, unknown> = {};
  for (const field of fields) if (field in info) out[field] = info[field];
  return out as Partial<JobInfo>;
}

/**
 * Asserts that `time` (ms since the epoch, the broker's clock) lies between
 * `before` and `after` (this process's clock, {@link CLOCK_TOLERANCE_MS} apart).
 */
function assertTimeBetween(time: unknown, before: number, after: number, what: string): void {
  assert.equal(typeof time, "number", `${what} is a number`);
  const t = time as number;
  assert.ok(
    t >= before - CLOCK_TOLERANCE_MS && t <= after + CLOCK_TOLERANCE_MS,
    `${what} ${t} is not between ${before} and ${after}`,
  );
}

/** One test's broker and the sessions it opened; all closed by {@link dispose}. */
class Harness {
  broker: Broker;
  readonly options: ConformanceOptions;
  readonly #factory: BrokerFactory;
  readonly #opened: Broker;
  #sessions: BrokerSession[] = [];
  #count = 0;

  constructor(factory: BrokerFactory, options: ConformanceOptions, broker: Broker) {
    this.#factory = factory;
    this.options = options;
    this.broker = broker;
    this.#opened = broker;
  }

  /** Opens a session, closed at the end of the test. */
  async session(name?: string, address = ""): Promise<BrokerSession> {
    const session = await this.broker.open({ name: name ?? `session-${++this.#count}`, address });
    this.#sessions.push(session);
    return session;
  }

  /** Statistics of one queue. */
  async stats(queue: string): Promise<QueueStats> {
    const { queues } = await this.broker.stats(queue);
    assert.equal(queues.length, 1, "stats of a named queue has exactly one record");
    assert.equal(queues[0].name, queue);
    return queues[0];
  }

  /** What the broker knows of job `id`, which it must know. */
  async job(id: number): Promise<JobInfo> {
    const info = await this.broker.job(id);
    assert.ok(info !== undefined, `job ${id} is known`);
    assert.equal(info.id, id);
    assertNoUndefined(info);
    return info;
  }

  /** Items `queue` holds: ready, leased and delayed. */
  async length(queue: string): Promise<number> {
    const s = await this.stats(queue);
    return s.ready + s.leased + s.delayed;
  }

  /** Polls the statistics of `queue` until `predicate` holds. */
  async until(
    queue: string,
    what: string,
    predicate: (stats: QueueStats) => boolean,
  ): Promise<void> {
    await waitFor(what, async () => predicate(await this.stats(queue)));
  }

  /** Closes the sessions and the broker, and opens a new broker on the same data. */
  async reopen(): Promise<void> {
    const reopen = this.#factory.reopen;
    assert.ok(reopen !== undefined, "the factory can reopen its data");
    await this.#closeSessions();
    await this.broker.close();
    this.broker = await reopen.call(this.#factory, this.broker);
  }

  /** Closes every session and the broker, then lets the factory clean up. */
  async dispose(): Promise<void> {
    try {
      await this.#closeSessions();
    } finally {
      try {
        await this.broker.close();
      } finally {
        await this.#factory.cleanup?.(this.#opened);
      }
    }
  }

  async #closeSessions(): Promise<void> {
    const sessions = this.#sessions;
    this.#sessions = [];
    for (const session of sessions) await session.close();
  }
}

/** {@link BASE_OPTIONS} with a test's overrides. */
function optionsWith(overrides: Overrides): ConformanceOptions {
  return {
    defaultLeaseMs: overrides.defaultLeaseMs ?? BASE_OPTIONS.defaultLeaseMs,
    retry: { ...BASE_OPTIONS.retry, ...overrides.retry },
    maxQueueLength: overrides.maxQueueLength ?? BASE_OPTIONS.maxQueueLength,
    ...(overrides.maxMemoryBytes === undefined ? {} : { maxMemoryBytes: overrides.maxMemoryBytes }),
    ...(overrides.maxQueues === undefined ? {} : { maxQueues: overrides.maxQueues }),
    ...(overrides.historyCount === undefined ? {} : { historyCount: overrides.historyCount }),
    ...(overrides.historyMs === undefined ? {} : { historyMs: overrides.historyMs }),
    ...(overrides.limits === undefined ? {} : { limits: overrides.limits }),
  };
}

/**
 * Registers the conformance tests for `factory`, each named
 * `${factory.name}: ...`. The durability tests are ignored unless the factory
 * is durable and can reopen its data.
 */
export function brokerConformance(factory: BrokerFactory): void {
  const test = (
    name: string,
    overrides: Overrides,
    body: (h: Harness) => Promise<void>,
    ignore = false,
  ): void => {
    Deno.test({
      name: `${factory.name}: ${name}`,
      ignore,
      fn: async () => {
        const options = optionsWith(overrides);
        const h = new Harness(factory, options, await factory.open(options));
        try {
          await body(h);
        } finally {
          await h.dispose();
        }
      },
    });
  };

  // ---------------------------------------------------------------- ids, order, batches

  test("put resolves with one id per value: unique, increasing, never reused", {}, async (h) => {
    const s = await h.session();
    const first = await s.put("q", ["a", "b", "c"]);
    const other = await s.put("other", ["d"]);
    const more = await s.put("q", ["e", "f"]);
    assert.deepEqual([first.length, other.length, more.length], [3, 1, 2]);
    const all = [...first, ...other, ...more];
    for (const id of all) assert.ok(Number.isSafeInteger(id) && id > 0, `id ${id}`);
    for (let i = 1; i < all.length; i++) {
      assert.ok(all[i] > all[i - 1], `ids increase in put order: ${all}`);
    }
    const got = await getNow(s, "q", 10);
    assert.deepEqual(idsOf(got), [...first, ...more], "deliveries carry the ids put returned");
    assert.deepEqual(await s.ack(idsOf(got)), []);
    const [later] = await s.put("q", ["g"]);
    assert.ok(later > Math.max(...all), "an id is never reused, even after its item is gone");
  });

  test("items are served first in, first out, within each queue", {}, async (h) => {
    const producer = await h.session("producer");
    const consumer = await h.session("consumer");
    const ids = [
      ...await producer.put("q", [1]),
      ...await producer.put("q", [2, 3]),
      ...await producer.put("r", ["x"]),
      ...await producer.put("q", [4]),
    ];
    const got: Delivery[] = [];
    for (let i = 0; i < 4; i++) got.push(await takeOne(consumer, "q"));
    assert.deepEqual(valuesOf(got), [1, 2, 3, 4]);
    assert.deepEqual(idsOf(got), [ids[0], ids[1], ids[2], ids[4]]);
    assert.deepEqual(attemptsOf(got), [1, 1, 1, 1], "a first delivery is attempt 1");
    assert.deepEqual(await getNow(consumer, "q"), [], "queue q is empty now");
    assert.deepEqual(valuesOf(await getNow(consumer, "r")), ["x"], "queues are independent");
    const s = await h.stats("q");
    assert.deepEqual([s.ready, s.leased, s.put], [0, 4, 4]);
  });

  test("a get takes up to max items, in order, and fewer when fewer are ready", {}, async (h) => {
    const s = await h.session();
    await s.put("q", [0, 1, 2, 3, 4, 5, 6]);
    assert.deepEqual(valuesOf(await getNow(s, "q", 3)), [0, 1, 2]);
    assert.deepEqual(valuesOf(await getNow(s, "q", 3)), [3, 4, 5]);
    assert.deepEqual(valuesOf(await getNow(s, "q", 3)), [6]);
    assert.deepEqual(await getNow(s, "q", 3), []);
    assert.equal((await h.stats("q")).leased, 7);
  });

  test("values come back as they were put", {}, async (h) => {
    const s = await h.session();
    await s.put("q", SAMPLE_VALUES);
    const got = await getNow(s, "q", SAMPLE_VALUES.length);
    assert.deepEqual(valuesOf(got), SAMPLE_VALUES);
  });

  // ---------------------------------------------------------------- waiting gets

  test(
    "a get with timeout 0 on an empty queue resolves with none and leaves no waiter",
    {},
    async (h) => {
      const consumer = await h.session("consumer");
      const producer = await h.session("producer");
      assert.deepEqual(await consumer.get("q", { max: 5, timeoutMs: 0 }), []);
      assert.equal((await h.stats("q")).waiting, 0);
      await producer.put("q", ["x"]);
      const s = await h.stats("q");
      assert.deepEqual([s.ready, s.leased], [1, 0], "nothing was taken for the get");
    },
  );

  test("a waiting get resolves with none when its timeout passes", {}, async (h) => {
    const consumer = await h.session("consumer");
    const producer = await h.session("producer");
    const started = performance.now();
    const get = consumer.get("q", { max: 1, timeoutMs: 200 });
    await h.until("q", "the get to wait", (s) => s.waiting === 1);
    assert.deepEqual(await within("the get to time out", get), []);
    assertNotBefore(started, 200, "the get timed out");
    assert.equal((await h.stats("q")).waiting, 0);
    await producer.put("q", ["x"]);
    const s = await h.stats("q");
    assert.deepEqual([s.ready, s.leased], [1, 0], "nothing was taken for the timed-out get");
  });

  test("a waiting get is served as soon as items are put", {}, async (h) => {
    const consumer = await h.session("consumer");
    const producer = await h.session("producer");
    const get = consumer.get("q", { max: 5, timeoutMs: 10_000 });
    await h.until("q", "the get to wait", (s) => s.waiting === 1);
    await producer.put("q", ["x", "y"]);
    const got = await within("the waiting get to be served", get);
    assert.deepEqual(valuesOf(got), ["x", "y"], "it takes what is ready, up to its max");
    const s = await h.stats("q");
    assert.deepEqual([s.waiting, s.ready, s.leased], [0, 0, 2]);
  });

  test("waiting gets are served first come, first served", {}, async (h) => {
    const early = await h.session("early");
    const late = await h.session("late");
    const producer = await h.session("producer");
    const first = early.get("q", { max: 1, timeoutMs: 10_000 });
    await h.until("q", "the early get to wait", (s) => s.waiting === 1);
    const second = late.get("q", { max: 1, timeoutMs: 10_000 });
    await h.until("q", "both gets to wait", (s) => s.waiting === 2);
    await producer.put("q", ["one"]);
    assert.deepEqual(valuesOf(await within("the early get", first)), ["one"]);
    const s = await h.stats("q");
    assert.deepEqual([s.waiting, s.leased], [1, 1], "the late get still waits");
    await producer.put("q", ["two"]);
    assert.deepEqual(valuesOf(await within("the late get", second)), ["two"]);
  });

  test("a waiting get takes up to its max of a batch, the next waiter the rest", {}, async (h) => {
    const a = await h.session("a");
    const b = await h.session("b");
    const producer = await h.session("producer");
    const first = a.get("q", { max: 2, timeoutMs: 10_000 });
    await h.until("q", "the first get to wait", (s) => s.waiting === 1);
    const second = b.get("q", { max: 2, timeoutMs: 10_000 });
    await h.until("q", "both gets to wait", (s) => s.waiting === 2);
    await producer.put("q", [1, 2, 3]);
    assert.deepEqual(valuesOf(await within("the first get", first)), [1, 2]);
    assert.deepEqual(valuesOf(await within("the second get", second)), [3]);
  });

  // ---------------------------------------------------------------- leases

  test("a leased item is not delivered again while its lease runs", {}, async (h) => {
    const holder = await h.session("holder");
    const other = await h.session("other");
    await holder.put("q", ["x"]);
    const item = await takeOne(holder, "q");
    assert.deepEqual(await getNow(other, "q"), []);
    assert.deepEqual(await other.get("q", { max: 1, timeoutMs: QUIET_MS }), []);
    assert.deepEqual(await getNow(holder, "q"), [], "not even to its holder");
    const s = await h.stats("q");
    assert.deepEqual([s.ready, s.leased], [0, 1]);
    assert.deepEqual(await holder.ack([item.id]), []);
  });

  test("ack removes items for good; a repeated, second or unknown id is refused", {}, async (h) => {
    const s = await h.session();
    await s.put("q", ["a", "b"]);
    const [a, b] = await getNow(s, "q", 2);
    assert.deepEqual(
      ascending(await s.ack([a.id, a.id, UNKNOWN_ID])),
      ascending([a.id, UNKNOWN_ID]),
      "an id repeated within one ack is settled once, then refused",
    );
    assert.deepEqual(await s.ack([a.id]), [a.id], "an item is acked once");
    let stats = await h.stats("q");
    assert.deepEqual([stats.ready, stats.leased, stats.acked], [0, 1, 1]);
    assert.deepEqual(await s.ack([b.id]), []);
    stats = await h.stats("q");
    assert.deepEqual([stats.ready, stats.leased, stats.acked], [0, 0, 2]);
    assert.deepEqual(await h.broker.peek("q", 10), []);
    assert.deepEqual(await getNow(s, "q"), []);
  });

  test("each acked item's run time, lease to ack, goes into the job histogram", {}, async (h) => {
    const s = await h.session();
    const before = h.broker.telemetry.jobSeconds.count;
    await s.put("q", ["a", "b", "c"]);
    const [a, b, c] = await getNow(s, "q", 3);
    await s.nack([c.id]);
    assert.deepEqual(await s.ack([a.id, b.id, UNKNOWN_ID]), [UNKNOWN_ID]);
    const after = h.broker.telemetry.jobSeconds;
    assert.equal(
      after.count - before,
      2,
      "one observation per item acked, none for nack or refusal",
    );
    assert.ok(
      after.sum >= 0 && after.sum < 60,
      `run times are seconds from lease to ack: ${after.sum}`,
    );
  });

  test(
    "an expired lease returns its items to the front, in put order, attempts counted",
    {},
    async (h) => {
      const holder = await h.session("holder");
      const other = await h.session("other");
      await holder.put("q", [1, 2, 3, 4]);
      const started = performance.now();
      const leased = await getNow(holder, "q", 2, SHORT_LEASE_MS);
      assert.deepEqual(valuesOf(leased), [1, 2]);
      await h.until("q", "the leases to expire", (s) => s.expired === 2);
      assertNotBefore(started, SHORT_LEASE_MS, "the leases expired");
      const s = await h.stats("q");
      assert.deepEqual([s.ready, s.leased, s.expired], [4, 0, 2]);
      const again = await getNow(other, "q", 10);
      assert.deepEqual(valuesOf(again), [1, 2, 3, 4], "expired items are served next");
      assert.deepEqual(attemptsOf(again), [2, 2, 1, 1]);
      assert.deepEqual(ascending(await holder.ack(idsOf(leased))), ascending(idsOf(leased)));
    },
  );

  test("an expired lease goes to a waiting get", {}, async (h) => {
    const holder = await h.session("holder");
    const waiter = await h.session("waiter");
    await holder.put("q", ["x"]);
    await takeOne(holder, "q", SHORT_LEASE_MS);
    const get = waiter.get("q", { max: 1, timeoutMs: 10_000 });
    const got = await within("the expired item to reach the waiting get", get);
    assert.deepEqual(valuesOf(got), ["x"]);
    assert.deepEqual(attemptsOf(got), [2]);
  });

  test("a late ack, nack, fail or extend is refused and the item is not lost", {}, async (h) => {
    const late = await h.session("late");
    const next = await h.session("next");
    const [id] = await late.put("q", ["x"]);
    await takeOne(late, "q", SHORT_LEASE_MS);
    await h.until("q", "the lease to expire", (s) => s.expired === 1);
    assert.deepEqual(await late.ack([id]), [id]);
    assert.deepEqual(await late.nack([id]), [id]);
    assert.deepEqual(await late.fail([id], "too late"), [id]);
    assert.deepEqual(await late.extend([id], 10_000), [id]);
    const s = await h.stats("q");
    assert.deepEqual([s.ready, s.leased, s.acked, s.nacked, s.failed], [1, 0, 0, 0, 0]);
    const again = await takeOne(next, "q");
    assert.deepEqual([again.id, again.value, again.attempts], [id, "x", 2]);
    assert.deepEqual(await late.ack([id]), [id], "the item is someone else's now");
    assert.deepEqual(await next.ack([id]), []);
  });

  test(
    "a stale ack sent with the new holder's ack is refused, and only the holder's result kept",
    {},
    async (h) => {
      const late = await h.session("late");
      const next = await h.session("next");
      const [id] = await late.put("q", ["x"]);
      await takeOne(late, "q", SHORT_LEASE_MS);
      await h.until("q", "the lease to expire", (s) => s.expired === 1);
      const again = await takeOne(next, "q");
      assert.deepEqual([again.id, again.attempts], [id, 2]);
      // Both at once, so a broker that writes acks in batches sees them in the same batch.
      const [stale, fresh] = await Promise.all([
        late.ack([id], { queue: "results", values: ["stale"] }),
        next.ack([id], { queue: "results", values: ["fresh"] }),
      ]);
      assert.deepEqual([stale, fresh], [[id], []]);
      assert.deepEqual(valuesOf(await getNow(next, "results", 10)), ["fresh"]);
      const s = await h.stats("q");
      assert.deepEqual([s.ready, s.leased, s.acked], [0, 0, 1]);
    },
  );

  test("a delivery keeps its attempt number when its item is delivered again", {}, async (h) => {
    const first = await h.session("first");
    const second = await h.session("second");
    await first.put("q", ["x"]);
    const old = await takeOne(first, "q", SHORT_LEASE_MS);
    assert.equal(old.attempts, 1);
    await h.until("q", "the lease to expire", (s) => s.expired === 1);
    const renewed = await takeOne(second, "q");
    assert.deepEqual([renewed.id, renewed.attempts], [old.id, 2]);
    assert.equal(
      old.attempts,
      1,
      "a delivery is a snapshot: the fencing number its holder got does not change under it",
    );
  });

  test("only the holder can ack, nack, fail or extend a lease", {}, async (h) => {
    const holder = await h.session("holder");
    const other = await h.session("other");
    const [id] = await holder.put("q", ["x"]);
    await takeOne(holder, "q");
    assert.deepEqual(await other.ack([id]), [id]);
    assert.deepEqual(await other.nack([id]), [id]);
    assert.deepEqual(await other.fail([id], "not mine"), [id]);
    assert.deepEqual(await other.extend([id], 10_000), [id]);
    const s = await h.stats("q");
    assert.deepEqual([s.leased, s.acked, s.nacked, s.failed], [1, 0, 0, 0]);
    assert.deepEqual(await holder.extend([id], 10_000), []);
    assert.deepEqual(await holder.ack([id]), []);
  });

  test("extend keeps a lease alive past its original expiry", {}, async (h) => {
    const holder = await h.session("holder");
    const other = await h.session("other");
    const [id] = await holder.put("q", ["x"]);
    await takeOne(holder, "q", SHORT_LEASE_MS);
    assert.deepEqual(await holder.extend([id], 2_000), []);
    await idle(SHORT_LEASE_MS + 100);
    const s = await h.stats("q");
    assert.deepEqual([s.leased, s.ready, s.expired], [1, 0, 0], "the lease still runs");
    assert.deepEqual(await getNow(other, "q"), []);
    assert.deepEqual(await holder.ack([id]), []);
  });

  test("extend counts from now, so it can also shorten a lease", {}, async (h) => {
    const holder = await h.session("holder");
    const other = await h.session("other");
    const [id] = await holder.put("q", ["x"]);
    await takeOne(holder, "q", 60_000);
    assert.deepEqual(await holder.extend([id], 50), []);
    await h.until("q", "the shortened lease to expire", (s) => s.expired === 1);
    assert.equal((await takeOne(other, "q")).attempts, 2);
  });

  test("gets that name no lease length use defaultLeaseMs", {
    defaultLeaseMs: SHORT_LEASE_MS,
  }, async (h) => {
    assert.equal(h.broker.settings.defaultLeaseMs, SHORT_LEASE_MS);
    assert.equal(h.broker.settings.maxQueueLength, 0);
    const s = await h.session();
    await s.put("q", ["x"]);
    const started = performance.now();
    await takeOne(s, "q");
    await h.until("q", "the default lease to expire", (stats) => stats.expired === 1);
    assertNotBefore(started, SHORT_LEASE_MS, "the default lease expired");
  });

  // ---------------------------------------------------------------- closing a session

  test(
    "closing a session returns its items to the front at once, in the order taken",
    {},
    async (h) => {
      const a = await h.session("a");
      const b = await h.session("b");
      const c = await h.session("c");
      await a.put("q", ["a", "b", "c", "d"]);
      const a1 = await takeOne(a, "q");
      assert.deepEqual(await a.nack([a1.id]), []); // queue: b c d a
      const taken = [
        await takeOne(b, "q"), // b
        await takeOne(a, "q"), // c
        await takeOne(b, "q"), // d
        await takeOne(a, "q"), // a, again
      ];
      assert.deepEqual(valuesOf(taken), ["b", "c", "d", "a"]);
      await a.close();
      const s = await h.stats("q");
      assert.deepEqual([s.ready, s.leased, s.expired], [2, 2, 2]);
      const back = await getNow(c, "q", 10);
      assert.deepEqual(valuesOf(back), ["c", "a"], "in the order session a took them");
      assert.deepEqual(attemptsOf(back), [2, 3]);
    },
  );

  test("closing a session hands its items to another session's waiting get", {}, async (h) => {
    const holder = await h.session("holder");
    const waiter = await h.session("waiter");
    await holder.put("q", ["x"]);
    await takeOne(holder, "q");
    const get = waiter.get("q", { max: 1, timeoutMs: 10_000 });
    await h.until("q", "the get to wait", (s) => s.waiting === 1);
    await holder.close();
    const got = await within("the waiting get to be served", get);
    assert.deepEqual(valuesOf(got), ["x"]);
    assert.deepEqual(attemptsOf(got), [2]);
  });

  test("closing a session resolves its waiting gets with none", {}, async (h) => {
    const closing = await h.session("closing");
    const producer = await h.session("producer");
    const gets = [
      closing.get("q", { max: 1, timeoutMs: 10_000 }),
      closing.get("r", { max: 1, timeoutMs: 10_000 }),
    ];
    await h.until("q", "the get on q to wait", (s) => s.waiting === 1);
    await h.until("r", "the get on r to wait", (s) => s.waiting === 1);
    await closing.close();
    assert.deepEqual(await within("the gets to end", Promise.all(gets)), [[], []]);
    assert.equal((await h.stats("q")).waiting, 0);
    assert.equal((await h.stats("r")).waiting, 0);
    await producer.put("q", ["x"]);
    const s = await h.stats("q");
    assert.deepEqual([s.ready, s.leased], [1, 0], "nothing was taken for the closed session");
  });

  test("closing a session rejects its put waiting for room, which adds nothing", {
    maxQueueLength: 1,
  }, async (h) => {
    const producer = await h.session("producer");
    const closing = await h.session("closing");
    const consumer = await h.session("consumer");
    await producer.put("q", [1]);
    const held = track(closing.put("q", [2]));
    await idle(QUIET_MS);
    assert.equal(held.settled, false, "the put waits for room");
    await closing.close();
    await assert.rejects(within("the held put to end", held.promise), SessionClosedError);
    const first = await takeOne(consumer, "q");
    assert.deepEqual(await consumer.ack([first.id]), []);
    await producer.put("q", [3]);
    assert.deepEqual(valuesOf(await getNow(consumer, "q", 10)), [3], "2 was never added");
    assert.equal((await h.stats("q")).put, 2);
  });

  test("a closed session takes, settles and adds nothing; closing twice is safe", {}, async (h) => {
    const closing = await h.session("closing");
    const other = await h.session("other");
    const [id] = await other.put("q", ["x"]);
    await takeOne(closing, "q");
    await closing.close();
    await closing.close();
    await assert.rejects(closing.put("q", ["y"]), SessionClosedError);
    const got = await closing.get("q", { max: 1, timeoutMs: 0 }).catch((error) => {
      assert.ok(error instanceof SessionClosedError, `unexpected ${error}`);
      return [];
    });
    assert.deepEqual(got, [], "a closed session takes nothing");
    const failed = await closing.ack([id]).catch((error) => {
      assert.ok(error instanceof SessionClosedError, `unexpected ${error}`);
      return [id];
    });
    assert.deepEqual(failed, [id], "a closed session holds no lease");
    const s = await h.stats("q");
    assert.deepEqual([s.ready, s.leased, s.acked, s.put], [1, 0, 0, 1]);
    assert.deepEqual((await h.broker.sessions()).map((v) => v.id), [other.id]);
  });

  test("closing the broker ends its sessions: waiting gets end with none, held puts reject", {
    maxQueueLength: 1,
  }, async (h) => {
    const waiter = await h.session("waiter");
    const producer = await h.session("producer");
    await producer.put("q", [1]);
    const get = waiter.get("idle", { max: 1, timeoutMs: 10_000 });
    await h.until("idle", "the get to wait", (s) => s.waiting === 1);
    const held = track(producer.put("q", [2]));
    await idle(QUIET_MS);
    assert.equal(held.settled, false, "the put waits for room");
    await h.broker.close();
    assert.deepEqual(await within("the waiting get to end", get), []);
    const closed = (error: unknown) =>
      error instanceof SessionClosedError || error instanceof BrokerClosedError;
    await assert.rejects(within("the held put to end", held.promise), closed);
    await assert.rejects(within("a put after the close", producer.put("q", [3])), closed);
    await assert.rejects(
      within("a session opened after the close", h.broker.open({ name: "late", address: "" })),
      BrokerClosedError,
    );
  });

  // ---------------------------------------------------------------- retries and dead letters

  test("fail makes an item ready again only after the backoff, attempts counted", {
    retry: { backoffBaseMs: 100 },
  }, async (h) => {
    const s = await h.session();
    await s.put("q", ["x"]);
    const first = await takeOne(s, "q");
    const failedAt = performance.now();
    assert.deepEqual(await s.fail([first.id], "boom"), []);
    let stats = await h.stats("q");
    assert.deepEqual([stats.ready, stats.leased, stats.delayed, stats.failed], [0, 0, 1, 1]);
    assert.deepEqual(await getNow(s, "q"), [], "not ready during the backoff");
    const again = await awaitOne(s, "q");
    assertNotBefore(failedAt, 100, "the failed item was served again");
    assert.deepEqual([again.id, again.value, again.attempts], [first.id, "x", 2]);
    stats = await h.stats("q");
    assert.deepEqual([stats.delayed, stats.leased, stats.dead], [0, 1, 0]);
  });

  test("the backoff doubles with each attempt", {
    retry: { backoffBaseMs: 80, backoffMaxMs: 10_000 },
  }, async (h) => {
    const s = await h.session();
    await s.put("q", ["x"]);
    let item = await takeOne(s, "q");
    for (const backoff of [80, 160]) {
      const failedAt = performance.now();
      assert.deepEqual(await s.fail([item.id], "boom"), []);
      item = await awaitOne(s, "q");
      assertNotBefore(failedAt, backoff, `attempt ${item.attempts}`);
    }
    assert.equal(item.attempts, 3);
  });

  test("the backoff is capped at backoffMaxMs", {
    retry: { backoffBaseMs: 600_000, backoffMaxMs: 100 },
  }, async (h) => {
    const s = await h.session();
    await s.put("q", ["x"]);
    const first = await takeOne(s, "q");
    const failedAt = performance.now();
    assert.deepEqual(await s.fail([first.id], "boom"), []);
    assert.equal((await h.stats("q")).delayed, 1);
    const again = await awaitOne(s, "q"); // long before the uncapped 10 minutes
    assertNotBefore(failedAt, 100, "the failed item was served again");
    assert.equal(again.attempts, 2);
  });

  test("after its last attempt a failed item becomes a DeadLetter in NAME.dead", {
    retry: { maxAttempts: 2 },
  }, async (h) => {
    const s = await h.session();
    const [id] = await s.put("q", [{ job: 1 }]);
    const first = await takeOne(s, "q");
    assert.deepEqual(await s.fail([first.id], "first"), []);
    const second = await awaitOne(s, "q");
    assert.equal(second.attempts, 2);
    const before = Date.now();
    assert.deepEqual(await s.fail([second.id], "second"), []);
    const after = Date.now();
    assert.deepEqual(await h.stats("q"), { ...emptyQueueStats("q"), put: 1, failed: 2, dead: 1 });
    const dead = await h.stats("q.dead");
    assert.deepEqual([dead.ready, dead.put], [1, 1], "the dead letter is ready at once");
    const letter = await takeOne(s, "q.dead");
    assert.ok(letter.id > id, "a dead letter is a new item with a new id");
    assert.equal(letter.attempts, 1);
    assertDeadLetter(
      letter.value,
      { queue: "q", id, value: { job: 1 }, attempts: 2, error: "second" },
      before,
      after,
    );
  });

  test("a put's maxAttempts overrides the queue's policy, both ways", {
    retry: { maxAttempts: 2 },
  }, async (h) => {
    const s = await h.session();
    const [once] = await s.put("q", ["once"], { maxAttempts: 1 });
    assert.deepEqual(await s.fail([(await takeOne(s, "q")).id], "boom"), []);
    await h.until("q", "the item to die on its first failure", (stats) => stats.dead === 1);
    assert.equal(((await takeOne(s, "q.dead")).value as DeadLetter).id, once);

    const [thrice] = await s.put("q", ["thrice"], { maxAttempts: 3 });
    for (let attempt = 1; attempt <= 3; attempt++) {
      const item = await awaitOne(s, "q");
      assert.deepEqual([item.id, item.attempts], [thrice, attempt]);
      assert.deepEqual(await s.fail([item.id], `fail ${attempt}`), []);
      const stats = await h.stats("q");
      assert.equal(stats.dead, attempt < 3 ? 1 : 2, `dead after attempt ${attempt}`);
    }
    const letter = await takeOne(s, "q.dead");
    assert.deepEqual([(letter.value as DeadLetter).id, (letter.value as DeadLetter).attempts], [
      thrice,
      3,
    ]);
  });

  test("maxAttemptsByQueue overrides the policy for that queue only", {
    retry: { maxAttempts: 1, maxAttemptsByQueue: { patient: 2 } },
  }, async (h) => {
    const s = await h.session();
    await s.put("q", ["x"]);
    await s.put("patient", ["y"]);
    assert.deepEqual(await s.fail([(await takeOne(s, "q")).id], "boom"), []);
    assert.deepEqual(await s.fail([(await takeOne(s, "patient")).id], "boom"), []);
    assert.equal((await h.stats("q")).dead, 1, "q allows 1 attempt");
    let patient = await h.stats("patient");
    assert.deepEqual(
      [patient.dead, patient.delayed + patient.ready],
      [0, 1],
      "patient allows 2 attempts (its retry may be ready already on a busy machine)",
    );
    const second = await awaitOne(s, "patient");
    assert.equal(second.attempts, 2);
    assert.deepEqual(await s.fail([second.id], "boom"), []);
    patient = await h.stats("patient");
    assert.deepEqual([patient.dead, patient.delayed, patient.ready], [1, 0, 0]);

    await s.put("patient", ["z"], { maxAttempts: 1 });
    assert.deepEqual(await s.fail([(await takeOne(s, "patient")).id], "boom"), []);
    assert.equal((await h.stats("patient")).dead, 2, "a put's maxAttempts overrides both");
  });

  test("a lease that expires on the last attempt dead-letters the item", {
    retry: { maxAttempts: 2 },
  }, async (h) => {
    const s = await h.session();
    const [single] = await s.put("q", ["single"], { maxAttempts: 1 });
    const before = Date.now();
    await takeOne(s, "q", SHORT_LEASE_MS);
    await h.until("q.dead", "the expired item to be dead-lettered", (stats) => stats.ready === 1);
    assertDeadLetter(
      (await takeOne(s, "q.dead")).value,
      {
        queue: "q",
        id: single,
        value: "single",
        attempts: 1,
        error: "its lease expired before it was acked",
      },
      before,
      Date.now(),
    );
    assert.deepEqual(await h.stats("q"), { ...emptyQueueStats("q"), put: 1, expired: 1, dead: 1 });

    const [failed] = await s.put("q", ["failed"]);
    assert.deepEqual(await s.fail([(await takeOne(s, "q")).id], "boom"), []);
    const second = await awaitOne(s, "q", SHORT_LEASE_MS);
    assert.equal(second.attempts, 2);
    await h.until("q.dead", "the second item to be dead-lettered", (stats) => stats.ready === 1);
    const letter = (await takeOne(s, "q.dead")).value as DeadLetter;
    assert.deepEqual([letter.id, letter.attempts, letter.error], [
      failed,
      2,
      "its lease expired before it was acked (earlier: boom)",
    ]);
  });

  test("a session closing on the last attempt dead-letters what it held", {
    retry: { maxAttempts: 1 },
  }, async (h) => {
    const closing = await h.session("closing");
    const other = await h.session("other");
    const [id] = await other.put("q", ["x"]);
    await takeOne(closing, "q");
    const before = Date.now();
    await closing.close();
    await h.until("q.dead", "the item to be dead-lettered", (stats) => stats.ready === 1);
    assertDeadLetter(
      (await takeOne(other, "q.dead")).value,
      {
        queue: "q",
        id,
        value: "x",
        attempts: 1,
        error: "its connection closed before it was acked",
      },
      before,
      Date.now(),
    );
    const s = await h.stats("q");
    assert.deepEqual([s.ready, s.leased, s.expired, s.dead], [0, 0, 1, 1]);
  });

  test("an item that runs out of attempts in a dead-letter queue stays in it", {
    retry: { maxAttempts: 1 },
  }, async (h) => {
    const s = await h.session();
    await s.put("q", ["x"]);
    assert.deepEqual(await s.fail([(await takeOne(s, "q")).id], "first death"), []);
    const letter = await takeOne(s, "q.dead");
    assert.deepEqual(await s.fail([letter.id], "second death"), []);
    await h.until("q.dead", "the dead letter to be put back", (stats) => stats.ready === 1);
    const dead = await h.stats("q.dead");
    assert.deepEqual([dead.ready, dead.failed, dead.dead, dead.put], [1, 1, 1, 2]);
    const again = await takeOne(s, "q.dead");
    assert.ok(again.id > letter.id, "it comes back as a new item");
    const names = (await h.broker.stats()).queues.map((q) => q.name);
    assert.ok(!names.includes("q.dead.dead"), `no q.dead.dead among ${names}`);
  });

  // ---------------------------------------------------------------- nack

  test("nack returns an item to the back of its queue at once", {}, async (h) => {
    const s = await h.session();
    await s.put("q", ["a", "b", "c"]);
    const a = await takeOne(s, "q");
    assert.deepEqual(await s.nack([a.id]), []);
    const stats = await h.stats("q");
    assert.deepEqual([stats.ready, stats.leased, stats.nacked], [3, 0, 1]);
    const all = await getNow(s, "q", 10);
    assert.deepEqual(valuesOf(all), ["b", "c", "a"]);
    assert.deepEqual(attemptsOf(all), [1, 1, 2]);
  });

  test("a nacked item goes to a waiting get at once", {}, async (h) => {
    const holder = await h.session("holder");
    const waiter = await h.session("waiter");
    await holder.put("q", ["x"]);
    const item = await takeOne(holder, "q");
    const get = waiter.get("q", { max: 1, timeoutMs: 10_000 });
    await h.until("q", "the get to wait", (s) => s.waiting === 1);
    assert.deepEqual(await holder.nack([item.id]), []);
    const got = await within("the nacked item to reach the waiting get", get);
    assert.deepEqual([got[0]?.id, got[0]?.attempts], [item.id, 2]);
  });

  test(
    "nack with a delay holds the item back, then it joins the back of the queue",
    {},
    async (h) => {
      const s = await h.session();
      await s.put("q", ["a"]);
      const a = await takeOne(s, "q");
      const nackedAt = performance.now();
      assert.deepEqual(await s.nack([a.id], 200), []);
      const stats = await h.stats("q");
      assert.deepEqual([stats.ready, stats.leased, stats.delayed, stats.nacked], [0, 0, 1, 1]);
      await s.put("q", ["b"]);
      assert.deepEqual((await h.broker.peek("q", 10)).map((p) => p.value), ["b"]);
      await h.until("q", "the delay to end", (st) => st.ready === 2);
      assertNotBefore(nackedAt, 200, "the nacked item was ready");
      const all = await getNow(s, "q", 10);
      assert.deepEqual(valuesOf(all), ["b", "a"]);
      assert.deepEqual(attemptsOf(all), [1, 2]);
    },
  );

  test("nack never dead-letters, however many deliveries", {
    retry: { maxAttempts: 1 },
  }, async (h) => {
    const s = await h.session();
    await s.put("q", ["x"]);
    for (let attempt = 1; attempt <= 3; attempt++) {
      const item = await takeOne(s, "q");
      assert.equal(item.attempts, attempt);
      assert.deepEqual(await s.nack([item.id]), []);
    }
    const stats = await h.stats("q");
    assert.deepEqual([stats.ready, stats.nacked, stats.dead], [1, 3, 0]);
    assert.equal((await h.stats("q.dead")).put, 0);
  });

  // ---------------------------------------------------------------- delays

  test("a delayed put is not delivered before its delay, and is after", {}, async (h) => {
    const s = await h.session();
    const putAt = performance.now();
    await s.put("q", ["later"], { delayMs: 200 });
    let stats = await h.stats("q");
    assert.deepEqual([stats.ready, stats.delayed, stats.put], [0, 1, 1]);
    assert.deepEqual(await getNow(s, "q"), []);
    assert.deepEqual(await h.broker.peek("q", 10), []);
    const got = await awaitOne(s, "q");
    assertNotBefore(putAt, 200, "the delayed item was delivered");
    assert.deepEqual([got.value, got.attempts], ["later", 1]);
    stats = await h.stats("q");
    assert.deepEqual([stats.delayed, stats.leased], [0, 1]);
  });

  test("a delayed item joins the back of the queue when its delay ends", {}, async (h) => {
    const s = await h.session();
    await s.put("q", ["late"], { delayMs: 150 });
    await s.put("q", ["early"]);
    await h.until("q", "the delay to end", (stats) => stats.ready === 2);
    await s.put("q", ["last"]);
    assert.deepEqual(valuesOf(await getNow(s, "q", 10)), ["early", "late", "last"]);
  });

  // ---------------------------------------------------------------- results

  test(
    "ack puts one result per acked id on the results queue; others are dropped",
    {},
    async (h) => {
      const s = await h.session();
      const [, , c] = await s.put("q", ["a", "b", "c"]);
      const [a, b] = await getNow(s, "q", 2);
      const failed = await s.ack([b.id, a.id, c, UNKNOWN_ID], {
        queue: "results",
        values: ["rb", "ra", "rc", "rx"],
      });
      assert.deepEqual(ascending(failed), ascending([c, UNKNOWN_ID]));
      const results = await h.stats("results");
      assert.deepEqual([results.ready, results.put], [2, 2]);
      assert.deepEqual(
        valuesOf(await getNow(s, "results", 10)),
        ["rb", "ra"],
        "in the order of ids",
      );
      const q = await h.stats("q");
      assert.deepEqual([q.acked, q.ready, q.leased], [2, 1, 0]);

      const third = await takeOne(s, "q");
      assert.deepEqual(await s.ack([third.id], { queue: "q", values: ["rc"] }), []);
      assert.deepEqual(
        valuesOf(await getNow(s, "q", 10)),
        ["rc"],
        "results may go to the queue the items came from",
      );
    },
  );

  // ---------------------------------------------------------------- back-pressure

  test("a put to a full queue waits until an item leaves it", { maxQueueLength: 2 }, async (h) => {
    assert.equal(h.broker.settings.maxQueueLength, 2);
    const producer = await h.session("producer");
    const blocked = await h.session("blocked");
    const consumer = await h.session("consumer");
    await producer.put("q", [1, 2]);
    const held = track(blocked.put("q", [3]));
    await idle(QUIET_MS);
    assert.equal(held.settled, false, "the put waits for room");
    const first = await takeOne(consumer, "q");
    await idle(QUIET_MS);
    assert.equal(held.settled, false, "a leased item still counts");
    assert.deepEqual(await h.stats("q").then((s) => [s.ready, s.leased, s.put]), [1, 1, 2]);
    assert.deepEqual(await consumer.ack([first.id]), []);
    const [id] = await within("the held put", held.promise);
    assert.ok(id > first.id);
    const s = await h.stats("q");
    assert.deepEqual([s.ready, s.leased, s.put], [2, 0, 3]);
    assert.deepEqual(valuesOf(await getNow(consumer, "q", 10)), [2, 3]);
  });

  test("puts held for room are admitted first come, first served", {
    maxQueueLength: 1,
  }, async (h) => {
    const producer = await h.session("producer");
    const early = await h.session("early");
    const late = await h.session("late");
    const consumer = await h.session("consumer");
    await producer.put("q", ["first"]);
    const earlyPut = track(early.put("q", ["early"]));
    await idle(QUIET_MS);
    assert.equal(earlyPut.settled, false, "the early put waits");
    const latePut = track(late.put("q", ["late"]));
    await idle(QUIET_MS);
    assert.equal(latePut.settled, false, "the late put waits");

    const order: unknown[] = [];
    for (const [put, other] of [[earlyPut, latePut], [latePut, undefined]] as const) {
      const item = await takeOne(consumer, "q");
      order.push(item.value);
      assert.deepEqual(await consumer.ack([item.id]), []);
      await within("a held put to be admitted", put.promise);
      assert.equal(await h.length("q"), 1, "the limit holds");
      if (other !== undefined) {
        await idle(QUIET_MS);
        assert.equal(other.settled, false, "one put is admitted per item that left");
      }
    }
    order.push((await takeOne(consumer, "q")).value);
    assert.deepEqual(order, ["first", "early", "late"]);
  });

  test("the queue length limit holds under concurrent producers", {
    maxQueueLength: 3,
  }, async (h) => {
    const producers = await Promise.all([0, 1, 2].map((i) => h.session(`producer-${i}`)));
    const consumer = await h.session("consumer");
    const putting = Promise.all(producers.map(async (producer, i) => {
      for (let k = 0; k < 5; k++) await producer.put("q", [`${i}:${k}`]);
    }));
    const guarded = track(putting);
    const seen: string[] = [];
    let longest = 0;
    while (seen.length < 15) {
      longest = Math.max(longest, await h.length("q"));
      const [item] = await consumer.get("q", { max: 1, timeoutMs: WAIT_MS });
      assert.ok(item !== undefined, `item ${seen.length + 1} of 15 arrives`);
      seen.push(item.value as string);
      longest = Math.max(longest, await h.length("q"));
      assert.deepEqual(await consumer.ack([item.id]), []);
    }
    await within("every put to be admitted", guarded.promise);
    assert.ok(longest <= 3, `the queue held ${longest} items, more than its limit of 3`);
    assert.equal((await h.stats("q")).put, 15);
    for (const i of [0, 1, 2]) {
      const own = seen.filter((v) => v.startsWith(`${i}:`));
      assert.deepEqual(own, [0, 1, 2, 3, 4].map((k) => `${i}:${k}`), `producer ${i}'s order`);
    }
  });

  test("roomTimeoutMs 0 rejects a put to a full queue at once, adding nothing", {
    maxQueueLength: 1,
  }, async (h) => {
    const producer = await h.session("producer");
    const consumer = await h.session("consumer");
    await producer.put("q", [1]);
    const error = await producer.put("q", [2], { roomTimeoutMs: 0 }).then(
      () => assert.fail("a put to a full queue with roomTimeoutMs 0 was accepted"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof QueueFullError, `expected a QueueFullError, got ${error}`);
    assert.equal(error.queue, "q");
    assert.deepEqual(await h.stats("q").then((s) => [s.ready, s.put]), [1, 1]);
    const first = await takeOne(consumer, "q");
    assert.deepEqual(await consumer.ack([first.id]), []);
    await producer.put("q", [3], { roomTimeoutMs: 0 });
    assert.deepEqual(valuesOf(await getNow(consumer, "q", 10)), [3], "2 was never added");
    assert.equal((await h.stats("q")).put, 2);
  });

  test("roomTimeoutMs N rejects a put after N ms, adding nothing", {
    maxQueueLength: 1,
  }, async (h) => {
    const producer = await h.session("producer");
    const consumer = await h.session("consumer");
    await producer.put("q", [1]);
    const started = performance.now();
    await assert.rejects(
      within("the put to give up", producer.put("q", [2], { roomTimeoutMs: 200 })),
      QueueFullError,
    );
    assertNotBefore(started, 200, "the put gave up");
    const first = await takeOne(consumer, "q");
    assert.deepEqual(await consumer.ack([first.id]), []);
    await producer.put("q", [3]);
    assert.deepEqual(valuesOf(await getNow(consumer, "q", 10)), [3], "2 was never added");
    assert.equal((await h.stats("q")).put, 2);
  });

  test("drop and dead-lettering make room for held puts", {
    maxQueueLength: 1,
    retry: { maxAttempts: 1 },
  }, async (h) => {
    const producer = await h.session("producer");
    const consumer = await h.session("consumer");
    const [first] = await producer.put("q", ["dropped"]);
    const second = track(producer.put("q", ["dead"]));
    await idle(QUIET_MS);
    assert.equal(second.settled, false);
    assert.equal(await h.broker.drop("q", [first]), 1);
    await within("the put held until the drop", second.promise);
    const other = await h.session("other");
    const third = track(other.put("q", ["last"]));
    await idle(QUIET_MS);
    assert.equal(third.settled, false);
    const item = await takeOne(consumer, "q");
    assert.deepEqual(await consumer.fail([item.id], "boom"), []);
    await within("the put held until the dead-lettering", third.promise);
    assert.deepEqual(valuesOf(await getNow(consumer, "q", 10)), ["last"]);
  });

  test("items the broker puts itself are never held: results, dead letters, requeued ones", {
    maxQueueLength: 1,
    retry: { maxAttempts: 1 },
  }, async (h) => {
    const s = await h.session();
    await s.put("results", ["earlier"]);
    await s.put("q", ["job"]);
    const job = await takeOne(s, "q");
    assert.deepEqual(
      await within(
        "an ack with results to a full queue",
        s.ack([job.id], { queue: "results", values: ["result"] }),
      ),
      [],
    );
    assert.equal((await h.stats("results")).ready, 2);

    await s.put("q.dead", ["filler"]);
    await s.put("q", ["doomed"]);
    const doomed = await takeOne(s, "q");
    assert.deepEqual(
      await within("a fail to a full dead-letter queue", s.fail([doomed.id], "boom")),
      [],
    );
    await h.until("q.dead", "the dead letter to be added", (stats) => stats.ready === 2);

    const [, letter] = await h.broker.peek("q.dead", 10);
    await s.put("q", ["filler"]);
    const requeued = await within(
      "a requeue into a full queue",
      h.broker.requeueDead("q.dead", [letter.id]),
    );
    assert.equal(requeued.length, 1);
    assert.equal((await h.stats("q")).ready, 2);
  });

  // ---------------------------------------------------------------- limits

  test("a get with timeout 0 and the stats of an unknown queue create no queue", {}, async (h) => {
    const s = await h.session();
    await s.put("real", ["x"]);
    assert.deepEqual(await s.get("ghost", { max: 1, timeoutMs: 0 }), []);
    const ghost = (await h.broker.stats("ghost")).queues[0];
    assert.deepEqual([ghost.name, ghost.ready, ghost.put], ["ghost", 0, 0]);
    const names = (await h.broker.stats()).queues.map((q) => q.name);
    assert.ok(!names.includes("ghost"), `${names.join(", ")}`);
    assert.ok(names.includes("real"));
  });

  test("at the queue cap a put naming a new queue is refused; the others go on", {
    maxQueues: 2,
  }, async (h) => {
    const s = await h.session();
    await s.put("a", [1]);
    await s.put("b", [2]);
    await assert.rejects(s.put("c", [3]), TooManyQueuesError);
    assert.equal((await h.stats("c")).put, 0, "nothing of the refused put was stored");
    await s.put("a", [4]);
    assert.equal((await h.stats("a")).ready, 2);
    // Once a queue is gone (emptied and unused), there is room again.
    const [one] = await s.get("b", { max: 1, timeoutMs: 0 });
    await s.ack([one.id]);
    await s.put("c", [3]);
    assert.equal((await h.stats("c")).ready, 1);
  });

  test("near the memory budget puts are refused; gets and acks go on; puts resume after", {
    maxMemoryBytes: 32 * 1024 * 1024,
  }, async (h) => {
    const s = await h.session();
    const big = "x".repeat(512 * 1024);
    let stored = 0;
    let refused: unknown;
    while (refused === undefined && stored < 1_000) {
      await s.put("q", [big]).then(() => stored++, (error) => refused = error);
    }
    assert.ok(refused instanceof MemoryFullError, String(refused));
    assert.ok(stored > 0, "puts went through below the budget");
    assert.equal((await h.stats("q")).ready, stored, "the refused put stored nothing");
    // A get may hand out fewer than asked (a broker bounds one reply's size).
    let taken = 0;
    for (let got = -1; got !== 0;) {
      const batch = await s.get("q", { max: stored, timeoutMs: 0 });
      got = batch.length;
      taken += got;
      assert.deepEqual(await s.ack(batch.map((d) => d.id)), [], "acks go on");
    }
    assert.equal(taken, stored, "gets go on");
    await s.put("q", [big]);
    assert.equal((await h.stats("q")).ready, 1, "puts resume once there is room");
  });

  // ---------------------------------------------------------------- pause and resume

  test("a paused queue's gets wait as if it were empty while puts go on", {}, async (h) => {
    const producer = await h.session("producer");
    const consumer = await h.session("consumer");
    await h.broker.pause("q");
    assert.deepEqual((await h.broker.stats()).paused, ["q"]);
    await producer.put("q", ["x"]);
    assert.equal((await h.stats("q")).ready, 1);
    assert.deepEqual(await getNow(consumer, "q"), []);
    const get = track(consumer.get("q", { max: 1, timeoutMs: 10_000 }));
    await h.until("q", "the get to wait", (s) => s.waiting === 1);
    await idle(QUIET_MS);
    assert.equal(get.settled, false, "a paused queue serves no get");
    await h.broker.resume("q");
    assert.deepEqual(valuesOf(await within("the waiting get after resume", get.promise)), ["x"]);
    assert.deepEqual((await h.broker.stats()).paused, []);
  });

  test(
    "a paused queue's waiting get times out with none; leases settle as usual",
    {},
    async (h) => {
      const holder = await h.session("holder");
      const other = await h.session("other");
      await holder.put("q", ["x", "y"]);
      const x = await takeOne(holder, "q");
      await h.broker.pause("q");
      assert.deepEqual(await holder.ack([x.id]), []);
      assert.deepEqual(await other.get("q", { max: 1, timeoutMs: QUIET_MS }), []);
      await h.broker.resume("q");
      assert.deepEqual(valuesOf(await getNow(other, "q")), ["y"]);
    },
  );

  // ---------------------------------------------------------------- admin

  test("peek shows ready items front first, without taking them", {}, async (h) => {
    const s = await h.session();
    const [a, b, c] = await s.put("q", ["a", "b", "c"]);
    await takeOne(s, "q");
    assert.deepEqual(await h.broker.peek("q", 10), [
      { id: b, attempts: 0, value: "b" },
      { id: c, attempts: 0, value: "c" },
    ]);
    assert.deepEqual(await h.broker.peek("q", 1), [{ id: b, attempts: 0, value: "b" }]);
    assert.deepEqual(await h.broker.peek("never", 10), []);
    assert.deepEqual(idsOf(await getNow(s, "q", 10)), [b, c], "peek took nothing");
    assert.deepEqual(await s.nack([a]), []);
    assert.deepEqual(await h.broker.peek("q", 10), [{ id: a, attempts: 1, value: "a" }]);
  });

  test("drop removes ready items by id for good, leaving leased ones alone", {}, async (h) => {
    const s = await h.session();
    const [a, b, c] = await s.put("q", ["a", "b", "c"]);
    await takeOne(s, "q");
    assert.equal(await h.broker.drop("q", [a, b, UNKNOWN_ID]), 1);
    assert.deepEqual((await h.broker.peek("q", 10)).map((p) => p.id), [c]);
    const stats = await h.stats("q");
    assert.deepEqual([stats.ready, stats.leased], [1, 1]);
    assert.deepEqual(await s.ack([a]), [], "the leased item is still held");
    assert.equal(await h.broker.drop("never", [c]), 0);
  });

  test("requeueDead moves dead letters back to their queue as new items, fresh attempts", {
    retry: { maxAttempts: 1 },
  }, async (h) => {
    const s = await h.session();
    const [original] = await s.put("q", [{ n: 1 }]);
    assert.deepEqual(await s.fail([(await takeOne(s, "q")).id], "boom"), []);
    const [letter] = await h.broker.peek("q.dead", 10);
    const [plain] = await s.put("q.dead", ["not a dead letter"]);
    const added = await h.broker.requeueDead("q.dead", [letter.id, plain, UNKNOWN_ID]);
    assert.equal(added.length, 1, "only the dead letter is requeued");
    assert.ok(added[0] > plain, "as a new item");
    assert.deepEqual(await h.broker.peek("q", 10), [{
      id: added[0],
      attempts: 0,
      value: { n: 1 },
    }]);
    assert.deepEqual((await h.broker.peek("q.dead", 10)).map((p) => p.id), [plain]);
    const again = await takeOne(s, "q");
    assert.deepEqual([again.id, again.attempts], [added[0], 1]);
    assert.notEqual(again.id, original);
    assert.equal((await h.stats("q")).put, 2);
  });

  // ---------------------------------------------------------------- browsing and bulk admin

  test("items pages ready (serve order), delayed (by readyAt) and leased (by lease start)", {
    defaultLeaseMs: LOOK_LEASE_MS,
  }, async (h) => {
    const s = await h.session("holder");
    const [p] = await s.put("q", ["p"], { priority: 5 });
    const [a, b, c, d, e] = await s.put("q", ["a", "b", "c", "d", "e"]);
    const [x] = await s.put("q", ["x"], { delayMs: 60_000 });
    const [y] = await s.put("q", ["y"], { delayMs: 30_000 });
    assert.deepEqual(idsOf(await getNow(s, "q")), [p]);
    assert.deepEqual(idsOf(await getNow(s, "q")), [a]);
    const ready = await h.broker.items("q", { state: "ready" });
    assert.equal(ready.total, 4);
    assert.deepEqual(ready.items.map((i) => [i.id, i.value, i.state]), [
      [b, "b", "ready"],
      [c, "c", "ready"],
      [d, "d", "ready"],
      [e, "e", "ready"],
    ]);
    assert.deepEqual(ready.items[0], await h.job(b), "an item as job(id) describes it");
    const page = await h.broker.items("q", { state: "ready", offset: 1, limit: 2 });
    assert.deepEqual([page.items.map((i) => i.id), page.total], [[c, d], 4]);
    const past = await h.broker.items("q", { state: "ready", offset: 10 });
    assert.deepEqual([past.items, past.total], [[], 4]);
    const leased = await h.broker.items("q", { state: "leased" });
    assert.deepEqual([leased.items.map((i) => i.id), leased.total], [[p, a], 2]);
    for (const item of leased.items) {
      assert.equal(item.state, "leased");
      assert.equal(item.holder?.session, s.id);
      assert.ok(item.leasedAt !== undefined && item.leaseExpiresAt !== undefined);
      assert.ok(item.leaseExpiresAt - item.leasedAt >= LOOK_LEASE_MS - LEASE_SKEW_MS);
    }
    const delayed = await h.broker.items("q", { state: "delayed" });
    assert.deepEqual([delayed.items.map((i) => i.id), delayed.total], [[y, x], 2]);
    assert.ok((delayed.items[0].readyAt ?? 0) < (delayed.items[1].readyAt ?? 0));
    const none = await h.broker.items("never", { state: "ready" });
    assert.deepEqual([none.items, none.total], [[], 0]);
    await assert.rejects(h.broker.items("q", { state: "ready", limit: 0 }), RangeError);
    await assert.rejects(
      h.broker.items("q", { state: "ready", limit: MAX_ITEMS_PAGE + 1 }),
      RangeError,
    );
    await assert.rejects(h.broker.items("q", { state: "ready", offset: -1 }), RangeError);
  });

  test("items lists at most MAX_ITEMS_PAGE a page, 50 by default", {}, async (h) => {
    const s = await h.session();
    const count = MAX_ITEMS_PAGE + 20;
    const ids = await s.put("q", Array.from({ length: count }, (_, i) => i));
    const first = await h.broker.items("q", { state: "ready", limit: MAX_ITEMS_PAGE });
    assert.equal(first.total, count);
    assert.deepEqual(first.items.map((i) => i.id), ids.slice(0, MAX_ITEMS_PAGE));
    const rest = await h.broker.items("q", {
      state: "ready",
      offset: MAX_ITEMS_PAGE,
      limit: MAX_ITEMS_PAGE,
    });
    assert.deepEqual(rest.items.map((i) => i.id), ids.slice(MAX_ITEMS_PAGE));
    assert.equal((await h.broker.items("q", { state: "ready" })).items.length, 50);
  });

  test("purge removes every ready and delayed item; leased ones finish as usual", {}, async (h) => {
    const s = await h.session();
    const [a] = await s.put("q", ["a", "b", "c"]);
    await s.put("q", ["d"], { delayMs: 60_000 });
    assert.equal((await takeOne(s, "q")).id, a);
    assert.equal(await h.broker.purge("q"), 3);
    const stats = await h.stats("q");
    assert.deepEqual([stats.ready, stats.delayed, stats.leased], [0, 0, 1]);
    assert.deepEqual(await s.ack([a]), [], "the leased item is still held");
    assert.equal(await h.broker.purge("q"), 0);
    assert.equal(await h.broker.purge("never"), 0);
    const [later] = await s.put("q", ["e"]);
    assert.equal((await takeOne(s, "q")).id, later, "the queue goes on after a purge");
  });

  test("drop all removes every ready item, leaving leased and delayed ones", {}, async (h) => {
    const s = await h.session();
    await s.put("q", ["a", "b", "c"]);
    await s.put("q", ["d"], { delayMs: 60_000 });
    await takeOne(s, "q");
    assert.equal(await h.broker.drop("q", "all"), 2);
    const stats = await h.stats("q");
    assert.deepEqual([stats.ready, stats.delayed, stats.leased], [0, 1, 1]);
    assert.equal(await h.broker.drop("never", "all"), 0);
  });

  test("requeueDead all moves every dead letter back, leaving other items", {
    retry: { maxAttempts: 1 },
  }, async (h) => {
    const s = await h.session();
    await s.put("q", ["a", "b", "c"]);
    const got = await getNow(s, "q", 3);
    assert.deepEqual(await s.fail(idsOf(got), "boom"), []);
    const [plain] = await s.put("q.dead", ["not a dead letter"]);
    assert.equal((await h.stats("q.dead")).ready, 4);
    const added = await h.broker.requeueDead("q.dead", "all");
    assert.equal(added.length, 3);
    const back = await h.broker.items("q", { state: "ready" });
    assert.deepEqual(back.items.map((i) => i.value).sort(), ["a", "b", "c"]);
    assert.deepEqual(back.items.map((i) => i.id).sort((x, y) => x - y), added);
    assert.deepEqual((await h.broker.peek("q.dead", 10)).map((p) => p.id), [plain]);
    assert.deepEqual(await h.broker.requeueDead("q.dead", "all"), []);
  });

  test("control reaches the session's handler; sessions() shows it and what each holds", {
    defaultLeaseMs: LOOK_LEASE_MS,
  }, async (h) => {
    const worker = await h.session("worker");
    const idle = await h.session("idle");
    const heard: ControlAction[] = [];
    worker.onControl((action) => heard.push(action));
    const ids = await worker.put("q", Array.from({ length: MAX_HELD_LISTED + 20 }, (_, i) => i));
    const [first] = idsOf(await getNow(worker, "q", 1));
    const rest = idsOf(await getNow(worker, "q", ids.length));
    assert.equal(await h.broker.control(worker.id, "quiet"), true);
    await waitFor("the quiet to reach the handler", () => heard.length === 1);
    assert.equal(await h.broker.control("no-such-session", "stop"), false);
    const views = await h.broker.sessions();
    const view = views.find((v) => v.id === worker.id);
    assert.ok(view !== undefined);
    assert.equal(view.leased, ids.length);
    assert.equal(view.controlled, "quiet");
    assert.equal(view.holding.length, MAX_HELD_LISTED);
    assert.deepEqual(
      view.holding.map((held) => held.id),
      [first, ...rest].slice(0, MAX_HELD_LISTED),
      "oldest lease first",
    );
    for (const held of view.holding) {
      assert.equal(held.queue, "q");
      assert.ok(held.leaseExpiresAt - held.leasedAt >= LOOK_LEASE_MS - LEASE_SKEW_MS);
    }
    const other = views.find((v) => v.id === idle.id);
    assert.deepEqual([other?.holding, other?.controlled], [[], undefined]);
    assert.equal(await h.broker.control(worker.id, "stop"), true);
    await waitFor("the stop to reach the handler", () => heard.length === 2);
    assert.deepEqual(heard, ["quiet", "stop"]);
    await worker.close();
    assert.equal(await h.broker.control(worker.id, "stop"), false, "a closed session is gone");
  });

  test("stats tell when this master started", {}, async (h) => {
    const before = Date.now();
    const { startedAt } = await h.broker.stats();
    assert.ok(typeof startedAt === "number" && startedAt <= before + CLOCK_TOLERANCE_MS);
  });

  test("stats reports every counter, per queue and for all queues by name", {
    retry: { backoffBaseMs: 60_000, backoffMaxMs: 60_000 },
  }, async (h) => {
    const a = await h.session("a");
    const b = await h.session("b");
    await a.put("q", ["a", "b", "c", "d"]);
    await a.put("q", ["e"], { maxAttempts: 1 });
    await a.put("q", ["f"], { delayMs: 60_000 });
    assert.deepEqual(await h.stats("q"), { ...emptyQueueStats("q"), ready: 5, delayed: 1, put: 6 });
    const [ia, ib, ic, id, ie] = idsOf(await getNow(a, "q", 5));
    assert.deepEqual(await h.stats("q"), {
      ...emptyQueueStats("q"),
      leased: 5,
      delayed: 1,
      put: 6,
    });
    assert.deepEqual(await a.ack([ia]), []);
    assert.deepEqual(await a.nack([ib]), []);
    assert.deepEqual(await a.fail([ic], "retry later"), []);
    assert.deepEqual(await a.fail([ie], "fatal"), []);
    assert.deepEqual(await a.extend([id], 50), []);
    await h.until("q", "the shortened lease to expire", (s) => s.expired === 1);
    const waiting = b.get("idle", { max: 1, timeoutMs: 10_000 });
    await h.until("idle", "the get to wait", (s) => s.waiting === 1);
    const q = {
      ...emptyQueueStats("q"),
      ready: 2,
      delayed: 2,
      put: 6,
      acked: 1,
      nacked: 1,
      expired: 1,
      failed: 2,
      dead: 1,
    };
    assert.deepEqual(await h.stats("q"), q);
    const dead = { ...emptyQueueStats("q.dead"), ready: 1, put: 1 };
    assert.deepEqual(await h.stats("q.dead"), dead);
    const all = await h.broker.stats();
    assert.deepEqual(
      all.queues,
      [q, dead, { ...emptyQueueStats("idle"), waiting: 1 }].sort((x, y) =>
        x.name < y.name ? -1 : x.name > y.name ? 1 : 0
      ),
    );
    assert.equal(all.clients, 2);
    assert.deepEqual(all.paused, []);
    assert.deepEqual(await h.stats("never"), emptyQueueStats("never"));
    assert.ok(
      !(await h.broker.stats()).queues.some((s) => s.name === "never"),
      "asking for a queue's stats does not create it",
    );
    await b.close();
    assert.deepEqual(await within("the waiting get to end", waiting), []);
    assert.equal((await h.broker.stats()).clients, 1);
  });

  test(
    "sessions() lists the open sessions with their name, address and holdings",
    {},
    async (h) => {
      const before = Date.now();
      const alpha = await h.session("alpha", "192.0.2.1:4000");
      const beta = await h.session("beta", "");
      assert.notEqual(alpha.id, beta.id);
      assert.deepEqual([alpha.name, alpha.address, beta.name, beta.address], [
        "alpha",
        "192.0.2.1:4000",
        "beta",
        "",
      ]);
      await alpha.put("q", ["x"]);
      await takeOne(alpha, "q");
      const waiting = beta.get("idle", { max: 1, timeoutMs: 10_000 });
      await h.until("idle", "the get to wait", (s) => s.waiting === 1);
      alpha.touch();
      const views = await h.broker.sessions();
      assert.deepEqual(views.map((v) => v.id).sort(), [alpha.id, beta.id].sort());
      const a = views.find((v) => v.id === alpha.id);
      const b = views.find((v) => v.id === beta.id);
      assert.deepEqual([a?.name, a?.address, a?.leased, a?.waiting], [
        "alpha",
        "192.0.2.1:4000",
        1,
        0,
      ]);
      assert.deepEqual([b?.name, b?.address, b?.leased, b?.waiting], ["beta", "", 0, 1]);
      for (const view of views) {
        assert.ok(view.connectedAt >= before - CLOCK_TOLERANCE_MS, "connectedAt");
        assert.ok(view.connectedAt <= Date.now() + CLOCK_TOLERANCE_MS, "connectedAt");
        assert.ok(view.lastSeenAt >= view.connectedAt, "lastSeenAt is not before connectedAt");
      }
      assert.equal((await h.broker.stats()).clients, 2);
      await beta.close();
      assert.deepEqual(await within("the waiting get to end", waiting), []);
      assert.deepEqual((await h.broker.sessions()).map((v) => v.id), [alpha.id]);
      assert.equal((await h.broker.stats()).clients, 1);
    },
  );

  test("waitEmpty resolves at once for an empty queue, and when a queue drains", {}, async (h) => {
    const s = await h.session();
    await within("waitEmpty of a queue never used", h.broker.waitEmpty("never"));
    await s.put("q", ["a", "b"]);
    const empty = track(h.broker.waitEmpty("q"));
    const [a, b] = await getNow(s, "q", 2);
    await idle(QUIET_MS);
    assert.equal(empty.settled, false, "leased items count");
    assert.deepEqual(await s.ack([a.id]), []);
    assert.deepEqual(await s.nack([b.id], 100), []);
    await idle(50);
    assert.equal(empty.settled, false, "delayed items count");
    const again = await awaitOne(s, "q");
    assert.equal(empty.settled, false, "leased items count");
    assert.deepEqual(await s.ack([again.id]), []);
    await within("waitEmpty once the queue drained", empty.promise);
    await within("waitEmpty of a drained queue", h.broker.waitEmpty("q"));
  });

  test("waitEmpty resolves when its signal aborts", {}, async (h) => {
    const s = await h.session();
    await s.put("q", ["x"]);
    const controller = new AbortController();
    const empty = track(h.broker.waitEmpty("q", controller.signal));
    await idle(QUIET_MS);
    assert.equal(empty.settled, false);
    controller.abort();
    await within("waitEmpty after the abort", empty.promise);
    await within(
      "waitEmpty with a signal aborted already",
      h.broker.waitEmpty("q", AbortSignal.abort()),
    );
    assert.equal((await h.stats("q")).ready, 1, "the queue is untouched");
  });

  // ---------------------------------------------------------------- concurrency

  test("concurrent consumers get every item exactly once", {}, async (h) => {
    const total = 60;
    const producer = await h.session("producer");
    const consumers = await Promise.all([0, 1, 2, 3].map((i) => h.session(`consumer-${i}`)));
    const holders = new Map<number, string>();
    const duplicates: number[] = [];
    let stop = false;
    const putting = (async () => {
      for (let batch = 0; batch < 6; batch++) {
        await producer.put("q", Array.from({ length: 10 }, (_, k) => batch * 10 + k));
      }
    })();
    const consuming = Promise.all(consumers.map(async (consumer) => {
      while (!stop && holders.size < total) {
        const got = await consumer.get("q", { max: 3, timeoutMs: 100 });
        for (const item of got) {
          if (holders.has(item.id)) duplicates.push(item.id);
          holders.set(item.id, consumer.id);
          assert.equal(item.attempts, 1);
        }
        if (got.length > 0) assert.deepEqual(await consumer.ack(idsOf(got)), []);
      }
    }));
    try {
      await within("every item to be consumed", Promise.all([putting, consuming]), 15_000);
    } finally {
      stop = true;
    }
    assert.deepEqual(duplicates, []);
    assert.equal(holders.size, total);
    assert.deepEqual(await h.stats("q"), { ...emptyQueueStats("q"), put: total, acked: total });
  });

  // ---------------------------------------------------------------- priorities

  test("a higher priority is served first, first in first out within a priority", {}, async (h) => {
    const s = await h.session();
    await s.put("q", ["0a", "0b"]);
    await s.put("q", ["5a", "5b"], { priority: 5 });
    await s.put("q", ["-1a"], { priority: -1 });
    await s.put("q", ["5c"], { priority: 5 });
    await s.put("q", ["min"], { priority: MIN_PRIORITY });
    await s.put("q", ["max"], { priority: MAX_PRIORITY });
    await s.put("q", ["0c"], { priority: 0 });
    const expected = ["max", "5a", "5b", "5c", "0a", "0b", "0c", "-1a", "min"];
    assert.deepEqual(valuesOf(await getNow(s, "q", 3)), expected.slice(0, 3));
    const rest: unknown[] = [];
    for (let i = 3; i < expected.length; i++) rest.push((await takeOne(s, "q")).value);
    assert.deepEqual(rest, expected.slice(3), "one at a time, the same order");
    await s.put("other", ["low"], { priority: -5 });
    await s.put("other", ["high"], { priority: 5 });
    const waiter = await h.session("waiter");
    const get = waiter.get("q", { max: 5, timeoutMs: 10_000 });
    await h.until("q", "the get to wait", (st) => st.waiting === 1);
    await s.put("q", ["late"], { priority: -3 });
    assert.deepEqual(valuesOf(await within("the waiting get", get)), ["late"]);
    assert.deepEqual(valuesOf(await getNow(s, "other", 5)), ["high", "low"], "per queue");
  });

  test(
    "a priority out of range is refused and adds nothing; the bounds are accepted",
    {},
    async (h) => {
      const s = await h.session();
      for (const priority of [5_000, MAX_PRIORITY + 1, MIN_PRIORITY - 1, 1.5, NaN]) {
        await assert.rejects(
          s.put("q", ["x"], { priority }),
          `a put with priority ${priority} is refused`,
        );
      }
      assert.equal((await h.stats("q")).put, 0, "the refused puts added nothing");
      await s.put("q", ["low"], { priority: MIN_PRIORITY });
      await s.put("q", ["high"], { priority: MAX_PRIORITY });
      assert.deepEqual(valuesOf(await getNow(s, "q", 10)), ["high", "low"]);
    },
  );

  test(
    "an expired lease returns to the front of its priority, a nack to the back of it",
    {},
    async (h) => {
      const s = await h.session();
      await s.put("q", ["z"]);
      await s.put("q", ["a", "b", "c"], { priority: 5 });
      const a = await takeOne(s, "q");
      assert.equal(a.value, "a");
      assert.deepEqual(await s.nack([a.id]), []); // priority 5: b c a; then z
      assert.deepEqual(
        (await h.broker.peek("q", 10)).map((p) => p.value).filter((v) => v !== "z").at(-1),
        "a",
        "the nacked item is at the back of its priority",
      );
      const b = await takeOne(s, "q", SHORT_LEASE_MS);
      assert.equal(b.value, "b");
      await h.until("q", "the lease to expire", (st) => st.expired === 1);
      const all = await getNow(s, "q", 10);
      assert.deepEqual(valuesOf(all), ["b", "c", "a", "z"], "both stay ahead of a lower priority");
      assert.deepEqual(attemptsOf(all), [2, 1, 2, 1]);
    },
  );

  test("a retried or delayed item keeps its priority and joins the back of it", {
    retry: { backoffBaseMs: MEDIUM_BACKOFF_MS, backoffMaxMs: MEDIUM_BACKOFF_MS },
  }, async (h) => {
    const s = await h.session();
    await s.put("q", ["z"]);
    const [hid] = await s.put("q", ["h"], { priority: 5 });
    const first = await takeOne(s, "q");
    assert.deepEqual([first.id, first.value], [hid, "h"]);
    const failedAt = performance.now();
    assert.deepEqual(await s.fail([first.id], "boom"), []);
    await s.put("q", ["k"], { priority: 5 });
    const duringBackoff = since(failedAt) < MEDIUM_BACKOFF_MS - SLACK_MS;
    await s.put("q", ["later"], { priority: 7, delayMs: 100 });
    await h.until("q", "the retry and the delay to end", (st) => st.ready === 4);
    const all = await getNow(s, "q", 10);
    if (duringBackoff) {
      assert.deepEqual(valuesOf(all), ["later", "k", "h", "z"], "h rejoins after k");
      assert.deepEqual(attemptsOf(all), [1, 1, 2, 1]);
    } else { // the machine was too slow to put k during the backoff
      assert.deepEqual(valuesOf(all).slice(0, 1), ["later"]);
      assert.deepEqual(valuesOf(all).slice(3), ["z"]);
    }
  });

  // ---------------------------------------------------------------- groups

  test(
    "groups take turns: a group of 5 is not starved by an earlier group of 50",
    {},
    async (h) => {
      const s = await h.session();
      await s.put("q", labelled("a", 50), { group: "a" });
      await s.put("q", labelled("b", 5), { group: "b" });
      const first = valuesOf(await getNow(s, "q", 10));
      assert.equal(first.length, 10);
      assertRoundRobin(first.map(groupOf), "the first 10 deliveries");
      assert.deepEqual(first.filter((v) => groupOf(v) === "b"), labelled("b", 5));
      assert.deepEqual(first.filter((v) => groupOf(v) === "a"), labelled("a", 5));
      const rest = valuesOf(await getNow(s, "q", 100));
      assert.deepEqual(rest, labelled("a", 50).slice(5));
    },
  );

  test("the rotation carries across gets: a group served goes to the back", {}, async (h) => {
    const s = await h.session();
    for (const group of ["a", "b", "c"]) await s.put("q", labelled(group, 3), { group });
    const taken: unknown[] = [];
    for (let i = 0; i < 9; i++) taken.push((await takeOne(s, "q")).value);
    assertRoundRobin(taken.map(groupOf), "nine gets of one item");
    for (const group of ["a", "b", "c"]) {
      assert.deepEqual(taken.filter((v) => groupOf(v) === group), labelled(group, 3));
    }
  });

  test("items without a group take turns as one group of their own", {}, async (h) => {
    const s = await h.session();
    await s.put("q", labelled("", 4));
    await s.put("q", labelled("g", 4), { group: "g" });
    const got = valuesOf(await getNow(s, "q", 8));
    assertRoundRobin(got.map(groupOf), "ungrouped and grouped items");
    assert.deepEqual(got.filter((v) => groupOf(v) === ""), labelled("", 4));
    assert.deepEqual(got.filter((v) => groupOf(v) === "g"), labelled("g", 4));
  });

  test("a higher priority is served before the group rotation goes on", {}, async (h) => {
    const s = await h.session();
    await s.put("q", labelled("a", 2, "low"), { group: "a" });
    await s.put("q", labelled("b", 1, "low"), { group: "b" });
    await s.put("q", labelled("a", 2, "high"), { group: "a", priority: 5 });
    await s.put("q", labelled("b", 1, "high"), { group: "b", priority: 5 });
    const got = valuesOf(await getNow(s, "q", 10)) as string[];
    const high = got.slice(0, 3);
    const low = got.slice(3);
    assert.ok(high.every((v) => v.includes(":high")), `higher priority first: ${got}`);
    assert.ok(low.every((v) => v.includes(":low")), `then the lower: ${got}`);
    assertRoundRobin(high.map(groupOf), "priority 5");
    assertRoundRobin(low.map(groupOf), "priority 0");
    assert.deepEqual(got.filter((v) => v.startsWith("a:")), [
      ...labelled("a", 2, "high"),
      ...labelled("a", 2, "low"),
    ]);
  });

  test(
    "groupConcurrency skips a group with that many leased; other groups go on",
    {},
    async (h) => {
      const s = await h.session("s");
      const other = await h.session("other");
      assert.deepEqual(
        limitFields(await h.broker.setLimits("q", { groupConcurrency: 1 })),
        limitsWith({ groupConcurrency: 1 }),
      );
      await s.put("q", labelled("a", 3), { group: "a" });
      await s.put("q", labelled("b", 2), { group: "b" });
      const first = await getNow(s, "q", 10);
      assert.deepEqual(valuesOf(first).sort(), ["a:0", "b:0"], "one item per group");
      const [a0, b0] = valuesOf(first)[0] === "a:0" ? first : [first[1], first[0]];
      assert.deepEqual(await getNow(other, "q", 10), [], "both groups are at their limit");
      const waiting = track(other.get("q", { max: 10, timeoutMs: 10_000 }));
      await h.until("q", "the get to wait", (st) => st.waiting === 1);
      await idle(QUIET_MS);
      assert.equal(waiting.settled, false, "the second item of a group waits for the first");
      assert.deepEqual(await s.ack([b0.id]), []);
      const b1 = await within("the waiting get, once b:0 is acked", waiting.promise);
      assert.deepEqual(valuesOf(b1), ["b:1"], "only group b's next item: a is still at its limit");
      assert.deepEqual(await getNow(other, "q", 10), []);
      assert.deepEqual(await s.ack([a0.id]), []);
      assert.deepEqual(valuesOf(await getNow(other, "q", 10)), ["a:1"]);
      const st = await h.stats("q");
      assert.deepEqual([st.ready, st.leased], [1, 2]);
    },
  );

  // ---------------------------------------------------------------- unique keys

  test("a put whose key is taken by a ready, leased or delayed item adds nothing", {
    retry: { backoffBaseMs: 60_000, backoffMaxMs: 60_000 },
  }, async (h) => {
    const s = await h.session();
    const first = await s.put("q", ["first"], { keys: ["k"] });
    assertPutIds(first, [first[0]], undefined, "a new key");
    const [x] = first;
    assertPutIds(await s.put("q", ["second"], { keys: ["k"] }), [x], [0], "the key ready");
    const mixed = await s.put("q", ["m1", "m2", "m3"], { keys: ["k", undefined, "other"] });
    assertPutIds(mixed, [x, mixed[1], mixed[2]], [0], "a put of several");
    assert.ok(mixed[1] > x && mixed[2] > mixed[1], "the others were added");
    let st = await h.stats("q");
    assert.deepEqual([st.ready, st.put], [3, 3]);
    const item = await takeOne(s, "q");
    assert.deepEqual([item.id, item.value], [x, "first"]);
    assertPutIds(await s.put("q", ["third"], { keys: ["k"] }), [x], [0], "the key leased");
    assert.deepEqual(await s.fail([x], "boom"), []);
    assert.equal((await h.stats("q")).delayed, 1);
    assertPutIds(await s.put("q", ["fourth"], { keys: ["k"] }), [x], [0], "the key delayed");
    const [later] = await s.put("q", ["later"], { keys: ["d"], delayMs: 60_000 });
    assertPutIds(await s.put("q", ["again"], { keys: ["d"] }), [later], [0], "a delayed put");
    st = await h.stats("q");
    assert.deepEqual([st.ready, st.delayed, st.put], [2, 2, 4]);
    assert.deepEqual(valuesOf(await getNow(s, "q", 10)), ["m2", "m3"]);
  });

  test("within one put, a repeated key gets the first value's id", {}, async (h) => {
    const s = await h.session();
    const ids = await s.put("q", ["a", "b", "c", "d"], { keys: ["k", "k", undefined, "k"] });
    const [k, , c] = ids;
    assert.notEqual(k, c);
    assertPutIds(ids, [k, k, c, k], [1, 3], "one put");
    assert.deepEqual((await h.stats("q")).ready, 2);
    assert.deepEqual(valuesOf(await getNow(s, "q", 10)), ["a", "c"]);
  });

  test("a key is free again once its item is acked, dead-lettered or dropped", {
    retry: { maxAttempts: 1 },
  }, async (h) => {
    const s = await h.session();
    const [x] = await s.put("q", ["x"], { keys: ["k"] });
    assert.deepEqual(await s.ack([(await takeOne(s, "q")).id]), []);
    const acked = await s.put("q", ["y"], { keys: ["k"] });
    assertPutIds(acked, [acked[0]], undefined, "after the ack");
    assert.ok(acked[0] > x);
    assert.deepEqual(await s.fail([(await takeOne(s, "q")).id], "boom"), []);
    await h.until("q", "the item to be dead-lettered", (st) => st.dead === 1);
    const dead = await s.put("q", ["z"], { keys: ["k"] });
    assertPutIds(dead, [dead[0]], undefined, "after the dead-lettering");
    assert.ok(dead[0] > acked[0]);
    assert.equal(await h.broker.drop("q", [dead[0]]), 1);
    const dropped = await s.put("q", ["w"], { keys: ["k"] });
    assertPutIds(dropped, [dropped[0]], undefined, "after the drop");
    assert.ok(dropped[0] > dead[0]);
    assert.deepEqual(valuesOf(await getNow(s, "q", 10)), ["w"]);
  });

  test("keyHoldMs keeps a key taken for that long after its item finished", {}, async (h) => {
    const s = await h.session();
    const [x] = await s.put("q", ["x"], { keys: ["k"], keyHoldMs: KEY_HOLD_MS });
    const item = await takeOne(s, "q");
    const ackedAt = performance.now();
    assert.deepEqual(await s.ack([item.id]), []);
    const held = await s.put("q", ["y"], { keys: ["k"] });
    if (since(ackedAt) < KEY_HOLD_MS - SLACK_MS) {
      assertPutIds(held, [x], [0], "during the hold: the finished item's id");
    }
    const fresh = await waitFor("the key hold to end", async () => {
      const ids = await s.put("q", ["z"], { keys: ["k"] });
      if (ids.existing === undefined) return ids;
      assertPutIds(ids, [x], [0], "during the hold");
      return undefined;
    });
    assertNotBefore(ackedAt, KEY_HOLD_MS, "the held key was free");
    assert.ok(fresh !== undefined && fresh[0] > x, "a new item");
    assert.deepEqual(valuesOf(await getNow(s, "q", 10)), ["z"], "the hold added nothing");
  });

  test("cancelling an item frees its key, unless a key hold keeps it", {}, async (h) => {
    const s = await h.session();
    const [x] = await s.put("q", ["x"], { keys: ["k"] });
    assert.deepEqual((await h.broker.cancel([x])).cancelled, [x]);
    const after = await s.put("q", ["y"], { keys: ["k"] });
    assertPutIds(after, [after[0]], undefined, "after the cancel");
    assert.ok(after[0] > x);
    const [held] = await s.put("q", ["h"], { keys: ["hold"], keyHoldMs: KEY_HOLD_MS });
    const cancelledAt = performance.now();
    assert.deepEqual((await h.broker.cancel([held])).cancelled, [held]);
    const during = await s.put("q", ["h2"], { keys: ["hold"] });
    if (since(cancelledAt) < KEY_HOLD_MS - SLACK_MS) {
      assertPutIds(during, [held], [0], "during the hold");
    }
    await waitFor("the key hold to end", async () => {
      const ids = await s.put("q", ["h3"], { keys: ["hold"] });
      return ids.existing === undefined;
    });
    assertNotBefore(cancelledAt, KEY_HOLD_MS, "the held key was free");
    assert.deepEqual(valuesOf(await getNow(s, "q", 10)), ["y", "h3"]);
  });

  test("unique keys are scoped to their queue", {}, async (h) => {
    const s = await h.session();
    const [x] = await s.put("q", ["x"], { keys: ["k"] });
    const other = await s.put("r", ["y"], { keys: ["k"] });
    assertPutIds(other, [other[0]], undefined, "the same key in another queue");
    assert.notEqual(other[0], x);
    assert.deepEqual([(await h.stats("q")).ready, (await h.stats("r")).ready], [1, 1]);
  });

  test("concurrent puts of one key from several sessions add one item", {}, async (h) => {
    const sessions = await Promise.all([0, 1, 2].map((i) => h.session(`producer-${i}`)));
    const puts = await Promise.all(
      sessions.flatMap((s, i) =>
        [0, 1, 2, 3, 4].map((k) => s.put("q", [`${i}:${k}`], { keys: ["only"] }))
      ),
    );
    assert.equal(new Set(puts.map((ids) => ids[0])).size, 1, "every put answers the same id");
    assert.equal(puts.filter((ids) => ids.existing === undefined).length, 1, "one put added it");
    for (const ids of puts) if (ids.existing !== undefined) assert.deepEqual(ids.existing, [0]);
    const st = await h.stats("q");
    assert.deepEqual([st.ready, st.put], [1, 1]);
  });

  // ---------------------------------------------------------------- concurrency limits

  test(
    "a concurrency limit caps leased items across sessions; ends of leases serve waiters",
    {},
    async (h) => {
      const a = await h.session("a");
      const b = await h.session("b");
      assert.deepEqual(
        limitFields(await h.broker.setLimits("q", { concurrency: 2 })),
        limitsWith({ concurrency: 2 }),
      );
      await a.put("q", [0, 1, 2, 3, 4, 5, 6]);
      const first = await getNow(a, "q", 5);
      assert.deepEqual(valuesOf(first), [0, 1], "a get of 5 gets 2");
      assert.deepEqual(await getNow(b, "q", 5), [], "the limit holds across sessions");

      const afterAck = track(b.get("q", { max: 5, timeoutMs: 10_000 }));
      await h.until("q", "the get to wait", (st) => st.waiting === 1);
      await idle(QUIET_MS);
      assert.equal(afterAck.settled, false, "no lease ended");
      assert.deepEqual(await a.ack([first[0].id]), []);
      assert.deepEqual(valuesOf(await within("the get after an ack", afterAck.promise)), [2]);

      const afterNack = b.get("q", { max: 5, timeoutMs: 10_000, leaseMs: SHORT_LEASE_MS });
      await h.until("q", "the get to wait", (st) => st.waiting === 1);
      assert.deepEqual(await a.nack([first[1].id]), []);
      const short = await within("the get after a nack", afterNack);
      assert.equal(short.length, 1);

      const afterExpiry = a.get("q", { max: 5, timeoutMs: 10_000 });
      const expired = await within("the get after an expiry", afterExpiry);
      assert.deepEqual(idsOf(expired), [short[0].id], "the expired item, back at the front");
      assert.equal((await h.stats("q")).expired, 1);

      const afterClose = a.get("q", { max: 5, timeoutMs: 10_000 });
      await h.until("q", "the get to wait", (st) => st.waiting === 1);
      await b.close(); // it held one item
      assert.equal((await within("the get after a close", afterClose)).length, 1);
      const st = await h.stats("q");
      assert.deepEqual([st.leased, st.ready], [2, 4]);
    },
  );

  test(
    "waiting getters are served in order; a raised limit wakes them, zero lifts it",
    {},
    async (h) => {
      const holder = await h.session("holder");
      const early = await h.session("early");
      const late = await h.session("late");
      await h.broker.setLimits("q", { concurrency: 1 });
      await holder.put("q", [0, 1, 2, 3, 4, 5]);
      const zero = await takeOne(holder, "q");
      const first = track(early.get("q", { max: 2, timeoutMs: 10_000 }));
      await h.until("q", "the early get to wait", (st) => st.waiting === 1);
      const second = track(late.get("q", { max: 2, timeoutMs: 10_000 }));
      await h.until("q", "both gets to wait", (st) => st.waiting === 2);
      assert.deepEqual(await holder.ack([zero.id]), []);
      assert.deepEqual(valuesOf(await within("the early get", first.promise)), [1]);
      await idle(QUIET_MS);
      assert.equal(second.settled, false, "the late get waits: the limit is 1");
      assert.deepEqual(
        limitFields(await h.broker.setLimits("q", { concurrency: 3 })),
        limitsWith({ concurrency: 3 }),
      );
      assert.deepEqual(valuesOf(await within("the late get, woken", second.promise)), [2, 3]);
      assert.deepEqual(await getNow(holder, "q", 5), []);
      assert.deepEqual(
        limitFields(await h.broker.setLimits("q", { concurrency: 0 })),
        limitsWith({}),
      );
      assert.deepEqual(valuesOf(await getNow(holder, "q", 5)), [4, 5], "zero lifts the limit");
      assert.equal((await h.stats("q")).leased, 5);
    },
  );

  test("limits() reports a queue's limits and lists the queues that have any", {}, async (h) => {
    assert.deepEqual(await h.broker.limits("q"), [limitsRow("q", {})], "none set: all zero");
    assert.deepEqual(await h.broker.limits(), []);
    await h.broker.setLimits("q", { concurrency: 2 });
    await h.broker.setLimits("r", { rateCount: 10, ratePeriodMs: 60_000 });
    await h.broker.setLimits("s", { groupConcurrency: 3 });
    assert.deepEqual(
      limitFields(await h.broker.setLimits("q", { rateCount: 5, ratePeriodMs: 1_000 })),
      limitsWith({ concurrency: 2, rateCount: 5, ratePeriodMs: 1_000 }),
      "fields not given stay as they are",
    );
    assert.deepEqual(await h.broker.limits("q"), [
      limitsRow("q", { concurrency: 2, rateCount: 5 }),
    ]);
    assert.deepEqual(byQueue(await h.broker.limits()), [
      limitsRow("q", { concurrency: 2, rateCount: 5 }),
      limitsRow("r", { rateCount: 10, ratePeriodMs: 60_000 }),
      limitsRow("s", { groupConcurrency: 3 }),
    ]);
    await h.broker.setLimits("r", { rateCount: 0 });
    await h.broker.setLimits("q", { concurrency: 0, rateCount: 0 });
    assert.deepEqual(byQueue(await h.broker.limits()), [limitsRow("s", { groupConcurrency: 3 })]);
    for (const bad of [{ concurrency: -1 }, { rateCount: 1.5 }, { ratePeriodMs: 0 }]) {
      await assert.rejects(h.broker.setLimits("s", bad), `setLimits ${JSON.stringify(bad)}`);
    }
    assert.deepEqual(await h.broker.limits("s"), [limitsRow("s", { groupConcurrency: 3 })]);
  });

  test("limits given at start are in force and reported", {
    limits: { q: { concurrency: 1 }, r: { rateCount: 1, ratePeriodMs: 60_000 } },
  }, async (h) => {
    assert.deepEqual(byQueue(await h.broker.limits()), [
      limitsRow("q", { concurrency: 1 }),
      limitsRow("r", { rateCount: 1, ratePeriodMs: 60_000 }),
    ]);
    const s = await h.session();
    await s.put("q", [1, 2, 3]);
    await s.put("r", [1, 2, 3]);
    assert.equal((await getNow(s, "q", 5)).length, 1);
    assert.equal((await getNow(s, "r", 5)).length, 1);
    assert.deepEqual(await getNow(s, "r", 5), []);
  });

  // ---------------------------------------------------------------- rate limits

  test("a rate limit spaces deliveries across sessions, within the GCRA bound", {}, async (h) => {
    const rateCount = 20;
    const ratePeriodMs = 1_000;
    const interval = ratePeriodMs / rateCount;
    const burst = Math.max(1, Math.floor(rateCount * RATE_BURST_MS / ratePeriodMs));
    const producer = await h.session("producer");
    const consumers = await Promise.all([0, 1].map((i) => h.session(`consumer-${i}`)));
    await producer.put("q", Array.from({ length: 100 }, (_, i) => i));
    await producer.put("free", Array.from({ length: 50 }, (_, i) => i));
    await h.broker.setLimits("q", { rateCount, ratePeriodMs });
    const start = performance.now();
    let delivered = 0;
    await Promise.all(consumers.map(async (consumer) => {
      for (let left = RATE_WINDOW_MS; left > 0; left = RATE_WINDOW_MS - since(start)) {
        const got = await consumer.get("q", { max: 10, timeoutMs: Math.ceil(left) });
        delivered += got.length;
      }
    }));
    const elapsed = since(start);
    const most = 1 + burst + elapsed / interval;
    const least = Math.floor(RATE_FLOOR_SHARE * RATE_WINDOW_MS / interval);
    assert.ok(delivered <= most, `${delivered} deliveries in ${elapsed.toFixed(0)} ms > ${most}`);
    assert.ok(delivered >= least, `${delivered} deliveries in ${elapsed.toFixed(0)} ms < ${least}`);
    assert.equal((await h.stats("q")).leased, delivered);
    assert.equal((await getNow(producer, "free", 50)).length, 50, "other queues are not limited");
  });

  test("under a rate limit a get that does not wait takes what the rate allows", {
    limits: { q: { rateCount: 1, ratePeriodMs: 60_000 } },
  }, async (h) => {
    const s = await h.session();
    await s.put("q", [1, 2, 3, 4, 5]);
    assert.deepEqual(valuesOf(await getNow(s, "q", 5)), [1]);
    assert.deepEqual(await getNow(s, "q", 5), []);
    const st = await h.stats("q");
    assert.deepEqual([st.ready, st.leased], [4, 1]);
    const waiting = track(s.get("q", { max: 5, timeoutMs: 10_000 }));
    await h.until("q", "the get to wait", (stats) => stats.waiting === 1);
    await idle(QUIET_MS);
    assert.equal(waiting.settled, false, "the next delivery is a minute away");
    await h.broker.setLimits("q", { rateCount: 0 });
    assert.deepEqual(
      valuesOf(await within("the waiting get, once the limit is lifted", waiting.promise)),
      [2, 3, 4, 5],
    );
  });

  test("waiting getters are served in order, as the rate allows", {
    limits: { q: { rateCount: 10, ratePeriodMs: 3_000 } },
  }, async (h) => {
    const interval = 300; // 3000 ms / 10
    const s = await h.session("s");
    const early = await h.session("early");
    const late = await h.session("late");
    await s.put("q", [0, 1, 2, 3]);
    const before = performance.now();
    assert.deepEqual(valuesOf(await getNow(s, "q", 5)), [0]);
    const order: string[] = [];
    const first = track(
      early.get("q", { max: 5, timeoutMs: 10_000 }).then((got) => {
        order.push("early");
        return got;
      }),
    );
    await h.until("q", "the early get to wait", (st) => st.waiting === 1 || first.settled);
    const second = track(
      late.get("q", { max: 5, timeoutMs: 10_000 }).then((got) => {
        order.push("late");
        return got;
      }),
    );
    assert.deepEqual(valuesOf(await within("the early get", first.promise)), [1]);
    assertNotBefore(before, interval, "the second delivery");
    assert.deepEqual(valuesOf(await within("the late get", second.promise)), [2]);
    assertNotBefore(before, 2 * interval, "the third delivery");
    assert.deepEqual(order, ["early", "late"]);
  });

  // ---------------------------------------------------------------- cancellation

  test("cancel removes ready and delayed items, which end cancelled", {}, async (h) => {
    const s = await h.session();
    const [a, b, c] = await s.put("q", ["a", "b", "c"]);
    const [d] = await s.put("q", ["d"], { delayMs: 60_000 });
    const outcome = await h.broker.cancel([b, d]);
    assert.deepEqual(ascending(outcome.cancelled), ascending([b, d]));
    assert.deepEqual(outcome.missing, []);
    const st = await h.stats("q");
    assert.deepEqual([st.ready, st.delayed, st.leased, st.dead], [2, 0, 0, 0]);
    assert.deepEqual((await h.broker.peek("q", 10)).map((p) => p.id), [a, c]);
    for (const id of [b, d]) {
      const info = await h.job(id);
      assert.deepEqual(pick(info, ["queue", "state", "attempts"]), {
        queue: "q",
        state: "cancelled",
        attempts: 0,
      });
    }
    const empty = track(h.broker.waitEmpty("q"));
    assert.deepEqual((await h.broker.cancel([a, c])).cancelled.length, 2);
    await within("waitEmpty once every item was cancelled", empty.promise);
    assert.deepEqual(await getNow(s, "q", 10), []);
    assert.equal((await h.stats("q.dead")).put, 0);
  });

  test("cancel revokes a lease: its holder is told, settlements refused, never served again", {
    retry: { maxAttempts: 1 },
  }, async (h) => {
    const holder = await h.session("holder");
    const other = await h.session("other");
    const told: number[][] = [];
    const otherTold: number[][] = [];
    holder.onCancel = (ids) => told.push([...ids]);
    other.onCancel = (ids) => otherTold.push([...ids]);
    const [x, y] = await holder.put("q", ["x", "y"]);
    await takeOne(holder, "q", MEDIUM_LEASE_MS);
    await takeOne(holder, "q");
    assert.deepEqual(await h.broker.cancel([x]), { cancelled: [x], missing: [] });
    await waitFor("the holder to be told", () => told.length > 0);
    assert.deepEqual(told, [[x]]);
    assert.deepEqual(otherTold, []);
    assert.deepEqual(await holder.ack([x]), [x], "ack: not held");
    assert.deepEqual(await holder.nack([x]), [x], "nack: not held");
    assert.deepEqual(await holder.fail([x], "too late"), [x], "fail: not held");
    assert.deepEqual(await holder.extend([x], 10_000), [x], "extend: not held");
    assert.equal(await holder.progress(x, { percent: 50 }, 10_000), false, "progress: not held");
    let st = await h.stats("q");
    assert.deepEqual([st.ready, st.leased, st.delayed], [0, 1, 0]);
    const info = await h.job(x);
    assert.deepEqual(pick(info, ["state", "attempts"]), { state: "cancelled", attempts: 1 });
    assertAbsent(info, ["holder", "leasedAt", "leaseExpiresAt"], "a cancelled job");
    assert.deepEqual(
      await other.get("q", { max: 1, timeoutMs: MEDIUM_LEASE_MS + QUIET_MS }),
      [],
      "not served again, even past its lease",
    );
    st = await h.stats("q");
    assert.deepEqual([st.ready, st.leased, st.dead], [0, 1, 0]);
    assert.equal((await h.stats("q.dead")).put, 0, "never dead-lettered");
    assert.equal((await h.job(x)).state, "cancelled");
    const empty = track(h.broker.waitEmpty("q"));
    assert.deepEqual(await holder.ack([y]), [], "other leases are untouched");
    await within("waitEmpty once the rest was acked", empty.promise);
    assert.deepEqual(told, [[x]], "told once");
  });

  test("cancel answers unknown, finished and already cancelled ids as missing", {
    retry: { maxAttempts: 1 },
  }, async (h) => {
    const s = await h.session();
    const [a, b, c] = await s.put("q", ["a", "b", "c"]);
    assert.deepEqual(await s.ack([(await takeOne(s, "q")).id]), []);
    assert.deepEqual(await h.broker.cancel([b]), { cancelled: [b], missing: [] });
    assert.deepEqual(await s.fail([(await takeOne(s, "q")).id], "boom"), []);
    await h.until("q", "c to be dead-lettered", (st) => st.dead === 1);
    const outcome = await h.broker.cancel([a, b, c, UNKNOWN_ID]);
    assert.deepEqual(outcome.cancelled, []);
    assert.deepEqual(ascending(outcome.missing), ascending([a, b, c, UNKNOWN_ID]));
    assert.deepEqual(
      [(await h.job(a)).state, (await h.job(b)).state, (await h.job(c)).state],
      ["done", "cancelled", "dead"],
    );
  });

  test("cancelling a leased item makes room for a put held for it", {
    maxQueueLength: 1,
  }, async (h) => {
    const holder = await h.session("holder");
    const producer = await h.session("producer");
    const [x] = await holder.put("q", ["x"]);
    await takeOne(holder, "q");
    const held = track(producer.put("q", ["y"]));
    await idle(QUIET_MS);
    assert.equal(held.settled, false, "the put waits for room");
    assert.deepEqual((await h.broker.cancel([x])).cancelled, [x]);
    await within("the put held for room", held.promise);
    assert.deepEqual(valuesOf(await getNow(holder, "q")), ["y"]);
  });

  test("cancelling a leased item frees its concurrency slot for a waiting get", {}, async (h) => {
    const holder = await h.session("holder");
    const waiter = await h.session("waiter");
    await h.broker.setLimits("q", { concurrency: 1 });
    const [x] = await holder.put("q", ["x", "y"]);
    await takeOne(holder, "q");
    const get = track(waiter.get("q", { max: 5, timeoutMs: 10_000 }));
    await h.until("q", "the get to wait", (st) => st.waiting === 1);
    await idle(QUIET_MS);
    assert.equal(get.settled, false, "the limit holds");
    assert.deepEqual((await h.broker.cancel([x])).cancelled, [x]);
    assert.deepEqual(valuesOf(await within("the waiting get", get.promise)), ["y"]);
  });

  // ---------------------------------------------------------------- job lookup

  test(
    "job describes ready, delayed and leased items; an unknown id is undefined",
    {},
    async (h) => {
      const before = Date.now();
      const s = await h.session("worker-1", "192.0.2.7:5000");
      const [plain] = await s.put("q", [{ n: 1 }]);
      const [rich] = await s.put("q", ["rich"], { priority: 3, group: "g", keys: ["k"] });
      const [later] = await s.put("q", ["later"], { delayMs: 60_000 });
      const after = Date.now();
      const ready = await h.job(plain);
      assert.deepEqual(pick(ready, ["queue", "state", "attempts", "priority", "value"]), {
        queue: "q",
        state: "ready",
        attempts: 0,
        priority: 0,
        value: { n: 1 },
      });
      assertTimeBetween(ready.createdAt, before, after, "createdAt");
      assertAbsent(ready, [
        "group",
        "key",
        "error",
        "result",
        "progress",
        "leasedAt",
        "leaseExpiresAt",
        "holder",
        "finishedAt",
      ], "a ready job");
      assert.deepEqual(pick(await h.job(rich), ["state", "priority", "group", "key", "value"]), {
        state: "ready",
        priority: 3,
        group: "g",
        key: "k",
        value: "rich",
      });
      const delayed = await h.job(later);
      assert.deepEqual(pick(delayed, ["state", "attempts"]), { state: "delayed", attempts: 0 });
      assertTimeBetween(delayed.readyAt, before + 60_000, after + 60_000, "readyAt");
      assert.equal(await h.broker.job(UNKNOWN_ID), undefined);

      const leaseBefore = Date.now();
      const item = await takeOne(s, "q", LOOK_LEASE_MS);
      const leaseAfter = Date.now();
      assert.equal(item.id, rich, "the higher priority first");
      const leased = await h.job(rich);
      assert.deepEqual(pick(leased, ["state", "attempts", "holder"]), {
        state: "leased",
        attempts: 1,
        holder: { session: s.id, name: "worker-1", address: "192.0.2.7:5000" },
      });
      assertTimeBetween(leased.leasedAt, leaseBefore, leaseAfter, "leasedAt");
      const length = (leased.leaseExpiresAt ?? 0) - (leased.leasedAt ?? 0);
      assert.ok(Math.abs(length - LOOK_LEASE_MS) <= LEASE_SKEW_MS, `a lease of ${length} ms`);

      assert.deepEqual(await s.nack([rich]), []);
      const back = await h.job(rich);
      assert.deepEqual(pick(back, ["state", "attempts"]), { state: "ready", attempts: 1 });
      assertAbsent(back, ["holder", "leasedAt", "leaseExpiresAt"], "a nacked job");
    },
  );

  test("job describes finished items: done with its result, dead with its error", {
    retry: { maxAttempts: 2, backoffBaseMs: MEDIUM_BACKOFF_MS, backoffMaxMs: MEDIUM_BACKOFF_MS },
  }, async (h) => {
    const s = await h.session();
    const [a, b, c, d] = await s.put("q", ["a", "b", "c", "d"]);
    const before = Date.now();
    assert.deepEqual(
      await s.ack([(await takeOne(s, "q")).id], {
        queue: "results",
        values: [{ ok: true }],
      }),
      [],
    );
    assert.deepEqual(await s.ack([(await takeOne(s, "q")).id]), []);
    const after = Date.now();
    const done = await h.job(a);
    assert.deepEqual(pick(done, ["queue", "state", "attempts", "value", "result"]), {
      queue: "q",
      state: "done",
      attempts: 1,
      value: "a",
      result: { ok: true },
    });
    assertTimeBetween(done.finishedAt, before, after, "finishedAt");
    assertAbsent(done, ["error", "holder", "leasedAt", "leaseExpiresAt"], "a done job");
    const plain = await h.job(b);
    assert.equal(plain.state, "done");
    assertAbsent(plain, ["result"], "a job acked without a result");

    const failedAt = performance.now();
    assert.deepEqual(await s.fail([(await takeOne(s, "q")).id], "first"), []);
    const retrying = await h.job(c);
    assert.deepEqual(pick(retrying, ["attempts", "error"]), { attempts: 1, error: "first" });
    if (since(failedAt) < MEDIUM_BACKOFF_MS - SLACK_MS) {
      assert.equal(retrying.state, "delayed", "waiting for its retry");
      assert.equal(typeof retrying.readyAt, "number", "a retry's readyAt");
    }
    assert.deepEqual(await s.fail([(await takeOne(s, "q")).id], "only"), []); // d
    const [again, other] = [await awaitOne(s, "q"), await awaitOne(s, "q")];
    assert.deepEqual([again.id, other.id].sort((x, y) => x - y), [c, d]);
    assert.deepEqual(await s.fail([c], "second"), []);
    assert.deepEqual(await s.ack([d]), []);
    const dead = await h.job(c);
    assert.deepEqual(pick(dead, ["state", "attempts", "error", "value"]), {
      state: "dead",
      attempts: 2,
      error: "second",
      value: "c",
    });
    assert.equal(typeof dead.finishedAt, "number");
    const recovered = await h.job(d);
    assert.deepEqual(pick(recovered, ["state", "attempts", "error"]), {
      state: "done",
      attempts: 2,
      error: "only",
    }, "a done job keeps its last failure");
  });

  test("history keeps at most historyCount finished jobs, the latest", {
    historyCount: 2,
  }, async (h) => {
    const s = await h.session();
    const [a, b, c, live] = await s.put("q", ["a", "b", "c", "live"]);
    for (let i = 0; i < 3; i++) assert.deepEqual(await s.ack([(await takeOne(s, "q")).id]), []);
    assert.equal(await h.broker.job(a), undefined, "the oldest record went");
    assert.equal((await h.job(b)).state, "done");
    assert.equal((await h.job(c)).state, "done");
    assert.equal((await h.job(live)).state, "ready", "live jobs are not history");
  });

  test("historyCount 0 keeps no finished job", { historyCount: 0 }, async (h) => {
    const s = await h.session();
    const [a, b] = await s.put("q", ["a", "b"]);
    assert.deepEqual(await s.ack([(await takeOne(s, "q")).id]), []);
    assert.equal(await h.broker.job(a), undefined);
    assert.equal((await h.job(b)).state, "ready");
  });

  test("history forgets a finished job after historyMs", { historyMs: HISTORY_MS }, async (h) => {
    const s = await h.session();
    const [a] = await s.put("q", ["a"]);
    const item = await takeOne(s, "q");
    const ackedAt = performance.now();
    assert.deepEqual(await s.ack([item.id]), []);
    const first = await h.broker.job(a);
    if (since(ackedAt) < HISTORY_MS - SLACK_MS) assert.equal(first?.state, "done");
    await waitFor("the record to be forgotten", async () => await h.broker.job(a) === undefined);
    assertNotBefore(ackedAt, HISTORY_MS, "the record was forgotten");
  });

  test(
    "a finished job too large for the history keeps neither value nor result",
    {},
    async (h) => {
      const s = await h.session();
      const big = "x".repeat(MAX_HISTORY_VALUE_BYTES + 1_024);
      const [a, b] = await s.put("q", [big, "small"]);
      assert.equal((await h.job(a)).value, big, "a live job keeps its value");
      assert.deepEqual(await s.ack([(await takeOne(s, "q")).id]), []);
      assert.deepEqual(
        await s.ack([(await takeOne(s, "q")).id], { queue: "results", values: [big] }),
        [],
      );
      for (const id of [a, b]) {
        const info = await h.job(id);
        assert.equal(info.state, "done");
        assertAbsent(info, ["value", "result"], "a job too large for the history");
      }
    },
  );

  // ---------------------------------------------------------------- progress

  test("progress is recorded on the job and renews the lease", {}, async (h) => {
    const holder = await h.session("holder");
    const other = await h.session("other");
    const [id] = await holder.put("q", ["x"]);
    await takeOne(holder, "q", MEDIUM_LEASE_MS);
    const before = Date.now();
    assert.equal(await holder.progress(id, { percent: 40, message: "x" }, 2_000), true);
    const after = Date.now();
    let info = await h.job(id);
    assert.deepEqual(info.progress, { percent: 40, message: "x", at: info.progress?.at });
    assertTimeBetween(info.progress?.at, before, after, "progress.at");
    assertTimeBetween(info.leaseExpiresAt, before + 2_000, after + 2_000, "leaseExpiresAt");
    await idle(MEDIUM_LEASE_MS + 100);
    const st = await h.stats("q");
    assert.deepEqual([st.leased, st.ready, st.expired], [1, 0, 0], "the lease still runs");
    assert.deepEqual(await getNow(other, "q"), []);

    assert.equal(await holder.progress(id, { percent: 62.5 }, 2_000), true);
    info = await h.job(id);
    assert.deepEqual(info.progress, { percent: 62.5, at: info.progress?.at }, "the last report");
    assert.equal(await holder.progress(id, { message: "almost" }, 2_000), true);
    info = await h.job(id);
    assert.deepEqual(info.progress, { message: "almost", at: info.progress?.at });
    assert.equal(await holder.progress(id, { percent: 90 }, 50), true);
    await h.until("q", "the shortened lease to expire", (stats) => stats.expired === 1);
    assert.equal((await takeOne(other, "q")).attempts, 2);
  });

  test("progress on an item not held answers false and records nothing", {}, async (h) => {
    const holder = await h.session("holder");
    const other = await h.session("other");
    const [id, late] = await holder.put("q", ["x", "y"]);
    await takeOne(holder, "q");
    assert.equal(await other.progress(id, { percent: 10 }, 10_000), false, "another session");
    assert.equal(await holder.progress(UNKNOWN_ID, { percent: 10 }, 10_000), false, "unknown");
    assertAbsent(await h.job(id), ["progress"], "a job whose holder reported nothing");
    assert.deepEqual(await holder.ack([id]), []);
    assert.equal(await holder.progress(id, { percent: 10 }, 10_000), false, "acked");
    await takeOne(holder, "q", SHORT_LEASE_MS);
    await h.until("q", "the lease to expire", (st) => st.expired === 1);
    assert.equal(await holder.progress(late, { percent: 10 }, 10_000), false, "expired");
    assert.equal((await h.stats("q")).ready, 1, "the refused report renewed nothing");
  });

  // ---------------------------------------------------------------- durability

  const volatile = !factory.durable || factory.reopen === undefined;

  test(
    "durable: acknowledged puts survive close and reopen; ids keep increasing",
    {},
    async (h) => {
      let s = await h.session();
      const ids = [...await s.put("q", ["a", "b", "c"]), ...await s.put("r", ["x"])];
      await h.reopen();
      s = await h.session();
      const q = await h.stats("q");
      assert.deepEqual([q.ready, q.leased, q.delayed], [3, 0, 0]);
      const got = await getNow(s, "q", 10);
      assert.deepEqual(valuesOf(got), ["a", "b", "c"]);
      assert.deepEqual(idsOf(got), ids.slice(0, 3));
      assert.deepEqual(attemptsOf(got), [1, 1, 1]);
      assert.deepEqual(valuesOf(await getNow(s, "r", 10)), ["x"]);
      const [later] = await s.put("q", ["d"]);
      assert.ok(later > Math.max(...ids), "ids keep increasing across a reopen");
    },
    volatile,
  );

  test(
    "durable: acked items stay gone, with their results; leased ones come back ready",
    {},
    async (h) => {
      let a = await h.session("a");
      const b = await h.session("b");
      await a.put("q", ["a", "b", "c", "d"]);
      const [ia, ib] = await getNow(a, "q", 2);
      assert.deepEqual(await a.ack([ia.id]), []);
      assert.deepEqual(await a.ack([ib.id], { queue: "results", values: ["rb"] }), []);
      const c = await takeOne(b, "q");
      await h.reopen();
      a = await h.session("a");
      const q = await h.stats("q");
      assert.deepEqual([q.ready, q.leased], [2, 0]);
      const got = await getNow(a, "q", 10);
      assert.deepEqual(valuesOf(got), ["c", "d"]);
      assert.deepEqual(idsOf(got)[0], c.id);
      assert.deepEqual(attemptsOf(got), [2, 1], "the delivery before the close counts");
      assert.deepEqual(valuesOf(await getNow(a, "results", 10)), ["rb"]);
    },
    volatile,
  );

  test("durable: delays survive a reopen", {}, async (h) => {
    let s = await h.session();
    const putAt = performance.now();
    await s.put("q", ["later"], { delayMs: 400 });
    await h.reopen();
    s = await h.session();
    if (since(putAt) < 300) {
      assert.deepEqual(await getNow(s, "q"), [], "not ready before its delay");
      assert.equal((await h.stats("q")).delayed, 1);
    }
    const got = await awaitOne(s, "q");
    assertNotBefore(putAt, 400, "the delayed item was delivered");
    assert.equal(got.value, "later");
  }, volatile);

  test("durable: values, attempts and the last failure survive a reopen", {
    retry: { maxAttempts: 2 },
  }, async (h) => {
    let s = await h.session();
    await s.put("values", SAMPLE_VALUES);
    const [id] = await s.put("q", ["x"]);
    assert.deepEqual(await s.fail([(await takeOne(s, "q")).id], "boom"), []);
    await h.reopen();
    s = await h.session();
    assert.deepEqual(valuesOf(await getNow(s, "values", SAMPLE_VALUES.length)), SAMPLE_VALUES);
    const second = await awaitOne(s, "q", SHORT_LEASE_MS);
    assert.deepEqual([second.id, second.attempts], [id, 2]);
    await h.until("q.dead", "the last attempt's expiry to dead-letter it", (st) => st.ready === 1);
    const letter = (await takeOne(s, "q.dead")).value as DeadLetter;
    assert.deepEqual([letter.id, letter.attempts, letter.error], [
      id,
      2,
      "its lease expired before it was acked (earlier: boom)",
    ]);
  }, volatile);

  test("durable: priorities, groups and unique keys survive a reopen", {}, async (h) => {
    let s = await h.session();
    await s.put("q", ["low"], { priority: -1 });
    const [keyed] = await s.put("q", ["keyed"], { keys: ["k"], group: "g" });
    await s.put("q", ["high"], { priority: 9 });
    await h.reopen();
    s = await h.session();
    const again = await s.put("q", ["dup"], { keys: ["k"] });
    assert.deepEqual([[...again], again.existing], [[keyed], [0]]);
    const job = await h.broker.job(keyed);
    assert.deepEqual([job?.state, job?.group, job?.key], ["ready", "g", "k"]);
    assert.deepEqual(valuesOf(await getNow(s, "q", 3)), ["high", "keyed", "low"]);
  }, volatile);
  test("durable: counters survive a reopen", {
    retry: { maxAttempts: 1 },
  }, async (h) => {
    let s = await h.session();
    await s.put("q", ["a", "b", "c"]);
    const [a, b] = idsOf(await getNow(s, "q", 2));
    assert.deepEqual(await s.ack([a]), []);
    assert.deepEqual(await s.fail([b], "boom"), []);
    const before = await h.stats("q");
    assert.deepEqual(before, {
      ...emptyQueueStats("q"),
      ready: 1,
      put: 3,
      acked: 1,
      failed: 1,
      dead: 1,
    });
    await h.reopen();
    s = await h.session();
    assert.deepEqual(await h.stats("q"), before);
    assert.equal((await h.stats("q.dead")).put, 1);
    await s.put("q", ["d"]);
    assert.equal((await h.stats("q")).put, 4, "counting goes on from there");
  }, volatile);

  test("durable: a queue whose dead letters are all it has is still listed after a reopen", {
    retry: { maxAttempts: 1 },
  }, async (h) => {
    let s = await h.session();
    await s.put("a", ["x"]);
    assert.deepEqual(await s.fail([(await takeOne(s, "a")).id], "boom"), []);
    await h.reopen();
    s = await h.session();
    const names = (await h.broker.stats()).queues.map((q) => q.name);
    assert.ok(names.includes("a"), `queue a is listed: ${names}`);
    assert.ok(names.includes("a.dead"), `queue a.dead is listed: ${names}`);
    assert.equal((await h.stats("a.dead")).ready, 1);
  }, volatile);
}
