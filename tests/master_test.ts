/**
 * Tests of the master (lib/server/master.ts, lib/server/native_session.ts and
 * the `taskq master` command) run as a real subprocess on an ephemeral
 * loopback port, with clients as child processes, in this process, or as raw
 * sockets speaking frames by hand.
 *
 * Acceptance scenarios: the seed scenario end to end (a task master and a
 * worker process squaring numbers); three consumer processes taking 1000
 * items exactly once; a consumer killed with SIGKILL whose leased items are
 * served again; lease expiry with the late ack refused; a wrong key refused
 * within a second while a good client keeps working.
 *
 * Bad input, each followed by a check that the master still serves a good
 * client (and, when stopped, exits cleanly): random bytes, a 0xFFFFFFFF length
 * prefix, frames cut off or stalled mid-way, msgpack that is not a message,
 * wrong field types (the error reply carries the rid when it could be read),
 * 200 connections that never finish the handshake, and handshake misuse
 * (wrong order, wrong version, wrong or replayed proof).
 *
 * Configuration: no listening beyond loopback without a key (serve() and the
 * command line), keyless loopback, bad flags.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  AuthenticationError,
  type Client,
  ConfigError,
  connect,
  LeaseLostError,
  serve,
} from "../lib/mod.ts";
import { encode } from "../lib/model/codec.ts";
import { clientProof, newNonce, PROTOCOL_VERSION } from "../lib/wire/auth.ts";
import {
  asError,
  frameOf,
  keyEnv,
  masterArgs,
  type MasterProcess,
  MOD_URL,
  Proc,
  randomBytes,
  RawConn,
  seededRandom,
  show,
  spawnClient,
  startMaster,
  TEST_KEY,
  waitFor,
} from "./_helpers.ts";

/** Handshake deadline of the masters in the bad-input tests, in seconds. */
const HANDSHAKE_TIMEOUT_S = 1;

/** Connections the master lets sit mid-handshake (DEFAULT_MAX_PENDING_HANDSHAKES). */
const MAX_PENDING = 64;

/** Connects a client to a master process with the test key. */
function client(master: MasterProcess, key = TEST_KEY): Promise<Client> {
  return connect({ address: master.address, authkey: key, timeoutMs: 5000 });
}

/** Checks that `master` serves a good client: put, get, ack on a fresh queue. */
async function assertServes(master: MasterProcess): Promise<void> {
  const good = await client(master);
  try {
    const q = good.queue(`probe-${crypto.randomUUID()}`);
    const id = await q.put("probe");
    const job = await q.get(2000);
    assert.equal(job?.id, id, "the master serves a good client");
    await q.ack(job);
  } finally {
    await good.close();
  }
}

/** Opens a raw connection and completes the handshake by hand. */
async function authenticated(master: MasterProcess): Promise<RawConn> {
  const raw = await RawConn.open(master.address);
  try {
    await raw.handshake();
  } catch (error) {
    await raw.close();
    throw error;
  }
  return raw;
}

/** Starts a master for bad-input tests: short handshake deadline. */
function badInputMaster(): Promise<MasterProcess> {
  return startMaster({ args: ["--handshake-timeout", String(HANDSHAKE_TIMEOUT_S)] });
}

/** Parses the JSON lines a child printed. */
function jsonLines(proc: Proc): unknown[] {
  return proc.lines.filter((line) => line.startsWith("{") || line.startsWith("[")).map((line) =>
    JSON.parse(line)
  );
}

/** Asserts that a child exited with code 0. */
function assertSuccess(proc: Proc, status: Deno.CommandStatus): void {
  assert.equal(status.code, 0, `${proc.label} failed: ${proc.describe()}`);
}

// ------------------------------------------------------------ acceptance

const TASK_MASTER_SCRIPT = `
import { connect } from "${MOD_URL}";
// Address and key come from TASKQ_ADDR and TASKQ_AUTHKEY.
const client = await connect({ name: "task master" });
const tasks = client.queue("tasks");
const results = client.queue("results");
const numbers = Array.from({ length: 10 }, () => Math.floor(Math.random() * 2001) - 1000);
for (const n of numbers) await tasks.put(n);
console.log(JSON.stringify({ put: numbers }));
for (let i = 0; i < numbers.length; i++) {
  const job = await results.get(20_000);
  if (job === null) {
    console.error("no result within 20 s");
    Deno.exit(1);
  }
  console.log(JSON.stringify({ result: job.value }));
  await results.ack(job);
}
await client.close();
`;

const WORKER_SCRIPT = `
import { connect } from "${MOD_URL}";
const client = await connect({ name: "worker" });
const tasks = client.queue("tasks");
const results = client.queue("results");
let done = 0;
// Wait long for the first task, then stop once the queue stays empty for 1 s.
for (let timeout = 20_000; ; timeout = 1_000) {
  const job = await tasks.get(timeout);
  if (job === null) break;
  const n = job.value;
  await results.put(\`\${n} * \${n} = \${n * n}\`);
  await tasks.ack(job);
  done++;
}
console.log(JSON.stringify({ done }));
await client.close();
`;

Deno.test("master: the seed scenario, a task master and a worker process", async () => {
  await using master = await startMaster();
  const env = { TASKQ_ADDR: master.address, TASKQ_AUTHKEY: TEST_KEY };
  await using worker = await spawnClient("worker", WORKER_SCRIPT, { env });
  await using taskMaster = await spawnClient("task-master", TASK_MASTER_SCRIPT, { env });

  assertSuccess(taskMaster, await taskMaster.finished(30_000));
  assertSuccess(worker, await worker.finished(10_000));

  const output = jsonLines(taskMaster) as { put?: number[]; result?: string }[];
  const numbers = output.find((line) => line.put)?.put;
  assert.ok(numbers && numbers.length === 10, taskMaster.describe());
  const results = output.filter((line) => "result" in line).map((line) => line.result);
  const expected = numbers.map((n) => `${n} * ${n} = ${n * n}`);
  assert.deepEqual([...results].sort(), [...expected].sort());
  assert.deepEqual(jsonLines(worker), [{ done: 10 }]);

  const observer = await client(master);
  try {
    const stats = (await observer.stats()).queues;
    for (const name of ["tasks", "results"]) {
      const queue = stats.find((s) => s.name === name);
      assert.ok(queue, `queue ${name} exists`);
      assert.deepEqual([queue.put, queue.acked, queue.ready, queue.leased], [10, 10, 0, 0], name);
    }
  } finally {
    await observer.close();
  }
  await master.stop();
});

const CONSUMER_SCRIPT = `
import { connect } from "${MOD_URL}";
const client = await connect({ name: "consumer " + Deno.args[0] });
const work = client.queue("work");
console.log("ready");
for (;;) {
  const job = await work.get(30_000);
  if (job === null) {
    console.error("no stop sentinel within 30 s");
    Deno.exit(1);
  }
  await work.ack(job);
  if (job.value === "stop") break;
  console.log(JSON.stringify([job.id, job.value, job.attempt]));
}
await client.close();
`;

Deno.test("master: three consumer processes take 1000 items exactly once", async () => {
  const ITEMS = 1000;
  const CONSUMERS = 3;
  await using master = await startMaster();
  const env = { TASKQ_ADDR: master.address, TASKQ_AUTHKEY: TEST_KEY };
  const consumers: Proc[] = [];
  const producer = await client(master);
  try {
    for (let i = 0; i < CONSUMERS; i++) {
      consumers.push(
        await spawnClient(`consumer-${i}`, CONSUMER_SCRIPT, { env, args: [String(i)] }),
      );
    }
    for (const consumer of consumers) await consumer.waitForLine(/^ready$/, 20_000);
    // All three are waiting on the queue before anything is put, so they compete from the start.
    await waitFor("all consumers to wait on the queue", async () => {
      const [work] = (await producer.stats("work")).queues;
      return work.waiting === CONSUMERS;
    });
    const work = producer.queue("work");
    const values = Array.from({ length: ITEMS }, (_, i) => i);
    const putIds: number[] = [];
    for (let i = 0; i < ITEMS; i += 100) {
      putIds.push(...await work.putMany(values.slice(i, i + 100)));
    }
    await work.putMany(Array(CONSUMERS).fill("stop"));

    const taken: [number, number, number][][] = [];
    for (const consumer of consumers) {
      assertSuccess(consumer, await consumer.finished(30_000));
      taken.push(jsonLines(consumer) as [number, number, number][]);
    }
    const all = taken.flat();
    const seenValues = all.map(([, value]) => value);
    const seenIds = all.map(([id]) => id);
    assert.equal(new Set(seenIds).size, seenIds.length, "no item was served twice");
    assert.equal(all.length, ITEMS, `served ${all.length} items`);
    assert.deepEqual([...seenValues].sort((a, b) => a - b), values, "every item was served");
    assert.deepEqual([...seenIds].sort((a, b) => a - b), putIds);
    assert.ok(all.every(([, , attempt]) => attempt === 1), "first attempts only");
    for (const [i, items] of taken.entries()) {
      assert.ok(items.length > 0, `consumer ${i} took part (got ${items.length})`);
    }
    const [stats] = (await producer.stats("work")).queues;
    assert.deepEqual(
      [stats.acked, stats.ready, stats.leased, stats.expired],
      [ITEMS + CONSUMERS, 0, 0, 0],
    );
  } finally {
    await producer.close();
    for (const consumer of consumers) await consumer.dispose();
  }
  await master.stop();
});

const HOLDER_SCRIPT = `
import { connect } from "${MOD_URL}";
const client = await connect({ name: "holder" });
const held = client.queue("held");
const jobs = [];
while (jobs.length < 5) {
  const got = await held.getMany(5 - jobs.length, 10_000);
  if (got.length === 0) Deno.exit(1);
  jobs.push(...got);
}
console.log(JSON.stringify(jobs.map((job) => job.id)));
// Hold the leases until killed.
setInterval(() => {}, 60_000);
`;

Deno.test("master: items held by a client killed with SIGKILL are served again", async () => {
  await using master = await startMaster();
  const other = await client(master);
  try {
    const ids = await other.queue("held").putMany(["a", "b", "c", "d", "e"]);
    await using holder = await spawnClient("holder", HOLDER_SCRIPT, {
      env: { TASKQ_ADDR: master.address, TASKQ_AUTHKEY: TEST_KEY },
    });
    const line = await holder.waitForLine(/^\[.*\]$/, 20_000);
    assert.deepEqual(JSON.parse(line[0]), ids);
    const [before] = (await other.stats("held")).queues;
    assert.deepEqual([before.leased, before.ready], [5, 0]);
    // Nothing is served while the holder lives.
    assert.deepEqual(await other.queue("held").getMany(5, 0), []);

    holder.kill("SIGKILL");
    const status = await holder.finished(5000);
    assert.equal(status.signal, "SIGKILL");

    // The master's default lease is 30 s: only the disconnect can bring them back this soon.
    const jobs = await other.queue("held").getMany(5, 5000);
    assert.deepEqual(jobs.map((job) => job.id).sort((a, b) => a - b), ids);
    assert.deepEqual(jobs.map((job) => job.value), ["a", "b", "c", "d", "e"]);
    assert.ok(jobs.every((job) => job.attempt === 2), show(jobs));
    await other.queue("held").ack(jobs);
    const [after] = (await other.stats("held")).queues;
    assert.deepEqual([after.expired, after.acked, after.leased], [5, 5, 0]);
  } finally {
    await other.close();
  }
  await master.stop();
});

Deno.test("master: an expired lease is served again and the late ack is refused", async () => {
  await using master = await startMaster();
  const first = await client(master);
  const second = await client(master);
  try {
    const id = await first.queue("jobs").put("slow work");
    const taken = Date.now();
    const job = await first.queue("jobs").get(1000, { leaseMs: 300 });
    assert.equal(job?.id, id);
    assert.equal(job.attempt, 1);
    const again = await second.queue("jobs").get(5000);
    const elapsed = Date.now() - taken;
    assert.equal(again?.id, id);
    assert.equal(again.attempt, 2);
    assert.ok(elapsed >= 290, `served again after ${elapsed} ms, before the lease ran out`);
    await assert.rejects(first.queue("jobs").ack(job), (error: unknown) => {
      assert.ok(error instanceof LeaseLostError, `got ${error}`);
      assert.deepEqual(error.ids, [id]);
      return true;
    });
    await second.queue("jobs").ack(again);
    const [stats] = (await second.stats("jobs")).queues;
    assert.deepEqual([stats.expired, stats.acked], [1, 1]);
  } finally {
    await first.close();
    await second.close();
  }
  await master.stop();
});

Deno.test("master: --lease sets the default lease", async () => {
  await using master = await startMaster({ args: ["--lease", "0.3"] });
  const first = await client(master);
  const second = await client(master);
  try {
    assert.equal(first.defaultLeaseMs, 300);
    await first.queue("jobs").put("x");
    const job = await first.queue("jobs").get(1000);
    assert.ok(job);
    const again = await second.queue("jobs").get(5000);
    assert.equal(again?.attempt, 2);
    await assert.rejects(first.queue("jobs").ack(job), LeaseLostError);
  } finally {
    await first.close();
    await second.close();
  }
  await master.stop();
});

Deno.test("master: a wrong key is refused within a second while a good client keeps working", async () => {
  await using master = await startMaster();
  const good = await client(master);
  try {
    const q = good.queue("q");
    await q.put(1);
    assert.equal((await q.get(1000))?.value, 1);
    for (const wrong of ["wrong key", TEST_KEY + "x", ""]) {
      const start = Date.now();
      await assert.rejects(client(master, wrong), (error: unknown) => {
        assert.ok(error instanceof AuthenticationError, `got ${error}`);
        assert.match(error.message, /rejected the key/);
        assert.match(error.message, /the key was rejected/);
        return true;
      });
      const elapsed = Date.now() - start;
      assert.ok(elapsed < 1000, `refused after ${elapsed} ms`);
    }
    // The good client was not disturbed.
    await good.ping();
    await q.put(2);
    const job = await q.get(1000);
    assert.equal(job?.value, 2);
    await q.ack(job);
    assert.equal((await good.stats()).clients, 1, "the refused clients are not counted");
    await assertServes(master);
  } finally {
    await good.close();
  }
  await master.stop();
});

// ------------------------------------------------------------ bad input

Deno.test("master: random bytes before the handshake", async () => {
  await using master = await badInputMaster();
  const seed = Date.now() >>> 0;
  const random = seededRandom(seed);
  const conns: RawConn[] = [];
  try {
    for (let i = 0; i < 20; i++) {
      const raw = await RawConn.open(master.address);
      conns.push(raw);
      await raw.write(randomBytes(random, 1 + Math.floor(random() * 2000)));
      if (i % 2 === 0) await raw.closeWrite();
    }
    for (const raw of conns) {
      const frames = await raw.closedByPeer(HANDSHAKE_TIMEOUT_S * 1000 + 4000);
      for (const frame of frames) {
        assert.equal((frame as { op: string }).op, "error", `seed ${seed}: ${show(frame)}`);
      }
    }
    await assertServes(master);
  } finally {
    for (const raw of conns) await raw.close();
  }
  await master.stop();
});

Deno.test("master: random frames after the handshake", async () => {
  await using master = await badInputMaster();
  const seed = Date.now() >>> 0;
  const random = seededRandom(seed);
  for (let i = 0; i < 20; i++) {
    await using raw = await authenticated(master);
    await raw.write(frameOf(randomBytes(random, 1 + Math.floor(random() * 300))));
    const frames = await raw.closedByPeer();
    assert.equal(frames.length, 1, `seed ${seed}: ${show(frames)}`);
    asError(frames[0], "bad_request");
  }
  await assertServes(master);
  await master.stop();
});

Deno.test("master: a 4 GiB length prefix is refused with frame_too_large", async () => {
  await using master = await badInputMaster();
  const huge = new Uint8Array([0xff, 0xff, 0xff, 0xff]);
  {
    await using raw = await RawConn.open(master.address);
    await raw.write(huge);
    const frames = await raw.closedByPeer();
    assert.equal(frames.length, 1, show(frames));
    assert.match(asError(frames[0], "frame_too_large").message, /4294967295 bytes/);
  }
  {
    await using raw = await authenticated(master);
    await raw.write(huge);
    await raw.write(new Uint8Array(1000)); // whatever follows is not waited for
    const frames = await raw.closedByPeer();
    assert.ok(frames.length <= 1, show(frames));
    if (frames.length === 1) asError(frames[0], "frame_too_large");
  }
  await assertServes(master);
  await master.stop();
});

Deno.test("master: --max-frame sets the largest frame accepted", async () => {
  await using master = await startMaster({ args: ["--max-frame", "1024"] });
  await using raw = await RawConn.open(master.address);
  const welcome = await raw.handshake();
  assert.equal(welcome.maxFrameBytes, 1024);
  await raw.send({ op: "put", rid: 1, queue: "q", items: ["x".repeat(900)] });
  assert.equal((await raw.next() as { op: string }).op, "ok");
  await raw.send({ op: "put", rid: 2, queue: "q", items: ["x".repeat(1100)] });
  const frames = await raw.closedByPeer();
  assert.equal(frames.length, 1, show(frames));
  assert.match(asError(frames[0], "frame_too_large").message, /maximum of 1024 bytes/);
  await assertServes(master);
  await master.stop();
});

Deno.test("master: a frame cut off mid-way by a closed connection", async () => {
  await using master = await badInputMaster();
  const header = new Uint8Array([0, 0, 0, 100]);
  {
    await using raw = await RawConn.open(master.address);
    await raw.write(header);
    await raw.write(new Uint8Array(10));
  }
  const observer = await client(master);
  try {
    const raw = await authenticated(master);
    try {
      await waitFor("two clients", async () => (await observer.stats()).clients === 2);
      await raw.write(header);
      await raw.write(new Uint8Array(10));
    } finally {
      await raw.close();
    }
    // The master notices and forgets the half-sent connection.
    await waitFor(
      "the cut-off client to be gone",
      async () => (await observer.stats()).clients === 1,
    );
  } finally {
    await observer.close();
  }
  await assertServes(master);
  await master.stop();
});

/** A put request whose encoding is exactly `size` bytes long. */
function putOfSize(size: number, rid: number): Uint8Array {
  for (let pad = 0; pad < size; pad++) {
    const payload = encode({ op: "put", rid, queue: "stalled", items: ["x".repeat(pad)] });
    if (payload.length === size) return payload;
  }
  throw new Error(`no put of ${size} bytes`);
}

Deno.test("master: a frame stalled mid-way before the handshake hits the deadline", async () => {
  await using master = await badInputMaster();
  await using raw = await RawConn.open(master.address);
  const start = Date.now();
  await raw.write(new Uint8Array([0, 0, 0, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
  // Other clients are served while it stalls.
  await assertServes(master);
  const frames = await raw.closedByPeer(HANDSHAKE_TIMEOUT_S * 1000 + 4000);
  const elapsed = Date.now() - start;
  assert.equal(frames.length, 1, show(frames));
  assert.match(asError(frames[0], "auth_failed").message, /handshake not completed in time/);
  assert.ok(elapsed >= HANDSHAKE_TIMEOUT_S * 1000 - 100, `closed after ${elapsed} ms`);
  await assertServes(master);
  await master.stop();
});

Deno.test("master: a frame stalled mid-way after the handshake blocks nobody and completes", async () => {
  await using master = await badInputMaster();
  await using raw = await authenticated(master);
  const payload = putOfSize(100, 42);
  await raw.write(frameOf(payload).subarray(0, 14)); // header and 10 bytes
  // Others are served meanwhile, past the handshake deadline, and the stalled one stays open.
  await assertServes(master);
  const observer = await client(master);
  try {
    assert.equal(await observer.queue("stalled").get(HANDSHAKE_TIMEOUT_S * 1000 + 200), null);
    assert.equal(raw.eof, false, "an authenticated connection has no deadline");
    await raw.write(frameOf(payload).subarray(14));
    const reply = await raw.next() as { op: string; rid: number; ids: number[] };
    assert.deepEqual([reply.op, reply.rid, reply.ids.length], ["ok", 42, 1]);
    assert.equal(await observer.queue("stalled").size(), 1);
  } finally {
    await observer.close();
  }
  await master.stop();
});

Deno.test("master: msgpack that is not a message, before the handshake", async () => {
  await using master = await badInputMaster();
  const cases: [unknown, RegExp][] = [
    [[1, 2, 3], /must be a msgpack map/],
    ["hello", /must be a msgpack map/],
    [{}, /needs a string "op"/],
    [{ version: 1 }, /needs a string "op"/],
    [{ op: "frobnicate" }, /unknown message op "frobnicate"/],
    [{ op: "ping", rid: 1 }, /expected "hello", got "ping"/],
    [{ op: "auth", proof: new Uint8Array(32) }, /expected "hello", got "auth"/],
  ];
  for (const [value, pattern] of cases) {
    await using raw = await RawConn.open(master.address);
    await raw.send(value);
    const frames = await raw.closedByPeer();
    assert.equal(frames.length, 1, `${show(value)}: ${show(frames)}`);
    assert.match(asError(frames[0], "bad_request").message, pattern);
  }
  await assertServes(master);
  await master.stop();
});

Deno.test("master: msgpack that is not a message, after the handshake", async () => {
  await using master = await badInputMaster();
  const cases: [unknown, number | undefined, RegExp][] = [
    [[1, 2], undefined, /must be a msgpack map/],
    [42, undefined, /must be a msgpack map/],
    [{ rid: 7 }, 7, /needs a string "op"/],
    [{ op: "frobnicate", rid: 8 }, 8, /unknown message op "frobnicate"/],
    [{ op: 3, rid: 9 }, 9, /needs a string "op"/],
    [{ op: "hello", version: 1, nonce: new Uint8Array(32) }, undefined, /only valid during/],
  ];
  for (const [value, rid, pattern] of cases) {
    await using raw = await authenticated(master);
    await raw.send(value);
    const frames = await raw.closedByPeer();
    assert.equal(frames.length, 1, `${show(value)}: ${show(frames)}`);
    const error = asError(frames[0], "bad_request");
    assert.equal(error.rid, rid, `rid of the error for ${show(value)}`);
    assert.match(error.message, pattern);
  }
  await assertServes(master);
  await master.stop();
});

Deno.test("master: wrong field types after the handshake; the error carries the rid", async () => {
  await using master = await badInputMaster();
  const cases: [Record<string, unknown>, number | undefined, RegExp][] = [
    [{ op: "put", rid: 11, queue: 5, items: [1] }, 11, /queue name must be/],
    [{ op: "put", rid: -1, queue: "q", items: [1] }, undefined, /"rid" must be an integer/],
    [{ op: "put", rid: 12, queue: "q", items: "not an array" }, 12, /"items" must be an array/],
    [{ op: "put", rid: 13, queue: "q", items: [] }, 13, /"items" must be an array of 1/],
    [{ op: "put", rid: 14, queue: "q", items: [1], delay: "soon" }, 14, /"delay"/],
    [{ op: "put", rid: 15, queue: "q", items: [1], extra: 1 }, 15, /unknown field "extra"/],
    [{ op: "get", rid: 16, queue: "q", max: "1", timeout: 0 }, 16, /"max"/],
    [{ op: "get", rid: 17, queue: "q", max: 1, timeout: -5 }, 17, /"timeout"/],
    [{ op: "ack", rid: 18, ids: [-1] }, 18, /non-negative integer ids/],
    [{ op: "ack", rid: 19, ids: "1" }, 19, /"ids" must be an array/],
    [{ op: "extend", rid: 20, ids: [1] }, 20, /"lease"/],
    [{ op: "ping", rid: 1.5 }, undefined, /"rid" must be an integer/],
    [{ op: "ping", rid: "21" }, undefined, /"rid" must be an integer/],
    [{ op: "ping", rid: 2 ** 53 }, undefined, /"rid" must be an integer/],
  ];
  for (const [value, rid, pattern] of cases) {
    await using raw = await authenticated(master);
    await raw.send(value);
    const frames = await raw.closedByPeer();
    assert.equal(frames.length, 1, `${show(value)}: ${show(frames)}`);
    const error = asError(frames[0], "bad_request");
    assert.equal(error.rid, rid, `rid of the error for ${show(value)}`);
    assert.match(error.message, pattern, show(value));
  }
  const observer = await client(master);
  try {
    assert.equal((await observer.stats("q")).queues[0].put, 0, "no bad put went through");
  } finally {
    await observer.close();
  }
  await assertServes(master);
  await master.stop();
});

Deno.test("master: requests after an error on the same connection are ignored", async () => {
  await using master = await badInputMaster();
  await using raw = await authenticated(master);
  const good = encode({ op: "put", rid: 2, queue: "after", items: [1] });
  const bad = encode({ op: "put", rid: 1, queue: 5, items: [1] });
  await raw.write(new Uint8Array([...frameOf(bad), ...frameOf(good)]));
  const frames = await raw.closedByPeer();
  assert.equal(frames.length, 1, show(frames));
  assert.equal(asError(frames[0], "bad_request").rid, 1);
  const observer = await client(master);
  try {
    assert.equal((await observer.stats("after")).queues[0].put, 0);
  } finally {
    await observer.close();
  }
  await assertServes(master);
  await master.stop();
});

Deno.test("master: 200 connections that never finish the handshake lock nobody out", async () => {
  const FLOOD = 200;
  await using master = await badInputMaster();
  const conns: RawConn[] = [];
  try {
    const start = Date.now();
    for (let i = 0; i < FLOOD; i++) {
      const raw = await RawConn.open(master.address);
      conns.push(raw);
      // Some say hello and stop there; the rest say nothing at all.
      if (i % 4 === 0) {
        await raw.send({ op: "hello", version: PROTOCOL_VERSION, nonce: newNonce() });
      }
    }
    // A good client works while the flood is still open.
    await assertServes(master);
    const elapsed = Date.now() - start;
    const stillOpen = conns.filter((raw) => !raw.eof).length;
    assert.ok(stillOpen > 0, "the flood was still open while the good client worked");

    // The master closes every one of them: the oldest at once to stay under the cap, the
    // rest at the handshake deadline.
    const codes = new Map<string, number>();
    for (const raw of conns) {
      const frames = await raw.closedByPeer(HANDSHAKE_TIMEOUT_S * 1000 + 5000);
      const refusal = frames.find((frame) => (frame as { op: string }).op === "error") as
        | { code: string }
        | undefined;
      const code = refusal?.code ?? "none";
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    const evicted = codes.get("too_many_connections") ?? 0;
    const timedOut = codes.get("auth_failed") ?? 0;
    assert.equal(evicted + timedOut, FLOOD, `refusals: ${show(codes)}`);
    if (elapsed < HANDSHAKE_TIMEOUT_S * 800) {
      // Nothing timed out before the flood and the good client were in: exactly the
      // overflow above the cap was evicted (the good client took one pending slot too).
      assert.equal(evicted, FLOOD - MAX_PENDING + 1, `refusals: ${show(codes)}`);
    }
    assert.ok(timedOut > 0, `refusals: ${show(codes)}`);
  } finally {
    for (const raw of conns) await raw.close();
  }
  await assertServes(master);
  await master.stop();
});

// ------------------------------------------------------------ handshake

Deno.test("master: the handshake proves the key both ways", async () => {
  await using master = await startMaster({ args: ["--lease", "12"] });
  await using raw = await RawConn.open(master.address);
  const welcome = await raw.handshake(); // checks the master's proof
  assert.equal(welcome.leaseMs, 12_000);
  assert.equal(welcome.maxFrameBytes, 16 * 1024 * 1024);
  await raw.send({ op: "ping", rid: 5 });
  assert.deepEqual(await raw.next(), { op: "ok", rid: 5 });
  await master.stop();
});

Deno.test("master: a wrong proof, a replayed proof, a second hello are refused", async () => {
  await using master = await badInputMaster();
  const key = new TextEncoder().encode(TEST_KEY);
  let replayable: Uint8Array;
  {
    // A proof made with the wrong key.
    await using raw = await RawConn.open(master.address);
    const nonce = newNonce();
    await raw.send({ op: "hello", version: PROTOCOL_VERSION, nonce });
    const challenge = await raw.next() as { nonce: Uint8Array };
    const wrong = clientProof(new TextEncoder().encode("nope"), nonce, challenge.nonce);
    replayable = clientProof(key, nonce, challenge.nonce); // right, but for this connection only
    await raw.send({ op: "auth", proof: wrong });
    const frames = await raw.closedByPeer();
    assert.equal(frames.length, 1, show(frames));
    assert.match(asError(frames[0], "auth_failed").message, /the key was rejected/);
  }
  {
    // A valid proof from another connection: the master's fresh nonce defeats the replay.
    await using raw = await RawConn.open(master.address);
    await raw.send({ op: "hello", version: PROTOCOL_VERSION, nonce: newNonce() });
    await raw.next();
    await raw.send({ op: "auth", proof: replayable });
    asError((await raw.closedByPeer())[0], "auth_failed");
  }
  {
    await using raw = await RawConn.open(master.address);
    await raw.send({ op: "hello", version: PROTOCOL_VERSION, nonce: newNonce() });
    await raw.next();
    await raw.send({ op: "hello", version: PROTOCOL_VERSION, nonce: newNonce() });
    assert.match(
      asError((await raw.closedByPeer())[0], "bad_request").message,
      /expected "auth", got "hello"/,
    );
  }
  await assertServes(master);
  await master.stop();
});

Deno.test("master: a client speaking no version it knows is told so", async () => {
  await using master = await badInputMaster();
  await using raw = await RawConn.open(master.address);
  await raw.send({ op: "hello", version: 0, nonce: newNonce() });
  const frames = await raw.closedByPeer();
  assert.equal(frames.length, 1, show(frames));
  assert.match(
    asError(frames[0], "unsupported_version").message,
    new RegExp(
      `protocol version 0 is not supported; this master speaks versions 1 to ${PROTOCOL_VERSION}`,
    ),
  );
  await assertServes(master);
  await master.stop();
});

// ------------------------------------------------------------ configuration

Deno.test("master: serve() refuses to listen beyond loopback without a key", async () => {
  await assert.rejects(serve({ listen: "0.0.0.0:0" }), (error: unknown) => {
    assert.ok(error instanceof ConfigError, `got ${error}`);
    assert.match(error.message, /refusing to listen on 0\.0\.0\.0:0 without a key/);
    return true;
  });
  await assert.rejects(serve({ listen: ":0" }), ConfigError);
});

Deno.test("master: the command refuses to listen beyond loopback without a key", async () => {
  // With the default durable store too: the address is refused before anything touches disk.
  for (const memory of [true, false]) {
    await using proc = new Proc("master", masterArgs("0.0.0.0:0", [], memory), keyEnv(null));
    const status = await proc.finished(15_000);
    assert.notEqual(status.code, 0, proc.describe());
    assert.equal(proc.stdout, "", proc.describe());
    const lines = proc.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, proc.describe());
    assert.match(lines[0], /^taskq master: refusing to listen on 0\.0\.0\.0:0 without a key/);
  }
});

Deno.test("master: the command reports a bad flag in one line", async () => {
  for (const args of [["--lease", "soon"], ["--bogus"], ["--handshake-timeout", "-1"]]) {
    await using proc = new Proc("master", masterArgs("127.0.0.1:0", args), keyEnv(TEST_KEY));
    const status = await proc.finished(15_000);
    assert.notEqual(status.code, 0, proc.describe());
    const lines = proc.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, proc.describe());
    assert.match(lines[0], /^taskq master: /);
  }
});

Deno.test("master: without a key a loopback master serves clients without a key", async () => {
  await using master = await startMaster({ key: null });
  const keyless = await connect({ address: master.address, authkey: "" });
  try {
    await keyless.ping();
  } finally {
    await keyless.close();
  }
  await assert.rejects(client(master, TEST_KEY), AuthenticationError);
  await master.stop();
});
