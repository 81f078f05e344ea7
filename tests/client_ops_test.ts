/**
 * Tests of the client's operator calls (protocol version 3, taskq 0.3):
 * {@link Client.items}, {@link Client.requeueDead}, {@link Client.drop},
 * {@link Client.purge}, {@link Client.sessions}, {@link Client.control} and
 * {@link Client.onControl}, against a master served in this process: paging
 * and states, re-queueing and dropping by id and all, purge leaving leased
 * items alone, sessions listing what each holds, the control notice reaching
 * the named client only; argument checks before anything is sent; and
 * against a fake master that speaks version 2, {@link UnsupportedError} for
 * each call with nothing sent, while `onControl` registers without throwing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Client, connect, type Master, serve, UnsupportedError } from "../lib/mod.ts";
import type { ControlAction } from "../lib/client/client.ts";
import { PROTOCOL_VERSION } from "../lib/wire/auth.ts";
import { RawConn, TEST_KEY, waitFor } from "./_helpers.ts";

const KEY_BYTES = new TextEncoder().encode(TEST_KEY);

/** Longest any single wait here may take, in ms. */
const WAIT_MS = 10_000;

/** Runs `fn` with a master served in this process and a client connected to it. */
async function withMaster(
  fn: (client: Client, master: Master, address: string) => Promise<void>,
): Promise<void> {
  const master = await serve({ listen: "127.0.0.1:0", authkey: KEY_BYTES });
  const address = `127.0.0.1:${master.address.port}`;
  const client = await connect({ address, authkey: TEST_KEY, name: "admin" });
  try {
    await fn(client, master, address);
  } finally {
    await client.close();
    await master.close();
  }
}

/** Makes `count` dead letters of `queue` (put with one attempt, taken, failed); returns their old ids. */
async function makeDead(client: Client, queue: string, count: number): Promise<number[]> {
  const q = client.queue(queue);
  const ids = await q.putMany(Array.from({ length: count }, (_, i) => `v${i}`), {
    maxAttempts: 1,
  });
  const jobs = await q.getMany(count, 1_000);
  assert.equal(jobs.length, count);
  await q.fail(jobs, "it broke");
  return [...ids];
}

Deno.test("client ops: items lists each state in order, with paging, taking nothing", async () => {
  await withMaster(async (client) => {
    const q = client.queue("tasks");
    const ids = await q.putMany(["a", "b", "c", "d", "e"]);
    const [later] = await q.putMany(["later"], { delayMs: 60_000 });
    const [soon] = await q.putMany(["soon"], { delayMs: 30_000 });
    const first = await client.items("tasks", { state: "ready" });
    assert.equal(first.total, 5);
    assert.deepEqual(first.items.map((i) => i.id), [...ids]);
    assert.ok(first.items.every((i) => i.state === "ready" && i.attempts === 0));
    const page = await client.items("tasks", { state: "ready", offset: 3, limit: 5 });
    assert.deepEqual(page.items.map((i) => i.value), ["d", "e"]);
    assert.equal(page.total, 5);
    assert.deepEqual((await client.items("tasks", { state: "ready", offset: 9 })).items, []);
    const delayed = await client.items("tasks", { state: "delayed" });
    assert.deepEqual(delayed.items.map((i) => i.id), [soon, later], "soonest first");
    assert.ok(delayed.items.every((i) => typeof i.readyAt === "number"));
    // Nothing was taken.
    assert.equal(await q.size(), 5);
    const [job] = await q.getMany(1, 0);
    const leased = await client.items("tasks", { state: "leased" });
    assert.equal(leased.total, 1);
    assert.equal(leased.items[0].id, job.id);
    assert.equal(leased.items[0].holder?.name, "admin");
    assert.equal(leased.items[0].attempts, 1);
    // An unknown queue is empty, and listing does not create it.
    assert.deepEqual(await client.items("nowhere", { state: "ready" }), { items: [], total: 0 });
    assert.equal((await client.stats()).queues.some((s) => s.name === "nowhere"), false);
  });
});

Deno.test("client ops: arguments are checked before anything is sent", async () => {
  await withMaster(async (client) => {
    const calls: [() => Promise<unknown>, new (...args: never[]) => Error, RegExp][] = [
      [() => client.items("tasks", { state: "done" as never }), TypeError, /items state/],
      [() => client.items("tasks", { state: "ready", limit: 0 }), RangeError, /limit/],
      [() => client.items("tasks", { state: "ready", limit: 501 }), RangeError, /limit/],
      [() => client.items("tasks", { state: "ready", offset: -1 }), RangeError, /offset/],
      [() => client.items("", { state: "ready" }), RangeError, /queue name/],
      [() => client.items("tasks", null as never), TypeError, /options must be an object/],
      [() => client.requeueDead("tasks", [-1]), RangeError, /job id/],
      [() => client.requeueDead("tasks", "some" as never), TypeError, /job/],
      [() => client.drop("tasks", [1.5]), RangeError, /job id/],
      [() => client.purge(7 as never), TypeError, /queue name/],
      [() => client.control("", "quiet"), TypeError, /session id/],
      [() => client.control("1", "pause" as never), TypeError, /control action/],
      [() => client.control("x".repeat(401), "stop"), RangeError, /session id/],
    ];
    for (const [call, type, message] of calls) {
      await assert.rejects(call, (error: unknown) => {
        assert.ok(error instanceof type, `${call}: got ${error}`);
        assert.match((error as Error).message, message);
        return true;
      });
    }
    assert.throws(() => client.onControl("quiet" as never), TypeError);
    assert.equal(client.inFlight, 0);
    await client.ping();
    // Empty lists send nothing and do nothing.
    assert.deepEqual(await client.requeueDead("tasks", []), []);
    assert.equal(await client.drop("tasks", []), 0);
  });
});

Deno.test("client ops: dead letters are re-queued by id and all, and dropped", async () => {
  await withMaster(async (client) => {
    await makeDead(client, "tasks", 4);
    const dead = await client.items("tasks.dead", { state: "ready" });
    assert.equal(dead.total, 4);
    const letter = dead.items[0].value as { queue: string; value: unknown; error: string };
    assert.equal(letter.queue, "tasks");
    assert.equal(letter.error, "it broke");
    // By id, with the queue's name or its dead-letter queue's: the ids `items` lists.
    const [one] = await client.requeueDead("tasks", [dead.items[0].id, 999_999]);
    assert.equal(typeof one, "number");
    const back = await client.job(one);
    assert.equal(back?.queue, "tasks");
    assert.equal(back?.value, letter.value);
    assert.equal(back?.attempts, 0);
    assert.deepEqual(await client.requeueDead("tasks.dead", [dead.items[1].id]), [one + 1]);
    // All of the rest.
    const rest = await client.requeueDead("tasks", "all");
    assert.equal(rest.length, 2);
    assert.equal((await client.items("tasks.dead", { state: "ready" })).total, 0);
    assert.equal(await client.queue("tasks").size(), 4);
    // Dropping dead letters: by id, then all.
    await client.purge("tasks");
    await makeDead(client, "tasks", 3);
    const again = await client.items("tasks.dead", { state: "ready" });
    assert.equal(await client.drop("tasks.dead", [again.items[0].id]), 1);
    assert.equal(await client.drop("tasks.dead", "all"), 2);
    assert.equal((await client.items("tasks.dead", { state: "ready" })).total, 0);
  });
});

Deno.test("client ops: purge removes ready and delayed items, not leased ones", async () => {
  await withMaster(async (client) => {
    const q = client.queue("tasks");
    await q.putMany([1, 2, 3]);
    await q.put(4, { delayMs: 60_000 });
    const job = await q.get(1_000);
    assert.ok(job !== null);
    assert.equal(await client.purge("tasks"), 3);
    const [stats] = (await client.stats("tasks")).queues;
    assert.deepEqual([stats.ready, stats.delayed, stats.leased], [0, 0, 1]);
    await q.ack(job);
    assert.equal(await client.purge("tasks"), 0);
    // drop "all" takes only ready items.
    await q.putMany([5, 6]);
    await q.put(7, { delayMs: 60_000 });
    assert.equal(await client.drop("tasks", "all"), 2);
    assert.equal((await client.stats("tasks")).queues[0].delayed, 1);
  });
});

Deno.test("client ops: sessions list what each holds; control reaches the named client", async () => {
  await withMaster(async (client, _master, address) => {
    const worker = await connect({ address, authkey: TEST_KEY, name: "worker-1" });
    const other = await connect({ address, authkey: TEST_KEY, name: "worker-2" });
    try {
      const heard: ControlAction[] = [];
      const otherHeard: ControlAction[] = [];
      worker.onControl((action) => heard.push(action));
      other.onControl((action) => otherHeard.push(action));
      await client.queue("tasks").putMany(["x", "y", "z"]);
      const held = await worker.queue("tasks").getMany(2, 1_000);
      const sessions = await client.sessions();
      const mine = sessions.find((s) => s.name === "worker-1");
      assert.ok(mine !== undefined, Deno.inspect(sessions));
      assert.equal(mine.leased, 2);
      assert.deepEqual(mine.holding.map((h) => h.id), held.map((j) => j.id));
      assert.ok(mine.holding.every((h) => h.queue === "tasks" && h.leaseExpiresAt > h.leasedAt));
      assert.equal(mine.controlled, undefined);
      assert.deepEqual(sessions.find((s) => s.name === "worker-2")?.holding, []);

      assert.equal(await client.control(mine.id, "quiet"), true);
      await waitFor("the quiet notice", () => heard.length === 1 || undefined, {
        timeoutMs: WAIT_MS,
      });
      assert.deepEqual(heard, ["quiet"]);
      assert.equal((await client.sessions()).find((s) => s.id === mine.id)?.controlled, "quiet");
      assert.equal(await client.control(mine.id, "stop"), true);
      await waitFor("the stop notice", () => heard.length === 2 || undefined, {
        timeoutMs: WAIT_MS,
      });
      assert.deepEqual(heard, ["quiet", "stop"]);
      assert.equal((await client.sessions()).find((s) => s.id === mine.id)?.controlled, "stop");
      // Only the named client heard; the master took nothing from it.
      await other.ping();
      assert.deepEqual(otherHeard, []);
      assert.equal(worker.mayHoldLease(held[0]), true);
      await worker.queue("tasks").ack(held);
      // A handler removed hears nothing more.
      worker.onControl(undefined);
      assert.equal(await client.control(mine.id, "quiet"), true);
      await worker.ping();
      assert.deepEqual(heard, ["quiet", "stop"]);
      // A session that is gone is not found.
      await worker.close();
      await waitFor(
        "the worker's session to end",
        async () => (await client.sessions()).every((s) => s.id !== mine.id) || undefined,
        { timeoutMs: WAIT_MS },
      );
      assert.equal(await client.control(mine.id, "stop"), false);
    } finally {
      await worker.close();
      await other.close();
    }
  });
});

/**
 * A fake master of taskq 0.2: it answers any hello with challenge version 2,
 * completes the handshake and answers pings; records every request's op.
 */
async function withVersion2Master(
  fn: (address: string, ops: string[]) => Promise<void>,
): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const ops: string[] = [];
  const served = (async () => {
    const peer = RawConn.wrap(await listener.accept());
    try {
      const hello = await peer.next() as Record<string, unknown>;
      assert.equal(hello.version, PROTOCOL_VERSION);
      await peer.answerHello(hello, 2);
      for (;;) {
        let request: Record<string, unknown>;
        try {
          request = await peer.next(WAIT_MS) as Record<string, unknown>;
        } catch {
          break; // the client closed
        }
        ops.push(request.op as string);
        await peer.send({ op: "ok", rid: request.rid });
      }
    } finally {
      await peer.close();
    }
  })();
  try {
    await fn(`127.0.0.1:${listener.addr.port}`, ops);
  } finally {
    listener.close();
    await served;
  }
}

Deno.test("client ops: against a taskq 0.2 master each call is an UnsupportedError", async () => {
  await withVersion2Master(async (address, ops) => {
    const client = await connect({ address, authkey: TEST_KEY, reconnect: false });
    try {
      assert.equal(client.protocolVersion, 2);
      client.onControl(() => assert.fail("a version 2 master never sends control"));
      const refusals: [() => Promise<unknown>, RegExp][] = [
        [() => client.items("tasks", { state: "ready" }), /listing items needs/],
        [() => client.requeueDead("tasks", "all"), /re-queueing dead letters needs/],
        [() => client.requeueDead("tasks", [1]), /re-queueing dead letters needs/],
        [() => client.drop("tasks", [1]), /dropping items needs/],
        [() => client.drop("tasks", "all"), /dropping items needs/],
        [() => client.purge("tasks"), /purging a queue needs/],
        [() => client.sessions(), /listing sessions needs/],
        [() => client.control("1", "quiet"), /controlling a session needs/],
      ];
      for (const [call, message] of refusals) {
        await assert.rejects(call, (error: unknown) => {
          assert.ok(error instanceof UnsupportedError, `${call}: got ${error}`);
          assert.match(error.message, /^the master speaks protocol 2; /);
          assert.match(error.message, message);
          assert.match(error.message, /needs a master of taskq 0\.3 or later$/);
          assert.equal(error.version, 2);
          assert.equal(error.needs, 3);
          return true;
        });
      }
      await client.ping();
      assert.deepEqual(ops, ["ping"], "nothing of version 3 was sent");
    } finally {
      await client.close();
    }
  });
});
