/**
 * Tests of lib/client/client.ts against a master served in this process
 * (serve() on an ephemeral loopback port) and against tiny fake masters
 * written here: every queue operation (put, putMany, get, getMany, ack, nack,
 * extend, size, stats, ping) and its options, value round-trips, pipelining,
 * LeaseLostError, argument checks made before sending, close() and a master
 * going away, and the handshake from the client's side: a wrong key, an
 * impostor master that cannot prove the key (garbage or reflected proof), a
 * wrong protocol version, a silent or unreachable master.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  AuthenticationError,
  type Client,
  ConfigError,
  connect,
  ConnectionLostError,
  FrameTooLargeError,
  LeaseLostError,
  type Master,
  type MasterOptions,
  MAX_ITEM_DEPTH,
  ProtocolError,
  RemoteError,
  serve,
} from "../lib/mod.ts";
import { clientProof, newNonce, PROTOCOL_VERSION, serverProof } from "../lib/wire/auth.ts";
import { MAX_BATCH } from "../lib/client/client.ts";
import {
  bytesEqual,
  freeLoopbackPort,
  RawConn,
  show,
  TEST_KEY,
  waitFor,
  withDeadline,
} from "./_helpers.ts";

const KEY_BYTES = new TextEncoder().encode(TEST_KEY);

/** Runs `fn` with a master served in this process and one client connected to it. */
async function withMaster(
  fn: (client: Client, master: Master, address: string) => Promise<void>,
  options: Partial<MasterOptions> = {},
): Promise<void> {
  const master = await serve({ listen: "127.0.0.1:0", authkey: KEY_BYTES, ...options });
  const address = `127.0.0.1:${master.address.port}`;
  let client: Client | undefined;
  try {
    client = await connect({ address, authkey: TEST_KEY, name: "client test" });
    await fn(client, master, address);
  } finally {
    await client?.close();
    await master.close();
  }
}

/** Connects another client with the test key. */
function another(address: string): Promise<Client> {
  return connect({ address, authkey: TEST_KEY });
}

Deno.test("client: put, get and ack one item", async () => {
  await withMaster(async (client) => {
    const tasks = client.queue("tasks");
    assert.equal(client.queue("tasks"), tasks, "queues are cached by name");
    assert.equal(tasks.name, "tasks");
    const id = await tasks.put({ n: 7 });
    assert.equal(typeof id, "number");
    assert.equal(await tasks.size(), 1);
    const job = await tasks.get<{ n: number }>(1000);
    assert.ok(job);
    // Its own fields are the four of a job (its signal and progress come from its class).
    assert.deepEqual({ ...job }, { id, queue: "tasks", value: { n: 7 }, attempt: 1 });
    assert.equal(
      JSON.stringify(job),
      JSON.stringify({ id, queue: "tasks", value: { n: 7 }, attempt: 1 }),
    );
    assert.equal(job.signal.aborted, false);
    assert.equal(await tasks.size(), 0);
    await tasks.ack(job);
    const [stats] = (await client.stats("tasks")).queues;
    assert.equal(stats.acked, 1);
    assert.equal(stats.leased, 0);
    assert.equal(client.defaultLeaseMs, 30_000);
    assert.equal(client.inFlight, 0);
  });
});

Deno.test("client: values of every plain type round-trip through the master", async () => {
  await withMaster(async (client) => {
    const values: unknown[] = [
      null,
      true,
      0,
      -42,
      2 ** 40,
      3.25,
      "",
      "ünïcødé 🚀",
      [1, [2, [3]]],
      { nested: { list: [null, "x"], n: 1 } },
      new Date(1_700_000_000_000),
      "x".repeat(100_000),
    ];
    const q = client.queue("values");
    await q.putMany(values);
    const jobs = await q.getMany(values.length, 1000);
    assert.deepEqual(jobs.map((job) => job.value), values);
    await q.put(new Uint8Array([1, 2, 250]));
    const bin = await q.get(1000);
    assert.ok(bin?.value instanceof Uint8Array);
    assert.deepEqual([...bin.value], [1, 2, 250]);
  });
});

Deno.test("client: putMany and getMany keep order; getMany takes what is ready", async () => {
  await withMaster(async (client) => {
    const q = client.queue("batch");
    assert.deepEqual(await q.putMany([]), []);
    const ids = await q.putMany([1, 2, 3, 4, 5]);
    assert.equal(ids.length, 5);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
    const first = await q.getMany(3, 1000);
    assert.deepEqual(first.map((job) => job.value), [1, 2, 3]);
    assert.deepEqual(first.map((job) => job.id), ids.slice(0, 3));
    const rest = await q.getMany(10, 1000);
    assert.deepEqual(rest.map((job) => job.value), [4, 5]);
    await q.ack([...first, rest[0].id, rest[1]]);
    assert.deepEqual(await q.getMany(10, 0), []);
  });
});

Deno.test("client: get returns null once its timeout passes", async () => {
  await withMaster(async (client) => {
    const q = client.queue("empty");
    assert.equal(await q.get(0), null);
    const start = Date.now();
    assert.equal(await q.get(200), null);
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= 200, `returned after ${elapsed} ms`);
    assert.ok(elapsed < 2000, `returned after ${elapsed} ms`);
  });
});

Deno.test("client: a get without timeout waits until an item is put", async () => {
  await withMaster(async (client, _master, address) => {
    const waiting = client.queue("later").get();
    const producer = await another(address);
    try {
      await waitFor("the get to wait on the master", async () => {
        const [stats] = (await producer.stats("later")).queues;
        return stats.waiting === 1;
      });
      await producer.queue("later").put("hello");
      const job = await waiting;
      assert.equal(job?.value, "hello");
    } finally {
      await producer.close();
    }
  });
});

Deno.test("client: nack gives an item back to be served again", async () => {
  await withMaster(async (client) => {
    const q = client.queue("retry");
    await q.putMany(["a", "b"]);
    const a = await q.get(1000);
    assert.ok(a);
    await q.nack(a);
    const next = await q.getMany(2, 1000);
    assert.deepEqual(next.map((job) => [job.value, job.attempt]), [["b", 1], ["a", 2]]);
    await q.ack(next);
    await assert.rejects(q.nack(a), LeaseLostError);
  });
});

Deno.test("client: delayed put and delayed nack are not served before their time", async () => {
  await withMaster(async (client) => {
    const q = client.queue("delayed");
    const start = Date.now();
    await q.put("x", { delayMs: 200 });
    assert.equal(await q.get(0), null);
    assert.equal((await client.stats("delayed")).queues[0].delayed, 1);
    const job = await q.get(5000);
    assert.ok(job);
    assert.ok(Date.now() - start >= 200, "served before its delay");
    const nackedAt = Date.now();
    await q.nack(job, { delayMs: 150 });
    assert.equal(await q.get(0), null);
    const again = await q.get(5000);
    assert.equal(again?.attempt, 2);
    assert.ok(Date.now() - nackedAt >= 150, "served again before its delay");
    await q.ack(again);
  });
});

Deno.test("client: acking twice, or another client's item, is a LeaseLostError", async () => {
  await withMaster(async (client, _master, address) => {
    const q = client.queue("lost");
    await q.put("x");
    const job = await q.get(1000);
    assert.ok(job);
    const other = await another(address);
    try {
      await assert.rejects(other.queue("lost").ack(job), (error: unknown) => {
        assert.ok(error instanceof LeaseLostError);
        assert.deepEqual(error.ids, [job.id]);
        assert.match(error.message, new RegExp(`lease lost for item ${job.id}:`));
        return true;
      });
      await assert.rejects(other.queue("lost").extend(job, 1000), LeaseLostError);
    } finally {
      await other.close();
    }
    await q.ack(job);
    await assert.rejects(q.ack([job, 999_999]), (error: unknown) => {
      assert.ok(error instanceof LeaseLostError);
      assert.deepEqual(error.ids, [job.id, 999_999]);
      assert.match(error.message, /items/);
      return true;
    });
  });
});

Deno.test("client: extend keeps a short lease from running out", async () => {
  await withMaster(async (client, _master, address) => {
    const q = client.queue("long");
    await q.put("work");
    const job = await q.get(1000, { leaseMs: 150 });
    assert.ok(job);
    await q.extend(job, 10_000);
    const other = await another(address);
    try {
      // Well past the original lease: still not served to anyone else.
      assert.equal(await other.queue("long").get(400), null);
    } finally {
      await other.close();
    }
    await q.ack(job);
  });
});

Deno.test("client: a lease that runs out is served again and the late ack is refused", async () => {
  await withMaster(async (client, _master, address) => {
    const q = client.queue("expire");
    await q.put("work");
    const job = await q.get(1000, { leaseMs: 100 });
    assert.ok(job);
    const other = await another(address);
    try {
      const again = await other.queue("expire").get(5000);
      assert.equal(again?.id, job.id);
      assert.equal(again?.attempt, 2);
      await assert.rejects(q.ack(job), LeaseLostError);
      await other.queue("expire").ack(again);
    } finally {
      await other.close();
    }
  });
});

Deno.test("client: stats, size and ping", async () => {
  await withMaster(async (client, _master, address) => {
    await client.ping();
    await client.queue("s1").putMany([1, 2]);
    await client.queue("s2").put(3);
    const other = await another(address);
    try {
      const all = await client.stats();
      assert.equal(all.clients, 2);
      assert.deepEqual(all.queues.map((s) => [s.name, s.ready]), [["s1", 2], ["s2", 1]]);
      assert.equal(await other.queue("s1").size(), 2);
      assert.equal(await other.queue("never-used").size(), 0);
    } finally {
      await other.close();
    }
    await waitFor("the master to see one client", async () => (await client.stats()).clients === 1);
  });
});

Deno.test("client: many requests in flight at once are matched to their replies", async () => {
  await withMaster(async (client) => {
    const q = client.queue("pipelined");
    const puts = Array.from({ length: 500 }, (_, i) => q.put(i));
    assert.ok(client.inFlight > 0);
    const ids = await Promise.all(puts);
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1], "ids follow call order");
    const gets = Array.from({ length: 500 }, () => q.get(1000));
    const jobs = await Promise.all(gets);
    assert.deepEqual(jobs.map((job) => job?.value), Array.from({ length: 500 }, (_, i) => i));
    await Promise.all(jobs.map((job) => q.ack(job!)));
    assert.equal(client.inFlight, 0);
  });
});

Deno.test("client: bad arguments are refused before anything is sent", async () => {
  await withMaster(async (client) => {
    // Local argument checks: TypeError/RangeError, not ProtocolError (which
    // means the peer sent bad bytes).
    assert.throws(() => client.queue(""), RangeError);
    assert.throws(() => client.queue("bad\nname"), RangeError);
    const q = client.queue("args");
    await assert.rejects(q.put(undefined), TypeError);
    await assert.rejects(q.put({ f: () => 1 }), TypeError);
    await assert.rejects(q.putMany([1, new Map()]), TypeError);
    await assert.rejects(q.get(-1), RangeError);
    await assert.rejects(q.get(1.5), RangeError);
    await assert.rejects(q.get(0, { leaseMs: -5 }), RangeError);
    await assert.rejects(q.put(1, { delayMs: 2 ** 31 }), RangeError);
    await assert.rejects(client.stats("bad\u0000"), RangeError);
    // Nothing reached the master, and the connection is fine.
    await client.ping();
    assert.equal(await q.size(), 0);
  });
});

Deno.test("client: an item larger than the master's limit is refused locally", async () => {
  await withMaster(async (client) => {
    const q = client.queue("big");
    await assert.rejects(q.put("x".repeat(5000)), FrameTooLargeError);
    await q.put("x".repeat(100));
    assert.equal(await q.size(), 1);
  }, { maxFrameBytes: 1024 });
});

Deno.test("client: a request the master refuses is a RemoteError; the client reconnects", async () => {
  await withMaster(async (client) => {
    assert.equal(client.sessionNumber, 1);
    // get max 0 passes the client but not the master's validation, which closes the connection.
    await assert.rejects(client.queue("q").getMany(0, 0), (error: unknown) => {
      assert.ok(error instanceof RemoteError);
      assert.equal(error.code, "bad_request");
      assert.match(error.message, /"max" must be at least 1/);
      return true;
    });
    // The next request waits for a new connection and goes through.
    await client.ping();
    assert.equal(client.sessionNumber, 2);
    assert.equal(client.closed, false);
  });
});

Deno.test("client: without reconnect, a connection the master ends closes the client", async () => {
  await withMaster(async (_client, _master, address) => {
    const client = await connect({ address, authkey: TEST_KEY, reconnect: false });
    try {
      await assert.rejects(client.queue("q").getMany(0, 0), RemoteError);
      await withDeadline(client.done, 5000, "the client to close");
      assert.ok(client.closed);
      await assert.rejects(client.ping(), ConnectionLostError);
    } finally {
      await client.close();
    }
  });
});

Deno.test("client: close fails requests in flight and gives held items back", async () => {
  await withMaster(async (client, _master, address) => {
    const q = client.queue("held");
    await q.put("x");
    const held = await q.get(1000);
    assert.ok(held);
    const waiting = assert.rejects(q.get(60_000), ConnectionLostError);
    await client.close();
    assert.ok(client.closed);
    await waiting;
    await assert.rejects(q.put(1), ConnectionLostError);
    await client.close(); // twice is harmless
    const other = await another(address);
    try {
      const again = await other.queue("held").get(5000);
      assert.equal(again?.id, held.id);
      assert.equal(again?.attempt, 2);
    } finally {
      await other.close();
    }
  });
});

Deno.test("client: a master going away fails requests in flight", async () => {
  const master = await serve({ listen: "127.0.0.1:0", authkey: KEY_BYTES });
  const client = await connect({
    address: `127.0.0.1:${master.address.port}`,
    authkey: KEY_BYTES,
    reconnect: false,
  });
  try {
    const waiting = assert.rejects(client.queue("q").get(), ConnectionLostError);
    await client.ping();
    await master.close();
    await waiting;
    await client.done;
    assert.ok(client.closed);
    await assert.rejects(client.ping(), ConnectionLostError);
  } finally {
    await client.close();
    await master.close();
  }
});

Deno.test("client: reconnects to a master that comes back on the same address", async () => {
  let master = await serve({ listen: "127.0.0.1:0", authkey: KEY_BYTES });
  const port = master.address.port;
  let disconnects = 0;
  const client = await connect({
    address: `127.0.0.1:${port}`,
    authkey: KEY_BYTES,
    onDisconnect: () => disconnects++,
  });
  try {
    const job = await (async () => {
      await client.queue("q").put("x");
      return await client.queue("q").get(1000);
    })();
    assert.ok(job);
    assert.ok(client.mayHoldLease(job));
    const waiting = assert.rejects(client.queue("q").get(), ConnectionLostError);
    await master.close();
    await waiting;
    assert.equal(disconnects, 1);
    assert.equal(client.mayHoldLease(job), false);
    master = await serve({ listen: `127.0.0.1:${port}`, authkey: KEY_BYTES });
    // Requests made while reconnecting wait for the new connection.
    await withDeadline(client.ping(), 10_000, "the client to reconnect");
    assert.equal(client.sessionNumber, 2);
    assert.ok(client.connected);
    assert.equal(client.mayHoldLease(job), false, "a lease does not survive its connection");
  } finally {
    await client.close();
    await master.close();
  }
});

Deno.test("client: a wrong key is an AuthenticationError saying the key was rejected", async () => {
  await withMaster(async (client, _master, address) => {
    const start = Date.now();
    await assert.rejects(connect({ address, authkey: "wrong key" }), (error: unknown) => {
      assert.ok(error instanceof AuthenticationError, `got ${error}`);
      assert.match(error.message, /rejected the key/);
      return true;
    });
    assert.ok(Date.now() - start < 1000);
    await assert.rejects(connect({ address, authkey: "" }), AuthenticationError);
    await client.ping();
  });
});

Deno.test("client: an unreachable master is a ConnectionLostError", async () => {
  const port = freeLoopbackPort(); // nothing listens there now
  await assert.rejects(
    connect({ address: `127.0.0.1:${port}`, authkey: TEST_KEY, timeoutMs: 2000 }),
    (error: unknown) => {
      assert.ok(error instanceof ConnectionLostError, `got ${error}`);
      assert.match(error.message, /cannot reach master/);
      return true;
    },
  );
  await assert.rejects(connect({ address: "not an address", authkey: TEST_KEY }), ConfigError);
});

// ------------------------------------------------------------- fake masters

/** A master impostor on an ephemeral port that runs `script` on the first connection. */
async function withFakeMaster(
  script: (peer: RawConn) => Promise<void>,
  fn: (address: string) => Promise<void>,
): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const peer = RawConn.wrap(await listener.accept());
    try {
      await script(peer);
    } finally {
      await peer.close();
    }
  })();
  try {
    await fn(`127.0.0.1:${listener.addr.port}`);
    await served;
  } finally {
    try {
      listener.close();
    } catch {
      // closed already
    }
    await served.catch(() => {});
  }
}

interface FakeHandshake {
  clientNonce: Uint8Array;
  serverNonce: Uint8Array;
  clientProof: Uint8Array;
}

/** Plays the master's side of the handshake up to (not including) welcome. */
async function fakeChallenge(peer: RawConn, version = PROTOCOL_VERSION): Promise<FakeHandshake> {
  const hello = await peer.next() as Record<string, unknown>;
  assert.equal(hello.op, "hello", show(hello));
  assert.equal(hello.version, PROTOCOL_VERSION);
  const serverNonce = newNonce();
  await peer.send({ op: "challenge", version, nonce: serverNonce });
  const auth = await peer.next() as Record<string, unknown>;
  assert.equal(auth.op, "auth", show(auth));
  return {
    clientNonce: hello.nonce as Uint8Array,
    serverNonce,
    clientProof: auth.proof as Uint8Array,
  };
}

function welcome(proof: Uint8Array) {
  return { op: "welcome", proof, maxFrameBytes: 1 << 20, leaseMs: 1234 };
}

Deno.test("client: a fake master with the right proof is accepted (control)", async () => {
  await withFakeMaster(async (peer) => {
    const hs = await fakeChallenge(peer);
    assert.ok(bytesEqual(hs.clientProof, clientProof(KEY_BYTES, hs.clientNonce, hs.serverNonce)));
    await peer.send(welcome(serverProof(KEY_BYTES, hs.clientNonce, hs.serverNonce)));
    const ping = await peer.next() as { op: string; rid: number };
    assert.equal(ping.op, "ping");
    await peer.send({ op: "ok", rid: ping.rid });
    assert.deepEqual(await peer.closedByPeer(), []);
  }, async (address) => {
    const client = await connect({ address, authkey: TEST_KEY });
    assert.equal(client.defaultLeaseMs, 1234);
    await client.ping();
    await client.close();
  });
});

Deno.test("client: a master that answers with a garbage proof is refused", async () => {
  await withFakeMaster(async (peer) => {
    await fakeChallenge(peer);
    await peer.send(welcome(crypto.getRandomValues(new Uint8Array(32))));
    // The client hangs up without sending a single request.
    assert.deepEqual(await peer.closedByPeer(), []);
  }, async (address) => {
    await assert.rejects(connect({ address, authkey: TEST_KEY }), (error: unknown) => {
      assert.ok(error instanceof AuthenticationError, `got ${error}`);
      assert.match(error.message, /could not prove it holds the key/);
      return true;
    });
  });
});

Deno.test("client: a master that reflects the client's own proof is refused", async () => {
  await withFakeMaster(async (peer) => {
    const hs = await fakeChallenge(peer);
    await peer.send(welcome(hs.clientProof));
    assert.deepEqual(await peer.closedByPeer(), []);
  }, async (address) => {
    await assert.rejects(connect({ address, authkey: TEST_KEY }), AuthenticationError);
  });
});

Deno.test("client: a master with a proof for another key is refused", async () => {
  const otherKey = new TextEncoder().encode("some other key");
  await withFakeMaster(async (peer) => {
    const hs = await fakeChallenge(peer);
    await peer.send(welcome(serverProof(otherKey, hs.clientNonce, hs.serverNonce)));
    assert.deepEqual(await peer.closedByPeer(), []);
  }, async (address) => {
    await assert.rejects(connect({ address, authkey: TEST_KEY }), AuthenticationError);
  });
});

for (const version of [0, PROTOCOL_VERSION + 1]) {
  Deno.test(`client: a master answering with protocol version ${version} is refused`, async () => {
    await withFakeMaster(async (peer) => {
      const hello = await peer.next() as Record<string, unknown>;
      assert.equal(hello.op, "hello");
      await peer.send({ op: "challenge", version, nonce: newNonce() });
      assert.deepEqual(await peer.closedByPeer(), [], "no auth is sent");
    }, async (address) => {
      await assert.rejects(connect({ address, authkey: TEST_KEY }), (error: unknown) => {
        assert.ok(error instanceof AuthenticationError);
        assert.match(error.message, new RegExp(`answered with protocol version ${version}\\b`));
        assert.match(error.message, new RegExp(`speaks versions 1 to ${PROTOCOL_VERSION}`));
        return true;
      });
    });
  });
}

Deno.test("client: a welcome without a challenge is a protocol error", async () => {
  await withFakeMaster(async (peer) => {
    await peer.next();
    await peer.send(welcome(new Uint8Array(32)));
    await peer.closedByPeer();
  }, async (address) => {
    await assert.rejects(connect({ address, authkey: TEST_KEY }), ProtocolError);
  });
});

Deno.test("client: refusals during the handshake become named errors", async () => {
  await withFakeMaster(async (peer) => {
    await peer.next();
    // Refused for longer than the connect timeout: thrown at once, not retried.
    await peer.send({ op: "error", code: "too_many_connections", message: "refused for 60 s" });
    await peer.closedByPeer();
  }, async (address) => {
    await assert.rejects(connect({ address, authkey: TEST_KEY }), (error: unknown) => {
      assert.ok(error instanceof RemoteError, String(error));
      assert.equal(error.code, "too_many_connections");
      return true;
    });
  });
});

Deno.test("client: a master that never answers times out as a ConnectionLostError", async () => {
  await withFakeMaster(async (peer) => {
    await peer.next(); // hello, never answered
    await peer.closedByPeer();
  }, async (address) => {
    const start = Date.now();
    await assert.rejects(
      connect({ address, authkey: TEST_KEY, timeoutMs: 300 }),
      (error: unknown) => {
        assert.ok(error instanceof ConnectionLostError, `got ${error}`);
        assert.match(error.message, /did not complete the handshake in 300 ms/);
        return true;
      },
    );
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= 290 && elapsed < 2000, `gave up after ${elapsed} ms`);
  });
});

Deno.test("client: a reply to an unknown request drops the connection", async () => {
  await withFakeMaster(async (peer) => {
    const hs = await fakeChallenge(peer);
    await peer.send(welcome(serverProof(KEY_BYTES, hs.clientNonce, hs.serverNonce)));
    const ping = await peer.next() as { rid: number };
    await peer.send({ op: "ok", rid: ping.rid + 1000 });
    await peer.closedByPeer();
  }, async (address) => {
    const client = await connect({ address, authkey: TEST_KEY, reconnect: false });
    try {
      await assert.rejects(client.ping(), (error: unknown) => {
        assert.ok(error instanceof ConnectionLostError);
        assert.match(error.message, /unknown request/);
        return true;
      });
      await client.done;
    } finally {
      await client.close();
    }
  });
});

Deno.test("client: the deepest item allowed goes through a master and back; a deeper one is refused before sending", async () => {
  await withMaster(async (client) => {
    let deepest: unknown = "core";
    for (let i = 0; i < MAX_ITEM_DEPTH; i++) deepest = [deepest];
    const queue = client.queue("deep");
    await queue.put(deepest);
    const job = await queue.get(1_000);
    assert.deepEqual(job?.value, deepest);
    await queue.ack(job!);
    await assert.rejects(queue.put([deepest]), RangeError);
  });
});

Deno.test("client: a caller's bad arguments are TypeError or RangeError naming the argument, never a ProtocolError", async () => {
  await withMaster(async (client, _master, address) => {
    const refused = async (
      call: () => unknown,
      kind: typeof TypeError | typeof RangeError,
      pattern: RegExp,
    ) => {
      await assert.rejects(async () => await call(), (error: unknown) => {
        assert.ok(error instanceof kind, `expected ${kind.name}, got ${show(error)}`);
        assert.ok(!(error instanceof ProtocolError), "a local argument is not a protocol error");
        assert.match(error.message, pattern);
        return true;
      });
    };
    const q = client.queue("args");
    let tooDeep: unknown = "core";
    for (let i = 0; i <= MAX_ITEM_DEPTH; i++) tooDeep = [tooDeep];

    // Queue names.
    await refused(() => client.queue(""), RangeError, /bad queue name "" .*1–200 characters/);
    await refused(() => client.queue("bad\nname"), RangeError, /"bad\\nname"/);
    await refused(() => client.queue(7 as unknown as string), TypeError, /must be a string, not 7/);
    await refused(() => client.stats("bad\u0000"), RangeError, /bad queue name/);
    // Items.
    await refused(() => q.put(undefined), TypeError, /type undefined.*plain data only/);
    await refused(() => q.put({ f: () => 1 }), TypeError, /type function/);
    await refused(() => q.putMany([1, new Map()]), TypeError, /Map/);
    await refused(() => q.put(new Date(NaN)), RangeError, /timestamp/);
    await refused(() => q.put(tooDeep), RangeError, /nested more than 56 levels/);
    await refused(() => q.putMany("abc" as unknown as unknown[]), TypeError, /array of items/);
    await refused(
      () => q.putMany(new Array(MAX_BATCH + 1).fill(0)),
      RangeError,
      /at most 65536 items/,
    );
    // Options and durations.
    await refused(() => q.put(1, { maxAttempts: -1 }), RangeError, /maxAttempts/);
    await refused(
      () => q.put(1, { maxAttempts: "3" as unknown as number }),
      TypeError,
      /maxAttempts must be a number/,
    );
    await refused(() => q.put(1, { delayMs: NaN }), RangeError, /delayMs .* not NaN/);
    await refused(() => q.get("10" as unknown as number), TypeError, /timeoutMs must be a number/);
    await refused(() => q.get(-1), RangeError, /timeoutMs must be a whole number/);
    await refused(() => q.extend(1, -1), RangeError, /leaseMs/);
    // Jobs and ids.
    await refused(
      () => q.ack([{} as unknown as number]),
      TypeError,
      /a job \(from get\) or its id/,
    );
    await refused(() => q.ack(-1), RangeError, /job id/);
    await refused(() => q.nack([1.5]), RangeError, /job id/);
    await refused(() => q.fail(1, new Error("x") as unknown as string), TypeError, /as a string/);
    await refused(
      () => q.ack([1], { results: { queue: "", values: [1] } }),
      RangeError,
      /bad queue name/,
    );
    await refused(
      () => q.ack([1], { results: { queue: "out", values: [undefined] } }),
      TypeError,
      /type undefined/,
    );
    // Empty lists settle nothing and send nothing.
    await q.ack([]);
    await q.nack([]);
    await q.fail([], "nothing");
    await q.extend([], 1000);
    // Connection options, refused before connecting.
    await refused(
      () => connect({ address, authkey: 42 as unknown as string }),
      TypeError,
      /authkey/,
    );
    await refused(() => connect({ address, timeoutMs: 0 }), RangeError, /timeoutMs/);
    await refused(() => connect({ address, name: "n".repeat(201) }), RangeError, /at most 200/);
    await refused(() => connect({ address, maxFrameBytes: 0 }), RangeError, /maxFrameBytes/);
    await refused(
      () => connect({ address: { hostname: "127.0.0.1", port: 70_000 } }),
      RangeError,
      /address.port/,
    );
    // Nothing reached the master, and the connection is fine.
    await client.ping();
    assert.equal(client.sessionNumber, 1);
    assert.equal(await q.size(), 0);
  });
});
