/**
 * Tests of the failure policy of lib/engine/engine.ts, driven directly with an
 * injected fake clock and explicit ticks (no sockets, no real time): a failed
 * item is delayed with exponential backoff (base, 2×base, 4×base… capped at
 * backoffMaxMs) with its attempt count and last error kept; after its last
 * attempt it moves to `NAME.dead` as a DeadLetter and is gone from NAME;
 * per-put maxAttempts overrides the queue's policy and maxAttemptsByQueue the
 * global one; a lease that expires or a consumer that disconnects on the last
 * attempt dead-letters the item with a reason saying so; nack never
 * dead-letters; an item running out of attempts inside a dead-letter queue
 * stays in it; the failed/dead counters; and fail on ids not held.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Consumer,
  type DeadLetter,
  DEFAULT_RETRY_POLICY,
  Engine,
  type EngineOptions,
  type Item,
  type RetryPolicy,
} from "../lib/engine/engine.ts";

const START = 1_000_000;
const LEASE = 1_000;
const BASE = 100;

/** An engine on a fake clock, with a quick retry policy unless told otherwise. */
class Harness {
  now = START;
  readonly engine: Engine;
  readonly c: Consumer;

  constructor(retry: Partial<RetryPolicy> = {}, options: EngineOptions = {}) {
    this.engine = new Engine({
      clock: () => this.now,
      defaultLeaseMs: LEASE,
      retry: { backoffBaseMs: BASE, backoffMaxMs: 10 * BASE, ...retry },
      ...options,
    });
    this.c = this.engine.connect("c");
  }

  /** Moves the clock forward and runs the engine's timers. */
  advance(ms: number): void {
    this.now += ms;
    this.engine.tick(this.now);
  }

  /** Takes up to `max` ready items of `queue` for consumer `c` (or `consumer`). */
  take(queue = "q", max = 1, consumer: Consumer = this.c): Item[] {
    let got: readonly Item[] | undefined;
    this.engine.get(consumer, queue, max, 0, undefined, (items) => got = items);
    assert.ok(got !== undefined, "a get without timeout delivers at once");
    return [...got];
  }

  /** Takes exactly one item of `queue`. */
  takeOne(queue = "q", consumer: Consumer = this.c): Item {
    const items = this.take(queue, 1, consumer);
    assert.equal(items.length, 1, `expected an item ready on ${queue}`);
    return items[0];
  }

  /** Fails one held item; it must have been held. */
  fail(item: Item, error = "boom"): void {
    assert.deepEqual(this.engine.fail(this.c, [item.id], error), []);
  }

  /** One queue's statistics. */
  stats(queue = "q") {
    return this.engine.stats(queue)[0];
  }

  /** Whether queue `name` has ever been used (it shows in the list of all queues). */
  exists(name: string): boolean {
    return this.engine.stats().some((s) => s.name === name);
  }

  /** Takes every dead letter of `queue`'s dead-letter queue (leased to `c`). */
  deadLetters(queue = "q"): { item: Item; letter: DeadLetter }[] {
    return this.take(`${queue}.dead`, 1000).map((item) => ({
      item,
      letter: item.value as DeadLetter,
    }));
  }
}

Deno.test("retry: a failed item is delayed by the base backoff, keeping its attempts and error", () => {
  const h = new Harness();
  const [id] = h.engine.put("q", ["x"]);
  const item = h.takeOne();
  assert.equal(item.attempts, 1);
  h.fail(item, "first failure");
  assert.equal(item.state, "delayed");
  assert.equal(item.lastError, "first failure");
  assert.equal(item.attempts, 1);
  assert.equal(item.owner, undefined);
  assert.equal(item.readyAt, START + BASE);
  assert.equal(h.c.leases.size, 0);
  assert.equal(h.engine.nextDeadline(), START + BASE);
  let s = h.stats();
  assert.deepEqual([s.ready, s.leased, s.delayed, s.failed, s.dead], [0, 0, 1, 1, 0]);

  h.advance(BASE - 1);
  assert.deepEqual(h.take(), [], "not served before its backoff ends");
  h.advance(1);
  s = h.stats();
  assert.deepEqual([s.ready, s.delayed], [1, 0]);
  const again = h.takeOne();
  assert.equal(again.id, id);
  assert.equal(again.attempts, 2);
  assert.equal(again.lastError, "first failure");
});

Deno.test("retry: backoff doubles with each attempt and is capped at backoffMaxMs", () => {
  const h = new Harness({ maxAttempts: 100, backoffBaseMs: BASE, backoffMaxMs: 5 * BASE });
  h.engine.put("q", ["x"]);
  const delays: number[] = [];
  for (let attempt = 1; attempt <= 6; attempt++) {
    const item = h.takeOne();
    assert.equal(item.attempts, attempt);
    h.fail(item, `failure ${attempt}`);
    delays.push(item.readyAt - h.now);
    assert.equal(h.engine.nextDeadline(), item.readyAt);
    h.advance(item.readyAt - h.now - 1);
    assert.equal(item.state, "delayed", "still delayed 1 ms before its backoff ends");
    h.advance(1);
    assert.equal(item.state, "ready");
    assert.equal(item.lastError, `failure ${attempt}`);
  }
  assert.deepEqual(delays, [BASE, 2 * BASE, 4 * BASE, 5 * BASE, 5 * BASE, 5 * BASE]);
});

Deno.test("retry: a zero backoff makes a failed item ready at once, behind the others", () => {
  const h = new Harness({ backoffBaseMs: 0 });
  h.engine.put("q", ["a", "b"]);
  const a = h.takeOne();
  h.fail(a);
  assert.equal(a.state, "ready");
  assert.equal(h.stats().delayed, 0);
  assert.deepEqual(h.take("q", 10).map((item) => item.value), ["b", "a"]);
});

Deno.test("retry: a failed item goes to a get waiting for it once its backoff ends", () => {
  const h = new Harness();
  const other = h.engine.connect("other");
  h.engine.put("q", ["x"]);
  h.fail(h.takeOne());
  const got: (readonly Item[])[] = [];
  h.engine.get(other, "q", 1, 10 * BASE, undefined, (items) => got.push(items));
  assert.equal(got.length, 0);
  h.advance(BASE);
  assert.equal(got.length, 1);
  assert.equal(got[0][0].value, "x");
  assert.equal(got[0][0].attempts, 2);
  assert.equal(got[0][0].owner, other);
});

Deno.test("retry: after its last attempt an item moves to NAME.dead as a DeadLetter", () => {
  const h = new Harness({ maxAttempts: 3 });
  const [id] = h.engine.put("q", [{ task: "x", n: 1 }]);
  for (let attempt = 1; attempt <= 2; attempt++) {
    const item = h.takeOne();
    assert.equal(item.attempts, attempt);
    h.fail(item, `failure ${attempt}`);
    assert.equal(item.state, "delayed");
    h.advance(item.readyAt - h.now);
  }
  assert.equal(h.exists("q.dead"), false, "no dead-letter queue before anything dies");
  const last = h.takeOne();
  assert.equal(last.attempts, 3);
  h.now += 12_345;
  const failedAt = h.now;
  h.fail(last, "failure 3");

  // Gone from q: nothing ready, leased or delayed, nothing scheduled, not ackable.
  const s = h.stats();
  assert.deepEqual([s.ready, s.leased, s.delayed, s.failed, s.dead], [0, 0, 0, 3, 1]);
  assert.equal(h.engine.nextDeadline(), undefined);
  assert.deepEqual(h.engine.ack(h.c, [id]), [id]);
  assert.deepEqual(h.engine.fail(h.c, [id], "again"), [id]);

  const dead = h.stats("q.dead");
  assert.deepEqual([dead.ready, dead.put], [1, 1]);
  const letters = h.deadLetters();
  assert.equal(letters.length, 1);
  assert.deepEqual(
    letters[0].letter,
    {
      queue: "q",
      id,
      value: { task: "x", n: 1 },
      attempts: 3,
      error: "failure 3",
      failedAt,
    } satisfies DeadLetter,
  );
  assert.notEqual(letters[0].item.id, id, "the dead letter is a new item with its own id");
  assert.equal(letters[0].item.attempts, 1);
  assert.deepEqual(h.take(), [], "nothing comes back to q");
});

Deno.test("retry: the default policy allows 5 attempts", () => {
  assert.equal(DEFAULT_RETRY_POLICY.maxAttempts, 5);
  const h = new Harness({ maxAttempts: undefined, backoffBaseMs: 0 });
  assert.equal(h.engine.retry.maxAttempts, 5);
  h.engine.put("q", ["x"]);
  for (let attempt = 1; attempt <= 4; attempt++) h.fail(h.takeOne());
  assert.equal(h.stats().dead, 0);
  const fifth = h.takeOne();
  assert.equal(fifth.attempts, 5);
  h.fail(fifth);
  assert.equal(h.stats().dead, 1);
  assert.equal(h.deadLetters()[0].letter.attempts, 5);
});

Deno.test("retry: policy fields given as undefined take their defaults", () => {
  const engine = new Engine({
    retry: { maxAttempts: undefined, backoffBaseMs: undefined, backoffMaxMs: undefined },
  });
  assert.equal(engine.retry.maxAttempts, DEFAULT_RETRY_POLICY.maxAttempts);
  assert.equal(engine.retry.backoffBaseMs, DEFAULT_RETRY_POLICY.backoffBaseMs);
  assert.equal(engine.retry.backoffMaxMs, DEFAULT_RETRY_POLICY.backoffMaxMs);
  const partial = new Engine({ retry: { maxAttempts: 2 } });
  assert.equal(partial.retry.maxAttempts, 2);
  assert.equal(partial.retry.backoffBaseMs, DEFAULT_RETRY_POLICY.backoffBaseMs);
});

Deno.test("retry: maxAttempts 1 dead-letters on the first failure", () => {
  const h = new Harness({ maxAttempts: 1 });
  h.engine.put("q", ["x"]);
  h.fail(h.takeOne(), "only chance");
  assert.equal(h.stats().delayed, 0);
  assert.deepEqual(
    h.deadLetters().map(({ letter }) => [letter.value, letter.attempts, letter.error]),
    [["x", 1, "only chance"]],
  );
});

Deno.test("retry: per-put maxAttempts overrides the queue's policy, both ways", () => {
  const h = new Harness({ maxAttempts: 3, backoffBaseMs: 0 });
  h.engine.put("q", ["once"], 0, 1);
  h.engine.put("q", ["five times"], 0, 5);
  h.engine.put("q", ["policy"]);
  const attemptsAtDeath = new Map<unknown, number>();
  for (let round = 0; round < 10 && attemptsAtDeath.size < 3; round++) {
    for (const item of h.take("q", 10)) h.fail(item);
    for (const { letter } of h.deadLetters()) attemptsAtDeath.set(letter.value, letter.attempts);
  }
  assert.deepEqual(
    Object.fromEntries(attemptsAtDeath),
    { "once": 1, "five times": 5, "policy": 3 },
  );
  assert.equal(h.stats().dead, 3);
});

Deno.test("retry: maxAttemptsByQueue overrides the global policy for that queue only", () => {
  const h = new Harness({ maxAttempts: 3, backoffBaseMs: 0, maxAttemptsByQueue: { urgent: 1 } });
  h.engine.put("urgent", ["u"]);
  h.engine.put("normal", ["n"]);
  h.fail(h.takeOne("urgent"));
  h.fail(h.takeOne("normal"));
  assert.equal(h.stats("urgent").dead, 1);
  assert.equal(h.stats("normal").dead, 0);
  assert.equal(h.deadLetters("urgent")[0].letter.attempts, 1);
  h.fail(h.takeOne("normal"));
  assert.equal(h.stats("normal").dead, 0);
  h.fail(h.takeOne("normal"));
  assert.equal(h.stats("normal").dead, 1);
  assert.equal(h.deadLetters("normal")[0].letter.attempts, 3);
});

Deno.test("retry: per-put maxAttempts also overrides maxAttemptsByQueue", () => {
  const h = new Harness({ maxAttempts: 1, backoffBaseMs: 0, maxAttemptsByQueue: { q: 4 } });
  h.engine.put("q", ["put says 2"], 0, 2);
  h.fail(h.takeOne());
  assert.equal(h.stats().dead, 0);
  h.fail(h.takeOne());
  assert.equal(h.deadLetters()[0].letter.attempts, 2);
});

Deno.test("retry: a lease expiring on the last attempt dead-letters the item", () => {
  const h = new Harness({ maxAttempts: 2 });
  const [id] = h.engine.put("q", ["x"]);
  h.takeOne();
  h.advance(LEASE);
  assert.equal(h.stats().ready, 1, "an expiry before the last attempt returns the item");
  assert.equal(h.stats().expired, 1);
  const second = h.takeOne();
  assert.equal(second.attempts, 2);
  h.advance(LEASE - 1);
  assert.equal(h.stats().leased, 1);
  h.advance(1);
  const s = h.stats();
  assert.deepEqual([s.ready, s.leased, s.delayed, s.expired, s.failed, s.dead], [0, 0, 0, 2, 0, 1]);
  const [{ letter }] = h.deadLetters();
  assert.equal(letter.id, id);
  assert.equal(letter.attempts, 2);
  assert.equal(letter.failedAt, START + 2 * LEASE);
  assert.match(letter.error, /lease expired/);
  assert.doesNotMatch(letter.error, /earlier/, "no earlier failure to mention");
  assert.deepEqual(h.engine.ack(h.c, [id]), [id], "a late ack is refused");
});

Deno.test("retry: an expiry on the last attempt keeps the earlier failure in the reason", () => {
  const h = new Harness({ maxAttempts: 2 });
  h.engine.put("q", ["x"]);
  const first = h.takeOne();
  h.fail(first, "disk full");
  h.advance(BASE);
  h.takeOne();
  h.advance(LEASE);
  const [{ letter }] = h.deadLetters();
  assert.match(letter.error, /lease expired/);
  assert.match(letter.error, /disk full/);
});

Deno.test("retry: a disconnect on the last attempt dead-letters what the consumer held", () => {
  const h = new Harness({ maxAttempts: 1 });
  const worker = h.engine.connect("worker");
  const ids = h.engine.put("q", ["a", "b"]);
  h.engine.put("q", ["c"], 0, 2);
  assert.equal(h.take("q", 3, worker).length, 3);
  h.engine.disconnect(worker);
  const s = h.stats();
  assert.deepEqual([s.ready, s.leased, s.expired, s.dead], [1, 0, 3, 2]);
  const letters = h.deadLetters().map(({ letter }) => letter);
  assert.deepEqual(letters.map((letter) => letter.id).sort(), ids.sort());
  for (const letter of letters) {
    assert.match(letter.error, /connection closed/);
    assert.equal(letter.attempts, 1);
  }
  const c = h.takeOne();
  assert.equal(c.value, "c", "an item with attempts left goes back to the queue");
  assert.equal(c.attempts, 2);
});

Deno.test("retry: nack never dead-letters, however many deliveries", () => {
  const h = new Harness({ maxAttempts: 2 });
  const [id] = h.engine.put("q", ["x"]);
  for (let attempt = 1; attempt <= 10; attempt++) {
    const item = h.takeOne();
    assert.equal(item.attempts, attempt);
    assert.deepEqual(h.engine.nack(h.c, [id], attempt % 2 === 0 ? 50 : 0), []);
    if (attempt % 2 === 0) h.advance(50);
  }
  assert.equal(h.stats().dead, 0);
  assert.equal(h.stats().nacked, 10);
  assert.equal(h.exists("q.dead"), false);
  // Past its maximum, the next failure dead-letters it.
  h.fail(h.takeOne(), "finally");
  assert.equal(h.deadLetters()[0].letter.attempts, 11);
});

Deno.test("retry: extend keeps a last attempt alive", () => {
  const h = new Harness({ maxAttempts: 1 });
  const [id] = h.engine.put("q", ["x"]);
  h.takeOne();
  for (let i = 0; i < 5; i++) {
    h.advance(LEASE - 1);
    assert.deepEqual(h.engine.extend(h.c, [id], LEASE), []);
  }
  assert.equal(h.stats().dead, 0);
  assert.deepEqual(h.engine.ack(h.c, [id]), []);
  assert.equal(h.exists("q.dead"), false);
});

Deno.test("retry: an item running out of attempts in a dead-letter queue stays in it", () => {
  const h = new Harness({ maxAttempts: 1 });
  const [id] = h.engine.put("q", ["x"]);
  h.fail(h.takeOne(), "first death");
  const dead = h.takeOne("q.dead");
  const original = dead.value as DeadLetter;
  assert.equal(original.id, id);
  h.fail(dead, "reprocessing failed");
  assert.equal(h.exists("q.dead.dead"), false);
  const s = h.stats("q.dead");
  assert.deepEqual([s.ready, s.leased, s.delayed, s.failed, s.dead, s.put], [1, 0, 0, 1, 1, 2]);
  const [{ letter }] = h.deadLetters();
  assert.deepEqual(letter, original, "the dead letter goes back as it was, not wrapped again");

  // The same by lease expiry and by disconnect.
  h.advance(LEASE);
  assert.equal(h.exists("q.dead.dead"), false);
  const worker = h.engine.connect("worker");
  h.takeOne("q.dead", worker);
  h.engine.disconnect(worker);
  assert.equal(h.exists("q.dead.dead"), false);
  assert.equal(h.stats("q.dead").ready, 1);
  assert.equal(h.stats("q.dead").dead, 3);
});

Deno.test("retry: failed and dead counters per queue", () => {
  const h = new Harness({ maxAttempts: 2, backoffBaseMs: 0 });
  h.engine.put("q", ["a", "b", "c"]);
  const [a, b, c] = h.take("q", 3);
  h.fail(a);
  h.fail(b);
  assert.deepEqual(h.engine.ack(h.c, [c.id]), []);
  let s = h.stats();
  assert.deepEqual([s.put, s.acked, s.failed, s.dead], [3, 1, 2, 0]);
  for (const item of h.take("q", 2)) h.fail(item);
  s = h.stats();
  assert.deepEqual([s.put, s.acked, s.failed, s.dead, s.ready], [3, 1, 4, 2, 0]);
  const all = h.engine.stats().map((q) => q.name);
  assert.deepEqual(all, ["q", "q.dead"]);
  assert.equal(h.stats("q.dead").put, 2);
  assert.equal(h.stats("q.dead").failed, 0);
});

Deno.test("retry: fail returns the ids it did not hold and leaves them alone", () => {
  const h = new Harness();
  const other = h.engine.connect("other");
  const [ready, mine, theirs, acked] = h.engine.put("q", ["ready", "mine", "theirs", "acked"]);
  const [first] = h.take("q", 1); // "ready" is taken and given back below
  assert.deepEqual(h.engine.nack(h.c, [first.id]), []);
  h.take("q", 1); // "mine"
  h.take("q", 1, other); // "theirs"
  const ackedItem = h.takeOne();
  assert.equal(ackedItem.id, acked);
  assert.deepEqual(h.engine.ack(h.c, [acked]), []);
  const notHeld = h.engine.fail(h.c, [ready, mine, theirs, acked, 999_999], "boom");
  assert.deepEqual(notHeld, [ready, theirs, acked, 999_999]);
  const s = h.stats();
  assert.equal(s.failed, 1, "only the held item counts as failed");
  assert.deepEqual([s.ready, s.leased, s.delayed], [1, 1, 1]);
  // The other consumer still holds its item and may settle it.
  assert.deepEqual(h.engine.ack(other, [theirs]), []);
});
