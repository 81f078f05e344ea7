/**
 * Tests of the client library's side of issue #13 against a master served in
 * this process (serve() on an ephemeral loopback port), and of protocol
 * version negotiation against raw connections and tiny fake masters:
 *
 * - puts with a priority, a group and unique keys (an existing item's id, and
 *   its index in `existing`; a key hold), checked locally before sending;
 * - Client.cancel of ready and leased items: the holder's `job.signal` aborts
 *   with a JobCancelledError, its ack is refused, the item is never served
 *   again, and cancelling it again says missing;
 * - Client.job through an item's life, Client.limits read and changed,
 *   Queue.progress and job.progress (recorded, renewing the lease, false when
 *   not held);
 * - a version 1 connection (raw hello offering 1) still puts, gets and acks,
 *   is refused a version 2 op or put field, and never gets the `cancelled`
 *   push; a client against a fake old master that refuses version 2
 *   reconnects offering 1, and then throws UnsupportedError for version 2
 *   calls (nothing sent); a master answering version 1 to an offer of 2 is
 *   spoken to in version 1.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  AuthenticationError,
  type Client,
  connect,
  JobCancelledError,
  type LeasedJob,
  LeaseLostError,
  type Master,
  MAX_PROGRESS_MESSAGE,
  serve,
  UnsupportedError,
} from "../lib/mod.ts";
import { clientProof, newNonce, PROTOCOL_VERSION, serverProof } from "../lib/wire/auth.ts";
import { bytesEqual, RawConn, show, TEST_KEY, waitFor, withDeadline } from "./_helpers.ts";

const KEY_BYTES = new TextEncoder().encode(TEST_KEY);

/** Longest any single wait here may take. */
const WAIT_MS = 10_000;

/** How long a get waits to be sure nothing comes. */
const QUIET_MS = 300;

/** Runs `fn` with a master served in this process and two clients connected to it. */
async function withMaster(
  fn: (client: Client, other: Client, master: Master, address: string) => Promise<void>,
): Promise<void> {
  const master = await serve({ listen: "127.0.0.1:0", authkey: KEY_BYTES });
  const address = `127.0.0.1:${master.address.port}`;
  const clients: Client[] = [];
  try {
    clients.push(await connect({ address, authkey: TEST_KEY, name: "jobs test" }));
    clients.push(await connect({ address, authkey: TEST_KEY, name: "jobs test (other)" }));
    await fn(clients[0], clients[1], master, address);
  } finally {
    for (const client of clients) await client.close();
    await master.close();
  }
}

/** Resolves with the reason `signal` aborts with. */
function aborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(signal.reason), { once: true })
  );
}

// ------------------------------------------------------------------ puts

Deno.test("client jobs: a v2 client speaks version 2 with a current master", async () => {
  await withMaster((client) => {
    assert.equal(client.protocolVersion, PROTOCOL_VERSION);
    return Promise.resolve();
  });
});

Deno.test("client jobs: a higher priority is served first; the job records it", async () => {
  await withMaster(async (client) => {
    const q = client.queue("prio");
    const low = await q.put("low");
    const high = await q.put("high", { priority: 5 });
    const lowest = await q.put("lowest", { priority: -1000 });
    const jobs = await q.getMany(3, 0);
    assert.deepEqual(jobs.map((job) => job.id), [high, low, lowest]);
    assert.equal((await client.job(high))?.priority, 5);
    assert.equal((await client.job(low))?.priority, 0);
    await q.ack(jobs);
  });
});

Deno.test("client jobs: a taken key adds nothing and answers the existing id", async () => {
  await withMaster(async (client, other) => {
    const q = client.queue("unique");
    const first = await q.put("a", { key: "k1" });
    assert.equal(await q.put("again", { key: "k1" }), first);
    assert.equal(await other.queue("unique").put("from elsewhere", { key: "k1" }), first);
    assert.equal(await q.size(), 1);

    const ids = await q.putMany(["b", "c", "d", "e"], { keys: ["k2", undefined, "k2", "k1"] });
    assert.equal(ids.length, 4);
    assert.equal(ids[2], ids[0], "a later value with an earlier one's key gets its id");
    assert.equal(ids[3], first);
    assert.deepEqual(ids.existing, [2, 3]);
    assert.notEqual(ids[1], ids[0]);
    assert.equal(await q.size(), 3);
    const plain = await q.putMany(["f"]);
    assert.equal(plain.existing, undefined, "no existing when every value was added");

    // The key is free again once its item is done.
    const job = (await q.getMany(10, 0)).find((j) => j.id === first) as LeasedJob;
    await q.ack(job);
    const fresh = await q.put("a again", { key: "k1" });
    assert.notEqual(fresh, first);
    assert.equal((await client.job(fresh))?.key, "k1");
  });
});

Deno.test("client jobs: a key hold keeps the key taken after its item finished", async () => {
  await withMaster(async (client) => {
    const q = client.queue("held");
    const first = await q.put("a", { key: "debounced", keyHoldMs: 60_000 });
    const job = await q.get(WAIT_MS);
    assert.equal(job?.id, first);
    await q.ack(job!);
    assert.equal(await q.put("a", { key: "debounced", keyHoldMs: 60_000 }), first);
    assert.equal(await q.size(), 0);
  });
});

Deno.test("client jobs: groups take turns within one get", async () => {
  await withMaster(async (client) => {
    const q = client.queue("groups");
    await q.putMany(["a1", "a2", "a3"], { group: "a" });
    await q.putMany(["b1"], { group: "b" });
    const jobs = await q.getMany(4, 0);
    assert.deepEqual(jobs.map((job) => job.value), ["a1", "b1", "a2", "a3"]);
    assert.equal((await client.job(jobs[1].id))?.group, "b");
    await q.ack(jobs);
  });
});

Deno.test("client jobs: bad put options are TypeError or RangeError, and nothing is sent", async () => {
  await withMaster(async (client, _other, master) => {
    const q = client.queue("checked");
    const cases: [() => Promise<unknown>, ErrorConstructor, RegExp][] = [
      [() => q.put(1, { priority: 1001 }), RangeError, /priority/],
      [() => q.put(1, { priority: -1001 }), RangeError, /priority/],
      [() => q.put(1, { priority: 1.5 }), RangeError, /priority/],
      [() => q.put(1, { priority: "1" as unknown as number }), TypeError, /priority/],
      [() => q.put(1, { group: "" }), RangeError, /group/],
      [() => q.put(1, { group: "g".repeat(257) }), RangeError, /group/],
      [() => q.put(1, { group: 7 as unknown as string }), TypeError, /group/],
      [() => q.put(1, { key: "" }), RangeError, /key/],
      [() => q.put(1, { key: "k".repeat(257) }), RangeError, /key/],
      [() => q.put(1, { key: 5 as unknown as string }), TypeError, /key/],
      [() => q.put(1, { keyHoldMs: 1000 }), TypeError, /keyHoldMs needs a key/],
      [() => q.put(1, { key: "k", keyHoldMs: -1 }), RangeError, /keyHoldMs/],
      [() => q.put(1, { keys: ["k"] } as never), TypeError, /"keys" .* is for putMany/],
      [() => q.putMany([1, 2], { keys: ["k"] }), RangeError, /one key .* per value/],
      [() => q.putMany([1], { keys: "k" as never }), TypeError, /keys must be an array/],
      [() => q.putMany([1], { keys: [null as never] }), TypeError, /a key must be a string/],
      [() => q.putMany([1], { key: "k" } as never), TypeError, /"key" is for put/],
      [() => q.putMany([1], null as never), TypeError, /options must be an object/],
    ];
    for (const [call, type, message] of cases) {
      await assert.rejects(call, (error: unknown) => {
        assert.ok(error instanceof type, `${call}: got ${error}`);
        assert.match((error as Error).message, message, String(call));
        return true;
      });
    }
    assert.equal((await master.broker.stats("checked")).queues[0]?.put ?? 0, 0);
  });
});

// ---------------------------------------------------------------- cancel

Deno.test("client jobs: cancelling a ready or delayed item removes it", async () => {
  await withMaster(async (client) => {
    const q = client.queue("cancel-ready");
    const ready = await q.put("ready");
    const delayed = await q.put("delayed", { delayMs: 60_000 });
    const kept = await q.put("kept");
    const outcome = await client.cancel([ready, delayed, 999_999]);
    assert.deepEqual(outcome.cancelled.toSorted((a, b) => a - b), [ready, delayed]);
    assert.deepEqual(outcome.missing, [999_999]);
    assert.equal((await client.job(ready))?.state, "cancelled");
    assert.equal((await client.job(delayed))?.state, "cancelled");
    const jobs = await q.getMany(10, QUIET_MS);
    assert.deepEqual(jobs.map((job) => job.id), [kept]);
    await q.ack(jobs);
    assert.deepEqual(await client.cancel(ready), { cancelled: [], missing: [ready] });
    assert.deepEqual(await client.cancel([]), { cancelled: [], missing: [] });
  });
});

Deno.test("client jobs: cancelling a leased item aborts its holder's signal at once", async () => {
  await withMaster(async (client, other) => {
    const q = client.queue("cancel-leased");
    const id = await q.put("long work");
    const job = await q.get(WAIT_MS);
    assert.ok(job);
    assert.equal(job.signal.aborted, false);
    assert.ok(client.mayHoldLease(job));
    const reason = aborted(job.signal);

    assert.deepEqual(await other.cancel(id), { cancelled: [id], missing: [] });
    const why = await withDeadline(reason, WAIT_MS, "the job's signal to abort");
    assert.ok(why instanceof JobCancelledError, `got ${why}`);
    assert.equal(why.id, id);
    assert.equal(client.mayHoldLease(job), false);

    // Its lease is gone: settling it is refused, and it is never served again.
    await assert.rejects(q.ack(job), LeaseLostError);
    assert.equal(await job.progress(50), false);
    assert.deepEqual(await other.queue("cancel-leased").getMany(1, QUIET_MS), []);
    const info = await client.job(id);
    assert.equal(info?.state, "cancelled");
    assert.equal(info?.holder, undefined);
    assert.deepEqual(await other.cancel(id), { cancelled: [], missing: [id] });
  });
});

Deno.test("client jobs: a cancelled job's signal first asked for afterwards is aborted", async () => {
  await withMaster(async (client, other) => {
    const q = client.queue("late-signal");
    const id = await q.put("x");
    const job = await q.get(WAIT_MS);
    assert.ok(job);
    await other.cancel(id);
    await waitFor("the cancel to reach the holder", () => !client.mayHoldLease(job));
    assert.equal(job.signal.aborted, true);
    assert.ok(job.signal.reason instanceof JobCancelledError);
  });
});

Deno.test("client jobs: a job acked before the cancel is missing, its signal untouched", async () => {
  await withMaster(async (client, other) => {
    const q = client.queue("acked-first");
    const id = await q.put("x");
    const job = await q.get(WAIT_MS);
    assert.ok(job);
    await q.ack(job, { results: { queue: "acked-first.results", values: ["done"] } });
    assert.deepEqual(await other.cancel(id), { cancelled: [], missing: [id] });
    assert.equal(job.signal.aborted, false);
    const info = await client.job(id);
    assert.equal(info?.state, "done");
  });
});

Deno.test("client jobs: bad ids are TypeError or RangeError before sending", async () => {
  await withMaster(async (client) => {
    await assert.rejects(client.cancel("1" as unknown as number), TypeError);
    await assert.rejects(client.cancel(-1), RangeError);
    await assert.rejects(client.cancel([1, 2.5]), RangeError);
    await assert.rejects(client.job(-1), RangeError);
    await assert.rejects(client.job(Number.NaN), RangeError);
    await assert.rejects(client.job("7" as unknown as number), TypeError);
    await client.ping();
  });
});

// ------------------------------------------------------------ job lookup

Deno.test("client jobs: job lookup follows an item through its life", async () => {
  await withMaster(async (client) => {
    const q = client.queue("life");
    const before = Date.now();
    const id = await q.put({ n: 1 }, { priority: 2, group: "tenant", key: "life-1" });
    let info = await client.job(id);
    assert.ok(info);
    assert.equal(info.id, id);
    assert.equal(info.queue, "life");
    assert.equal(info.state, "ready");
    assert.equal(info.attempts, 0);
    assert.equal(info.priority, 2);
    assert.equal(info.group, "tenant");
    assert.equal(info.key, "life-1");
    assert.deepEqual(info.value, { n: 1 });
    assert.ok(info.createdAt >= before - 1_000 && info.createdAt <= Date.now() + 1_000);

    const job = await q.get(WAIT_MS, { leaseMs: 20_000 });
    assert.equal(job?.id, id);
    info = await client.job(id);
    assert.equal(info?.state, "leased");
    assert.equal(info?.attempts, 1);
    assert.equal(info?.holder?.name, "jobs test");
    assert.ok(info?.leasedAt !== undefined && info.leaseExpiresAt !== undefined);
    assert.ok(info.leaseExpiresAt - info.leasedAt >= 19_000);

    await q.fail(job!, "it broke");
    await waitFor("the retry", async () => (await client.job(id))?.state !== "leased");
    const retried = await q.get(WAIT_MS);
    assert.equal(retried?.id, id);
    await q.ack(retried!, { results: { queue: "life.results", values: [{ ok: true }] } });
    info = await client.job(id);
    assert.equal(info?.state, "done");
    assert.equal(info?.attempts, 2);
    assert.equal(info?.error, "it broke");
    assert.deepEqual(info?.result, { ok: true });
    assert.ok(info?.finishedAt !== undefined);

    const delayed = await q.put("later", { delayMs: 60_000 });
    info = await client.job(delayed);
    assert.equal(info?.state, "delayed");
    assert.ok(info?.readyAt !== undefined && info.readyAt > Date.now() + 50_000);

    assert.equal(await client.job(987_654), undefined);
  });
});

// ----------------------------------------------------------------- limits

Deno.test("client jobs: limits are read, changed, and hold", async () => {
  await withMaster(async (client) => {
    assert.deepEqual(await client.limits("limited"), {
      queue: "limited",
      rateCount: 0,
      ratePeriodMs: 1000,
      concurrency: 0,
      groupConcurrency: 0,
    });
    assert.deepEqual(await client.limits("limited", { concurrency: 2 }), {
      queue: "limited",
      rateCount: 0,
      ratePeriodMs: 1000,
      concurrency: 2,
      groupConcurrency: 0,
    });
    const changed = await client.limits("limited", { rateCount: 500, groupConcurrency: 1 });
    assert.equal(changed.rateCount, 500);
    assert.equal(changed.ratePeriodMs, 1000, "a rate without a period is per second");
    assert.equal(changed.concurrency, 2, "fields absent stay as they are");
    assert.equal(changed.groupConcurrency, 1);
    assert.deepEqual(await client.limits("limited"), changed);
    assert.deepEqual(await client.limits("limited", {}), changed, "no change only reads");

    // At most 2 leased at once.
    await client.limits("limited", { rateCount: 0, groupConcurrency: 0 });
    const q = client.queue("limited");
    await q.putMany([1, 2, 3, 4]);
    const first = await q.getMany(4, 0);
    assert.equal(first.length, 2);
    const waiting = q.getMany(4, WAIT_MS);
    await q.ack(first[0]);
    assert.equal((await waiting).length, 1, "a lease ending lets one more through");
  });
});

Deno.test("client jobs: bad limits are TypeError or RangeError before sending", async () => {
  await withMaster(async (client) => {
    await assert.rejects(client.limits("q", { concurrency: -1 }), RangeError);
    await assert.rejects(client.limits("q", { rateCount: 1.5 }), RangeError);
    await assert.rejects(client.limits("q", { ratePeriodMs: 0 }), RangeError);
    await assert.rejects(client.limits("q", { concurrency: "2" as unknown as number }), TypeError);
    await assert.rejects(client.limits("q", { rate: 5 } as never), /unknown limit "rate"/);
    await assert.rejects(client.limits("q", null as never), TypeError);
    await assert.rejects(client.limits(""), RangeError);
    await assert.rejects(client.limits(7 as unknown as string), TypeError);
    assert.equal((await client.limits("q")).concurrency, 0);
  });
});

// --------------------------------------------------------------- progress

Deno.test("client jobs: progress is recorded and renews the lease", async () => {
  await withMaster(async (client, other) => {
    const q = client.queue("progress");
    const id = await q.put("work");
    const job = await q.get(WAIT_MS, { leaseMs: 2_000 });
    assert.ok(job);
    const before = Date.now();
    assert.equal(await q.progress(job, { percent: 12.5, message: "starting" }, 60_000), true);
    let info = await client.job(id);
    assert.equal(info?.progress?.percent, 12.5);
    assert.equal(info?.progress?.message, "starting");
    assert.ok(info?.progress !== undefined && info.progress.at >= before - 1_000);
    assert.ok((info?.leaseExpiresAt ?? 0) >= before + 59_000, "renewed for 60 s");

    // job.progress renews for the lease its get asked for (2 s), not the master's default.
    assert.equal(await job.progress(50), true);
    info = await client.job(id);
    assert.equal(info?.progress?.percent, 50);
    assert.equal(info?.progress?.message, undefined);
    assert.ok((info?.leaseExpiresAt ?? Infinity) <= Date.now() + 2_500);

    // By id, and only a message.
    assert.equal(await q.progress(id, { message: "almost" }), true);
    assert.equal((await client.job(id))?.progress?.message, "almost");

    // Not held by another client.
    assert.equal(await other.queue("progress").progress(id, { percent: 99 }), false);
    await q.ack(job);
    assert.equal(await job.progress(100), false, "settled: not held any more");
    assert.equal((await client.job(id))?.state, "done");
  });
});

Deno.test("client jobs: progress keeps a lease alive past its length", async () => {
  await withMaster(async (client, other) => {
    const q = client.queue("alive");
    const id = await q.put("slow");
    const job = await q.get(WAIT_MS, { leaseMs: 400 });
    assert.ok(job);
    const until = Date.now() + 1_200;
    while (Date.now() < until) {
      assert.equal(await job.progress(undefined, "still going"), true);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.deepEqual(await other.queue("alive").getMany(1, 0), [], "never expired");
    assert.equal((await client.job(id))?.state, "leased");
    await q.ack(job);
  });
});

Deno.test("client jobs: bad progress reports are TypeError or RangeError before sending", async () => {
  await withMaster(async (client) => {
    const q = client.queue("bad-progress");
    await q.put("x");
    const job = await q.get(WAIT_MS);
    assert.ok(job);
    await assert.rejects(job.progress(101), RangeError);
    await assert.rejects(job.progress(-0.5), RangeError);
    await assert.rejects(job.progress(Number.NaN), RangeError);
    await assert.rejects(job.progress("5" as unknown as number), TypeError);
    await assert.rejects(job.progress(5, "m".repeat(MAX_PROGRESS_MESSAGE + 1)), RangeError);
    await assert.rejects(job.progress(5, 7 as unknown as string), TypeError);
    await assert.rejects(q.progress([job] as never, {}), TypeError);
    await assert.rejects(q.progress(job, { percent: 5 }, -1), RangeError);
    assert.equal((await client.job(job.id))?.progress, undefined, "nothing was sent");
    await q.ack(job);
  });
});

// ------------------------------------------------------------- versions

/** Runs a raw client's handshake offering `version`; returns the challenge's version. */
async function rawHandshake(raw: RawConn, version: number): Promise<number> {
  const nonce = newNonce();
  await raw.send({ op: "hello", version, nonce, name: "raw v1 client" });
  const challenge = await raw.next() as Record<string, unknown>;
  assert.equal(challenge.op, "challenge", show(challenge));
  const serverNonce = challenge.nonce as Uint8Array;
  await raw.send({ op: "auth", proof: clientProof(KEY_BYTES, nonce, serverNonce) });
  const welcome = await raw.next() as Record<string, unknown>;
  assert.equal(welcome.op, "welcome", show(welcome));
  assert.ok(bytesEqual(welcome.proof as Uint8Array, serverProof(KEY_BYTES, nonce, serverNonce)));
  return challenge.version as number;
}

Deno.test("client jobs: a version 1 client still puts, gets and acks", async () => {
  await withMaster(async (client, _other, _master, address) => {
    await using raw = await RawConn.open(address);
    assert.equal(await rawHandshake(raw, 1), 1, "the master steps down to version 1");
    await raw.send({ op: "put", rid: 1, queue: "v1", items: ["a", "b"] });
    const put = await raw.next() as { op: string; ids: number[] };
    assert.equal(put.op, "ok", show(put));
    assert.equal(put.ids.length, 2);
    assert.equal((put as Record<string, unknown>).existing, undefined);
    await raw.send({ op: "get", rid: 2, queue: "v1", max: 2, timeout: 1000 });
    const got = await raw.next() as { op: string; jobs: { id: number }[] };
    assert.equal(got.jobs.length, 2, show(got));
    await raw.send({ op: "ack", rid: 3, ids: [got.jobs[0].id] });
    assert.deepEqual(await raw.next(), { op: "ok", rid: 3, failed: [] });

    // The other is cancelled by a v2 client: a v1 connection is not told; its ack is refused.
    assert.deepEqual(await client.cancel(got.jobs[1].id), {
      cancelled: [got.jobs[1].id],
      missing: [],
    });
    await raw.send({ op: "ack", rid: 4, ids: [got.jobs[1].id] });
    assert.deepEqual(await raw.next(), { op: "ok", rid: 4, failed: [got.jobs[1].id] });
    await raw.send({ op: "ping", rid: 5 });
    assert.deepEqual(await raw.next(), { op: "ok", rid: 5 });
    // challenge, welcome and the five replies: no cancelled push.
    assert.equal(raw.frames.length, 7, show(raw.frames));
  });
});

for (
  const [label, request] of [
    ["cancel", { op: "cancel", rid: 9, ids: [1] }],
    ["job", { op: "job", rid: 9, id: 1 }],
    ["limit", { op: "limit", rid: 9, queue: "q" }],
    ["progress", { op: "progress", rid: 9, id: 1 }],
    ["a put with a priority", { op: "put", rid: 9, queue: "q", items: [1], priority: 3 }],
    ["a put with keys", { op: "put", rid: 9, queue: "q", items: [1], keys: ["k"] }],
  ] as const
) {
  Deno.test(`client jobs: a version 1 connection is refused ${label}`, async () => {
    await withMaster(async (_client, _other, _master, address) => {
      await using raw = await RawConn.open(address);
      await rawHandshake(raw, 1);
      await raw.send(request);
      const [reply] = await raw.closedByPeer();
      const error = reply as Record<string, unknown>;
      assert.equal(error.op, "error", show(reply));
      assert.equal(error.code, "bad_request");
      assert.equal(error.rid, 9);
      assert.match(error.message as string, /needs protocol version 2/);
    });
  });
}

/** What a fake master does with one connection: refuse its hello, or serve it. */
type FakeConnection = "refuse" | "serve";

/**
 * A fake master that plays `plan` (one entry per connection, in order): a
 * `"refuse"` answers the hello with `unsupported_version` as taskq 0.1 did; a
 * `"serve"` answers with challenge version 1, completes the handshake and
 * answers pings and plain puts. Records every hello's version and every
 * request's op.
 */
async function withOldMaster(
  plan: readonly FakeConnection[],
  fn: (address: string, seen: { versions: number[]; ops: string[] }) => Promise<void>,
): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen = { versions: [] as number[], ops: [] as string[] };
  const served = (async () => {
    for (const step of plan) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      const peer = RawConn.wrap(conn);
      try {
        const hello = await peer.next() as Record<string, unknown>;
        seen.versions.push(hello.version as number);
        if (step === "refuse" || hello.version !== 1) {
          await peer.send({
            op: "error",
            code: "unsupported_version",
            message: `protocol version ${hello.version} is not supported; this master speaks ` +
              `version 1 (use the same taskq release on both ends)`,
          });
          await peer.closedByPeer();
          continue;
        }
        await peer.answerHello(hello, 1);
        for (let next = 1;; next++) {
          let request: Record<string, unknown>;
          try {
            request = await peer.next(WAIT_MS) as Record<string, unknown>;
          } catch {
            break; // the client closed
          }
          seen.ops.push(request.op as string);
          if (request.op === "put") {
            await peer.send({ op: "ok", rid: request.rid, ids: [next] });
          } else await peer.send({ op: "ok", rid: request.rid });
        }
      } finally {
        await peer.close();
      }
    }
  })();
  try {
    await fn(`127.0.0.1:${listener.addr.port}`, seen);
  } finally {
    listener.close();
    await served;
  }
}

Deno.test("client jobs: against an old master that refuses version 2, the client falls back to 1", async () => {
  await withOldMaster(["refuse", "serve"], async (address, seen) => {
    const client = await connect({ address, authkey: TEST_KEY, reconnect: false });
    try {
      assert.deepEqual(seen.versions, [PROTOCOL_VERSION, 1]);
      assert.equal(client.protocolVersion, 1);
      await client.ping();
      const q = client.queue("tasks");
      assert.equal(typeof await q.put("plain"), "number", "what version 1 knows still works");
      assert.equal(typeof await q.put("zero priority", { priority: 0 }), "number");

      const refusals: [() => Promise<unknown>, RegExp][] = [
        [() => client.cancel(1), /cancel needs/],
        [() => client.job(1), /job lookup needs/],
        [() => client.limits("tasks"), /limits needs/],
        [() => q.progress(1, { percent: 5 }), /progress needs/],
        [() => q.put(1, { priority: 3 }), /a put with a priority needs/],
        [() => q.put(1, { group: "g" }), /a put with a group needs/],
        [() => q.put(1, { key: "k" }), /a put with a unique key needs/],
      ];
      for (const [call, message] of refusals) {
        await assert.rejects(call, (error: unknown) => {
          assert.ok(error instanceof UnsupportedError, `${call}: got ${error}`);
          assert.match(error.message, /^the master speaks protocol 1; /);
          assert.match(error.message, message);
          assert.match(error.message, /needs a master of taskq 0\.2 or later$/);
          assert.equal(error.version, 1);
          return true;
        });
      }
      await client.ping();
      assert.deepEqual(seen.ops, ["ping", "put", "put", "ping"], "nothing of version 2 was sent");
    } finally {
      await client.close();
    }
  });
});

Deno.test("client jobs: a master that refuses both versions is an AuthenticationError", async () => {
  await withOldMaster(["refuse", "refuse"], async (address, seen) => {
    await assert.rejects(
      connect({ address, authkey: TEST_KEY, reconnect: false }),
      (error: unknown) => {
        assert.ok(error instanceof AuthenticationError, `got ${error}`);
        assert.match(error.message, /refused the protocol version/);
        assert.match(
          error.message,
          new RegExp(`this client speaks versions 1 to ${PROTOCOL_VERSION}`),
        );
        return true;
      },
    );
    assert.deepEqual(seen.versions, [PROTOCOL_VERSION, 1], "one fallback, then no more");
  });
});

Deno.test("client jobs: a master answering version 1 to an offer of 2 is spoken to in 1", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const peer = RawConn.wrap(await listener.accept());
    try {
      const hello = await peer.next() as Record<string, unknown>;
      assert.equal(hello.version, PROTOCOL_VERSION);
      await peer.answerHello(hello, 1);
      assert.deepEqual(await peer.closedByPeer(), [], "nothing of version 2 is sent");
    } finally {
      await peer.close();
    }
  })();
  try {
    const client = await connect({
      address: `127.0.0.1:${listener.addr.port}`,
      authkey: TEST_KEY,
      reconnect: false,
    });
    assert.equal(client.protocolVersion, 1);
    await assert.rejects(client.cancel(1), UnsupportedError);
    await client.close();
    await served;
  } finally {
    listener.close();
  }
});
