/**
 * Back-pressure: a full queue makes puts wait instead of growing the master
 * without limit (the engine's room waiters, and end to end through
 * `taskq master --max-queue-length`), and a peer that does not read its
 * replies stops being read from (lib/wire/connection.ts).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Engine } from "../lib/engine/engine.ts";
import { FramedConnection } from "../lib/wire/connection.ts";
import { connect, serve } from "../lib/mod.ts";
import { startMaster, TEST_KEY, waitFor } from "./_helpers.ts";

const MAX_LENGTH = 100;

Deno.test("engine: a queue at its maximum length makes puts wait for room, first come first served", () => {
  const engine = new Engine({ maxQueueLength: 3 });
  const consumer = engine.connect("c");
  engine.put("q", [1, 2, 3]);
  const woken: string[] = [];
  assert.equal(engine.isFull("q", () => woken.push("first")), true);
  assert.equal(engine.isFull("q", () => woken.push("second")), true);
  assert.equal(engine.isFull("other", () => woken.push("other")), false, "other queues are free");
  let taken: number[] = [];
  engine.get(consumer, "q", 1, 0, undefined, (items) => taken = items.map((i) => i.id));
  assert.deepEqual(woken, [], "a leased item still counts toward the length");
  engine.ack(consumer, taken);
  assert.deepEqual(woken, ["first", "second"]);
});

Deno.test("engine: without a maximum length nothing is ever full", () => {
  const engine = new Engine();
  engine.put("q", Array.from({ length: 10_000 }, (_, i) => i));
  assert.equal(engine.isFull("q", () => assert.fail("never called")), false);
});

Deno.test("master: --max-queue-length holds puts back until consumers make room", async () => {
  await using master = await startMaster({ args: ["--max-queue-length", String(MAX_LENGTH)] });
  const producer = await connect({ address: master.address, authkey: TEST_KEY, reconnect: false });
  const consumer = await connect({ address: master.address, authkey: TEST_KEY, reconnect: false });
  try {
    const total = MAX_LENGTH * 3;
    let acknowledged = 0;
    const puts = Array.from(
      { length: total },
      (_, i) => producer.queue("q").put(i).then(() => acknowledged++),
    );
    await waitFor(
      "the queue to fill up",
      async () => (await consumer.stats("q")).queues[0].ready >= MAX_LENGTH,
    );
    // Give the master every chance to take more than it should: a round trip on another connection.
    await consumer.ping();
    const stats = (await consumer.stats("q")).queues[0];
    assert.ok(stats.ready <= MAX_LENGTH + 1, `queue holds ${stats.ready} > ${MAX_LENGTH}`);
    assert.ok(acknowledged < total, "some puts are waiting");
    const seen: number[] = [];
    while (seen.length < total) {
      const jobs = await consumer.queue("q").getMany(10, 5_000);
      assert.ok(jobs.length > 0, "items keep coming as room is made");
      await consumer.queue("q").ack(jobs);
      seen.push(...jobs.map((job) => job.value as number));
    }
    await Promise.all(puts);
    assert.deepEqual(seen.sort((a, b) => a - b), Array.from({ length: total }, (_, i) => i));
  } finally {
    await producer.close();
    await consumer.close();
  }
});

Deno.test("connection: a peer that does not read stops being read from", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const peer = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const accepted = await listener.accept();
  const highWater = 64 * 1024;
  const conn = new FramedConnection(accepted, { highWaterBytes: highWater });
  let handled = 0;
  const reply = new Uint8Array(16 * 1024);
  const pumping = conn.pump(() => {
    handled++;
    conn.send({ op: "ok", data: reply }); // every request makes a large reply
  });
  // The peer writes many small requests and never reads the replies.
  const frame = new Uint8Array([0, 0, 0, 1, 0xc0]);
  const requests = 20_000;
  const writing = (async () => {
    const burst = new Uint8Array(frame.length * requests);
    for (let i = 0; i < requests; i++) burst.set(frame, i * frame.length);
    try {
      await peer.write(burst);
    } catch {
      // closed at the end of the test
    }
  })();
  try {
    await waitFor("the connection to stop reading", () => conn.queuedBytes > highWater);
    const stalledAt = handled;
    await peer.write(frame).catch(() => {});
    // A round trip elsewhere lets any pending reads run; the count must not move.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(handled, stalledAt, "requests are not read while replies pile up");
    assert.ok(handled < requests, `read ${handled} of ${requests} requests`);
    assert.ok(conn.queuedBytes < highWater + 2 * reply.length + 1024, `${conn.queuedBytes} queued`);
  } finally {
    peer.close();
    conn.close();
    await pumping.catch(() => {});
    await writing;
    listener.close();
  }
});

Deno.test("master: a producer held on a full queue that goes away is noticed at once", async () => {
  const master = await serve({ listen: "127.0.0.1:0", authkey: TEST_KEY, maxQueueLength: 1 });
  const address = { hostname: "127.0.0.1", port: master.address.port };
  const producer = await connect({ address, authkey: TEST_KEY, reconnect: false });
  const observer = await connect({ address, authkey: TEST_KEY, reconnect: false });
  try {
    await producer.queue("q").put("fills the queue");
    await observer.queue("work").put("held by the producer");
    const held = await producer.queue("work").get(1_000, { leaseMs: 60_000 });
    assert.ok(held);
    const waiting = producer.queue("q").put("waits for room").catch((error) => error);
    await waitFor(
      "the put to be held",
      async () => (await observer.stats("q")).queues[0].ready === 1,
    );
    await producer.close();
    assert.ok((await waiting) instanceof Error, "the held put fails with the connection");
    // Its lease ends with the connection, not 60 s later.
    await waitFor(
      "the producer's item to come back",
      async () => (await observer.stats("work")).queues[0].ready === 1,
    );
    assert.equal((await observer.stats()).clients, 1, "the producer is no longer counted");
  } finally {
    await producer.close();
    await observer.close();
    await master.close();
  }
});
