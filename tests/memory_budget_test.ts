/**
 * The master's memory budget and queue limits ("Hostile networks"): puts
 * refused with `memory_full` past the items' share of `--max-memory` while
 * gets and acks go on; nested-map put floods; queue names that are never
 * freed; bounded stats and `/metrics`; a non-reading consumer against the
 * shared buffers cap; and a durable master with more data than its budget.
 *
 * @module
 */

import assert from "node:assert/strict";
import { openLocalBroker } from "../lib/broker/local.ts";
import { MemoryFullError, TooManyQueuesError } from "../lib/broker/errors.ts";
import { Engine, IDLE_QUEUE_SWEEP_THRESHOLD } from "../lib/engine/engine.ts";
import { ITEM_OVERHEAD_BYTES, itemCost } from "../lib/engine/item_cost.ts";
import { serve } from "../lib/server/master.ts";
import { connect } from "../lib/client/client.ts";
import { RemoteError } from "../lib/errors.ts";
import { renderMetrics } from "../lib/http/metrics.ts";
import { Telemetry } from "../lib/broker/telemetry.ts";
import { ByteBudget, MIB, parseByteSize } from "../lib/util/memory.ts";
import { FramedConnection } from "../lib/wire/connection.ts";
import { REPO_ROOT, TEST_KEY } from "./_helpers.ts";

/** The bound on a good client's round trip while the master is attacked. */
const ROUND_TRIP_BOUND_MS = 1_000;

/** An item of small maps: near the most memory per byte a frame may decode to. */
const NESTED_ITEM: unknown[] = Array.from({ length: 4 }, () => ({ a: 0 }));

Deno.test("sizes parse with and without units", () => {
  assert.equal(parseByteSize("1024"), 1024);
  assert.equal(parseByteSize("64MiB"), 64 * MIB);
  assert.equal(parseByteSize("2g"), 2 * 1024 * MIB);
  assert.equal(parseByteSize("12 parsecs"), undefined);
});

Deno.test("item costs follow the decoder's model", () => {
  assert.equal(itemCost(1), ITEM_OVERHEAD_BYTES);
  assert.ok(itemCost(NESTED_ITEM) > 4 * 56);
  assert.ok(itemCost(new Uint8Array(1000)) > 1000);
});

Deno.test("puts past the budget are refused; gets, acks and ack results go on", async () => {
  const broker = await openLocalBroker({ maxMemoryBytes: 32 * MIB });
  const session = await broker.open({ name: "t", address: "" });
  try {
    const big = "x".repeat(1_000_000); // about 2 MB each by the estimate
    let stored = 0;
    let refused: unknown;
    for (let i = 0; i < 20 && refused === undefined; i++) {
      try {
        await session.put("tasks", [big]);
        stored++;
      } catch (error) {
        refused = error;
      }
    }
    assert.ok(refused instanceof MemoryFullError, `refused with ${refused}`);
    assert.equal(refused.code, "memory_full");
    const stats = await broker.stats("tasks");
    assert.equal(stats.queues[0].ready, stored, "a refused put stores nothing");
    // Gets and acks go on; an ack's results are never refused.
    const [job] = await session.get("tasks", { max: 1, timeoutMs: 0 });
    assert.deepEqual(await session.ack([job.id], { queue: "results", values: [big] }), []);
    // Room again once items leave.
    const jobs = await session.get("tasks", { max: 100, timeoutMs: 0 });
    await session.ack(jobs.map((j) => j.id));
    await session.put("tasks", [big]);
  } finally {
    await session.close();
    await broker.close();
  }
});

Deno.test("a get that does not wait, or stats, never creates a queue", async () => {
  const broker = await openLocalBroker();
  const session = await broker.open({ name: "t", address: "" });
  try {
    for (let i = 0; i < 10_000; i++) await session.get(`q${i}`, { max: 1, timeoutMs: 0 });
    await broker.stats("never");
    assert.equal((await broker.stats()).queueCount, 0);
  } finally {
    await session.close();
    await broker.close();
  }
});

Deno.test("empty, unused queues are forgotten past the threshold; the rest are kept", () => {
  const engine = new Engine();
  const consumer = engine.connect("t");
  engine.put("kept", [1]);
  const total = IDLE_QUEUE_SWEEP_THRESHOLD * 3;
  for (let i = 0; i < total; i++) {
    engine.put(`q${i}`, [i]);
    engine.get(consumer, `q${i}`, 1, 0, undefined, (items) => {
      engine.ack(consumer, items.map((item) => item.id));
    });
  }
  assert.ok(engine.queueCount <= 2 * IDLE_QUEUE_SWEEP_THRESHOLD + 1, `${engine.queueCount}`);
  assert.equal(engine.stats("kept")[0].ready, 1);
  assert.ok(engine.stats().some((q) => q.name === "kept"));
});

Deno.test("queues past --max-queues are refused; empty ones make room", async () => {
  const broker = await openLocalBroker({ maxQueues: 2 });
  const session = await broker.open({ name: "t", address: "" });
  try {
    await session.put("a", [1]);
    await session.put("b", [1]);
    await assert.rejects(session.put("c", [1]), TooManyQueuesError);
    await assert.rejects(session.get("c", { max: 1, timeoutMs: 10 }), TooManyQueuesError);
    const [job] = await session.get("b", { max: 1, timeoutMs: 0 });
    await session.ack([job.id]);
    await session.put("c", [1]); // "b" was empty and unused: forgotten to make room
    // The broker's own puts (results, dead letters) are never refused.
    const [a] = await session.get("a", { max: 1, timeoutMs: 0 });
    await session.ack([a.id], { queue: "results", values: ["r"] });
    assert.equal((await broker.stats("results")).queues[0].ready, 1);
  } finally {
    await session.close();
    await broker.close();
  }
});

Deno.test("stats and /metrics stay bounded whatever the number of queues", async () => {
  const broker = await openLocalBroker();
  const session = await broker.open({ name: "t", address: "" });
  try {
    const count = 20_000;
    for (let i = 0; i < count; i++) await session.put(`queue-${i}`, [i]);
    const stats = await broker.stats();
    assert.equal(stats.queueCount, count);
    assert.equal(stats.queues.length, 1_000);
    assert.equal(stats.rest?.ready, count - 1_000);
    const text = renderMetrics({ stats, telemetry: new Telemetry(), httpRefused: new Map() });
    assert.ok(text.length < 2 * 1024 * 1024, `metrics of ${text.length} bytes`);
    assert.match(text, /taskq_queues 20000/);
  } finally {
    await session.close();
    await broker.close();
  }
});

Deno.test("a nested-map put flood gets memory_full; a good client's round trip stays fast", async () => {
  const master = await serve({
    listen: "127.0.0.1:0",
    authkey: TEST_KEY,
    maxMemoryBytes: 128 * MIB,
  });
  const attacker = await connect({ address: master.address, authkey: TEST_KEY });
  const good = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    const batch = Array.from({ length: 65_536 }, () => NESTED_ITEM);
    let refused: unknown;
    let stored = 0;
    for (let i = 0; i < 8 && refused === undefined; i++) {
      try {
        await attacker.queue("flood").putMany(batch);
        stored++;
      } catch (error) {
        refused = error;
      }
      const start = performance.now();
      await good.ping();
      assert.ok(performance.now() - start < ROUND_TRIP_BOUND_MS, "round trip within a second");
    }
    assert.ok(refused instanceof RemoteError, `refused with ${refused}`);
    assert.equal(refused.code, "memory_full");
    assert.ok(stored >= 1);
    // The connection goes on: the attacker can still get and ack.
    const job = await attacker.queue("flood").get(0);
    assert.ok(job !== null);
    await attacker.queue("flood").ack(job);
    const memory = (await master.broker.stats(undefined, 0)).memory!;
    assert.ok(memory.heldBytes <= memory.itemLimitBytes);
  } finally {
    await attacker.close();
    await good.close();
    await master.close();
  }
});

Deno.test("100,000 queue names by get with timeout 0 create nothing", async () => {
  const master = await serve({ listen: "127.0.0.1:0", authkey: TEST_KEY });
  const client = await connect({ address: master.address, authkey: TEST_KEY });
  try {
    const rss = Deno.memoryUsage().rss;
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < 100_000; i++) {
      pending.push(client.queue(`name-${i}`).get(0));
      if (pending.length >= 2_000) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
    const stats = await master.broker.stats();
    assert.equal(stats.queueCount, 0);
    const text = renderMetrics({ stats, telemetry: new Telemetry(), httpRefused: new Map() });
    assert.ok(text.length < 64 * 1024);
    assert.ok(Deno.memoryUsage().rss - rss < 200 * MIB, "memory stays bounded");
    const start = performance.now();
    await client.ping();
    assert.ok(performance.now() - start < ROUND_TRIP_BOUND_MS);
  } finally {
    await client.close();
    await master.close();
  }
});

Deno.test("connections over the shared buffers cap stop being read, and a stuck one is closed", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const peer = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const shared = new ByteBudget(256 * 1024);
  const conn = new FramedConnection(await accepted, { shared });
  try {
    // The peer never reads: queue replies until the connection is dropped.
    const payload = new Uint8Array(64 * 1024);
    const deadline = Date.now() + 10_000;
    while (!conn.closed && Date.now() < deadline) {
      conn.send(payload);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(conn.closed, "the stuck connection was closed");
    assert.equal(shared.used, 0, "its bytes went back to the shared budget");
  } finally {
    conn.close();
    peer.close();
    listener.close();
  }
});

Deno.test("a durable master whose data exceeds a small --max-memory refuses clearly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "taskq-budget-" });
  try {
    const broker = await openLocalBroker({ store: { sqlite: dir }, maxMemoryBytes: 1024 * MIB });
    const session = await broker.open({ name: "t", address: "" });
    const blob = new Uint8Array(1024 * 1024);
    for (let i = 0; i < 48; i++) await session.put("big", [blob]);
    await session.close();
    await broker.close();
    // A budget large enough loads it all: nothing acknowledged is lost.
    const again = await openLocalBroker({ store: { sqlite: dir }, maxMemoryBytes: 256 * MIB });
    assert.equal((await again.stats("big")).queues[0].ready, 48);
    await again.close();
    // A real master with a budget smaller than its data refuses, naming --max-memory.
    const command = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `${REPO_ROOT}main.ts`,
        "master",
        "--listen",
        "127.0.0.1:0",
        "--data",
        dir,
        "--max-memory",
        "32MiB",
      ],
      stdout: "piped",
      stderr: "piped",
    });
    const { code, stderr } = await command.output();
    const text = new TextDecoder().decode(stderr);
    assert.equal(code, 2, text);
    assert.match(text, /--max-memory/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
