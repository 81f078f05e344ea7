/**
 * A failed commit means "not stored" (lib/store/sqlite.ts, lib/broker/local.ts,
 * lib/engine/engine.ts), with a real SQLite failure: the store is opened with
 * a low `maxPageCount` (`PRAGMA max_page_count`), so a write past it fails with
 * SQLITE_FULL ("database or disk is full") as on a full disk.
 *
 * - the store: a failed commit rolls back, hands the items it inserted to
 *   `onDiscard` and is never written later; the next commit carries only what
 *   came after;
 * - the broker: a put answered with `NotSavedError` is not there (stats, get),
 *   does not appear after more puts succeed, nor after a restart; a put that
 *   succeeded before is still there; one already delivered to a waiting get
 *   loses its lease (a late ack is refused); a delayed one is gone too; an ack
 *   in a failed commit is answered with the error, stands in memory, and its
 *   item comes back after a restart (at-least-once);
 * - the master: the client gets `internal` for that put alone, the connection
 *   and the master stay up, and a restart does not bring the item back.
 *
 * @module
 */

import assert from "node:assert/strict";
import { SqliteStore } from "../lib/store/sqlite.ts";
import { type StoredItem, storedItemsOf } from "../lib/store/store.ts";
import { openLocalBroker } from "../lib/broker/local.ts";
import { NotSavedError } from "../lib/broker/errors.ts";
import { serve } from "../lib/server/master.ts";
import { connect, RemoteError } from "../lib/mod.ts";
import { TEST_KEY } from "./_helpers.ts";

/** Pages the test database may take: room for the schema and a hundred small items. */
const MAX_PAGES = 16;

/** An item too large for {@link MAX_PAGES} pages of 4 KiB: 256 KiB. */
const TOO_BIG = "x".repeat(256 * 1024);

/** Runs `fn` with a fresh temporary data directory, removed afterwards. */
async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "taskq-not-saved-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The values a queue's ready items hold, front first, from a store reopened without a limit. */
async function storedValues(dir: string): Promise<unknown[]> {
  const store = new SqliteStore(dir);
  try {
    return [...storedItemsOf((await store.load()).batches)].map((item) => item.value);
  } finally {
    await store.close();
  }
}

function item(id: number, value: unknown): StoredItem {
  return { id, queue: "q", value, attempts: 0, readyAt: 0 };
}

Deno.test("not saved: a failed commit is discarded, reported, and never written later", async () => {
  await withDir(async (dir) => {
    const store = new SqliteStore(dir, { maxPageCount: MAX_PAGES });
    const discarded: number[][] = [];
    store.onDiscard = (inserted) => discarded.push(inserted.map((i) => i.id));
    store.insert(item(1, "kept"));
    await store.commit();
    store.insert(item(2, TOO_BIG));
    store.remove(1);
    await assert.rejects(store.commit(), /database or disk is full.*not stored/);
    assert.deepEqual(discarded, [[2]], "the discarded batch's inserts are reported");
    assert.equal(store.dirty, true, "the next id is still to be written");
    store.insert(item(3, "after"));
    await store.commit(); // would fail again if the big item were retried
    await store.close();
    assert.deepEqual(await storedValues(dir), ["kept", "after"], "the removal was discarded too");
    const reopened = new SqliteStore(dir);
    assert.equal((await reopened.load()).nextId, 4, "ids are never handed out twice");
    await reopened.close();
  });
});

Deno.test("not saved: maxPageCount is checked", async () => {
  await withDir(async (dir) => {
    assert.throws(() => new SqliteStore(dir, { maxPageCount: 0 }), RangeError);
    // The directory is usable afterwards: the refused store released it.
    const store = new SqliteStore(dir);
    await store.close();
  });
});

Deno.test("not saved: a put answered with the error is not there, now, later or after a restart", async () => {
  await withDir(async (dir) => {
    const broker = await openLocalBroker({
      store: new SqliteStore(dir, { maxPageCount: MAX_PAGES }),
    });
    const session = await broker.open({ name: "producer", address: "" });
    try {
      const [kept] = await session.put("q", ["kept"]);
      await assert.rejects(session.put("q", [TOO_BIG, "same batch"]), NotSavedError);
      await assert.rejects(session.put("q", [TOO_BIG], { delayMs: 60_000 }), NotSavedError);
      let [row] = (await broker.stats("q")).queues;
      assert.deepEqual([row.ready, row.delayed, row.leased, row.put], [1, 0, 0, 1]);
      const later = await session.put("q", ["later-1", "later-2"]);
      assert.ok(later[0] > kept);
      [row] = (await broker.stats("q")).queues;
      assert.equal(row.ready, 3);
      const got = await session.get("q", { max: 10, timeoutMs: 0 });
      assert.deepEqual(got.map((d) => d.value), ["kept", "later-1", "later-2"]);
      await session.nack(got.map((d) => d.id));
      const stats = await broker.stats();
      assert.ok(stats.memory !== undefined && stats.memory.heldBytes < TOO_BIG.length);
    } finally {
      await session.close();
      await broker.close();
    }
    assert.deepEqual(await storedValues(dir), ["kept", "later-1", "later-2"]);
  });
});

Deno.test("not saved: an item already delivered loses its lease; the holder's ack is refused", async () => {
  await withDir(async (dir) => {
    const broker = await openLocalBroker({
      store: new SqliteStore(dir, { maxPageCount: MAX_PAGES }),
    });
    const producer = await broker.open({ name: "producer", address: "" });
    const worker = await broker.open({ name: "worker", address: "" });
    try {
      const waiting = worker.get("q", { max: 1, timeoutMs: 5_000 });
      const put = producer.put("q", [TOO_BIG]);
      const [delivery] = await waiting; // served at once, before the commit
      assert.equal(delivery.value, TOO_BIG);
      await assert.rejects(put, NotSavedError);
      const [row] = (await broker.stats("q")).queues;
      assert.deepEqual([row.ready, row.leased], [0, 0]);
      assert.deepEqual(await worker.ack([delivery.id]), [delivery.id], "the late ack is refused");
      assert.deepEqual(await worker.get("q", { max: 1, timeoutMs: 0 }), []);
    } finally {
      await producer.close();
      await worker.close();
      await broker.close();
    }
    assert.deepEqual(await storedValues(dir), []);
  });
});

Deno.test("not saved: an ack in a failed commit gets the error, stands, and comes back after a restart", async () => {
  await withDir(async (dir) => {
    const broker = await openLocalBroker({
      store: new SqliteStore(dir, { maxPageCount: MAX_PAGES }),
    });
    const session = await broker.open({ name: "both", address: "" });
    try {
      await session.put("q", ["work"]);
      const [job] = await session.get("q", { max: 1, timeoutMs: 0 });
      // The ack and a put too big to store go into the same commit.
      const [acked, put] = await Promise.allSettled([
        session.ack([job.id]),
        session.put("other", [TOO_BIG]),
      ]);
      assert.equal(acked.status, "rejected");
      assert.ok((acked as PromiseRejectedResult).reason instanceof NotSavedError);
      assert.equal(put.status, "rejected");
      const [row] = (await broker.stats("q")).queues;
      assert.deepEqual([row.ready, row.leased, row.acked], [0, 0, 1], "the ack stands in memory");
    } finally {
      await session.close();
      await broker.close();
    }
    assert.deepEqual(await storedValues(dir), ["work"], "the acked item is served again");
  });
});

Deno.test("not saved: over the wire the put alone fails with internal; the master stays up", async () => {
  await withDir(async (dir) => {
    const master = await serve({
      listen: "127.0.0.1:0",
      authkey: TEST_KEY,
      store: new SqliteStore(dir, { maxPageCount: MAX_PAGES }),
    });
    try {
      const client = await connect({ address: master.address, authkey: TEST_KEY });
      const q = client.queue("q");
      await q.put("before");
      await assert.rejects(q.put(TOO_BIG), (error: unknown) => {
        assert.ok(error instanceof RemoteError);
        assert.equal(error.code, "internal");
        assert.match(error.message, /not saved: .*database or disk is full/);
        return true;
      });
      assert.equal(client.connected, true, "the connection stays open");
      await q.put("after");
      assert.equal(await q.size(), 2);
      await client.ping();
      await client.close();
    } finally {
      await master.close();
    }
    const again = await serve({ listen: "127.0.0.1:0", authkey: TEST_KEY, store: { sqlite: dir } });
    try {
      const [row] = (await again.broker.stats("q")).queues;
      assert.equal(row.ready, 2);
      const session = await again.broker.open({ name: "check", address: "" });
      const got = await session.get("q", { max: 10, timeoutMs: 0 });
      assert.deepEqual(got.map((d) => d.value), ["before", "after"]);
      await session.close();
    } finally {
      await again.close();
    }
  });
});
